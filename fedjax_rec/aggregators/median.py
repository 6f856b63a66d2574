"""Coordinate-wise median per item row over its uploaders; MLP over the round's clients.

SPEC §7. Reference: Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates" (ICML 2018). An even number of values gives the mean of the two middle
ones. The median is mean-like and is rescaled to the convention (see `base.py`).

Layout: rows are grouped by item into dense blocks (`item_blocks.py`). Order statistics
are found without sorting (XLA:CPU sorts are slow): values map to order-preserving uint32
keys, and the key of rank `r` is built bit by bit from the top, 32 passes that each count,
per item and coordinate, the uploads below a candidate key (fused compares and sums).
`rank_range_mean`, the mean of the sorted values of ranks `r_lo..r_hi`, is shared with
`trimmed_mean.py`: the median is ranks `(n - 1) // 2 .. n // 2`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, finish_rows, flatten_clients, rescale_mlp,
    rescale_rows, stateless)
from fedjax_rec.aggregators.item_blocks import (
    ItemGroups, default_block_items, group_rows, map_item_blocks, reduce_slots)
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Aggregate, Array, PyTree

# Above the key of every non-NaN float32: absent slots never count as below a candidate.
_ABSENT = np.uint32(0xFFFFFFFF)
_SIGN = np.uint32(0x80000000)


def float_keys(x: Array) -> Array:
  """uint32 keys ordered like the float32 values (negatives: bits flipped)."""
  bits = lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  return jnp.where(bits >= _SIGN, ~bits, bits | _SIGN)


def key_floats(keys: Array) -> Array:
  """Inverse of `float_keys`."""
  bits = jnp.where(keys >= _SIGN, keys & ~_SIGN, ~keys)
  return lax.bitcast_convert_type(bits, jnp.float32)


def kth_keys(keys: Array, ranks: tuple[Array, ...]) -> tuple[Array, ...]:
  """Keys of the given ranks among each item's slots, per coordinate.

  Args:
    keys: [B, w, P] uint32 keys, `_ABSENT` in absent slots.
    ranks: [B] int32 ranks (0 = smallest); a rank outside `0..n-1` gives garbage.

  Returns:
    One [B, P] key array per rank: the largest key `k` with at most `rank` keys below.
  """

  def body(i, found):
    bit = jnp.uint32(1) << (31 - i).astype(jnp.uint32)
    out = []
    for key, rank in zip(found, ranks):
      cand = key | bit
      below = reduce_slots(keys < cand[:, None, :], "sum")
      out.append(jnp.where(below <= rank[:, None], cand, key))
    return tuple(out)

  start = jnp.zeros((keys.shape[0], keys.shape[2]), jnp.uint32)
  return lax.fori_loop(0, 32, body, (start,) * len(ranks))


def rank_range_mean(x: Array, present: Array, r_lo: Array, r_hi: Array) -> Array:
  """[B, P] mean of the sorted values of ranks `r_lo..r_hi` per item and coordinate.

  Args:
    x: [B, w, P] values; present: [B, w] bool.
    r_lo, r_hi: [B] int32 with `0 <= r_lo <= r_hi < n`; items with `r_lo < 0` give 0.
  """
  keys = jnp.where(present[:, :, None], float_keys(x), _ABSENT)
  lo, hi = kth_keys(keys, (r_lo, r_hi))
  v_lo, v_hi = key_floats(lo), key_floats(hi)
  size = (r_hi - r_lo + 1)[:, None]
  # Values strictly between the two ends, plus the copies of each end inside the range.
  k_lo, k_hi = lo[:, None, :], hi[:, None, :]
  inner = reduce_slots(jnp.where((keys > k_lo) & (keys < k_hi), x, 0.0), "sum")
  num_lo = reduce_slots(keys <= k_lo, "sum") - r_lo[:, None]
  num_hi = r_hi[:, None] + 1 - reduce_slots(keys < k_hi, "sum")
  total = jnp.where(lo == hi, size * v_lo, inner + num_lo * v_lo + num_hi * v_hi)
  return jnp.where((r_lo >= 0)[:, None], total / size, 0.0).astype(x.dtype)


def median_ranks(n: Array) -> tuple[Array, Array]:
  return (n - 1) // 2, n // 2


def block_median(x: Array, present: Array, n: Array) -> Array:
  """Per-block median (see `map_item_blocks`); 0 for items without uploads."""
  return rank_range_mean(x, present, *median_ranks(n))


def map_rows(fn, uploads, groups: ItemGroups) -> Array:
  """`fn` over dense blocks of the validated `row_grad` (median-like statistics)."""
  dim = uploads.row_grad.shape[1]
  return map_item_blocks(fn, groups, uploads.row_grad,
                         lambda width: default_block_items(width, dim))


def map_clients(fn, mlp: PyTree, client_mask: Array) -> PyTree:
  """`fn` over the accepted clients' MLP uploads, as one block of one "item"."""
  flat, unflatten = flatten_clients(mlp)
  n = jnp.sum(client_mask).astype(jnp.int32)[None]
  return unflatten(fn(flat[None], client_mask[None], n)[0])


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
    groups = group_rows(uploads, num_items)
    item_grad = rescale_rows(map_rows(block_median, uploads, groups), groups.counts,
                             convention)
    item_grad, touched = finish_rows(item_grad, groups.counts)
    mlp = rescale_mlp(map_clients(block_median, uploads.mlp, uploads.client_mask),
                      jnp.sum(uploads.client_mask), convention)
    aggregate = Aggregate(item_grad=item_grad, item_touched=touched, mlp=mlp)
    return aggregate, base_metrics(num_rejected, touched)

  return stateless(apply)
