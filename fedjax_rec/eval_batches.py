"""Host-side batching for evaluation: users into fixed-size batches, their item lists
into padded arrays, and the per-user results back into means.

Users are padded to a multiple of `batch_size` (padded rows weigh 0). Item lists become
`(row, item)` pairs per batch or fixed-width `[U, L]` id arrays with masks; widths are
bucketed (powers of two up to 128, then multiples of 128) to bound recompilation.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from fedjax_rec.data.dataset import UserItems


def bucket(n: int) -> int:
  """Rounds a width up to a power of two (<= 128) or a multiple of 128."""
  n = max(int(n), 1)
  return 1 << (n - 1).bit_length() if n <= 128 else -(-n // 128) * 128


def take_rows(ui: UserItems, users: np.ndarray) -> UserItems:
  """CSR restricted to `users` (in that order), without a Python loop."""
  lengths = ui.lengths[users]
  indptr = np.zeros(len(users) + 1, dtype=np.int64)
  np.cumsum(lengths, out=indptr[1:])
  offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], lengths)
  src = np.repeat(ui.indptr[:-1][users], lengths) + offsets
  return UserItems(indptr, ui.items[src].astype(np.int32))


def batched(ui: UserItems, users: np.ndarray, num_batches: int,
             batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Padded `(ids [nb, b, L], mask [nb, b, L])` of `users`; padded users are empty."""
  sub = take_rows(ui, users)
  ids, mask = sub.padded(pad_to=bucket(sub.lengths.max(initial=0)))
  total = num_batches * batch_size
  ids = np.pad(ids, ((0, total - len(users)), (0, 0)), constant_values=-1)
  mask = np.pad(mask, ((0, total - len(users)), (0, 0)), constant_values=False)
  width = ids.shape[1]
  return (ids.reshape(num_batches, batch_size, width),
          mask.reshape(num_batches, batch_size, width))


def batched_pairs(ui: UserItems, users: np.ndarray, num_batches: int,
                   batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """`(rows [nb, P], items [nb, P])`: batch j's (row in batch, item) pairs of `users`.

  P is the largest batch's pair count, bucketed; padding pairs hold row 0 and item -1.
  """
  sub = take_rows(ui, users)
  slot = np.repeat(np.arange(len(users)), sub.lengths)     # user slot of every pair
  batch = slot // batch_size
  counts = np.bincount(batch, minlength=num_batches)
  starts = np.zeros(num_batches + 1, np.int64)
  np.cumsum(counts, out=starts[1:])
  pos = np.arange(sub.nnz) - starts[batch]                  # pairs are grouped by batch
  width = bucket(counts.max(initial=0))
  rows = np.zeros((num_batches, width), np.int32)
  items = np.full((num_batches, width), -1, np.int32)
  rows[batch, pos] = slot % batch_size
  items[batch, pos] = sub.items
  return rows, items


def batch_users(users: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray, int]:
  """`(user_ids [nb, b], valid [nb, b], nb)`; padded slots hold user 0 and weigh 0."""
  num_batches = max(-(-len(users) // batch_size), 1)
  total = num_batches * batch_size
  valid = np.arange(total) < len(users)
  ids = np.zeros(total, np.int32)
  ids[:len(users)] = users
  return (ids.reshape(num_batches, batch_size), valid.reshape(num_batches, batch_size),
          num_batches)


def select_users(num_users: int, users: np.ndarray | None, num_users_sample: int | None = None,
                 sample_seed: int = 0) -> np.ndarray:
  """The evaluated users: `users` (default all), or a fixed sample of them (`sample_users`)."""
  if users is None:
    users = np.arange(num_users, dtype=np.int32)
  else:
    users = np.asarray(users, dtype=np.int32).reshape(-1)
    if users.size and (users.min() < 0 or users.max() >= num_users):
      raise ValueError(f"user ids must lie in [0, {num_users}).")
  if num_users_sample is not None:
    users = sample_users(users, int(num_users_sample), sample_seed)
  return users


def ranking_means(per_user: np.ndarray, ks: tuple[int, ...], with_se: bool = False,
                  names: tuple[str, ...] = ("recall", "ndcg", "precision")) -> dict[str, float]:
  """`{"<name>@K"}` means of `per_user [n, len(ks), len(names)]` (default: recall, NDCG
  and precision).

  With `with_se`, also `<metric>_se`: std (ddof=1) / sqrt(n), NaN below two users.
  """
  n = len(per_user)
  means = per_user.mean(axis=0) if n else np.full((len(ks), len(names)), np.nan)
  ses = (per_user.std(axis=0, ddof=1) / np.sqrt(n) if n >= 2
         else np.full((len(ks), len(names)), np.nan))
  out = {}
  for i, k in enumerate(ks):
    for j, name in enumerate(names):
      out[f"{name}@{k}"] = float(means[i, j])
      if with_se:
        out[f"{name}@{k}_se"] = float(ses[i, j])
  return out


def er_means(hits: jax.Array, eligible: jax.Array, ks: tuple[int, ...]) -> dict[str, float]:
  """`{"er@K"}` from per-batch `hits [nb, T, len(ks)]` and `eligible [nb, T]` counts."""
  hits = np.asarray(hits, np.int64).sum(axis=0)                 # [T, nK]
  eligible = np.asarray(eligible, np.int64).sum(axis=0)         # [T]
  keep = eligible > 0
  out = {}
  for i, k in enumerate(ks):
    out[f"er@{k}"] = (float(np.mean(hits[keep, i] / eligible[keep])) if keep.any()
                      else float("nan"))
  return out


def cutoffs(ks: Sequence[int], name: str) -> tuple[int, ...]:
  ks = tuple(int(k) for k in ks)
  if not ks or min(ks) < 1:
    raise ValueError(f"{name} must be a non-empty sequence of positive cut-offs, got {ks}.")
  return ks


def sample_users(users: np.ndarray, num: int, seed: int) -> np.ndarray:
  """`num` of `users`, drawn without replacement by `default_rng(seed)`, sorted."""
  if num < 1:
    raise ValueError(f"num_users_sample must be at least 1, got {num}.")
  if num > len(users):
    raise ValueError(f"num_users_sample={num} exceeds the {len(users)} users available.")
  return np.sort(np.random.default_rng(seed).choice(users, size=num, replace=False))
