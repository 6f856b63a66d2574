"""NormBound: clip every uploaded row and every client's MLP gradient, then FedAvg.

SPEC §7. Reference: Sun et al., "Can You Really Backdoor Federated Learning?" (2019).
Each uploaded item row is clipped to L2 norm `clip_norm`; each client's whole MLP gradient
is clipped to `clip_norm` by its global norm over the leaves (optax's
`clip_by_global_norm`, per client).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, check_positive, leaf_client_mask, stateless)
from fedjax_rec.aggregators.fedavg import fedavg_aggregate
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Array, PyTree


def clip_scale(norm: Array, clip: float) -> Array:
  """Factor bringing a vector of L2 norm `norm` to at most `clip` (1 when already inside).

  `clip / max(norm, clip)` is 1 for `norm <= clip` (including 0) and 0 for `norm = inf`.
  """
  return clip / jnp.maximum(norm, clip)


def client_mlp_sq_norm(mlp: PyTree) -> Array:
  """[C] squared global L2 norm of each client's MLP gradient (leaves [C, ...])."""
  leaves = jax.tree.leaves(mlp)
  if not leaves:
    raise ValueError("uploads.mlp has no leaves.")
  return sum(jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=-1) for x in leaves)


def scale_mlp(mlp: PyTree, scale: Array) -> PyTree:
  """Multiplies each client's MLP leaves by `scale` [C]."""
  return jax.tree.map(lambda x: x * leaf_client_mask(scale, x).astype(x.dtype), mlp)


def norm_bound(num_items: int, clip_norm: float = 1.0, convention: str = "sum",
               max_abs: float | None = 1e6) -> Aggregator:
  """NormBound defense.

  Args:
    num_items: number of item rows (static).
    clip_norm: L2 bound `c` for each uploaded row and for each client's MLP gradient.
    convention: FedAvg convention applied after clipping.
    max_abs: validation magnitude bound (`None`: only non-finite rejection).

  Returns:
    An `Aggregator`; metrics `rejected`, `touched_rows`, `clipped_share` (share of real
    rows that were clipped), `mlp_clipped_share` (share of real clients whose MLP
    gradient was clipped).
  """
  check_convention(convention)
  check_positive("clip_norm", clip_norm)

  def apply(uploads):
    uploads, num_rejected = validate(uploads, max_abs)
    row_norm = jnp.linalg.norm(uploads.row_grad, axis=-1)
    row_grad = uploads.row_grad * clip_scale(row_norm, clip_norm)[:, None]
    mlp_norm = jnp.sqrt(client_mlp_sq_norm(uploads.mlp))
    mlp = scale_mlp(uploads.mlp, clip_scale(mlp_norm, clip_norm))
    clipped = fedavg_aggregate(uploads._replace(row_grad=row_grad, mlp=mlp), num_items,
                               convention)

    real_rows = jnp.sum(uploads.row_mask)
    real_clients = jnp.sum(uploads.client_mask)
    metrics = base_metrics(num_rejected, clipped.item_touched)
    metrics["clipped_share"] = (
        jnp.sum(uploads.row_mask & (row_norm > clip_norm)) / jnp.maximum(real_rows, 1))
    metrics["mlp_clipped_share"] = (
        jnp.sum(uploads.client_mask & (mlp_norm > clip_norm)) / jnp.maximum(real_clients, 1))
    return clipped, metrics

  return stateless(apply)
