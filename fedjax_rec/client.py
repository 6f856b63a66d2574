"""The local update of ONE client; `simulation` vmaps it over a round's slots.

A client gathers the rows of `V` it touches, trains `L` local epochs (each a
`lax.scan` over its local mini-batches) on its private embedding and its local
copies of the public parameters, and uploads the sum of its public gradients
(for one full-batch step, exactly the gradient). The private embedding and its
optimizer state stay here.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_rec.types import Array, PublicParams, PyTree


@dataclasses.dataclass(frozen=True)
class LocalConfig:
  """Local training of a client.

  Attributes:
    local_epochs: passes over the local data per round (`L`).
    batch_size: local mini-batch size in rows; 0 means the full local batch.
    lr: learning rate of the local copies of the public parameters (used only
      between local steps; the upload is the summed gradient).
    user_optimizer: "sgd" or "adam" for the private user embedding.
    user_lr: its learning rate.
  """

  local_epochs: int = 1
  batch_size: int = 0
  lr: float = 0.001
  user_optimizer: str = "adam"
  user_lr: float = 0.001

  def __post_init__(self):
    if self.local_epochs < 1:
      raise ValueError(f"local_epochs must be >= 1, got {self.local_epochs}")
    if self.batch_size < 0:
      raise ValueError(f"local batch_size must be >= 0, got {self.batch_size}")
    if self.user_optimizer not in ("sgd", "adam"):
      raise ValueError(f"user_optimizer must be 'sgd' or 'adam', got {self.user_optimizer!r}")


def user_optimizer(config: LocalConfig) -> optax.GradientTransformation:
  if config.user_optimizer == "adam":
    return optax.adam(config.user_lr)
  return optax.sgd(config.user_lr)


class LocalData(NamedTuple):
  """One client's padded local rows (one slot of a length class).

  Row `i` is item `item[i]` with BCE label `label[i]`, standing for `weight[i]`
  samples; the client's local copy of `V[item]` is aligned with it.

  Attributes:
    item: [L] distinct item ids.
    label: [L] BCE labels (1 positive, 0 negative).
    weight: [L] samples per row (0 where padded).
    mask: [L] real rows.
    pos_mask: [P] real positives among the first `P` rows, when the layout puts
      a client's positives first (`P` is a per-bucket bound); None otherwise.
  """

  item: Array
  label: Array
  weight: Array
  mask: Array
  pos_mask: Array | None = None

  @property
  def positive(self) -> Array:
    """[L] real positive rows."""
    return self.mask & (self.label > 0.5)


class ClientUpload(NamedTuple):
  """What one client sends: touched-row gradients and the MLP gradient."""

  row_grad: Array  # [L, d]
  mlp: PyTree
  weight: Array  # [] number of real samples


# loss_fn(u, item_rows [L, d], mlp, data, ctx, key) -> scalar. `item_rows` are the
# client's local copies of its touched rows of V; `ctx` is public context the
# server broadcasts with the model (e.g. synthetic users), `()` if none.
LossFn = Callable[[Array, Array, PyTree, LocalData, PyTree, Array], Array]


def _loop(step, carry, xs):
  """`lax.scan(step, carry, xs)`'s final carry; a single step is called directly.

  Without a loop nothing carries the MLP, so under the round's vmap it stays the one
  shared public copy and its products are single matmuls over every client's rows,
  instead of per-client copies (both presets take one full-batch step per round).
  """
  if jax.tree.leaves(xs)[0].shape[0] == 1:
    return step(carry, jax.tree.map(lambda x: x[0], xs))[0]
  return jax.lax.scan(step, carry, xs)[0]


def make_client_update(loss_fn: LossFn, config: LocalConfig):
  """Builds `client_update(public, ctx, user_emb, opt_state, data, key)` for one user.

  Returns:
    A pure function returning `(user_emb', opt_state', ClientUpload)`.
  """
  tx = user_optimizer(config)
  grad_fn = jax.grad(loss_fn, argnums=(0, 1, 2))

  def client_update(public: PublicParams, ctx: PyTree, user_emb: Array,
                    opt_state: PyTree, data: LocalData, key: Array):
    rows = public.item_emb[data.item]
    length = data.mask.shape[0]
    bsz = length if config.batch_size in (0, None) else min(config.batch_size, length)
    num_batches = -(-length // bsz)

    def one_step(carry, xs):
      u, opt, rows, mlp, acc_rows, acc_mlp = carry
      batch_mask, key_step = xs
      step_data = data._replace(mask=batch_mask, weight=jnp.where(batch_mask, data.weight, 0.0))
      if data.pos_mask is not None:
        step_data = step_data._replace(
            pos_mask=data.pos_mask & batch_mask[:data.pos_mask.shape[0]])
      g_u, g_rows, g_mlp = grad_fn(u, rows, mlp, step_data, ctx, key_step)
      active = jnp.any(batch_mask)
      upd, new_opt = tx.update(g_u, opt, u)
      u = jnp.where(active, optax.apply_updates(u, upd), u)
      opt = jax.tree.map(lambda a, b: jnp.where(active, a, b), new_opt, opt)
      rows = rows - config.lr * g_rows
      mlp = jax.tree.map(lambda p, g: p - config.lr * g, mlp, g_mlp)
      acc_rows = acc_rows + g_rows
      acc_mlp = jax.tree.map(jnp.add, acc_mlp, g_mlp)
      return (u, opt, rows, mlp, acc_rows, acc_mlp), None

    def one_epoch(carry, key_epoch):
      key_perm, key_steps = jax.random.split(key_epoch)
      if num_batches == 1:
        masks = data.mask[None]
      else:
        # Real samples in random order first, then cut into fixed-size batches.
        noise = jax.random.uniform(key_perm, (length,))
        order = jnp.argsort(jnp.where(data.mask, noise, 2.0))
        rank = jnp.zeros(length, jnp.int32).at[order].set(jnp.arange(length))
        batch_of = rank // bsz
        masks = (batch_of[None, :] == jnp.arange(num_batches)[:, None]) & data.mask
      keys = jax.random.split(key_steps, num_batches)
      return _loop(one_step, carry, (masks, keys)), None

    zeros_mlp = jax.tree.map(jnp.zeros_like, public.mlp)
    carry = (user_emb, opt_state, rows, public.mlp, jnp.zeros_like(rows), zeros_mlp)
    keys = jax.random.split(key, config.local_epochs)
    u, opt, _, _, acc_rows, acc_mlp = _loop(one_epoch, carry, keys)
    acc_rows = jnp.where(data.mask[:, None], acc_rows, 0.0)
    weight = jnp.sum(jnp.where(data.mask, data.weight, 0.0))
    return u, opt, ClientUpload(acc_rows, acc_mlp, weight)

  return client_update
