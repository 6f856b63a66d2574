"""Dataset names -> split `ImplicitDataset`s (docs/design.md)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fedjax_rec.data import loo, readers
from fedjax_rec.data.dataset import ImplicitDataset, UserItems
from fedjax_rec.data.split import from_presplit, split_random
from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic, make_interactions

# Raw formats split per docs/design.md (random 80/20 per user, 10% validation).
RAW = ("ml-1m", "ml-100k", "amazon-csv", "amazon-json", "qb-article", "mind")
# `<name>-presplit`: a directory with train.dat / test.dat, loaded as given.
DATASETS = ("synthetic",) + RAW + ("ml-1m-presplit", "presplit")

DATA_ENV = "FEDJAX_REC_DATA"


def default_data_root() -> Path:
  """`$FEDJAX_REC_DATA`, else `../shared/data` beside the current directory."""
  return Path(os.environ.get(DATA_ENV, Path("..") / "shared" / "data"))


def default_data_dir(name: str) -> Path:
  """Where dataset `name` lives under the data root (`ml-1m`, `ml-100k`, ...)."""
  base = name.removesuffix("-presplit") if name != "presplit" else "presplit"
  return default_data_root() / base


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, seed: int = 0,
                 valid_frac: float = 0.1, test_frac: float = 0.2,
                 synthetic: SyntheticConfig = SyntheticConfig(),
                 split: str = "random") -> ImplicitDataset:
  """Loads and splits a dataset.

  Args:
    name: one of `DATASETS`.
    data_dir: directory of the raw files (default: `default_data_dir(name)`).
    seed: split seed (and synthetic generator seed).
    valid_frac: validation share of each user's train items (0: none).
    test_frac: test share of each user's items (raw formats, random split).
    synthetic: generator settings for "synthetic".
    split: "random" (docs/design.md; pre-split files as given) or "loo" (leave-one-out,
      `data.loo`: each user's last interaction is its test item; pre-split files must
      hold at most one test item per user).

  Returns:
    The split dataset; ids re-indexed to 0..n-1 in order of first appearance.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
  if split not in loo.SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {', '.join(loo.SPLITS)}")
  if name == "synthetic":
    if split == "loo":
      users, items = make_interactions(synthetic, seed)
      return loo.split_leave_one_out(users, items, synthetic.num_users, synthetic.num_items,
                                     valid_frac=valid_frac, name=name)
    return load_synthetic(synthetic, seed=seed)
  path = Path(data_dir) if data_dir is not None else default_data_dir(name)
  if name.endswith("presplit"):
    if split == "loo":
      return _presplit_loo(path, name, valid_frac)
    train_df, test_df = readers.load_presplit_dir(path)
    num_users = int(max(train_df.user.to_numpy().max(initial=-1), test_df.user.to_numpy().max(initial=-1))) + 1
    num_items = int(max(train_df.item.to_numpy().max(initial=-1), test_df.item.to_numpy().max(initial=-1))) + 1
    train = UserItems.from_pairs(train_df.user.to_numpy(), train_df.item.to_numpy(), num_users)
    test = UserItems.from_pairs(test_df.user.to_numpy(), test_df.item.to_numpy(), num_users)
    return from_presplit(train, test, num_items, seed=seed, valid_frac=valid_frac,
                         name=name)
  df, user_ids, item_ids = readers.reindex(readers.load_interactions(name, path))
  if split == "loo":
    order = df.timestamp.to_numpy() if "timestamp" in df.columns else None
    return loo.split_leave_one_out(df.user.to_numpy(), df.item.to_numpy(), len(user_ids),
                                   len(item_ids), order=order, valid_frac=valid_frac,
                                   name=name)
  return split_random(df.user.to_numpy(), df.item.to_numpy(), len(user_ids), len(item_ids),
                      seed=seed, test_frac=test_frac, valid_frac=valid_frac, name=name)


def _presplit_loo(path: Path, name: str, valid_frac: float) -> ImplicitDataset:
  """A pre-split folder as leave-one-out: its test file's one item per user is held out."""
  train_path, test_path = readers.find_presplit_files(path)
  train_df, test_df = readers.read_presplit(train_path, test_path)
  top = lambda col: max(df[col].to_numpy().max(initial=-1) for df in (train_df, test_df))
  num_users, num_items = int(top("user")) + 1, int(top("item")) + 1
  train = UserItems.from_pairs(train_df.user.to_numpy(), train_df.item.to_numpy(), num_users)
  test = UserItems.from_pairs(test_df.user.to_numpy(), test_df.item.to_numpy(), num_users)
  loo.check_one_test_item(test, str(test_path))
  dataset = from_presplit(train, test, num_items, seed=0, valid_frac=valid_frac,
                          name=loo.loo_name(name))
  return loo.with_eval_negatives(dataset)


def check_data_present(name: str, data_dir: str | os.PathLike | None = None) -> None:
  """Finds dataset `name`'s raw files without reading them (a sweep checks all first).

  Raises:
    FileNotFoundError: naming the directory and what was looked for.
    ValueError: an unknown dataset name.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
  if name == "synthetic":
    return
  path = Path(data_dir) if data_dir is not None else default_data_dir(name)
  if name.endswith("presplit"):
    readers.find_presplit_files(path)
  else:
    readers.find_file(name, path)


def popularity_all(dataset: ImplicitDataset) -> np.ndarray:
  """Interaction counts over train + validation + test (attack target choice)."""
  return dataset.item_popularity(include_test=True)
