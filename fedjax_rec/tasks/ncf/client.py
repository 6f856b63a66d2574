"""The local update of ONE client; `rounds` vmaps it over a round's slots.

A client gathers the rows of `V` it touches and trains `L` local epochs
(Algorithm 1, line 9) on its private embedding and its local copies of the public
parameters. Each local epoch shuffles the client's rows and lays them out as
`[num_batches, batch_size]`, so a step touches only its batch. The upload is the
summed gradient of the public parameters (for one full-batch step, exactly the
gradient) or their change (received minus trained: the pseudo-gradient that the
server's optimizer applies). The private embedding and its optimizer state stay
here; the optimizer state of the public copies starts fresh every round.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PublicParams, PyTree

OPTIMIZERS = ("sgd", "adam")
UPLOADS = ("gradient", "delta")


@dataclasses.dataclass(frozen=True)
class LocalConfig:
  """Local training of a client.

  Attributes:
    local_epochs: passes over the local data per round (`L`).
    batch_size: local mini-batch size in rows; 0 means the full local batch.
    optimizer: "sgd" or "adam" for the local copies of the public parameters
      (a fresh state every round).
    lr: their learning rate.
    user_optimizer: "sgd" or "adam" for the private user embedding (its state
      persists across rounds).
    user_lr: its learning rate.
    upload: "gradient" (the sum of the local steps' public gradients) or "delta"
      (received minus trained public parameters; FedAvg is then server SGD lr 1
      on the mean).
  """

  local_epochs: int = 1
  batch_size: int = 0
  optimizer: str = "sgd"
  lr: float = 0.001
  user_optimizer: str = "adam"
  user_lr: float = 0.001
  upload: str = "gradient"

  def __post_init__(self):
    if self.local_epochs < 1:
      raise ValueError(f"local_epochs must be >= 1, got {self.local_epochs}")
    if self.batch_size < 0:
      raise ValueError(f"local batch_size must be >= 0, got {self.batch_size}")
    for name in ("optimizer", "user_optimizer"):
      if getattr(self, name) not in OPTIMIZERS:
        raise ValueError(f"{name} must be 'sgd' or 'adam', got {getattr(self, name)!r}")
    if self.upload not in UPLOADS:
      raise ValueError(f"upload must be 'gradient' or 'delta', got {self.upload!r}")
    if self.lr < 0 or self.user_lr < 0:
      raise ValueError(f"local learning rates must be >= 0, got {self.lr}, {self.user_lr}")


def _optimizer(name: str, lr: float) -> optax.GradientTransformation:
  return optax.adam(lr) if name == "adam" else optax.sgd(lr)


def user_optimizer(config: LocalConfig) -> optax.GradientTransformation:
  return _optimizer(config.user_optimizer, config.user_lr)


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


# loss_fn(u, item_rows [L, d], mlp, data, ctx, key) -> scalar. `item_rows` are the
# client's local copies of its touched rows of V; `ctx` is public context the
# server broadcasts with the model (e.g. synthetic users), `()` if none.
LossFn = Callable[[Array, Array, PyTree, LocalData, PyTree, Array], Array]


def _loop(step, carry, xs):
  """`lax.scan(step, carry, xs)`'s final carry; a single step is called directly.

  Without a loop nothing carries the MLP, so under the round's vmap it stays the one
  shared public copy and its products are single matmuls over every client's rows,
  instead of per-client copies (one full-batch step per round is the common case).
  """
  if jax.tree.leaves(xs)[0].shape[0] == 1:
    return step(carry, jax.tree.map(lambda x: x[0], xs))[0]
  return jax.lax.scan(step, carry, xs)[0]


def batch_layout(key: Array, mask: Array, batch_size: int) -> Array:
  """`[num_batches, b]` row positions of one local epoch (`length` marks an empty slot).

  The real rows are shuffled and cut into batches of `b`; the order of the real rows
  depends only on `key` and their positions, never on the padded length, so padding
  adds only empty batches at the end.
  """
  length = mask.shape[0]
  bsz = min(batch_size, length) if batch_size > 0 else length
  num_batches = -(-length // bsz)
  if num_batches == 1:
    return jnp.where(mask, jnp.arange(length), length)[None]
  bits = jax.vmap(lambda i: jax.random.bits(jax.random.fold_in(key, i)))(jnp.arange(length))
  sort_key = jnp.where(mask, bits >> 1, jnp.uint32(1 << 31))  # real rows first
  order = jnp.argsort(sort_key, stable=True)
  order = jnp.concatenate([order, jnp.full(num_batches * bsz - length, length, order.dtype)])
  order = jnp.where(jnp.concatenate([mask, jnp.zeros(1, bool)])[order], order, length)
  return order.reshape(num_batches, bsz)


class _RowAdam(NamedTuple):
  count: Array  # [] steps taken
  mu: Array  # [L, d]
  nu: Array  # [L, d]


def _row_step(name: str, lr: float, rows: Array, state, idx: Array, g: Array):
  """One optimizer step of the local copies' rows `idx` only (lazy Adam: untouched rows
  keep their moments), optax's Adam constants. `idx == L` marks an empty slot."""
  if name == "sgd":
    return rows.at[idx].add(-lr * g, mode="drop"), state
  b1, b2, eps = 0.9, 0.999, 1e-8
  count = state.count + 1
  mu = b1 * state.mu.at[idx].get(mode="fill", fill_value=0.0) + (1 - b1) * g
  nu = b2 * state.nu.at[idx].get(mode="fill", fill_value=0.0) + (1 - b2) * g * g
  mu_hat = mu / (1 - b1 ** count)
  nu_hat = nu / (1 - b2 ** count)
  rows = rows.at[idx].add(-lr * mu_hat / (jnp.sqrt(nu_hat) + eps), mode="drop")
  return rows, _RowAdam(count, state.mu.at[idx].set(mu, mode="drop"),
                        state.nu.at[idx].set(nu, mode="drop"))


