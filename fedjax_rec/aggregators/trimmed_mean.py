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
from fedjax_rec.aggregators.item_blocks import group_rows
from fedjax_rec.aggregators.median import map_clients, map_rows, median_ranks, rank_range_mean
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Aggregate, Array


def trimmed_ranks(n: Array, num_trim: int) -> tuple[Array, Array]:
  """Ranks `f..n-f-1` kept by the trimmed mean; the median's ranks where `n <= 2f`."""
  fallback = n <= 2 * num_trim
  lo, hi = median_ranks(n)
  return jnp.where(fallback, lo, num_trim), jnp.where(fallback, hi, n - 1 - num_trim)


def block_trimmed_mean(num_trim: int):
  """The per-block statistic (see `map_item_blocks`); 0 for items without uploads."""

  def fn(x: Array, present: Array, n: Array) -> Array:
    return rank_range_mean(x, present, *trimmed_ranks(n, num_trim))

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
    uploads, num_rejected = validate(uploads, max_abs)
    groups = group_rows(uploads, num_items)
    stat = block_trimmed_mean(num_trim)
    mean_like = map_rows(stat, uploads, groups)
    item_grad, touched = finish_rows(rescale_rows(mean_like, groups.counts, convention),
                                     groups.counts)
    num_clients = jnp.sum(uploads.client_mask)
    mlp = rescale_mlp(map_clients(stat, uploads.mlp, uploads.client_mask), num_clients,
                      convention)
    metrics = base_metrics(num_rejected, touched)
    fallback = touched & (groups.counts <= 2 * num_trim)
    metrics["fallback_rows"] = jnp.sum(fallback).astype(jnp.int32)
    metrics["mlp_fallback"] = ((num_clients > 0) & (num_clients <= 2 * num_trim)).astype(
        jnp.int32)
    aggregate = Aggregate(item_grad=item_grad, item_touched=touched, mlp=mlp)
    return aggregate, metrics

  return stateless(apply)
