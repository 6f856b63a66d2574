"""NormBound: clip every uploaded row and every client's MLP gradient, then FedAvg.

docs/design.md. Reference: Sun et al., "Can You Really Backdoor Federated Learning?" (2019).
Each uploaded item row is clipped to L2 norm `c`; each client's whole MLP gradient is
clipped to `c` by its global norm over the leaves (optax's `clip_by_global_norm`, per
client).

The bound is fixed (`clip_norm=c`, default 0.1) or adaptive (`clip_quantile=q`): the `q`
quantile of the round's own accepted norms, taken separately over the real rows and over the
real clients' MLP gradients (the quantile target of Andrew et al., "Differentially Private
Learning with Adaptive Clipping", 2021, computed exactly per round).

Why c = 0.1 (measured on ML-1M, README "Attacks and defenses"): under `ahum-reference`
no benign item row exceeds 0.1 in any epoch and benign MLP gradients exceed it only in the
first epoch, so the bound binds on the attackers' MLP gradients, which is what carries
A-hum there (c = 1 clipped only them, and too little: ER@5 peaked at 0.48). Under `paper`
(server Adam) it clips 1-2% of rows and most MLP gradients at no Recall cost, since Adam
normalizes the step's scale. An adaptive quantile also stops A-hum but costs Recall:
benign row norms are heavy-tailed (median 4e-4, 90th percentile 2e-3, maximum below 0.1
under `ahum-reference`), so even q = 0.9 cuts the rows that carry the learning.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, check_positive, client_index,
    leaf_client_mask, stateless)
from fedjax_rec.aggregators.detection import detection_metrics
from fedjax_rec.aggregators.fedavg import fedavg_aggregate
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Array, PyTree


def clip_scale(norm: Array, clip: float) -> Array:
  """Factor bringing a vector of L2 norm `norm` to at most `clip` (1 when already inside).

  `clip / max(norm, clip)` is 1 for `norm <= clip` (including 0) and 0 for `norm = inf`.
  """
  return clip / jnp.maximum(norm, clip)


def client_mlp_sq_norm(mlp: PyTree, num_clients: int) -> Array:
  """[C] squared global L2 norm of each client's MLP gradient (leaves [C, ...]); zeros
  when the network has no parameters (MF)."""
  leaves = jax.tree.leaves(mlp)
  if not leaves:
    return jnp.zeros((num_clients,), jnp.float32)
  return sum(jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=-1) for x in leaves)


def scale_mlp(mlp: PyTree, scale: Array) -> PyTree:
  """Multiplies each client's MLP leaves by `scale` [C]."""
  return jax.tree.map(lambda x: x * leaf_client_mask(scale, x).astype(x.dtype), mlp)


def masked_quantile(values: Array, mask: Array, q: float) -> Array:
  """The `q` quantile (linear interpolation, as `np.quantile`) of `values[mask]`.

  Returns a positive bound: 1.0 where `mask` selects nothing, and at least the smallest
  normal float32 (so that `clip_scale` never divides 0 by 0).
  """
  value = jnp.nanquantile(jnp.where(mask, values, jnp.nan), q)
  value = jnp.where(jnp.any(mask), value, 1.0)
  return jnp.maximum(value, jnp.finfo(jnp.float32).tiny)


DEFAULT_CLIP_NORM = 0.1


def norm_bound(num_items: int, clip_norm: float = DEFAULT_CLIP_NORM,
               clip_quantile: float | None = None, convention: str = "sum",
               max_abs: float | None = 1e6) -> Aggregator:
  """NormBound defense.

  Args:
    num_items: number of item rows (static).
    clip_norm: fixed L2 bound `c` for each uploaded row and for each client's MLP
      gradient (used when `clip_quantile` is None).
    clip_quantile: `None`, or in (0, 1]: an adaptive bound instead of `clip_norm`; rows
      are clipped to this quantile of the round's accepted row norms and MLP gradients to
      this quantile of the accepted clients' MLP norms.
    convention: FedAvg convention applied after clipping.
    max_abs: validation magnitude bound (`None`: only non-finite rejection).

  Returns:
    An `Aggregator`; metrics `rejected`, `touched_rows`, `clipped_share` (share of real
    rows that were clipped), `mlp_clipped_share` (share of real clients whose MLP
    gradient was clipped), `row_bound` and `mlp_bound` (the bounds applied), and the
    detection metrics (`detection.py`: flagged = rejected, or any of its rows or its MLP
    gradient clipped).

  Raises:
    ValueError: `clip_norm <= 0`, or `clip_quantile` outside (0, 1].
  """
  check_convention(convention)
  check_positive("clip_norm", clip_norm)
  if clip_quantile is not None and not 0.0 < clip_quantile <= 1.0:
    raise ValueError(f"clip_quantile must be in (0, 1], got {clip_quantile}")

  def apply(uploads):
    received = uploads
    uploads, num_rejected = validate(uploads, max_abs)
    row_norm = jnp.linalg.norm(uploads.row_grad, axis=-1)
    mlp_norm = jnp.sqrt(client_mlp_sq_norm(uploads.net, uploads.client_mask.shape[0]))
    if clip_quantile is not None:
      row_bound = masked_quantile(row_norm, uploads.row_mask, clip_quantile)
      mlp_bound = masked_quantile(mlp_norm, uploads.client_mask, clip_quantile)
    else:
      row_bound = mlp_bound = jnp.float32(clip_norm)
    row_grad = uploads.row_grad * clip_scale(row_norm, row_bound)[:, None]
    mlp = scale_mlp(uploads.net, clip_scale(mlp_norm, mlp_bound))
    clipped = fedavg_aggregate(uploads._replace(row_grad=row_grad, net=mlp), num_items,
                               convention)

    real_rows = jnp.sum(uploads.row_mask)
    real_clients = jnp.sum(uploads.client_mask)
    metrics = base_metrics(num_rejected, clipped.item_touched)
    metrics["clipped_share"] = (
        jnp.sum(uploads.row_mask & (row_norm > row_bound)) / jnp.maximum(real_rows, 1))
    metrics["mlp_clipped_share"] = (
        jnp.sum(uploads.client_mask & (mlp_norm > mlp_bound)) / jnp.maximum(real_clients, 1))
    metrics["row_bound"] = row_bound
    metrics["mlp_bound"] = mlp_bound
    row_hit = jax.ops.segment_sum(
        (uploads.row_mask & (row_norm > row_bound)).astype(jnp.int32), client_index(uploads),
        num_segments=uploads.client_mask.shape[0])
    flagged = ~uploads.client_mask | (row_hit > 0) | (mlp_norm > mlp_bound)
    metrics.update(detection_metrics(flagged, received))
    return clipped, metrics

  return stateless(apply)
