"""Sort-free order statistics over the slot axis of dense blocks (median, trimmed mean, Krum).

XLA:CPU comparison sorts cost tens of ns a comparison, while fused integer compares and
sums run at a fraction of a ns an element. So values are mapped to uint32 keys that order
like them (`float_keys`), and an order statistic is found by counting:

* `kth_key`: any rank, built bit by bit from the top: 32 passes, each counting the keys
  below a candidate.
* `edge_key`: a rank at most `max_rank` from the bottom, walking the distinct keys upwards:
  `max_rank + 1` steps of two passes (cheaper than `kth_key` for ranks near an end).

Absent slots must hold a key above every present one, so they are never counted below a
candidate: `ABSENT` (above the key of every non-NaN float) or, among finite values, the key
of +inf.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from fedjax_rec.aggregators.item_blocks import reduce_slots
from fedjax_rec.types import Array

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


def kth_key(keys: Array, rank: Array, axis: int = 1) -> Array:
  """Key of rank `rank` (0 = smallest) along `axis` of `keys`.

  Args:
    keys: uint32 keys; absent slots above every present key (see the module doc).
    rank: int32, broadcastable against `keys` reduced over `axis`; a rank outside
      `0..n-1` gives garbage.

  Returns:
    `keys` reduced over `axis`: the largest key with at most `rank` keys below it.
  """
  shape = keys.shape[:axis] + keys.shape[axis + 1:]

  def body(i, key):
    cand = key | (jnp.uint32(1) << (31 - i).astype(jnp.uint32))
    below = reduce_slots(keys < jnp.expand_dims(cand, axis), "sum", axis)
    return jnp.where(below <= rank, cand, key)

  return lax.fori_loop(0, 32, body, jnp.zeros(shape, jnp.uint32))


def edge_key(keys: Array, rank: Array, max_rank: int, axis: int = 1) -> Array:
  """Key of rank `rank` (`0 <= rank <= max_rank`, a static bound) along `axis`.

  Walks the distinct keys upwards from the smallest, tracking how many keys are at most
  the current one; the rank's key is the first whose count exceeds the rank. `rank` is
  broadcastable against `keys` reduced over `axis`.
  """
  found = current = None
  num_before = 0
  for _ in range(max_rank + 1):
    above = keys if current is None else jnp.where(
        keys > jnp.expand_dims(current, axis), keys, ABSENT)
    current = reduce_slots(above, "min", axis)
    num_upto = reduce_slots(keys <= jnp.expand_dims(current, axis), "sum", axis)
    hit = (num_before <= rank) & (num_upto > rank)
    found = current if found is None else jnp.where(hit, current, found)
    num_before = num_upto
  return found
