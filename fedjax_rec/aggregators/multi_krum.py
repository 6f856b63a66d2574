"""Multi-Krum over whole clients, then FedAvg of the selected clients.

docs/design.md. Reference: Blanchard et al., "Machine Learning with Adversaries: Byzantine
Tolerant Gradient Descent" (NeurIPS 2017). Each accepted client is scored by the sum of
its squared distances to its `n - f - 2` nearest other clients, distances taken between
whole uploads (every uploaded item row plus the MLP gradient; `client_select.py`); the
`m` least-scored clients (default `m = n - f`) are kept and averaged.

The selection is a client-level rejection: the clients not selected are dropped from the
round entirely and the rest are aggregated by the FedAvg convention (`base.py`): the
textbook average over the selected clients is ``"mean"`` (per row over its selected
uploaders, as every rule here aggregates rows); ``"sum"`` sums them; ``"weighted"`` weighs
them by their sample counts, as the UNION authors' Multi-Krum does. With `m = n` (or
`f = 0` and `m` unset) it is FedAvg. Where `n - f - 2 < 1` nothing is dropped (metric
`multi_krum_fallback`). Ties of scores go to the lower client slot.
"""

from __future__ import annotations

import jax.numpy as jnp

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, check_non_negative_int, stateless)
from fedjax_rec.aggregators.client_select import client_sq_dists, multi_krum_select
from fedjax_rec.aggregators.detection import detection_metrics
from fedjax_rec.aggregators.fedavg import fedavg_aggregate
from fedjax_rec.aggregators.validate import keep_clients, validate


def multi_krum(num_items: int, num_byzantine: int = 1, num_selected: int | None = None,
               convention: str = "sum", max_abs: float | None = 1e6) -> Aggregator:
  """Multi-Krum.

  Args:
    num_items: number of item rows (static).
    num_byzantine: `f`, assumed attackers per round (static, >= 0).
    num_selected: `m`, clients kept (>= 1; `None`: `n - f` of the round's `n` accepted).
    convention: FedAvg convention over the selected clients.
    max_abs: validation magnitude bound; keep it set so squared distances stay finite.

  Returns:
    An `Aggregator`; metrics `rejected`, `touched_rows`, `multi_krum_dropped` (accepted
    clients not selected), `multi_krum_fallback` (1 if `n - f - 2 < 1`: nothing dropped),
    and the detection metrics (`detection.py`: flagged = rejected or not selected).
  """
  check_convention(convention)
  num_byzantine = check_non_negative_int("num_byzantine", num_byzantine)
  if num_selected is not None and (int(num_selected) != num_selected or num_selected < 1):
    raise ValueError(f"num_selected must be an integer >= 1 or None, got {num_selected!r}.")

  def apply(uploads):
    cleaned, num_rejected = validate(uploads, max_abs)
    dist = client_sq_dists(cleaned, num_items)
    selected, fallback = multi_krum_select(dist, cleaned.client_mask, num_byzantine,
                                           num_selected)
    aggregate = fedavg_aggregate(keep_clients(cleaned, selected), num_items, convention)
    metrics = base_metrics(num_rejected, aggregate.item_touched)
    metrics["multi_krum_dropped"] = jnp.sum(cleaned.client_mask & ~selected).astype(jnp.int32)
    metrics["multi_krum_fallback"] = fallback.astype(jnp.int32)
    metrics.update(detection_metrics(~selected, uploads))
    return aggregate, metrics

  return stateless(apply)
