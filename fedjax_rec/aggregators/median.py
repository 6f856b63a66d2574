"""Coordinate-wise median per item row over its uploaders; MLP over the round's clients.

docs/design.md. Reference: Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates" (ICML 2018). An even number of values gives the mean of the two middle
ones. The median is mean-like and is rescaled to the convention (see `base.py`).

Layout: rows are grouped by item into dense blocks (`item_blocks.py`), and the rows'
order-preserving uint32 keys (`order_stats.py`) are gathered into them. The key of rank
`(n - 1) // 2` is found by `kth_key` (no sort); one more pass gives rank `n // 2`.
`map_keys` and `map_client_keys` are shared with `trimmed_mean.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, finish_rows, flatten_clients, rescale_mlp,
    rescale_rows, stateless)
from fedjax_rec.aggregators.item_blocks import (
    ItemGroups, default_block_items, group_rows, map_item_blocks, reduce_slots)
from fedjax_rec.aggregators.order_stats import ABSENT, float_keys, key_floats, kth_key
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Aggregate, Array, PyTree


def median_ranks(n: Array) -> tuple[Array, Array]:
  """The two middle ranks of `n` values (equal for odd `n`)."""
  return (n - 1) // 2, n // 2


def block_median(keys: Array, present: Array, n: Array) -> Array:
  """Per-block median of keys (see `map_keys`); 0 for items without uploads.

  One search finds rank `(n - 1) // 2`; rank `n // 2` is the same key if enough keys are
  equal to it, else the next larger key.
  """
  del present  # absent slots hold keys above all others
  r_lo, r_hi = median_ranks(n)
  lo = kth_key(keys, r_lo[:, None])
  k_lo = lo[:, None, :]
  num_le = reduce_slots(keys <= k_lo, "sum")
  above = reduce_slots(jnp.where(keys > k_lo, keys, ABSENT), "min")  # exists if needed
  hi = jnp.where(num_le > r_hi[:, None], lo, above)
  value = 0.5 * (key_floats(lo) + key_floats(hi))
  return jnp.where((n > 0)[:, None], value, 0.0)


def map_keys(fn, row_grad: Array, groups: ItemGroups) -> Array:
  """`fn(keys [B, w, d], present [B, w], n [B])` over dense blocks of the rows' keys.

  Absent slots hold the key of +inf, above every (finite, validated) value's key. See
  `map_item_blocks` (`row_grad` may be the unvalidated one).
  """
  dim = row_grad.shape[1]
  return map_item_blocks(lambda x, present, n: fn(float_keys(x), present, n), groups,
                         row_grad, lambda width: default_block_items(width, dim),
                         fill=jnp.inf)


def map_client_keys(fn, mlp: PyTree, client_mask: Array) -> PyTree:
  """`fn` over the keys of the accepted clients' MLP uploads, as one block of one item."""
  if not jax.tree.leaves(mlp):  # no network (MF)
    return mlp
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
    raw_row_grad = uploads.row_grad
    uploads, num_rejected = validate(uploads, max_abs)
    groups = group_rows(uploads, num_items)
    item_grad = rescale_rows(map_keys(block_median, raw_row_grad, groups), groups.counts,
                             convention)
    item_grad, touched = finish_rows(item_grad, groups.counts)
    mlp = rescale_mlp(map_client_keys(block_median, uploads.net, uploads.client_mask),
                      jnp.sum(uploads.client_mask), convention)
    aggregate = Aggregate(item_grad=item_grad, item_touched=touched, net=mlp)
    return aggregate, base_metrics(num_rejected, touched)

  return stateless(apply)
