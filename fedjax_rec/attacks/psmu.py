"""PSMU (Yuan et al., 2023), our reading (docs/design.md; there is no public code).

Each malicious client is a synthetic user. At set-up it holds the targets plus
`num_filler_items` (N = 30, as CL4FedRec's synthetic users) filler items drawn
uniformly without replacement from the non-target items, and a private user
embedding `u ~ N(0, embed_init_std² I)`. Every round it

1. trains `u` like a benign client: `local_steps` (1) plain SGD steps of lr
   `user_lr` (0.001) on the mean BCE of its items (label 1) and
   `num_negatives` (4) negatives per item (label 0), drawn uniformly with
   replacement from the items it does not hold, fresh every round; the public
   parameters stay frozen (that gradient is not uploaded);
2. finds the alternatives of each target: the `num_alternatives` (k = 10) items
   whose current embeddings in `V` are nearest to the target by cosine, the targets
   themselves excluded (`lax.top_k`, ties to the lower id);
3. uploads the gradient, at its trained `u`, of

       L = mean_t BCE(s(u, v_t), 1) + alternative_weight · mean_(t, j) BCE(s(u, v_alt(t, j)), 0)

   (the two sets weighted equally by default) with respect to the target rows,
   the alternative rows and the MLP. An item that is an alternative of several
   targets is uploaded once, with the sum of its gradients.

Rows are a fixed-size `[T + T·k]` buffer: the distinct candidate ids first (sorted),
then padding rows (item 0, zero gradient, `row_mask` False). The claimed sample count
(`weight`) is the number of samples of the poisoning loss, `T + T·k`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_rec.attacks.a_hum import (bce, catalogue_check, check_count, check_positive,
                                      check_targets, check_targets_in_catalogue)
from fedjax_rec.attacks.base import Attack
from fedjax_rec.task import ClientUpload
from fedjax_rec.models import ncf
from fedjax_rec.types import Array, PublicParams, PyTree


class PSMUState(NamedTuple):
  """Attributes:
    user_emb: [num_attackers, d] each synthetic user's private embedding.
    filler_items: [num_attackers, N] its filler items (distinct, no targets).
  """

  user_emb: Array
  filler_items: Array


def nearest_alternatives(item_emb: Array, targets: Array, k: int) -> Array:
  """`[T, k]` ids of the items nearest to each target by cosine, targets excluded."""
  norm = jnp.linalg.norm(item_emb, axis=1, keepdims=True)
  unit = item_emb / jnp.maximum(norm, 1e-12)
  sims = unit[targets] @ unit.T
  sims = sims.at[:, targets].set(-jnp.inf)
  return jax.lax.top_k(sims, k)[1].astype(jnp.int32)


def merge_duplicate_rows(ids: Array, grads: Array) -> tuple[Array, Array, Array]:
  """Sums the gradients of repeated ids into a fixed-size buffer.

  Returns `(row_item [R], row_grad [R, d], row_mask [R])` with `R = len(ids)`: the
  distinct ids in increasing order first, then masked padding (item 0, zeros).
  """
  size = ids.shape[0]
  order = jnp.argsort(ids)
  sorted_ids = ids[order]
  first = jnp.concatenate([jnp.ones((1,), bool), sorted_ids[1:] != sorted_ids[:-1]])
  segment = jnp.cumsum(first) - 1
  row_grad = jax.ops.segment_sum(grads[order], segment, num_segments=size)
  row_item = jnp.zeros((size,), ids.dtype).at[segment].max(sorted_ids)
  row_mask = jnp.arange(size) < jnp.sum(first)
  return row_item, row_grad, row_mask


def make_psmu(model_config: ncf.NCFConfig, targets, *, num_items: int | None = None,
              num_filler_items: int = 30, num_alternatives: int = 10, num_negatives: int = 4,
              user_lr: float = 0.001, local_steps: int = 1,
              alternative_weight: float = 1.0) -> Attack:
  """PSMU (see the module docstring).

  Args:
    num_items: catalogue size. Optional: the size of `V` is used when absent; when
      given it is checked against `V` and the targets.
  """
  targets = check_targets(targets)
  if num_items is not None:
    num_items = check_count("num_items", num_items)
    check_targets_in_catalogue(targets, num_items)
  num_filler = check_count("num_filler_items", num_filler_items, minimum=0)
  k = check_count("num_alternatives", num_alternatives)
  num_neg = check_count("num_negatives", num_negatives, minimum=0)
  user_lr = check_positive("user_lr", user_lr)
  local_steps = check_count("local_steps", local_steps)
  alternative_weight = check_positive("alternative_weight", alternative_weight)
  num_targets = int(targets.size)
  target_ids = jnp.asarray(targets)
  dim = model_config.embed_dim

  check_rows = catalogue_check("psmu", num_items, targets)

  def check_catalogue(n: int) -> None:
    check_rows(n)
    if num_filler > n - num_targets:
      raise ValueError(f"num_filler_items={num_filler} exceeds the {n - num_targets} "
                       "non-target items")
    if k > n - num_targets:
      raise ValueError(f"num_alternatives={k} exceeds the {n - num_targets} non-target items")
    if num_neg > 0 and n - num_targets - num_filler < 1:
      raise ValueError("num_negatives > 0 needs at least one item the synthetic user "
                       "does not hold")

  def init(key: Array, num_attackers: int, public: PublicParams) -> PSMUState:
    n = public.item_emb.shape[0]
    check_catalogue(n)
    key_user, key_filler = jax.random.split(key)
    user_emb = model_config.embed_init_std * jax.random.normal(key_user, (num_attackers, dim))
    # Uniform without replacement over the non-target items: top-N of uniform scores.
    scores = jax.random.uniform(key_filler, (num_attackers, n))
    scores = scores.at[:, target_ids].set(-1.0)
    filler = jax.lax.top_k(scores, num_filler)[1].astype(jnp.int32)
    return PSMUState(user_emb=user_emb, filler_items=filler)

  def update(public: PublicParams, ctx: PyTree, state: PSMUState, key: Array):
    del ctx
    n = public.item_emb.shape[0]
    check_catalogue(n)
    key_neg, _ = jax.random.split(key)
    mlp = public.net
    held = jnp.concatenate([target_ids, state.filler_items])  # [P]
    num_held = held.shape[0]

    # 1. Benign-like local training of the private embedding.
    if num_neg > 0:
      is_held = jnp.zeros((n,), bool).at[held].set(True)
      not_held = jnp.argsort(is_held, stable=True)[:n - num_held]
      negatives = not_held[jax.random.randint(key_neg, (num_held * num_neg,), 0, n - num_held)]
      items = jnp.concatenate([held, negatives])
      labels = jnp.concatenate([jnp.ones((num_held,)), jnp.zeros((num_held * num_neg,))])
    else:
      items, labels = held, jnp.ones((num_held,))
    rows = public.item_emb[items]

    def local_loss(u):
      lg = ncf.logits(model_config, mlp, jnp.broadcast_to(u, rows.shape), rows)
      return jnp.mean(optax.sigmoid_binary_cross_entropy(lg, labels))

    grad_u = jax.grad(local_loss)
    u = jax.lax.fori_loop(0, local_steps, lambda _, u: u - user_lr * grad_u(u),
                          state.user_emb)

    # 2. Alternatives of each target in the current V.
    alternatives = nearest_alternatives(public.item_emb, target_ids, k).reshape(-1)
    candidates = jnp.concatenate([target_ids, alternatives])  # [T + T·k]

    # 3. The poisoning gradient at the trained u.
    u_fixed = jax.lax.stop_gradient(u)

    def poison(cand_rows, mlp):
      lg = ncf.logits(model_config, mlp, jnp.broadcast_to(u_fixed, cand_rows.shape), cand_rows)
      return (jnp.mean(bce(lg[:num_targets], 1.0))
              + alternative_weight * jnp.mean(bce(lg[num_targets:], 0.0)))

    g_rows, g_mlp = jax.grad(poison, argnums=(0, 1))(public.item_emb[candidates], mlp)
    row_item, row_grad, row_mask = merge_duplicate_rows(candidates, g_rows)
    up = ClientUpload(row_item=row_item, row_grad=row_grad, row_mask=row_mask, net=g_mlp,
                      weight=jnp.asarray(candidates.shape[0], jnp.float32))
    return PSMUState(user_emb=u, filler_items=state.filler_items), up

  return Attack(name="psmu", init=init, update=update)
