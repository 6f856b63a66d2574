"""The docs/design.md split and the fixed 1:4 negative sampling, vectorised in NumPy."""

from __future__ import annotations

import numpy as np

from fedjax_rec.data.dataset import ImplicitDataset, UserItems


def split_random(pairs_user: np.ndarray, pairs_item: np.ndarray, num_users: int,
                 num_items: int, *, seed: int, test_frac: float = 0.2,
                 valid_frac: float = 0.1, name: str = "dataset") -> ImplicitDataset:
  """Per-user random split: test = floor(test_frac·n); validation = floor(valid_frac·n_train).

  Args:
    pairs_user: [nnz] user ids in 0..num_users-1 (duplicates already removed).
    pairs_item: [nnz] item ids in 0..num_items-1.
    num_users: number of users.
    num_items: number of items.
    seed: seeds the per-user permutation.
    test_frac: share of each user's items held out for test.
    valid_frac: share of each user's remaining train items held out for
      validation (0 switches validation off).
    name: a label.

  Returns:
    The split dataset.
  """
  rng = np.random.default_rng(seed)
  users = np.asarray(pairs_user, np.int64)
  items = np.asarray(pairs_item, np.int32)
  order = np.lexsort((rng.random(len(users)), users))
  users, items = users[order], items[order]
  counts = np.bincount(users, minlength=num_users)
  start = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.arange(len(users)) - start[users]
  num_test = np.floor(test_frac * counts).astype(np.int64)
  num_valid = np.floor(valid_frac * (counts - num_test)).astype(np.int64)
  is_test = rank < num_test[users]
  is_valid = ~is_test & (rank < (num_test + num_valid)[users])
  is_train = ~is_test & ~is_valid

  def part(mask):
    return UserItems.from_pairs(users[mask], items[mask], num_users)

  return ImplicitDataset(name, num_users, num_items, part(is_train), part(is_valid),
                         part(is_test))


def from_presplit(train: UserItems, test: UserItems, num_items: int, *, seed: int,
                  valid_frac: float = 0.0, name: str = "presplit",
                  valid_order: str = "tail") -> ImplicitDataset:
  """Wraps a given train/test split; optionally carves validation from train.

  Args:
    valid_order: "tail" holds out the last `floor(valid_frac · n)` train items of each
      user in file order, the way such files cut their test set from the end of each
      user's list (a random carve is far easier than that test); "random" a seeded
      random share.
  """
  num_users = train.num_users
  if valid_order not in ("tail", "random"):
    raise ValueError(f"valid_order must be 'tail' or 'random', got {valid_order!r}")
  if valid_frac > 0:
    users = np.repeat(np.arange(num_users), train.lengths)
    counts = train.lengths
    position = np.arange(train.nnz) - np.repeat(train.indptr[:-1], counts)
    held = np.floor(valid_frac * counts).astype(np.int64)[users]
    if valid_order == "tail":
      is_valid = position >= counts[users] - held
    else:
      rng = np.random.default_rng(seed)
      order = np.lexsort((rng.random(train.nnz), users))
      rank = np.empty(train.nnz, np.int64)
      rank[order] = position
      is_valid = rank < held
    valid = UserItems.from_pairs(users[is_valid], train.items[is_valid], num_users)
    train = UserItems.from_pairs(users[~is_valid], train.items[~is_valid], num_users)
  else:
    valid = UserItems.from_lists([[] for _ in range(num_users)])
  return ImplicitDataset(name, num_users, num_items, train, valid, test)


def sample_negatives(seen: UserItems, num_items: int, per_positive: int,
                     positives: UserItems, rng: np.random.Generator) -> UserItems:
  """Draws `per_positive` negatives per positive, uniformly from unseen items.

  Sampling is with replacement across a user's positives (as in the public attack
  code); duplicates are kept and later accumulate in the client's upload.

  Args:
    seen: items each user may not get as negatives (its train + validation).
    num_items: catalogue size.
    per_positive: negatives per positive.
    positives: the user's training positives (sets the count).
    rng: NumPy generator (host-side set-up only).

  Returns:
    [num_users] lists of negatives, `per_positive · |positives_u|` each.
  """
  num_users = positives.num_users
  counts = positives.lengths * per_positive
  users = np.repeat(np.arange(num_users, dtype=np.int64), counts)
  seen_keys = np.sort(np.repeat(np.arange(num_users, dtype=np.int64), seen.lengths)
                      * num_items + seen.items)
  if np.any(seen.lengths >= num_items):
    bad = int(np.argmax(seen.lengths >= num_items))
    raise ValueError(f"user {bad} has interacted with every item: no negatives exist")
  negs = rng.integers(0, num_items, size=len(users)).astype(np.int64)
  todo = np.arange(len(users))
  while len(todo):
    clash = _is_member(users[todo] * num_items + negs[todo], seen_keys)
    todo = todo[clash]
    negs[todo] = rng.integers(0, num_items, size=len(todo))
  indptr = np.zeros(num_users + 1, np.int64)
  np.cumsum(counts, out=indptr[1:])
  return UserItems(indptr, negs.astype(np.int32))


def _is_member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
  """`np.isin(keys, sorted_keys)` by binary search: no hashing or sorting of `keys`."""
  if not len(sorted_keys):
    return np.zeros(len(keys), bool)
  at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
  return sorted_keys[at] == keys
