"""A-hum and PSMU adapted to sequential recommenders (docs/design.md).

Same interface as `fedjax_rec.attacks` (`Attack(name, init, update)`,
`ClientUpload`), so the sequential round runs attackers vmapped in their own slots
exactly as the core does. An attacker's "user" is a fake sequence: a plausible
history with the targets placed right after it, i.e. the poisoning loss is the
next-item BCE of each target (label 1) at the history's last position.

* `a_hum`: every round, `num_users` fresh histories of `history_len` distinct
  non-target items, drawn by the popularity the public table suggests (items with
  larger embedding norms, Gumbel top-k on `‖v_i‖ / std`) or uniformly. The encoded
  history `u` is turned into a hard user by `hard_steps` SGD steps on `u` towards
  label 0 on the targets (encoder frozen); the offset is kept constant and the
  loss `mean BCE((u + δ)·v_t, 1)` is differentiated w.r.t. the target rows and the
  encoder. `hard_lr` defaults to 0.1, not A-hum's 0.001: encoder outputs have norm
  about `sqrt(d)`, not A-hum's 0.01-scale user embeddings.
* `psmu`: each attacker is a synthetic user with `num_filler_items` random filler
  items fixed at set-up; every round it uploads the gradient of
  `mean_t BCE(u·v_t, 1) + alternative_weight · mean BCE(u·v_alt, 0)`, the
  alternatives being the `num_alternatives` items nearest to each target by cosine,
  w.r.t. the target and alternative rows and the encoder.

Weighted FedAvg trusts the claimed sample count: an attacker claims
`claimed_weight` (default: its history length, a plausible `n_u`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_rec import hparams
from fedjax_rec.attacks.base import Attack
from fedjax_rec.task import ClientUpload
from fedjax_rec.models.encoders import Encoder, last_hidden, lookup
from fedjax_rec.types import Array, PublicParams, PyTree


def _bce(logits: Array, label: float) -> Array:
  return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label))


def _histories(key: Array, item_emb: Array, targets: Array, num: int, length: int,
               max_len: int, popular: bool) -> tuple[Array, Array]:
  """`[num, max_len]` left-padded histories of `length` distinct non-target items."""
  n = item_emb.shape[0]
  if popular:
    norm = jnp.linalg.norm(item_emb, axis=1)
    logits = jax.lax.stop_gradient(norm / jnp.maximum(jnp.std(norm), 1e-6))
  else:
    logits = jnp.zeros(n)
  logits = logits.at[targets].set(-jnp.inf)
  gumbel = jax.random.gumbel(key, (num, n))
  _, items = jax.lax.top_k(logits[None, :] + gumbel, length)
  ids = jnp.zeros((num, max_len), jnp.int32).at[:, max_len - length:].set(items)
  mask = jnp.arange(max_len)[None, :] >= max_len - length
  return ids, jnp.broadcast_to(mask, ids.shape)


def _encode(encoder: Encoder, public_mlp: PyTree, item_emb: Array, ids: Array, mask: Array):
  x = lookup(item_emb, public_mlp["mask_token"], ids, mask)
  return last_hidden(encoder.apply(public_mlp, x, mask, None))


def _check(targets, num_items: int) -> np.ndarray:
  arr = np.asarray(targets)
  if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
    raise ValueError(f"targets must be a non-empty 1-D list of item ids, got {targets!r}")
  if arr.min() < 0 or arr.max() >= num_items or np.unique(arr).size != arr.size:
    raise ValueError(f"targets must be distinct ids in [0, {num_items}), got {arr.tolist()}")
  return arr.astype(np.int32)


def make_a_hum(encoder: Encoder, max_len: int, targets, num_items: int, *,
               num_users: int = 10, history_len: int = 20, history: str = "popular",
               hard_steps: int = 30, hard_lr: float = 0.1,
               claimed_weight: float | None = None) -> Attack:
  """A-hum for sequences (see the module docstring)."""
  t_ids = jnp.asarray(_check(targets, num_items))
  if history not in ("popular", "uniform") or not 1 <= history_len <= max_len:
    raise ValueError(f"need history in (popular, uniform) and 1 <= history_len <= {max_len}")
  weight = float(claimed_weight if claimed_weight is not None else history_len)

  def init(key: Array, num_attackers: int, public: PublicParams) -> PyTree:
    del key, public
    return jnp.zeros((num_attackers,), jnp.float32)

  def update(public: PublicParams, ctx: PyTree, state: PyTree, key: Array):
    del ctx
    ids, mask = _histories(key, public.item_emb, t_ids, num_users, history_len, max_len,
                           history == "popular")
    target_rows = public.item_emb[t_ids]
    u0 = jax.lax.stop_gradient(_encode(encoder, public.net, public.item_emb, ids, mask))
    hard = jax.grad(lambda u: jnp.sum(jnp.mean(_bce(u @ target_rows.T, 0.0), axis=1)))
    u_hard = jax.lax.fori_loop(0, hard_steps, lambda _, u: u - hard_lr * hard(u), u0)
    offset = jax.lax.stop_gradient(u_hard - u0)

    def loss(rows, mlp):
      u = _encode(encoder, mlp, public.item_emb, ids, mask) + offset
      return jnp.mean(_bce(u @ rows.T, 1.0))

    g_rows, g_mlp = jax.grad(loss, argnums=(0, 1))(target_rows, public.net)
    return state, ClientUpload(row_item=t_ids, row_grad=g_rows,
                               row_mask=jnp.ones(t_ids.shape, bool), net=g_mlp,
                               weight=jnp.asarray(weight, jnp.float32))

  return Attack("a_hum", init, update)


class PSMUState(NamedTuple):
  """Attributes: fillers: [num_attackers, N] each synthetic user's filler items."""

  fillers: Array


