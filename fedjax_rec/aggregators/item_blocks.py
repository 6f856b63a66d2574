"""Dense per-item blocks of sparse uploads, bucketed by uploader count.

Robust row statistics (median, trimmed mean, Krum) need each item's uploads side by side.
XLA:CPU comparison sorts are slow (tens of ns a comparison), so neither the rows nor the
values are sorted here:

* `group_rows` is a counting sort: a [num_items, C] presence table by (item, client slot),
  whose cumulative sum along the slots gives each uploader its rank `r` among the item's
  uploaders in slot order, and a compact table `rows[i, r]` of row ids.
* `map_item_blocks` walks the items by decreasing uploader count `n` in width tiers
  (8, 16, 32, 48, 64, 96, ... up to C, `tier_widths`): a tier takes the items whose `n`
  fits its width but not the next narrower one, in blocks of `B` items gathered into a
  dense `[B, w, d]` buffer with a presence mask, and calls the statistic on each block.
  Its cost is thus within a small factor of the real rows, not `num_items * C`.

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
    rows: [num_items, C] int32; `rows[i, r]` is the row of item `i`'s `r`-th uploader in
      client-slot order, for `r < counts[i]` (`M` beyond).
    order: [num_items] int32 items by decreasing count.
  """

  counts: Array
  rows: Array
  order: Array


def group_rows(uploads: Uploads, num_items: int) -> ItemGroups:
  """Groups the real rows by item, each item's uploaders in client-slot order.

  Relies on each client uploading an item at most once (a repeated (item, client) pair
  keeps one of its rows).
  """
  num_rows = uploads.row_mask.shape[0]
  num_clients = uploads.client_mask.shape[0]
  # Flat (item, client) cells; padding rows land in the spare item `num_items`.
  cell = item_keys(uploads, num_items) * num_clients + client_index(uploads)
  present = jnp.zeros(((num_items + 1) * num_clients,), jnp.int32).at[cell].set(1)
  # (jnp.cumsum lowers to an O(C^2) reduce_window on CPU; the scan is O(C log C).)
  rank = lax.associative_scan(jnp.add, present.reshape(num_items + 1, num_clients), axis=1)
  counts = rank[:num_items, -1]
  slot = cell - cell % num_clients + rank.reshape(-1)[cell] - 1  # (item, rank) cell
  rows = jnp.full((num_items * num_clients,), num_rows, jnp.int32).at[slot].set(
      jnp.arange(num_rows, dtype=jnp.int32), mode="drop").reshape(num_items, num_clients)
  order = jnp.argsort(-counts, stable=True).astype(jnp.int32)
  return ItemGroups(counts=counts, rows=rows, order=order)


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
  num_items, num_clients = groups.rows.shape
  widths = tier_widths(num_clients)
  spare = max(block_items(w) for w in widths)  # a block may run past the last item
  pad = lambda a: jnp.concatenate([a, jnp.full((spare,) + a.shape[1:], num_items, a.dtype)])
  order = pad(groups.order)
  counts = jnp.concatenate([groups.counts, jnp.zeros((1,), jnp.int32)])
  num_rows = values.shape[0]
  rows = jnp.pad(groups.rows, ((0, 1), (0, widths[-1] - num_clients)),
                 constant_values=num_rows)
  sorted_counts = groups.counts[groups.order]

  dim = values.shape[1]
  shapes = jax.eval_shape(fn, jax.ShapeDtypeStruct((1, widths[0], dim), values.dtype),
                          jax.ShapeDtypeStruct((1, widths[0]), jnp.bool_),
                          jax.ShapeDtypeStruct((1,), jnp.int32))
  out = jax.tree.map(lambda s: jnp.zeros((num_items + spare,) + s.shape[1:], s.dtype), shapes)

  # Widest tier first; a tier's last block may spill into the next (narrower) tier, whose
  # own pass overwrites those items later.
  for tier in reversed(range(len(widths))):
    width, num = widths[tier], block_items(widths[tier])
    first = jnp.sum(sorted_counts > width)
    end = jnp.sum(sorted_counts > (widths[tier - 1] if tier > 0 else 0))

    def body(k, out, width=width, num=num, first=first):
      start = first + k * num
      items = lax.dynamic_slice_in_dim(order, start, num)
      n = counts[items]
      present = jnp.arange(width) < n[:, None]
      index = rows[items, :width]
      if fill is None:
        x = values.at[jnp.minimum(index, num_rows - 1)].get(mode="promise_in_bounds")
      else:
        x = values.at[index].get(mode="fill", fill_value=fill)
      result = fn(x, present, n)
      return jax.tree.map(lambda o, r: lax.dynamic_update_slice_in_dim(o, r, start, 0),
                          out, result)

    out = lax.fori_loop(0, (end - first + num - 1) // num, body, out)

  position = jnp.zeros((num_items,), jnp.int32).at[groups.order].set(
      jnp.arange(num_items, dtype=jnp.int32))
  uploaded = groups.counts > 0
  return jax.tree.map(
      lambda o: jnp.where(uploaded.reshape((-1,) + (1,) * (o.ndim - 1)), o[position], 0), out)


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
