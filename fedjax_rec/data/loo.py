"""Leave-one-out: each user's last interaction is its test item, ranked against all
items and against a fixed set of sampled negatives.

The split orders a user's interactions by timestamp (ties: file order), or by file order
when the data has no timestamps, and holds out the last one; a user with a single
interaction keeps it for training and has no test item. Validation, if asked, is the
tail of the remaining items (`split.from_presplit`, `valid_order="tail"`).

The evaluation negatives (`ImplicitDataset.eval_negatives`) are drawn once, per user,
from the items the user never interacted with (train, validation and test excluded),
without replacement, by a generator seeded with `(EVAL_NEGATIVE_SEED, user)`. They are a
pure function of the split and that constant: independent of the run's `--seed`, never
redrawn between evaluations, and identical when a run resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fedjax_rec.data.dataset import ImplicitDataset, UserItems
from fedjax_rec.data.parsing import DataFormatError
from fedjax_rec.data.split import from_presplit

SPLITS = ("random", "loo")
# Negatives ranked with each test item (the NCF leave-one-out protocol: 1 + 99 items).
NUM_EVAL_NEGATIVES = 99
# Seeds the evaluation negatives; a constant, so they never follow the run's seed.
EVAL_NEGATIVE_SEED = 99991


def loo_name(name: str) -> str:
  """The label of `name` split leave-one-out (workdirs of the two splits differ)."""
  return f"{name}-loo"


def split_leave_one_out(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int,
                        *, order: np.ndarray | None = None, valid_frac: float = 0.0,
                        name: str = "dataset") -> ImplicitDataset:
  """Holds out each user's last interaction; adds the fixed evaluation negatives.

  Args:
    users: [nnz] user ids in 0..num_users-1, (user, item) pairs distinct.
    items: [nnz] item ids in 0..num_items-1.
    num_users: number of users.
    num_items: catalogue size.
    order: [nnz] sort key within a user (timestamps); None, or ties: the given order.
    valid_frac: share of each user's remaining items held out for validation (the
      most recent ones).
    name: the dataset's label (`loo_name` is applied).

  Returns:
    The split, with `eval_negatives`.
  """
  users = np.asarray(users, np.int64)
  items = np.asarray(items, np.int32)
  position = np.arange(len(users))
  key = np.zeros(len(users), np.int64) if order is None else np.asarray(order, np.int64)
  perm = np.lexsort((position, key, users))
  users, items = users[perm], items[perm]
  counts = np.bincount(users, minlength=num_users)
  end = np.cumsum(counts)
  is_test = np.zeros(len(users), bool)
  is_test[end[counts >= 2] - 1] = True
  train = UserItems.from_pairs(users[~is_test], items[~is_test], num_users)
  test = UserItems.from_pairs(users[is_test], items[is_test], num_users)
  return with_eval_negatives(from_presplit(train, test, num_items, seed=0,
                                           valid_frac=valid_frac, name=loo_name(name)))


def check_one_test_item(test: UserItems, source: str) -> None:
  """Raises `DataFormatError` naming `source` if a user has more than one test item."""
  many = np.flatnonzero(test.lengths > 1)
  if len(many):
    u = int(many[0])
    raise DataFormatError(
        f"{source}: the leave-one-out split needs at most one test item per user; user {u} "
        f"has {int(test.lengths[u])} ({len(many)} users have several): expected a pre-split "
        "test file holding each user's one held-out item")


def with_eval_negatives(dataset: ImplicitDataset) -> ImplicitDataset:
  """`dataset` with its fixed evaluation negatives (`sample_eval_negatives`)."""
  negatives = sample_eval_negatives(dataset.interacted(), dataset.test, dataset.num_items)
  return dataclasses.replace(dataset, eval_negatives=negatives)


def sample_eval_negatives(interacted: UserItems, test: UserItems, num_items: int,
                          num: int = NUM_EVAL_NEGATIVES,
                          seed: int = EVAL_NEGATIVE_SEED) -> UserItems:
  """`num` distinct never-interacted items for every user with a test item.

  User `u`'s draw uses `np.random.default_rng([seed, u])` only, so it depends on nothing
  but `u`'s interactions, `num_items`, `num` and `seed`. A user with fewer than `num`
  candidates gets them all; a user without a test item gets none.

  Returns:
    [num_users] sorted lists of negatives.
  """
  lists = []
  for u in range(test.num_users):
    if not test.lengths[u]:
      lists.append(np.zeros(0, np.int32))
      continue
    candidates = np.setdiff1d(np.arange(num_items), interacted.row(u), assume_unique=False)
    rng = np.random.default_rng([seed, u])
    take = rng.choice(len(candidates), min(num, len(candidates)), replace=False)
    lists.append(np.sort(candidates[take]).astype(np.int32))
  return UserItems.from_lists(lists)
