"""Synthetic users: the server-side negative users of CL4FedRec (Eqs. 3-4).

The server invents `S` users, each holding `N` items drawn by item popularity
without replacement (Eq. 3), so that their interactions follow the power law of
real users. Their embeddings are fitted to `L_rec` with the public parameters
frozen (Eq. 4) after every global epoch, then broadcast to the clients as frozen
negatives of the user contrastive loss (Eq. 6). No real client's data or
embedding is involved: this is all public information plus item popularity.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_rec.models import ncf
from fedjax_rec.types import Array, PublicParams


class SyntheticUsers(NamedTuple):
  """Server state of the synthetic users.

  Attributes:
    emb: [S, d] their embeddings `s_j` (the clients' negatives).
    pos_items: [S, N] their interacted items (distinct per user).
    neg_items: [S, k·N] their negatives (uniform over the other items, drawn once).
  """

  emb: Array
  pos_items: Array
  neg_items: Array


def check_popularity(popularity: np.ndarray | None) -> np.ndarray:
  """Validates `[num_items]` item popularity (training interaction counts)."""
  if popularity is None:
    raise ValueError("popularity ([num_items] training interaction counts) is required "
                     "by popularity-based synthetic users and by the regularizer")
  pop = np.asarray(popularity)
  if pop.ndim != 1 or np.any(pop < 0) or pop.sum() <= 0:
    raise ValueError("popularity must be a 1-D array of non-negative counts, positive sum")
  return pop


def check_and_make_optimizer(num_each: int, per_positive: int, steps: int, lr: float,
                             optimizer: str) -> optax.GradientTransformation:
  """Validates the synthetic users' hyper-parameters; returns the fit's optimizer."""
  checks = [(num_each >= 1, f"synthetic_items must be >= 1, got {num_each}"),
            (per_positive >= 0, f"synthetic_negatives must be >= 0, got {per_positive}"),
            (steps >= 0, f"synthetic_steps must be >= 0, got {steps}"),
            (lr > 0, f"synthetic_lr must be > 0, got {lr}"),
            (optimizer in ("adam", "sgd"),
             f"synthetic_optimizer must be 'adam' or 'sgd', got {optimizer!r}")]
  for ok, message in checks:
    if not ok:
      raise ValueError(message)
  return optax.adam(lr) if optimizer == "adam" else optax.sgd(lr)


def item_log_weights(popularity: np.ndarray | None, num_items: int,
                     sampling: str) -> np.ndarray:
  """[num_items] log sampling weights: log popularity, or zeros for "uniform".

  Items with zero popularity get weight 0 (log −inf): they are drawn only when a
  user needs more items than there are popular ones.
  """
  if sampling == "uniform":
    return np.zeros(num_items, np.float32)
  pop = np.asarray(popularity, np.float64)
  with np.errstate(divide="ignore"):
    return np.log(pop / pop.sum()).astype(np.float32)


def draw_items(key: Array, log_weights: Array, num_users: int, num_each: int) -> Array:
  """Eq. 3: `num_each` distinct items per user, drawn ∝ exp(log_weights).

  Gumbel top-k: the top `num_each` of `log w + Gumbel` is a draw without
  replacement with probabilities proportional to `w` (successive sampling).

  Returns:
    [num_users, num_each] int32 item ids.
  """
  gumbel = jax.random.gumbel(key, (num_users, log_weights.shape[0]))
  _, idx = jax.lax.top_k(log_weights[None, :] + gumbel, num_each)
  return idx.astype(jnp.int32)


def draw_negatives(key: Array, pos_items: Array, num_items: int, per_positive: int) -> Array:
  """Uniform negatives from the items a user does not hold, with replacement.

  The r-th item outside the sorted positives p_0 < p_1 < ... is
  `r + #{i : p_i − i <= r}`, so a uniform `r` in `[0, num_items − N)` is a
  uniform non-positive item.

  Args:
    key: PRNG key.
    pos_items: [S, N] distinct items per user.
    num_items: catalogue size (> N).
    per_positive: negatives per positive.

  Returns:
    [S, per_positive · N] int32 item ids.
  """
  num_users, n = pos_items.shape
  shifted = jnp.sort(pos_items, axis=-1) - jnp.arange(n)
  r = jax.random.randint(key, (num_users, per_positive * n), 0, num_items - n)
  count = jax.vmap(lambda q, x: jnp.searchsorted(q, x, side="right"))(shifted, r)
  return (r + count).astype(jnp.int32)


def rec_loss(config: ncf.NCFConfig, emb: Array, params: PublicParams,
             pos_items: Array, neg_items: Array) -> Array:
  """Sum over synthetic users of each one's `L_rec` (mean BCE over its samples).

  A sum of independent per-user means: the gradient of `s_j` is exactly that of
  user j's own `L_rec`, whatever `S`.
  """
  items = jnp.concatenate([pos_items, neg_items], axis=-1)  # [S, M]
  labels = jnp.concatenate([jnp.ones(pos_items.shape), jnp.zeros(neg_items.shape)], axis=-1)
  v = params.item_emb[items]  # [S, M, d]
  logits = ncf.logits(config, params.net, jnp.broadcast_to(emb[:, None, :], v.shape), v)
  return jnp.sum(jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels), axis=-1))


def fit(config: ncf.NCFConfig, users: SyntheticUsers, params: PublicParams, steps: int,
        tx: optax.GradientTransformation) -> tuple[SyntheticUsers, dict[str, Array]]:
  """Eq. 4: `steps` optimizer steps on the synthetic embeddings, `(V, Θ)` frozen.

  The optimizer state is fresh on every call (the fit is a re-fit to new public
  parameters, not a continuation).

  Returns:
    `(users', {"synthetic_loss_before", "synthetic_loss_after"})`, losses averaged
    over the synthetic users.
  """
  params = jax.lax.stop_gradient(params)
  loss = lambda emb: rec_loss(config, emb, params, users.pos_items, users.neg_items)

  def step(carry, _):
    emb, opt = carry
    grad = jax.grad(loss)(emb)
    upd, opt = tx.update(grad, opt, emb)
    return (optax.apply_updates(emb, upd), opt), None

  (emb, _), _ = jax.lax.scan(step, (users.emb, tx.init(users.emb)), None, length=steps)
  num = users.emb.shape[0]
  metrics = {"synthetic_loss_before": loss(users.emb) / num,
             "synthetic_loss_after": loss(emb) / num}
  return users._replace(emb=emb), metrics


def init_synthetic_users(key: Array, config: ncf.NCFConfig, params: PublicParams,
                         log_weights: Array, num_users: int, num_each: int,
                         per_positive: int) -> SyntheticUsers:
  """Draws the synthetic users' items (Eq. 3) and N(0, std²) embeddings (unfitted)."""
  key_items, key_neg, key_emb = jax.random.split(key, 3)
  num_items = params.item_emb.shape[0]
  pos = draw_items(key_items, log_weights, num_users, num_each)
  neg = draw_negatives(key_neg, pos, num_items, per_positive)
  emb = config.embed_init_std * jax.random.normal(key_emb, (num_users, config.embed_dim))
  return SyntheticUsers(emb.astype(params.item_emb.dtype), pos, neg)
