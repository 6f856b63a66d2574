"""Per-client training tensors: flat per-user rows, then padded length buckets.

A client's local data is its positives and their sampled negatives. Positives
are distinct and negatives never hit a positive, so every distinct item is one
*row* with one label; a negative drawn twice becomes one row of weight 2, which
is the same loss. The client gathers exactly those rows of `V`, computes its
loss on them with no gather or scatter, and uploads one gradient row per item.

A round gathers its slots' rows from these flat arrays on device and pads them to
its length classes (`scheduling.BucketPlan`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec.data.dataset import UserItems


@dataclasses.dataclass(frozen=True)
class ClientData:
  """Host-side flat training rows of every benign client.

  Attributes:
    indptr: [num_users + 1] offsets of each user's rows.
    item: [R] the user's distinct items (sorted).
    label: [R] 1.0 for positives, 0.0 for negatives.
    weight: [R] how many of the user's samples the row stands for.
  """

  indptr: np.ndarray
  item: np.ndarray
  label: np.ndarray
  weight: np.ndarray

  @property
  def num_users(self) -> int:
    return len(self.indptr) - 1

  @property
  def num_rows(self) -> np.ndarray:
    """[num_users] distinct rows per user: the padded length."""
    return np.diff(self.indptr)

  @functools.cached_property
  def num_positives(self) -> np.ndarray:
    """[num_users] positive rows (they come first in each user's rows)."""
    users = np.repeat(np.arange(self.num_users), self.num_rows)
    return np.bincount(users, weights=self.label, minlength=self.num_users).astype(np.int64)

  def positive_capacity(self, length: int) -> int:
    """The most positives of any user whose rows fit `length`: a safe prefix size."""
    fits = self.num_rows <= length
    return int(max(1, min(length, self.num_positives[fits].max(initial=1))))

  @functools.cached_property
  def num_samples(self) -> np.ndarray:
    """[num_users] samples (positives + negatives, duplicates counted)."""
    users = np.repeat(np.arange(self.num_users), self.num_rows)
    return np.bincount(users, weights=self.weight, minlength=self.num_users)


def build_client_data(positives: UserItems, negatives: UserItems, num_items: int) -> ClientData:
  """Merges each user's positives and negatives into weighted distinct rows."""
  num_users = positives.num_users
  keys = np.concatenate([
      np.repeat(np.arange(num_users, dtype=np.int64), positives.lengths) * num_items
      + positives.items,
      np.repeat(np.arange(num_users, dtype=np.int64), negatives.lengths) * num_items
      + negatives.items])
  label_of = np.concatenate([np.ones(positives.nnz, np.float32),
                             np.zeros(negatives.nnz, np.float32)])
  uniq, first, counts = np.unique(keys, return_index=True, return_counts=True)
  user = uniq // num_items
  label = label_of[first]
  # Positives first within each user: item terms then use a short prefix.
  order = np.lexsort((uniq, -label, user))
  indptr = np.zeros(num_users + 1, np.int64)
  np.cumsum(np.bincount(user, minlength=num_users), out=indptr[1:])
  return ClientData(indptr, (uniq % num_items).astype(np.int32)[order], label[order],
                    counts.astype(np.float32)[order])


class DeviceClientData(NamedTuple):
  """`ClientData` as device arrays, rows padded to a fixed capacity.

  The capacity is every user's sample count (an upper bound on its distinct
  rows), so fresh negatives never change the shapes.
  """

  indptr: jax.Array  # [num_users + 1]
  num_rows: jax.Array  # [num_users]
  num_positives: jax.Array  # [num_users]
  item: jax.Array  # [capacity]
  label: jax.Array  # [capacity]
  weight: jax.Array  # [capacity]


def to_device(data: ClientData, capacity: int | None = None) -> DeviceClientData:
  n = len(data.item)
  capacity = max(n, capacity or 0, 1)
  pad = lambda a, dtype: jnp.asarray(np.concatenate([a, np.zeros(capacity - n, a.dtype)]),
                                     dtype)
  return DeviceClientData(jnp.asarray(data.indptr, jnp.int32),
                          jnp.asarray(data.num_rows, jnp.int32),
                          jnp.asarray(data.num_positives, jnp.int32),
                          pad(data.item, jnp.int32), pad(data.label, jnp.float32),
                          pad(data.weight, jnp.float32))


def gather_local(data: DeviceClientData, slot_user: jax.Array, length: int,
                 pos_length: int):
  """Pads the rows of the slots' users to `length` (on device, inside the jit).

  Returns:
    `(real [C], item [C, L], label [C, L], weight [C, L], mask [C, L],
    pos_mask [C, pos_length])`; the positives are each user's first rows.
  """
  real = slot_user >= 0
  u = jnp.where(real, slot_user, 0)
  pos = jnp.arange(length)[None, :]
  mask = pos < jnp.where(real, data.num_rows[u], 0)[:, None]
  idx = jnp.where(mask, data.indptr[u][:, None] + pos, 0)
  pos_mask = jnp.arange(pos_length)[None, :] < jnp.where(real, data.num_positives[u], 0)[:, None]
  return (real, jnp.where(mask, data.item[idx], 0), jnp.where(mask, data.label[idx], 0.0),
          jnp.where(mask, data.weight[idx], 0.0), mask, pos_mask)
