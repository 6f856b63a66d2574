"""Bulyan over whole clients: Krum-based selection, then a trimmed mean per row.

docs/design.md. Reference: El Mhamdi et al., "The Hidden Vulnerability of Distributed
Learning in Byzantium" (ICML 2018). Among the `n` accepted clients, `theta = n - 2f` are
selected one at a time by Krum over the clients not yet selected (whole uploads, as in
`multi_krum.py`; `client_select.bulyan_select`). The selected clients are then aggregated
coordinate-wise by a trimmed mean that keeps `beta = theta - 2f` values around the
median: the `f` largest and `f` smallest of each coordinate are dropped (the symmetric
reading of "the beta closest to the median" that common implementations use).

Sparse rows: a row's coordinates are trimmed over that row's selected uploaders (`n_i`
of them), `f` at each end, so each row keeps `n_i - 2f` values; rows with `n_i <= 2f`
take the median of their selected uploaders (`trimmed_mean.py`'s fallback, metric
`fallback_rows`). The MLP is trimmed over all selected clients. The trimmed mean is
mean-like: for ``"sum"`` it is rescaled by the row's selected uploaders (by the selected
clients for the MLP), so that the selection acts as a rejection; ``"weighted"`` means
``"mean"`` (robust statistics never read client weights, `base.py`).

Bulyan needs `n >= 4f + 3`; rounds with fewer accepted clients select all of them
(metric `bulyan_fallback`) and keep the per-row trimmed mean.
"""

from __future__ import annotations

import jax.numpy as jnp

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, check_non_negative_int, stateless)
from fedjax_rec.aggregators.client_select import bulyan_select, client_sq_dists
from fedjax_rec.aggregators.detection import detection_metrics
from fedjax_rec.aggregators.trimmed_mean import fallback_rows, trim_clients
from fedjax_rec.aggregators.validate import keep_clients, validate


def bulyan(num_items: int, num_byzantine: int = 1, convention: str = "sum",
           max_abs: float | None = 1e6) -> Aggregator:
  """Bulyan.

  Args:
    num_items: number of item rows (static).
    num_byzantine: `f`, assumed attackers per round (static, >= 0); also the values
      trimmed at each end of every coordinate.
    convention: FedAvg convention the trimmed mean is rescaled to.
    max_abs: validation magnitude bound; keep it set so squared distances stay finite.

  Returns:
    An `Aggregator`; metrics `rejected`, `touched_rows`, `bulyan_dropped` (accepted
    clients not selected), `bulyan_fallback` (1 if `n < 4f + 3`), `fallback_rows`
    (touched rows aggregated by the median), and the detection metrics (`detection.py`:
    flagged = rejected or not selected).
  """
  check_convention(convention)
  num_byzantine = check_non_negative_int("num_byzantine", num_byzantine)

  def apply(uploads):
    raw_row_grad = uploads.row_grad
    cleaned, num_rejected = validate(uploads, max_abs)
    dist = client_sq_dists(cleaned, num_items)
    selected, fallback = bulyan_select(dist, cleaned.client_mask, num_byzantine)
    aggregate, counts, _ = trim_clients(keep_clients(cleaned, selected), raw_row_grad,
                                        num_items, num_byzantine, convention)
    metrics = base_metrics(num_rejected, aggregate.item_touched)
    metrics["bulyan_dropped"] = jnp.sum(cleaned.client_mask & ~selected).astype(jnp.int32)
    metrics["bulyan_fallback"] = fallback.astype(jnp.int32)
    metrics["fallback_rows"] = fallback_rows(aggregate.item_touched, counts, num_byzantine)
    metrics.update(detection_metrics(~selected, uploads))
    return aggregate, metrics

  return stateless(apply)
