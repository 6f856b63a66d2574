"""Coordinate-wise trimmed mean per item row over its uploaders; MLP over the clients.

docs/design.md. Reference: Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates" (ICML 2018). Per coordinate, the `f` largest and `f` smallest of the
row's `n` uploads are dropped and the remaining `n - 2f` averaged. Where `n <= 2f` nothing
would remain: such rows fall back to the coordinate-wise median (the limit of the trimmed
mean as the trimmed share goes to 1/2) and are counted in the metric `fallback_rows`; the
MLP likewise falls back to the median when the round has `<= 2f` accepted clients. The
result is mean-like and rescaled to the convention (see `base.py`).

Layout as in `median.py` (dense item blocks of order-preserving uint32 keys, no sort). The
kept ranks are `f..n-f-1` (the median's two middle ranks on fallback), both at most `f`
from an end: `edge_key` (`order_stats.py`) finds them from the bottom and, on flipped
keys, from the top, in `f + 1` steps of two passes each (the cost grows with `f`, which
is small in practice; the default is 1). The sum then adds the values strictly between
the two end keys and the copies of each end that fall inside the range, so dropped
(possibly huge) values never enter it: no cancellation.
"""

from __future__ import annotations

import jax.numpy as jnp

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, check_non_negative_int, finish_rows,
    rescale_mlp, rescale_rows, stateless)
from fedjax_rec.aggregators.item_blocks import group_rows, reduce_slots
from fedjax_rec.aggregators.median import map_client_keys, map_keys, median_ranks
from fedjax_rec.aggregators.order_stats import ABSENT, edge_key, key_floats
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Aggregate, Array, Uploads


def trimmed_ranks(n: Array, num_trim: int) -> tuple[Array, Array]:
  """[B] ranks `f` and `n-f-1` kept by the trimmed mean; the median's where `n <= 2f`."""
  fallback = n <= 2 * num_trim
  lo, hi = median_ranks(n)
  return jnp.where(fallback, lo, num_trim), jnp.where(fallback, hi, n - 1 - num_trim)


def block_trimmed_mean(num_trim: int):
  """The per-block statistic of keys (see `map_keys`); 0 for items without uploads."""

  def fn(keys: Array, present: Array, n: Array) -> Array:
    r_lo, r_hi = trimmed_ranks(n, num_trim)
    lo = edge_key(keys, r_lo[:, None], num_trim)
    flipped = jnp.where(present[:, :, None], ~keys, ABSENT)  # the largest first
    hi = ~edge_key(flipped, (n - 1 - r_hi)[:, None], num_trim)
    v_lo, v_hi = key_floats(lo), key_floats(hi)
    k_lo, k_hi = lo[:, None, :], hi[:, None, :]
    inner = reduce_slots(jnp.where((keys > k_lo) & (keys < k_hi), key_floats(keys), 0.0),
                         "sum")
    num_lo = reduce_slots(keys <= k_lo, "sum") - r_lo[:, None]  # copies of lo kept
    num_hi = r_hi[:, None] + 1 - reduce_slots(keys < k_hi, "sum")  # copies of hi kept
    size = (r_hi - r_lo + 1)[:, None]
    total = jnp.where(lo == hi, size * v_lo, inner + num_lo * v_lo + num_hi * v_hi)
    return jnp.where((n > 0)[:, None], total / size, 0.0)

  return fn


def trimmed_mean(num_items: int, num_trim: int = 1, convention: str = "sum",
                 max_abs: float | None = 1e6) -> Aggregator:
  """Coordinate-wise trimmed mean.

  Args:
    num_items: number of item rows (static).
    num_trim: `f`, values dropped at each end per coordinate (static, >= 0).
    convention: FedAvg convention the mean-like result is rescaled to.
    max_abs: validation magnitude bound (`None`: only non-finite rejection).

  Returns:
    An `Aggregator`; metrics `rejected`, `touched_rows`, `fallback_rows` (touched rows with
    `n <= 2f`, aggregated by the median), `mlp_fallback` (1 if the MLP used the median).
  """
  check_convention(convention)
  num_trim = check_non_negative_int("num_trim", num_trim)

  def apply(uploads):
    raw_row_grad = uploads.row_grad
    uploads, num_rejected = validate(uploads, max_abs)
    aggregate, counts, num_clients = trim_clients(uploads, raw_row_grad, num_items, num_trim,
                                                  convention)
    metrics = base_metrics(num_rejected, aggregate.item_touched)
    metrics["fallback_rows"] = fallback_rows(aggregate.item_touched, counts, num_trim)
    metrics["mlp_fallback"] = ((num_clients > 0) & (num_clients <= 2 * num_trim)).astype(
        jnp.int32)
    return aggregate, metrics

  return stateless(apply)


def trim_clients(uploads: Uploads, raw_row_grad: Array, num_items: int, num_trim: int,
                 convention: str) -> tuple[Aggregate, Array, Array]:
  """The trimmed mean over the clients `uploads.client_mask` keeps (validated uploads).

  Args:
    uploads: validated uploads; masked-out clients take no part.
    raw_row_grad: the row gradients before validation (rejected clients are masked out
      by the row groups, so their values are never read).
    num_items, num_trim, convention: as `trimmed_mean`'s.

  Returns:
    `(aggregate, counts [num_items] uploaders per row, number of clients)`.
  """
  stat = block_trimmed_mean(num_trim)
  groups = group_rows(uploads, num_items)
  mean_like = map_keys(stat, raw_row_grad, groups)
  item_grad, touched = finish_rows(rescale_rows(mean_like, groups.counts, convention),
                                   groups.counts)
  num_clients = jnp.sum(uploads.client_mask)
  mlp = rescale_mlp(map_client_keys(stat, uploads.net, uploads.client_mask), num_clients,
                    convention)
  return Aggregate(item_grad=item_grad, item_touched=touched, net=mlp), groups.counts, num_clients


def fallback_rows(touched: Array, counts: Array, num_trim: int) -> Array:
  """Touched rows with `n <= 2f` uploaders (aggregated by the median)."""
  return jnp.sum(touched & (counts <= 2 * num_trim)).astype(jnp.int32)
