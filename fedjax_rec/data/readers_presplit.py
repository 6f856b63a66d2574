"""Reader of pre-split datasets: `train.dat` / `test.dat`, one line per user `uid i1 i2 ...`.

Re-exported by `fedjax_rec.data.readers`, which holds the shared helpers and the error
conventions (see its docstring).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fedjax_rec.data import discover
from fedjax_rec.data.parsing import (DataFormatError, PathLike, bad_line, read_text,
                                     split_lines)

PRESPLIT_LAYOUT = "pre-split train.dat/test.dat (one line per user: 'uid i1 i2 ...')"

# Pre-split ids are used as given (0..max), so arrays are sized by the largest id: one
# beyond this many times the distinct ids (plus the slack) is refused.
PRESPLIT_ID_FACTOR = 4
PRESPLIT_ID_SLACK = 1000


def _read_presplit_file(path: PathLike) -> tuple[pd.DataFrame, np.ndarray]:
  """`(df, line)`: the pairs and each pair's 1-based line number."""
  text = read_text(path, PRESPLIT_LAYOUT)
  desc = "space-separated non-negative integers 'uid i1 i2 ...'"
  users, items, lines = [], [], []
  for lineno, line in enumerate(split_lines(text), 1):
    toks = line.split()
    if not toks:
      continue
    try:
      ids = np.array([int(t) for t in toks], dtype=np.int64)
    except (ValueError, OverflowError):
      raise bad_line(path, lineno, desc, line) from None
    if ids.min() < 0:
      raise bad_line(path, lineno, desc, line)
    users.append(np.full(len(ids) - 1, ids[0], dtype=np.int64))
    items.append(ids[1:])
    lines.append(np.full(len(ids) - 1, lineno, dtype=np.int64))
  return (pd.DataFrame({"user": np.concatenate(users), "item": np.concatenate(items)}),
          np.concatenate(lines))


def _check_presplit_ids(parts: list[tuple[PathLike, pd.DataFrame, np.ndarray]]) -> None:
  """Refuses an id far beyond the number of distinct ids of its kind, naming file and line."""
  for col in ("user", "item"):
    values = [df[col].to_numpy() for _, df, _ in parts]
    distinct = len(np.unique(np.concatenate(values)))
    bound = PRESPLIT_ID_FACTOR * distinct + PRESPLIT_ID_SLACK
    for (path, _, line), v in zip(parts, values):
      far = np.flatnonzero(v >= bound)
      if len(far):
        i = int(far[0])
        raise DataFormatError(
            f"{path}:{int(line[i])}: {col} id {int(v[i])} is far beyond the {distinct} "
            f"distinct {col} ids of the pre-split files (expected ids < {bound}); pre-split "
            "ids are used as given, so arrays would be sized by the largest one")


def read_presplit(train_path: PathLike,
                  test_path: PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Reads a pre-split dataset: one line per user, `uid i1 i2 ...` (0-based ints).

  A line holding only a uid means the user has no items in that file. Ids are used as
  given, so an id far beyond the number of distinct ids (more than `PRESPLIT_ID_FACTOR`
  times it plus `PRESPLIT_ID_SLACK`) is refused before anything is sized by it.

  Args:
    train_path: `train.dat`, plain or gzipped.
    test_path: `test.dat`, plain or gzipped.

  Returns:
    `(train_df, test_df)` with int64 columns `user`, `item`, in line order and
    keeping each line's item order.
  """
  (train, train_lines), (test, test_lines) = (_read_presplit_file(train_path),
                                              _read_presplit_file(test_path))
  _check_presplit_ids([(train_path, train, train_lines), (test_path, test, test_lines)])
  return train, test



def find_presplit_files(data_dir: PathLike) -> tuple[Path, Path]:
  """`(train, test)` paths in `data_dir` or its `processed-rdz98-implicit/` subfolder.

  Raises:
    FileNotFoundError: `data_dir` is a file, or the files are not there.
  """
  data_dir = Path(data_dir)
  if data_dir.is_file():
    raise FileNotFoundError(f"{data_dir} is a file, not a directory: expected a folder "
                            f"holding {PRESPLIT_LAYOUT}")
  for folder in (data_dir, data_dir / "processed-rdz98-implicit"):
    found = [next((folder / f"{stem}{ext}" for ext in ("", ".gz")
                   if (folder / f"{stem}{ext}").is_file()), None)
             for stem in ("train.dat", "test.dat")]
    if all(found):
      return found[0], found[1]
  for folder in (data_dir, data_dir / "processed-rdz98-implicit"):
    pair = discover.find_presplit_pair(folder)  # train/test under other extensions
    if pair is not None:
      return pair
  holds = (f"; it holds {discover.listing(data_dir)}" if data_dir.is_dir()
           else f"; {data_dir} does not exist")
  raise FileNotFoundError(
      f"{data_dir} not found or incomplete: expected {PRESPLIT_LAYOUT}; looked for "
      f"train and test files (.dat, .txt, .csv, optionally .gz) in {data_dir} and "
      f"{data_dir / 'processed-rdz98-implicit'}{holds}")


def load_presplit_dir(data_dir: PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Reads `train.dat(.gz)` and `test.dat(.gz)` from `data_dir` or its
  `processed-rdz98-implicit/` subfolder.

  Args:
    data_dir: directory holding the files (or their parent folder).

  Returns:
    `(train_df, test_df)` as from `read_presplit`.
  """
  return read_presplit(*find_presplit_files(data_dir))
