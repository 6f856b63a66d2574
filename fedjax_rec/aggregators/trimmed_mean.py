"""Coordinate-wise trimmed mean per item row over its uploaders; MLP over the clients.

SPEC §7. Reference: Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates" (ICML 2018). Per coordinate, the `f` largest and `f` smallest of the
row's `n` uploads are dropped and the remaining `n - 2f` averaged. Where `n <= 2f` nothing
would remain: such rows fall back to the coordinate-wise median (the limit of the trimmed
mean as the trimmed share goes to 1/2) and are counted in the metric `fallback_rows`; the
MLP likewise falls back to the median when the round has `<= 2f` accepted clients. The
result is mean-like and rescaled to the convention (see `base.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, check_non_negative_int, finish_rows,
    rescale_mlp, rescale_rows, stateless)
from fedjax_rec.aggregators.median import (
    SortedRows, mlp_median, row_median, sort_clients, sort_rows)
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Array, Aggregate, PyTree


def row_trimmed_mean(rows: SortedRows, num_trim: int) -> tuple[Array, Array]:
  """[num_items, d] trimmed mean of each row and [num_items] bool fallback flags."""
  num_items = rows.counts.shape[0]
  counts_ext = jnp.concatenate([rows.counts, jnp.zeros((1,), rows.counts.dtype)])
  rank = jnp.arange(rows.keys.shape[0]) - rows.start[rows.keys]
  keep = (rank >= num_trim) & (rank < counts_ext[rows.keys] - num_trim)
  kept = jnp.where(keep[None, :], rows.values, 0.0).T
  total = jax.ops.segment_sum(kept, rows.keys, num_segments=num_items + 1)[:num_items]
  remaining = rows.counts - 2 * num_trim
  trimmed = total / jnp.maximum(remaining, 1)[:, None].astype(total.dtype)
  fallback = (rows.counts > 0) & (remaining <= 0)
  return jnp.where(fallback[:, None], row_median(rows), trimmed), fallback


def mlp_trimmed_mean(mlp: PyTree, client_mask: Array, num_trim: int) -> PyTree:
  """Coordinate-wise trimmed mean of the MLP over accepted clients (median if n <= 2f)."""
  n = jnp.sum(client_mask).astype(jnp.int32)
  remaining = n - 2 * num_trim
  medians = mlp_median(mlp, client_mask)

  def leaf_fn(x, med):
    s = sort_clients(x, client_mask)
    rank = jnp.arange(x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1))
    keep = (rank >= num_trim) & (rank < remaining + num_trim)
    trimmed = jnp.sum(jnp.where(keep, s, 0.0), axis=0) / jnp.maximum(remaining, 1)
    return jnp.where(remaining > 0, trimmed, med)

  return jax.tree.map(leaf_fn, mlp, medians)


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
    uploads, num_rejected = validate(uploads, max_abs)
    rows = sort_rows(uploads, num_items)
    mean_like, fallback = row_trimmed_mean(rows, num_trim)
    item_grad, touched = finish_rows(rescale_rows(mean_like, rows.counts, convention),
                                     rows.counts)
    num_clients = jnp.sum(uploads.client_mask)
    mlp = rescale_mlp(mlp_trimmed_mean(uploads.mlp, uploads.client_mask, num_trim),
                      num_clients, convention)
    metrics = base_metrics(num_rejected, touched)
    metrics["fallback_rows"] = jnp.sum(fallback).astype(jnp.int32)
    metrics["mlp_fallback"] = ((num_clients > 0) & (num_clients <= 2 * num_trim)).astype(
        jnp.int32)
    aggregate = Aggregate(item_grad=item_grad, item_touched=touched, mlp=mlp)
    return aggregate, metrics

  return stateless(apply)
