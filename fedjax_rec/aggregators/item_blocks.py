"""Dense per-item blocks of sparse uploads, bucketed by uploader count.

Robust row statistics (median, trimmed mean, Krum) need each item's uploads side by side.
XLA:CPU comparison sorts are slow (tens of ns a comparison), so neither the rows nor the
values are sorted here:

* `group_rows` is a counting sort of the rows by item (each item's uploaders in client-slot
  order), in O(M + num_items * C / 32).
* `map_item_blocks` puts the items in width tiers (8, 16, 32, 48, 64, 96, ... up to C,
  `tier_widths`) by their uploader count `n` (another counting sort): a tier takes the
  items whose `n` fits its width but not the next narrower one, in blocks of `B` items
  gathered into a dense `[B, w, d]` buffer with a presence mask, and calls the statistic
  on each block. Its cost is thus within a small factor of the real rows, not
  `num_items * C`.

`reduce_slots` reduces the slot axis in chunks of at most 32: XLA:CPU rewrites longer
reductions into a materialized `reduce_window` tree, several times slower than the fused
reduction.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from fedjax_rec.aggregators.base import client_index, item_keys
from fedjax_rec.types import Array, PyTree, Uploads

_CHUNK = 32
_MIN_WIDTH = 8
# Default block size: about this many floats in a block's [B, w, d] buffer (fits in L2).
_BLOCK_FLOATS = 1 << 16


class ItemGroups(NamedTuple):
  """Rows of (validated) uploads grouped by item.

  Attributes:
    counts: [num_items] int32 accepted uploaders of each item.
    start: [num_items + 1] int32 offset of each item's rows in `rows` (last: their total).
    rows: [M] int32 real row ids grouped by item, each item's uploaders in client-slot
      order: the `r`-th uploader of item `i` is row `rows[start[i] + r]` (`M` past them).
    num_clients: `C`, the round's client slots (a static int).
  """

  counts: Array
  start: Array
  rows: Array
  num_clients: int


def group_rows(uploads: Uploads, num_items: int) -> ItemGroups:
  """Groups the real rows by item, each item's uploaders in client-slot order.

  A counting sort in O(M + num_items * C / 32): each item's uploaders form a bitset over
  the client slots, set by a scatter-add (so it relies on each client uploading an item at
  most once), and a row's rank among its item's uploaders is the number of bits set below
  its slot.
  """
  num_rows = uploads.row_mask.shape[0]
  num_clients = uploads.client_mask.shape[0]
  num_words = -(-num_clients // 32)
  items = item_keys(uploads, num_items)  # padding rows: the spare item `num_items`
  clients = client_index(uploads)
  word = clients // 32
  bit = jnp.left_shift(jnp.uint32(1), (clients % 32).astype(jnp.uint32))
  bits = jnp.zeros((num_items + 1, num_words), jnp.uint32).at[items, word].add(bit)
  set_bits = lax.population_count(bits).astype(jnp.int32)
  below = jnp.cumsum(set_bits, axis=1) - set_bits  # bits set in the lower words
  counts = jnp.sum(set_bits[:num_items], axis=1)
  rank = below[items, word] + lax.population_count(bits[items, word] & (bit - 1)).astype(
      jnp.int32)
  start = jnp.concatenate([jnp.zeros((1,), jnp.int32),
                           lax.associative_scan(jnp.add, counts)])
  position = jnp.where(uploads.row_mask, start[items] + rank, num_rows)  # padding: dropped
  rows = jnp.full((num_rows,), num_rows, jnp.int32).at[position].set(
      jnp.arange(num_rows, dtype=jnp.int32), mode="drop")
  return ItemGroups(counts=counts, start=start, rows=rows, num_clients=num_clients)


def tier_widths(num_clients: int) -> tuple[int, ...]:
  """Slot widths of the tiers, narrowest first: 8, 16, 32, 48, 64, 96, ... and one >= C.

  Past 32 the steps alternate x1.5 and x4/3, so a tier's width exceeds its items' uploader
  counts by less than half (pairwise statistics like Krum pay its square).
  """
  widths = []
  w = _MIN_WIDTH
  while w < num_clients:
    widths.append(w)
    w = 2 * w if w < _CHUNK else (w * 3 // 2 if w & (w - 1) == 0 else w * 4 // 3)
  last = num_clients if num_clients <= _CHUNK else -(-num_clients // _CHUNK) * _CHUNK
  if widths and 3 * last < 4 * widths[-1]:  # barely wider: not worth its own tier
    widths.pop()
  return tuple(widths) + (last,)


def default_block_items(width: int, floats_per_slot: int) -> int:
  """Items per block so that a block holds about `_BLOCK_FLOATS` floats."""
  return max(1, _BLOCK_FLOATS // (width * max(floats_per_slot, 1)))


def _tiers(groups: ItemGroups, widths: tuple[int, ...], spare: int, num_rows: int):
  """Items grouped by tier, narrowest first, by a counting sort.

  Returns `(order, position, sizes, firsts, item_counts, rows)`: `order` lists the items
  tier by tier (`num_items` past the last: no item), `position` is each item's place in
  it (out of range for items without uploads, which belong to no tier), `sizes` and
  `firsts` each tier's item count and first place, `item_counts` the counts with a zero
  for "no item", `rows` the grouped row ids padded with `num_rows`.
  """
  counts = groups.counts
  num_items = counts.shape[0]
  tier = sum(((counts > w).astype(jnp.int32) for w in widths[:-1]), jnp.zeros_like(counts))
  in_tier = (tier[None, :] == jnp.arange(len(widths))[:, None]) & (counts > 0)[None, :]
  rank = lax.associative_scan(jnp.add, in_tier.astype(jnp.int32), axis=1) - 1
  sizes = jnp.sum(in_tier, axis=1, dtype=jnp.int32)
  firsts = jnp.cumsum(sizes) - sizes
  position = jnp.where(counts > 0, firsts[tier] + rank[tier, jnp.arange(num_items)],
                       num_items + spare)
  order = jnp.full((num_items + spare,), num_items, jnp.int32).at[position].set(
      jnp.arange(num_items, dtype=jnp.int32), mode="drop")  # `num_items`: no item
  item_counts = jnp.concatenate([counts, jnp.zeros((1,), jnp.int32)])
  rows = jnp.concatenate([groups.rows, jnp.full((widths[-1],), num_rows, jnp.int32)])
  return order, position, sizes, firsts, item_counts, rows


def map_item_blocks(fn: Callable[[Array, Array, Array], PyTree], groups: ItemGroups,
                    values: Array, block_items: Callable[[int], int],
                    fill: float | None = None) -> PyTree:
  """Applies a per-item statistic to dense blocks of each item's uploads.

  Args:
    fn: `(x [B, w, d], present [B, w] bool, n [B] int32) -> pytree of [B, ...]`; slot `r`
      of an item holds its `r`-th uploader (client-slot order), present iff `r < n`.
      Must be traceable for every tier width.
    groups: from `group_rows`.
    values: [M, d] the row values to gather. Only the rows of accepted uploaders are
      read, which validation leaves as they are, so the unvalidated `row_grad` serves
      (and spares materializing a cleaned [M, d] copy).
    block_items: items per block for a tier width.
    fill: scalar value of absent slots; `None`: arbitrary rows of `values` (possibly
      non-finite: mask them with `jnp.where`).

  Returns:
    `fn`'s outputs per item, every leaf [num_items, ...]; zero for items without uploads.
  """
  num_items = groups.counts.shape[0]
  num_rows, dim = values.shape
  widths = tier_widths(groups.num_clients)
  spare = max(block_items(w) for w in widths)  # a block may run past the last item
  counts = groups.counts
  order, position, sizes, firsts, item_counts, rows = _tiers(groups, widths, spare, num_rows)

  shapes = jax.eval_shape(fn, jax.ShapeDtypeStruct((1, widths[0], dim), values.dtype),
                          jax.ShapeDtypeStruct((1, widths[0]), jnp.bool_),
                          jax.ShapeDtypeStruct((1,), jnp.int32))
  out = jax.tree.map(lambda s: jnp.zeros((num_items + spare,) + s.shape[1:], s.dtype), shapes)

  # A tier's last block may spill into the next (wider) tier, whose own pass, later,
  # overwrites those items.
  for t, width in enumerate(widths):
    num = block_items(width)

    def body(k, out, width=width, num=num, first=firsts[t]):
      begin = first + k * num
      items = lax.dynamic_slice_in_dim(order, begin, num)
      n = item_counts[items]
      present = jnp.arange(width) < n[:, None]
      index = jnp.where(present, rows[groups.start[items][:, None] + jnp.arange(width)],
                        num_rows)
      if fill is None:
        x = values.at[jnp.minimum(index, num_rows - 1)].get(mode="promise_in_bounds")
      else:
        x = values.at[index].get(mode="fill", fill_value=fill)
      result = fn(x, present, n)
      return jax.tree.map(lambda o, r: lax.dynamic_update_slice_in_dim(o, r, begin, 0),
                          out, result)

    out = lax.fori_loop(0, (sizes[t] + num - 1) // num, body, out)

  uploaded = counts > 0
  return jax.tree.map(
      lambda o: jnp.where(uploaded.reshape((-1,) + (1,) * (o.ndim - 1)), o[position], 0), out)


def fold_item_blocks(fn: Callable[[PyTree, Array, Array, Array], PyTree], groups: ItemGroups,
                     values: Array, block_items: Callable[[int], int], init: PyTree) -> PyTree:
  """Folds a statistic over the dense blocks of `map_item_blocks` (e.g. a scatter-add).

  Args:
    fn: `(carry, x [B, w, d], present [B, w], index [B, w]) -> carry`; `index` holds each
      slot's row id (`M` where absent), `x` zeros where absent. A block's items past its
      tier are absent, so every item enters exactly once.
    groups, values, block_items: as in `map_item_blocks`.
    init: the initial carry.
  """
  num_rows = values.shape[0]
  widths = tier_widths(groups.num_clients)
  spare = max(block_items(w) for w in widths)
  order, _, sizes, firsts, item_counts, rows = _tiers(groups, widths, spare, num_rows)
  carry = init
  for t, width in enumerate(widths):
    num = block_items(width)

    def body(k, carry, width=width, num=num, first=firsts[t], end=firsts[t] + sizes[t]):
      begin = first + k * num
      items = lax.dynamic_slice_in_dim(order, begin, num)
      n = jnp.where(begin + jnp.arange(num) < end, item_counts[items], 0)
      present = jnp.arange(width) < n[:, None]
      index = jnp.where(present, rows[groups.start[items][:, None] + jnp.arange(width)],
                        num_rows)
      x = values.at[index].get(mode="fill", fill_value=0.0)
      return fn(carry, x, present, index)

    carry = lax.fori_loop(0, (sizes[t] + num - 1) // num, body, carry)
  return carry


_REDUCERS = {"sum": (jnp.sum, jnp.add), "min": (jnp.min, jnp.minimum)}


def reduce_slots(x: Array, kind: str, axis: int = 1) -> Array:
  """Sum or min (`kind`) over `axis`, reduced in chunks of at most 32 slots."""
  reduce, combine = _REDUCERS[kind]
  size = x.shape[axis]
  if size <= _CHUNK:
    return reduce(x, axis=axis)
  # Equal chunks where the size allows (a ragged last chunk is much slower on CPU).
  chunk = _CHUNK // 2 if size % _CHUNK and not size % (_CHUNK // 2) else _CHUNK
  num_chunks = size // chunk
  full = lax.slice_in_dim(x, 0, num_chunks * chunk, axis=axis)
  partial = reduce(full.reshape(x.shape[:axis] + (num_chunks, chunk) + x.shape[axis + 1:]),
                   axis=axis + 1)
  parts = [lax.index_in_dim(partial, c, axis, keepdims=False) for c in range(num_chunks)]
  if size % chunk:
    parts.append(reduce(lax.slice_in_dim(x, num_chunks * chunk, size, axis=axis), axis=axis))
  return functools.reduce(combine, parts)
