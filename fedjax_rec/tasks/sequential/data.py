"""Time-ordered per-user sequences (docs/design.md) and their padded arrays.

Ids: items are 0..num_items-1 as everywhere else in the package (no id is reserved
for padding: every padded array comes with a boolean mask, and padded positions hold
item 0). The augmentation mask token is not an item: encoder inputs index rows, and
the index one past the last row stands for the mask token (`models.encoders.lookup`).

Split: per user, interactions sorted by timestamp (ties: file order); a repeated
(user, item) pair keeps its earliest occurrence; users with fewer than
`min_interactions` (3) are dropped; the last item is the test item, the second last
the validation item, the rest is train. `SeqDataset.train` keeps every train item in
time order (MostPop counts and the evaluation mask use all of them); the encoder sees
only the most recent `max_len` items (`left_padded`).

Layout: LEFT padding, most recent item last (as SASRec's reference code): a client's
training window is its most recent `max_len + 1` train items, inputs `window[:-1]`,
next-item targets `window[1:]`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from fedjax_rec.data import readers
from fedjax_rec.data.dataset import ImplicitDataset, UserItems
from fedjax_rec.data.loaders import default_data_dir
from fedjax_rec.tasks.sequential.synthetic import SeqSyntheticConfig, make_sequences

SEQ_DATASETS = ("synthetic", "ml-100k", "ml-1m", "amazon-csv", "amazon-json", "mind",
                "qb-article")


class NoTimestampsError(readers.DataFormatError):
  """The raw data has no timestamps, so no sequential split exists."""


@dataclasses.dataclass(frozen=True)
class SeqDataset(ImplicitDataset):
  """A sequentially split dataset; per-user item lists are in time order.

  Attributes (besides `ImplicitDataset`'s):
    max_len: encoder window `L` (the most recent items an encoder sees).
  """

  max_len: int = 50

  def history(self) -> UserItems:
    """Train then validation items, in time order (the test-time input)."""
    return self.train.union(self.valid)


def sequential_split(df: pd.DataFrame, *, name: str, max_len: int = 50,
                     min_interactions: int = 3) -> SeqDataset:
  """Leave-last-two-out split of a reader's DataFrame (see the module docstring).

  Args:
    df: columns `user`, `item`, `timestamp` (raw ids, file order).
    name: dataset label.
    max_len: encoder window.
    min_interactions: users with fewer interactions are dropped (at least 3).

  Returns:
    The split; users and items re-indexed to 0..n-1 by first appearance in the file.

  Raises:
    NoTimestampsError: `df` has no `timestamp` column.
  """
  if "timestamp" not in df.columns:
    raise NoTimestampsError(f"{name}: the data has no timestamps, so the sequential split "
                            "(docs/design.md) is unavailable")
  if min_interactions < 3:
    raise ValueError(f"min_interactions must be >= 3, got {min_interactions}")
  df = df[["user", "item", "timestamp"]].assign(_row=np.arange(len(df)))
  df = df.sort_values(["timestamp", "_row"], kind="stable")
  df = df.drop_duplicates(subset=["user", "item"], keep="first")
  counts = df.groupby("user", sort=False)["item"].transform("size")
  df = df[counts.to_numpy() >= min_interactions].sort_values("_row", kind="stable")
  if df.empty:
    raise readers.DataFormatError(f"{name}: no user has {min_interactions} interactions")
  df, user_raw, item_raw = readers.reindex(df)
  users = df.user.to_numpy()
  order = np.lexsort((df._row.to_numpy(), df.timestamp.to_numpy(), users))
  users, items = users[order], df.item.to_numpy()[order]
  num_users = len(user_raw)
  counts = np.bincount(users, minlength=num_users)
  start = np.concatenate([[0], np.cumsum(counts)[:-1]])
  from_end = counts[users] - 1 - (np.arange(len(users)) - start[users])

  def part(mask):
    return UserItems.from_pairs(users[mask], items[mask], num_users)

  return SeqDataset(name, num_users, len(item_raw), part(from_end >= 2), part(from_end == 1),
                    part(from_end == 0), max_len=max_len)


def left_padded(ui: UserItems, width: int) -> tuple[np.ndarray, np.ndarray]:
  """The last `width` items of every user, right-aligned.

  Returns:
    `(ids [U, width] int32, mask [U, width] bool)`; padded positions hold 0.
  """
  lengths = ui.lengths
  user = np.repeat(np.arange(ui.num_users), lengths)
  back = np.repeat(ui.indptr[1:], lengths) - 1 - np.arange(ui.nnz)  # 0 = most recent
  keep = back < width
  ids = np.zeros((ui.num_users, width), np.int32)
  mask = np.zeros((ui.num_users, width), bool)
  ids[user[keep], width - 1 - back[keep]] = ui.items[keep]
  mask[user[keep], width - 1 - back[keep]] = True
  return ids, mask


def train_windows(dataset: SeqDataset) -> tuple[np.ndarray, np.ndarray]:
  """Client training windows `(ids [U, L + 1], mask [U, L + 1])`."""
  return left_padded(dataset.train, dataset.max_len + 1)


def eval_histories(dataset: SeqDataset) -> tuple[np.ndarray, np.ndarray]:
  """Test-time encoder inputs `(ids [U, L], mask [U, L])`: train + validation."""
  return left_padded(dataset.history(), dataset.max_len)


def load_seq_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                     max_len: int = 50, seed: int = 0,
                     synthetic: SeqSyntheticConfig = SeqSyntheticConfig()) -> SeqDataset:
  """Loads a dataset and splits it sequentially.

  Args:
    name: one of `SEQ_DATASETS`; "synthetic" is the built-in Markov dataset.
    data_dir: directory of the raw files (default: `loaders.default_data_dir(name)`).
    max_len: encoder window.
    seed: generator seed of "synthetic" (the split itself is deterministic).
    synthetic: generator settings of "synthetic".

  Raises:
    NoTimestampsError: the data found has no timestamps (e.g. the ML-1M pairs file).
  """
  if name not in SEQ_DATASETS:
    raise ValueError(f"unknown sequential dataset {name!r}; expected one of "
                     f"{', '.join(SEQ_DATASETS)}")
  if name == "synthetic":
    return sequential_split(make_sequences(synthetic, seed), name="synthetic-seq",
                            max_len=max_len)
  path = Path(data_dir) if data_dir is not None else default_data_dir(name)
  df = readers.load_interactions(name, path)
  if "timestamp" not in df.columns:
    hint = (" (only the UserID::MovieID pairs file is available; the sequential split "
            "needs ratings.dat with timestamps)" if name == "ml-1m" else "")
    raise NoTimestampsError(f"{name} at {path} has no timestamps{hint}: sequential "
                            "recommendation on it is unavailable")
  return sequential_split(df, name=name, max_len=max_len)
