"""Coordinate-wise median per item row over its uploaders; MLP over the round's clients.

SPEC §7. Reference: Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates" (ICML 2018). An even number of values gives the mean of the two middle
ones. The median is mean-like and is rescaled to the convention (see `base.py`).

Layout: rows are grouped by item into dense blocks (`item_blocks.py`). Order statistics
are found without sorting (XLA:CPU sorts cost tens of ns a comparison): values map to
order-preserving uint32 keys, and the key of rank `(n - 1) // 2` is built bit by bit from
the top, 32 passes that each count, per item and coordinate, the uploads below a candidate
key (fused compares and sums); one more pass gives rank `n // 2`. The rows' keys are
computed once and gathered into the blocks, absent slots holding a key above all others.
The key helpers, `map_keys` and `map_client_keys` are shared with `trimmed_mean.py`.
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
from fedjax_rec.types import Aggregate, Array, PyTree, Uploads

# Above the key of every non-NaN float32: absent slots never count as below a candidate.
ABSENT = np.uint32(0xFFFFFFFF)
_SIGN = np.uint32(0x80000000)


def float_keys(x: Array) -> Array:
  """uint32 keys ordered like the float32 values (negatives: bits flipped)."""
  bits = lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  return jnp.where(bits >= _SIGN, ~bits, bits | _SIGN)


def key_floats(keys: Array) -> Array:
  """Inverse of `float_keys`."""
  bits = jnp.where(keys >= _SIGN, keys & ~_SIGN, ~keys)
  return lax.bitcast_convert_type(bits, jnp.float32)


def kth_key(keys: Array, rank: Array) -> Array:
  """[B, P] key of rank `rank` [B] (0 = smallest) among each item's slots, per coordinate.

  `keys` is [B, w, P] with `ABSENT` in absent slots. The result is the largest key with at
  most `rank` keys below it, built bit by bit from the top; a rank outside `0..n-1` gives
  garbage.
  """

  def body(i, key):
    cand = key | (jnp.uint32(1) << (31 - i).astype(jnp.uint32))
    below = reduce_slots(keys < cand[:, None, :], "sum")
    return jnp.where(below <= rank[:, None], cand, key)

  return lax.fori_loop(0, 32, body, jnp.zeros((keys.shape[0], keys.shape[2]), jnp.uint32))


def median_ranks(n: Array) -> tuple[Array, Array]:
  return (n - 1) // 2, n // 2


def block_median(keys: Array, present: Array, n: Array) -> Array:
  """Per-block median of keys (see `map_keys`); 0 for items without uploads.

  One search finds rank `(n - 1) // 2`; rank `n // 2` is the same key if enough keys are
  equal to it, else the next larger key.
  """
  del present  # absent slots hold ABSENT
  r_lo, r_hi = median_ranks(n)
  lo = kth_key(keys, r_lo)
  k_lo = lo[:, None, :]
  num_le = reduce_slots(keys <= k_lo, "sum")
  above = reduce_slots(jnp.where(keys > k_lo, keys, ABSENT), "min")
  hi = jnp.where(num_le > r_hi[:, None], lo, above)
  value = 0.5 * (key_floats(lo) + key_floats(hi))
  return jnp.where((n > 0)[:, None], value, 0.0)


def map_keys(fn, uploads: Uploads, groups: ItemGroups) -> Array:
  """`fn(keys [B, w, d], present [B, w], n [B])` over dense blocks of the keys of the
  validated `row_grad` (`ABSENT` in absent slots); see `map_item_blocks`."""
  dim = uploads.row_grad.shape[1]
  return map_item_blocks(fn, groups, float_keys(uploads.row_grad),
                         lambda width: default_block_items(width, dim),
                         fill=jnp.full((dim,), ABSENT))


def map_client_keys(fn, mlp: PyTree, client_mask: Array) -> PyTree:
  """`fn` over the keys of the accepted clients' MLP uploads, as one block of one item."""
  flat, unflatten = flatten_clients(mlp)
  keys = jnp.where(client_mask[:, None], float_keys(flat), ABSENT)
  n = jnp.sum(client_mask).astype(jnp.int32)[None]
  return unflatten(fn(keys[None], client_mask[None], n)[0])


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
    item_grad = rescale_rows(map_keys(block_median, uploads, groups), groups.counts,
                             convention)
    item_grad, touched = finish_rows(item_grad, groups.counts)
    mlp = rescale_mlp(map_client_keys(block_median, uploads.mlp, uploads.client_mask),
                      jnp.sum(uploads.client_mask), convention)
    aggregate = Aggregate(item_grad=item_grad, item_touched=touched, mlp=mlp)
    return aggregate, base_metrics(num_rejected, touched)

  return stateless(apply)
