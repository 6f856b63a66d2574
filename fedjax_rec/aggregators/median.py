"""Coordinate-wise median per item row over its uploaders; MLP over the round's clients.

SPEC §7. Reference: Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates" (ICML 2018). An even number of values gives the mean of the two middle
ones. The median is mean-like and is rescaled to the convention (see `base.py`).

Sparse layout: one multi-key sort of `(item, value)` per coordinate (the `d` coordinates
are sorted together as a [d, M] array along axis 1) puts each item's values in a contiguous,
ascending segment; padding rows carry item key `num_items` and sort to the end. Segment
offsets come from `segment_sum` counts, so an order statistic of rank `r` of item `i` sits
at position `start[i] + r`. This module's helpers are shared with `trimmed_mean.py`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, finish_rows, item_keys, leaf_client_mask,
    rescale_mlp, rescale_rows, stateless, uploader_counts)
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Aggregate, Array, PyTree, Uploads


class SortedRows(NamedTuple):
  """Uploaded rows sorted by (item, value) independently per coordinate.

  Attributes:
    values: [d, M] sorted values; item `i` occupies positions `start[i] .. start[i]+n[i]-1`.
    keys: [M] sorted item keys (`num_items` for padding, at the end).
    start: [num_items + 1] first position of each item (the last entry: padding).
    counts: [num_items] accepted uploaders of each item.
  """

  values: Array
  keys: Array
  start: Array
  counts: Array


def sort_rows(uploads: Uploads, num_items: int) -> SortedRows:
  """Sorts validated rows by (item, value) per coordinate."""
  keys = item_keys(uploads, num_items)
  values = uploads.row_grad.T
  _, sorted_values = lax.sort(
      (jnp.broadcast_to(keys, values.shape), values), dimension=1, num_keys=2)
  counts = uploader_counts(uploads, num_items)
  start = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(counts).astype(jnp.int32)])
  return SortedRows(values=sorted_values, keys=jnp.sort(keys), start=start, counts=counts)


def order_stat(rows: SortedRows, rank: Array) -> Array:
  """[num_items, d] value of rank `rank` [num_items] within each item's segment.

  Out-of-segment ranks (empty rows) return an arbitrary in-bounds value; callers mask.
  """
  num_rows = rows.values.shape[1]
  pos = jnp.clip(rows.start[:-1] + rank, 0, num_rows - 1)
  return rows.values[:, pos].T


def row_median(rows: SortedRows) -> Array:
  """[num_items, d] coordinate-wise median of each row's uploads (0 for empty rows)."""
  n = rows.counts
  lo = order_stat(rows, (n - 1) // 2)
  hi = order_stat(rows, n // 2)
  return jnp.where((n > 0)[:, None], 0.5 * (lo + hi), 0.0)


def sort_clients(leaf: Array, client_mask: Array) -> Array:
  """[C, ...] leaf sorted along clients per coordinate, masked clients (as +inf) last."""
  masked = jnp.where(leaf_client_mask(client_mask, leaf), leaf, jnp.inf)
  return jnp.sort(masked, axis=0)


def mlp_median(mlp: PyTree, client_mask: Array) -> PyTree:
  """Coordinate-wise median of the MLP gradient over accepted clients (0 if none)."""
  n = jnp.sum(client_mask).astype(jnp.int32)
  num_clients = client_mask.shape[0]
  lo = jnp.clip((n - 1) // 2, 0, num_clients - 1)
  hi = jnp.clip(n // 2, 0, num_clients - 1)

  def leaf_fn(x):
    s = sort_clients(x, client_mask)
    return jnp.where(n > 0, 0.5 * (s[lo] + s[hi]), 0.0)

  return jax.tree.map(leaf_fn, mlp)


def median(num_items: int, convention: str = "sum",
           max_abs: float | None = 1e6) -> Aggregator:
  """Coordinate-wise median.

  Args:
    num_items: number of item rows (static).
    convention: the median is rescaled by the row's uploader count for ``"sum"`` (by the
      number of accepted clients for the MLP); left as is otherwise.
    max_abs: validation magnitude bound (`None`: only non-finite rejection).

  Returns:
    An `Aggregator`; metrics `rejected`, `touched_rows`.
  """
  check_convention(convention)

  def apply(uploads):
    uploads, num_rejected = validate(uploads, max_abs)
    rows = sort_rows(uploads, num_items)
    item_grad = rescale_rows(row_median(rows), rows.counts, convention)
    item_grad, touched = finish_rows(item_grad, rows.counts)
    mlp = rescale_mlp(mlp_median(uploads.mlp, uploads.client_mask),
                      jnp.sum(uploads.client_mask), convention)
    aggregate = Aggregate(item_grad=item_grad, item_touched=touched, mlp=mlp)
    return aggregate, base_metrics(num_rejected, touched)

  return stateless(apply)
