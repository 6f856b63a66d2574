"""Server-side regularizers of the item table, run after each global epoch.

`popularity_regularizer` is rCL4FedRec's calibration of `V` (Eq. 13, Algorithm 1
line 15): a few optimizer steps pushing a fresh sample of unpopular items away
from the hot items, so that an attacker cannot easily disguise a target item as a
popular one.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_rec.losses import normalize
from fedjax_rec.types import Array, PyTree


class ServerRegularizer(NamedTuple):
  """An `(init, apply)` pair in optax's style.

  Attributes:
    init: `() -> state`.
    apply: `(item_emb, state, key) -> (item_emb, state, metrics)`.
  """

  init: Callable[[], PyTree]
  apply: Callable[[Array, PyTree, Array], tuple[Array, PyTree, dict[str, Array]]]


def hot_items(popularity: np.ndarray, num_hot: int) -> np.ndarray:
  """[num_hot] ids of the most popular items (ties broken by the smaller id)."""
  if not 1 <= num_hot < len(popularity):
    raise ValueError(f"num_hot must be in [1, num_items={len(popularity)}), got {num_hot}")
  order = np.argsort(-np.asarray(popularity), kind="stable")
  return np.sort(order[:num_hot]).astype(np.int32)


def popularity_loss(hot: Array, sparse: Array, tau: float) -> Array:
  """Eq. 13: `Σ_{hot i} −log(exp(1/τ) / Σ_{j ∈ V_sp} exp(sim(v_i, v_j)/τ))`.

  Summed over hot items, as in the paper. The `1/τ` numerator is a constant (the
  cosine similarity of an item with itself); it keeps the loss's value as printed.

  Args:
    hot: [h, d] hot-item embeddings.
    sparse: [m, d] the sampled unpopular items' embeddings.
    tau: temperature τ.

  Returns:
    Scalar loss.
  """
  sim = normalize(hot) @ normalize(sparse).T / tau
  return jnp.sum(jax.nn.logsumexp(sim, axis=-1) - 1.0 / tau)


def popularity_regularizer(hot_ids: np.ndarray, num_sparse: int, steps: int, lr: float,
                           tau: float, optimizer: str = "adam") -> ServerRegularizer:
  """Builds the popularity-based contrastive regularizer (Eq. 13).

  Each `apply` draws `V_sp`, `min(num_sparse, num_items − h)` distinct non-hot items
  uniformly, runs `steps` steps of a fresh `optimizer` (learning rate `lr`) on the
  rows of the hot and sampled items, and writes those rows back; every other row
  of `V` is left bit-identical.

  Args:
    hot_ids: [h] ids of the hot items.
    num_sparse: size of `V_sp`.
    steps: optimizer steps per call.
    lr: learning rate.
    tau: temperature τ.
    optimizer: "adam" or "sgd".

  Returns:
    A `ServerRegularizer`; `apply` returns metrics `reg_loss_before`, `reg_loss_after`.
  """
  checks = [(tau > 0, f"reg_tau must be > 0, got {tau}"),
            (num_sparse >= 1, f"num_sparse must be >= 1, got {num_sparse}"),
            (steps >= 0, f"reg_steps must be >= 0, got {steps}"),
            (lr > 0, f"reg_lr must be > 0, got {lr}"),
            (optimizer in ("adam", "sgd"),
             f"reg_optimizer must be 'adam' or 'sgd', got {optimizer!r}")]
  for ok, message in checks:
    if not ok:
      raise ValueError(message)
  tx = optax.adam(lr) if optimizer == "adam" else optax.sgd(lr)
  hot_ids = np.asarray(hot_ids, np.int32)
  num_hot = len(hot_ids)

  def init():
    return ()

  def apply(item_emb: Array, state: PyTree, key: Array):
    num_items = item_emb.shape[0]
    num_sp = min(num_sparse, num_items - num_hot)
    cold = jnp.ones(num_items, bool).at[hot_ids].set(False)
    noise = jax.random.uniform(key, (num_items,))
    _, sp_ids = jax.lax.top_k(jnp.where(cold, noise, -1.0), num_sp)  # uniform, distinct
    ids = jnp.concatenate([jnp.asarray(hot_ids), sp_ids.astype(jnp.int32)])
    loss = lambda sub: popularity_loss(sub[:num_hot], sub[num_hot:], tau)

    def step(carry, _):
      sub, opt = carry
      upd, opt = tx.update(jax.grad(loss)(sub), opt, sub)
      return (optax.apply_updates(sub, upd), opt), None

    sub0 = item_emb[ids]
    (sub, _), _ = jax.lax.scan(step, (sub0, tx.init(sub0)), None, length=steps)
    metrics = {"reg_loss_before": loss(sub0), "reg_loss_after": loss(sub)}
    return item_emb.at[ids].set(sub), state, metrics

  return ServerRegularizer(init, apply)
