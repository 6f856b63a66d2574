"""HiCS: hierarchical gradient clipping with sparsified updating (docs/design.md, our reading).

The paper names the defense without a recipe; docs/design.md fixes this reading:

1. Client level: each client's *whole* upload (all its item rows and its MLP gradient, one
   global L2 norm) is clipped to `client_clip`.
2. The clipped uploads are aggregated by the FedAvg convention.
3. Row level: each item row's aggregate is clipped to L2 norm `row_clip` (the MLP aggregate
   is not row-clipped; it is already bounded by step 1).
4. Sparsified updating: only rows with at least `min_uploaders` distinct accepted uploaders
   this round are updated; the others are zeroed and reported untouched. A lone attacker
   pushing a cold target row therefore cannot move it on its own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, check_positive, client_index, stateless)
from fedjax_rec.aggregators.detection import detection_metrics
from fedjax_rec.aggregators.fedavg import fedavg_mlp, fedavg_rows
from fedjax_rec.aggregators.norm_bound import clip_scale, client_mlp_sq_norm, scale_mlp
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Aggregate


def hics(num_items: int, client_clip: float = 1.0, row_clip: float = 1.0,
         min_uploaders: int = 2, convention: str = "sum",
         max_abs: float | None = 1e6) -> Aggregator:
  """HiCS defense.

  Args:
    num_items: number of item rows (static).
    client_clip: L2 bound on each client's whole upload (rows + MLP).
    row_clip: L2 bound on each aggregated item row.
    min_uploaders: `m`, rows with fewer accepted uploaders are not updated (>= 1).
    convention: FedAvg convention for step 2.
    max_abs: validation magnitude bound (`None`: only non-finite rejection).

  Returns:
    An `Aggregator`; metrics `rejected`, `touched_rows`, `clipped_share` (share of real
    clients whose upload was clipped), `row_clipped_share` (share of updated rows whose
    aggregate was clipped), `sparsified_rows` (rows with 1..m-1 uploaders, dropped), and
    the detection metrics (`detection.py`: flagged = rejected or client-clipped).
  """
  check_convention(convention)
  check_positive("client_clip", client_clip)
  check_positive("row_clip", row_clip)
  if int(min_uploaders) != min_uploaders or min_uploaders < 1:
    raise ValueError(f"min_uploaders must be an integer >= 1, got {min_uploaders!r}.")

  def apply(uploads):
    received = uploads
    uploads, num_rejected = validate(uploads, max_abs)
    clients = client_index(uploads)
    row_sq = jnp.sum(jnp.square(uploads.row_grad), axis=-1)
    client_sq = jax.ops.segment_sum(row_sq, clients, 
                                    num_segments=uploads.client_mask.shape[0])
    client_norm = jnp.sqrt(client_sq + client_mlp_sq_norm(
        uploads.net, uploads.client_mask.shape[0]))
    scale = clip_scale(client_norm, client_clip)
    clipped = uploads._replace(row_grad=uploads.row_grad * scale[clients][:, None],
                               net=scale_mlp(uploads.net, scale))

    item_grad, counts = fedavg_rows(clipped, num_items, convention)
    row_norm = jnp.linalg.norm(item_grad, axis=-1)
    item_grad = item_grad * clip_scale(row_norm, row_clip)[:, None]
    touched = counts >= min_uploaders
    item_grad = jnp.where(touched[:, None], item_grad, 0.0)
    aggregate = Aggregate(item_grad=item_grad, item_touched=touched,
                          net=fedavg_mlp(clipped, convention))

    metrics = base_metrics(num_rejected, touched)
    real_clients = jnp.sum(uploads.client_mask)
    metrics["clipped_share"] = (
        jnp.sum(uploads.client_mask & (client_norm > client_clip))
        / jnp.maximum(real_clients, 1))
    metrics["row_clipped_share"] = (
        jnp.sum(touched & (row_norm > row_clip)) / jnp.maximum(jnp.sum(touched), 1))
    metrics["sparsified_rows"] = jnp.sum((counts > 0) & ~touched).astype(jnp.int32)
    metrics.update(detection_metrics(~uploads.client_mask | (client_norm > client_clip),
                                     received))
    return aggregate, metrics

  return stateless(apply)