def nearest_alternatives(item_emb: Array, targets: Array, k: int) -> Array:
  """`[T, k]` ids of the items nearest to each target by cosine, targets excluded."""
  unit = item_emb / jnp.maximum(jnp.linalg.norm(item_emb, axis=1, keepdims=True), 1e-12)
  sims = (unit[targets] @ unit.T).at[:, targets].set(-jnp.inf)
  return jax.lax.top_k(sims, k)[1].astype(jnp.int32)


def make_psmu(encoder: Encoder, max_len: int, targets, num_items: int, *,
              num_filler_items: int = 30, num_alternatives: int = 10,
              alternative_weight: float = 1.0,
              claimed_weight: float | None = None) -> Attack:
  """PSMU for sequences (see the module docstring)."""
  t_np = _check(targets, num_items)
  t_ids = jnp.asarray(t_np)
  num_t = len(t_np)
  if not 1 <= num_filler_items <= min(max_len, num_items - num_t):
    raise ValueError(f"num_filler_items must be in [1, {min(max_len, num_items - num_t)}]")
  k = min(num_alternatives, num_items - num_t)
  weight = float(claimed_weight if claimed_weight is not None else num_filler_items)
  num_rows = num_t + num_t * k

  def init(key: Array, num_attackers: int, public: PublicParams) -> PSMUState:
    ids, _ = _histories(key, public.item_emb, t_ids, num_attackers, num_filler_items,
                        num_filler_items, popular=False)
    return PSMUState(fillers=ids)

  def update(public: PublicParams, ctx: PyTree, state: PSMUState, key: Array):
    del ctx, key
    ids = jnp.zeros((max_len,), jnp.int32).at[max_len - num_filler_items:].set(state.fillers)
    mask = jnp.arange(max_len) >= max_len - num_filler_items
    alts = nearest_alternatives(jax.lax.stop_gradient(public.item_emb), t_ids, k)
    cand = jnp.concatenate([t_ids, alts.reshape(-1)])
    uniq = jnp.unique(cand, size=num_rows, fill_value=num_items)
    row_mask = uniq < num_items
    label = jnp.isin(uniq, t_ids).astype(jnp.float32)
    # Targets and alternatives weigh 1 and `alternative_weight` in total, as the mean
    # of each set; an alternative shared by several targets counts once per target.
    count = jnp.sum(cand[None, :] == uniq[:, None], axis=1).astype(jnp.float32)
    w = jnp.where(label > 0, 1.0 / num_t, alternative_weight * count / (num_t * k))
    w = jnp.where(row_mask, w, 0.0)

    def loss(rows, mlp):
      u = _encode(encoder, mlp, public.item_emb, ids[None], mask[None])[0]
      logits = rows @ u
      return jnp.sum(w * optax.sigmoid_binary_cross_entropy(logits, label))

    rows0 = public.item_emb.at[uniq].get(mode="fill", fill_value=0.0)
    g_rows, g_mlp = jax.grad(loss, argnums=(0, 1))(rows0, public.net)
    return state, ClientUpload(row_item=jnp.where(row_mask, uniq, 0).astype(jnp.int32),
                               row_grad=jnp.where(row_mask[:, None], g_rows, 0.0),
                               row_mask=row_mask, net=g_mlp,
                               weight=jnp.asarray(weight, jnp.float32))

  return Attack("psmu", init, update)


_BUILDERS = {"a_hum": make_a_hum, "psmu": make_psmu}
SEQ_ATTACKS = tuple(_BUILDERS)
# Each sequential attack's typed hyper-parameters (`hparams.schema` of its builder).
PARAMS: dict[str, type] = {name: hparams.schema(b, name=name) for name, b in _BUILDERS.items()}


def make_seq_attack(name: str, encoder: Encoder, max_len: int, targets, num_items: int,
                    **kwargs) -> Attack:
  """Builds a sequential attack by name (`SEQ_ATTACKS`)."""
  if name not in _BUILDERS:
    raise ValueError(f"unknown sequential attack {name!r}; expected one of "
                     f"{list(SEQ_ATTACKS) + ['none']}")
  return _BUILDERS[name](encoder, max_len, targets, num_items, **kwargs)
