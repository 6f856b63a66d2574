"""Stochastic sequence augmentations for the sequence view (CL4SRec-style).

Every operator takes ONE left-padded sequence `(ids [L], mask [L])` (real items
contiguous at the end, `n = mask.sum()` of them) and a key, and returns a
left-padded `(ids, mask)` of the same shape; it is jittable and vmappable. `ids`
may be item ids or row indices: the operators only move, drop or replace entries.

Invariants (tests/sequential/test_augment.py):
  * crop: keeps a contiguous block of `max(1, floor(ratio · n))` items (0 if n = 0),
    in order.
  * mask: length unchanged; every real position keeps its id or holds `mask_id`
    (each with probability `ratio`); padding untouched.
  * reorder: length unchanged; shuffles one contiguous block of
    `floor(ratio · n)` items; the multiset of ids is preserved and items outside
    the block keep their positions.
`split_adjacent` cuts a sequence into its older and newer halves (temporal term).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec.types import Array

OPERATORS = ("crop", "mask", "reorder")


def _count(mask: Array) -> Array:
  return jnp.sum(mask).astype(jnp.int32)


def _right_aligned(ids: Array, src_start: Array, count: Array, pad_id: int = 0):
  """Left-padded copy of `ids[src_start : src_start + count]`."""
  length = ids.shape[0]
  j = jnp.arange(length) - (length - count)  # index inside the block
  keep = j >= 0
  src = jnp.clip(src_start + j, 0, length - 1)
  return jnp.where(keep, ids[src], pad_id), keep


def crop(key: Array, ids: Array, mask: Array, ratio: float) -> tuple[Array, Array]:
  """A random contiguous block of `max(1, floor(ratio · n))` items."""
  length = ids.shape[0]
  n = _count(mask)
  c = jnp.minimum(jnp.maximum(jnp.floor(ratio * n).astype(jnp.int32), 1), n)
  start = jax.random.randint(key, (), 0, n - c + 1)
  return _right_aligned(ids, length - n + start, c)


def mask_items(key: Array, ids: Array, mask: Array, ratio: float,
               mask_id: int) -> tuple[Array, Array]:
  """Replaces each real item by `mask_id` with probability `ratio`."""
  hit = jax.random.bernoulli(key, ratio, ids.shape) & mask
  return jnp.where(hit, mask_id, ids), mask


def reorder(key: Array, ids: Array, mask: Array, ratio: float) -> tuple[Array, Array]:
  """Shuffles a random contiguous block of `floor(ratio · n)` items."""
  length = ids.shape[0]
  key_start, key_perm = jax.random.split(key)
  n = _count(mask)
  r = jnp.floor(ratio * n).astype(jnp.int32)
  start = (length - n) + jax.random.randint(key_start, (), 0, n - r + 1)
  pos = jnp.arange(length)
  in_block = (pos >= start) & (pos < start + r)
  # Block positions get random sort keys inside [start, start + r); the others keep
  # their integer position, so only the block is permuted.
  u = jax.random.uniform(key_perm, (length,))
  sort_key = jnp.where(in_block, start + u * r.astype(u.dtype), pos.astype(u.dtype))
  perm = jnp.argsort(sort_key, stable=True)
  return ids[perm], mask


def augment(key: Array, ids: Array, mask: Array, *, mask_id: int, crop_ratio: float = 0.6,
            mask_ratio: float = 0.3, reorder_ratio: float = 0.3) -> tuple[Array, Array]:
  """One operator drawn uniformly from `OPERATORS`, applied to the sequence."""
  key_op, key_apply = jax.random.split(key)
  branches = [lambda k: crop(k, ids, mask, crop_ratio),
              lambda k: mask_items(k, ids, mask, mask_ratio, mask_id),
              lambda k: reorder(k, ids, mask, reorder_ratio)]
  op = jax.random.randint(key_op, (), 0, len(branches))
  return jax.lax.switch(op, branches, key_apply)


def split_adjacent(mask: Array) -> tuple[Array, Array]:
  """Cuts a sequence into its older `floor(n / 2)` and newer `n - floor(n / 2)` items.

  The halves stay where they sit in the window, so a causal encoder's output at the
  older half's last position IS the older half's encoding.

  Returns:
    `(older_end, newer_mask)`: the position of the older half's last item ([] int32;
    meaningful when n >= 2) and the [L] mask of the newer half.
  """
  length = mask.shape[0]
  n = _count(mask)
  first_newer = length - n + n // 2
  return first_newer - 1, mask & (jnp.arange(length) >= first_newer)