def make_client_update(loss_fn: LossFn, config: LocalConfig):
  """Builds `client_update(public, ctx, user_emb, opt_state, data, key)` for one user.

  Returns:
    A pure function returning `(user_emb', opt_state', ClientUpload)`; the upload's rows
    are the client's rows (`data.item`, `data.mask`).
  """
  user_tx = user_optimizer(config)
  mlp_tx = _optimizer(config.optimizer, config.lr)
  grad_fn = jax.grad(loss_fn, argnums=(0, 1, 2))

  def client_update(public: PublicParams, ctx: PyTree, user_emb: Array,
                    opt_state: PyTree, data: LocalData, key: Array):
    rows = public.item_emb[data.item]
    length = data.mask.shape[0]
    full_batch = config.batch_size in (0, None) or config.batch_size >= length

    def one_step(carry, xs):
      u, opt, rows, mlp, row_opt, mlp_opt, acc_rows, acc_mlp = carry
      idx, key_step = xs  # idx [b]: row positions, `length` for an empty slot
      if full_batch:
        step_data = data._replace(mask=idx < length, weight=jnp.where(idx < length,
                                                                      data.weight, 0.0))
        step_rows = rows
      else:
        real = idx < length
        take = lambda x: jnp.where(real, x.at[idx].get(mode="fill", fill_value=0), 0)
        step_data = LocalData(take(data.item), take(data.label), take(data.weight), real)
        step_rows = rows.at[idx].get(mode="fill", fill_value=0.0)
      g_u, g_rows, g_mlp = grad_fn(u, step_rows, mlp, step_data, ctx, key_step)
      active = jnp.any(idx < length)
      keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)
      upd, new_opt = user_tx.update(g_u, opt, u)
      u, opt = keep((optax.apply_updates(u, upd), new_opt), (u, opt))
      if full_batch and config.optimizer == "sgd":
        rows, new_row_opt = rows - config.lr * g_rows, row_opt
        acc_rows = acc_rows + g_rows
      else:
        rows_idx = jnp.arange(length) if full_batch else idx
        rows, new_row_opt = _row_step(config.optimizer, config.lr, rows, row_opt, rows_idx,
                                      g_rows)
        acc_rows = acc_rows.at[rows_idx].add(g_rows, mode="drop")
      row_opt = keep(new_row_opt, row_opt)
      upd, new_mlp_opt = mlp_tx.update(g_mlp, mlp_opt, mlp)
      mlp, mlp_opt = keep((optax.apply_updates(mlp, upd), new_mlp_opt), (mlp, mlp_opt))
      acc_mlp = jax.tree.map(jnp.add, acc_mlp, g_mlp)
      return (u, opt, rows, mlp, row_opt, mlp_opt, acc_rows, acc_mlp), None

    def one_epoch(carry, key_epoch):
      key_perm, key_steps = jax.random.split(key_epoch)
      layout = batch_layout(key_perm, data.mask, config.batch_size)
      # fold_in, not split: a step's key must not depend on how many batches padding adds.
      keys = jax.vmap(lambda i: jax.random.fold_in(key_steps, i))(jnp.arange(layout.shape[0]))
      return _loop(one_step, carry, (layout, keys)), None

    row_opt = (_RowAdam(jnp.zeros((), jnp.int32), jnp.zeros_like(rows), jnp.zeros_like(rows))
               if config.optimizer == "adam" else ())
    zeros_mlp = jax.tree.map(jnp.zeros_like, public.net)
    carry = (user_emb, opt_state, rows, public.net, row_opt, mlp_tx.init(public.net),
             jnp.zeros_like(rows), zeros_mlp)
    keys = jax.random.split(key, config.local_epochs)
    u, opt, new_rows, new_mlp, _, _, acc_rows, acc_mlp = _loop(one_epoch, carry, keys)
    if config.upload == "delta":
      acc_rows = rows - new_rows
      acc_mlp = jax.tree.map(jnp.subtract, public.net, new_mlp)
    acc_rows = jnp.where(data.mask[:, None], acc_rows, 0.0)
    weight = jnp.sum(jnp.where(data.mask, data.weight, 0.0))
    return u, opt, ClientUpload(data.item, acc_rows, data.mask, acc_mlp, weight)

  return client_update
