"""In-memory containers for implicit-feedback datasets.

Per-user item lists are stored as CSR arrays (`indptr`, `items`), never as a dense
user x item table.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class UserItems:
  """Ragged per-user item lists in CSR form.

  Attributes:
    indptr: [num_users + 1] int64 offsets into `items`.
    items: [nnz] int32 item ids; user `u` owns `items[indptr[u]:indptr[u + 1]]`.
  """

  indptr: np.ndarray
  items: np.ndarray

  @property
  def num_users(self) -> int:
    return len(self.indptr) - 1

  @property
  def lengths(self) -> np.ndarray:
    return np.diff(self.indptr)

  @property
  def nnz(self) -> int:
    return int(self.indptr[-1])

  def row(self, user: int) -> np.ndarray:
    return self.items[self.indptr[user]:self.indptr[user + 1]]

  @classmethod
  def from_lists(cls, lists: Sequence[Sequence[int]]) -> "UserItems":
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    indptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    items = (np.concatenate([np.asarray(x, dtype=np.int32) for x in lists])
             if len(lists) and indptr[-1] else np.zeros(0, np.int32))
    return cls(indptr, items.astype(np.int32))

  @classmethod
  def from_pairs(cls, users: np.ndarray, items: np.ndarray, num_users: int) -> "UserItems":
    """Builds CSR from (user, item) pairs, keeping the given order within a user."""
    users = np.asarray(users, dtype=np.int64)
    order = np.argsort(users, kind="stable")
    counts = np.bincount(users, minlength=num_users)
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return cls(indptr, np.asarray(items, dtype=np.int32)[order])

  def union(self, other: "UserItems") -> "UserItems":
    """Per-user concatenation of two CSR lists over the same users."""
    assert self.num_users == other.num_users
    lengths = self.lengths + other.lengths
    indptr = np.zeros(self.num_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    items = np.empty(indptr[-1], dtype=np.int32)
    # Vectorised interleave: positions of self's items, then other's, per user.
    user_of_self = np.repeat(np.arange(self.num_users), self.lengths)
    pos_self = indptr[user_of_self] + (np.arange(self.nnz) - self.indptr[user_of_self])
    user_of_other = np.repeat(np.arange(other.num_users), other.lengths)
    pos_other = (indptr[user_of_other] + self.lengths[user_of_other]
                 + (np.arange(other.nnz) - other.indptr[user_of_other]))
    items[pos_self] = self.items
    items[pos_other] = other.items
    return UserItems(indptr, items)

  def padded(self, pad_to: int | None = None, fill: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Returns `(ids [U, L], mask [U, L])` with `L = pad_to or max length`."""
    lengths = self.lengths
    width = int(pad_to if pad_to is not None else max(int(lengths.max(initial=0)), 1))
    ids = np.full((self.num_users, width), fill, dtype=np.int32)
    col = np.arange(self.nnz) - np.repeat(self.indptr[:-1], lengths)
    row = np.repeat(np.arange(self.num_users), lengths)
    keep = col < width
    ids[row[keep], col[keep]] = self.items[keep]
    return ids, _mask_from_lengths(np.minimum(lengths, width), width)


def _mask_from_lengths(lengths: np.ndarray, width: int) -> np.ndarray:
  return np.arange(width)[None, :] < lengths[:, None]


@dataclasses.dataclass(frozen=True)
class ImplicitDataset:
  """A split implicit-feedback dataset. Users and items are 0..n-1.

  Attributes:
    name: a label for logs.
    num_users: number of (benign) users.
    num_items: catalogue size.
    train: items each user trains on.
    valid: held-out validation items (may be empty per user).
    test: held-out test items.
    eval_negatives: None, or the fixed items each test item is also ranked against
      (leave-one-out's sampled metrics, `data.loo`).
  """

  name: str
  num_users: int
  num_items: int
  train: UserItems
  valid: UserItems
  test: UserItems
  eval_negatives: UserItems | None = None

  def item_popularity(self, include_test: bool = False) -> np.ndarray:
    """[num_items] interaction counts over train+valid (and test if asked)."""
    pop = np.bincount(self.train.items, minlength=self.num_items)
    pop = pop + np.bincount(self.valid.items, minlength=self.num_items)
    if include_test:
      pop = pop + np.bincount(self.test.items, minlength=self.num_items)
    return pop.astype(np.int64)

  def seen(self) -> UserItems:
    """Train + validation items: masked when ranking for Recall/NDCG."""
    return self.train.union(self.valid)

  def interacted(self) -> UserItems:
    """Train + validation + test items: masked when ranking for ER@K."""
    return self.seen().union(self.test)

  def summary(self) -> str:
    return (f"{self.name}: {self.num_users} users, {self.num_items} items, "
            f"train {self.train.nnz}, valid {self.valid.nnz}, test {self.test.nnz}")
