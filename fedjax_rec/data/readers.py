"""Readers for raw interaction files (docs/design.md).

Every reader takes a plain or gzipped file (gzip is detected by its magic bytes) and
returns a `pandas.DataFrame` with columns `user`, `item` (raw ids as the file holds
them) and, where the format has them, `rating` (float64) and `timestamp` (int64
seconds). `reindex` then maps raw ids to 0..n-1.

MovieLens and the dispatcher live here; Amazon, Tenrec and MIND readers live in
`readers_other`, the pre-split reader in `readers_presplit`, the line parsing they share
in `parsing`; all are re-exported from this module.

Errors: a missing file raises `FileNotFoundError` naming the path and the expected
layout; a malformed line raises `DataFormatError` as `"{path}:{lineno}: expected ...,
got {line!r}"`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fedjax_rec.data import discover
from fedjax_rec.data.parsing import (DataFormatError, PathLike, bad_line, check_ids, first_nonblank,
                                     parse_fixed, read_text)
from fedjax_rec.data.readers_other import (read_amazon_csv, read_amazon_json,
                                           read_mind_behaviors, read_tenrec_qb_article)
from fedjax_rec.data.readers_presplit import (PRESPLIT_ID_FACTOR, PRESPLIT_ID_SLACK,
                                              PRESPLIT_LAYOUT, find_presplit_files,
                                              load_presplit_dir, read_presplit)

__all__ = ["DataFormatError", "PRESPLIT_ID_FACTOR", "PRESPLIT_ID_SLACK", "PRESPLIT_LAYOUT",
           "find_presplit_files", "load_interactions", "load_presplit_dir",
           "read_amazon_csv", "read_amazon_json", "read_mind_behaviors", "read_movielens_1m",
           "read_movielens_100k", "read_presplit", "read_tenrec_qb_article", "reindex"]

ML1M_LAYOUT = ("MovieLens-1M ratings.dat (UserID::MovieID::Rating::Timestamp) or "
               "user_movie_pairs.dat.gz (UserID::MovieID)")
ML100K_LAYOUT = "MovieLens-100K u.data (user \\t item \\t rating \\t timestamp)"


def read_movielens_1m(path: PathLike) -> pd.DataFrame:
  """Reads MovieLens-1M `ratings.dat` or its two-column `UserID::MovieID` variant.

  Args:
    path: `ratings.dat` (`UserID::MovieID::Rating::Timestamp`) or a pairs file
      (`UserID::MovieID`), plain or gzipped. The column count is taken from the
      first non-empty line; every line must have as many fields.

  Returns:
    Columns `user`, `item` (int64) and, for the 4-column format, `rating`
    (float64) and `timestamp` (int64), in file order.
  """
  text = read_text(path, ML1M_LAYOUT, encoding="latin-1")
  lineno, line = first_nonblank(text)
  ncols = len(line.split("::"))
  if ncols not in (2, 4):
    raise bad_line(path, lineno, "UserID::MovieID::Rating::Timestamp or "
                   "UserID::MovieID", line)
  if ncols == 4:
    names, kinds = ("user", "item", "rating", "timestamp"), ("int", "int", "float", "int")
    desc = "4 '::'-separated fields UserID::MovieID::Rating::Timestamp"
  else:
    names, kinds = ("user", "item"), ("int", "int")
    desc = "2 '::'-separated fields UserID::MovieID"
  return check_ids(path, text, parse_fixed(path, text, "::", names, kinds, desc),
                   ("user", "item"))


def read_movielens_100k(path: PathLike) -> pd.DataFrame:
  """Reads MovieLens-100K `u.data`: tab-separated user, item, rating, timestamp.

  Args:
    path: `u.data`, plain or gzipped.

  Returns:
    Columns `user`, `item`, `timestamp` (int64) and `rating` (float64), file order.
  """
  text = read_text(path, ML100K_LAYOUT, encoding="latin-1")
  df = parse_fixed(path, text, "\t", ("user", "item", "rating", "timestamp"),
                   ("int", "int", "float", "int"),
                   "4 tab-separated fields user, item, rating, timestamp")
  return check_ids(path, text, df, ("user", "item"))


# -------------------------------------------------------------------------- dispatcher

_CANDIDATES = {
    "ml-1m": ("ratings.dat", "ratings.dat.gz",
              "pairs-aurasparktraining/user_movie_pairs.dat.gz",
              "pairs-aurasparktraining/user_movie_pairs.dat",
              "user_movie_pairs.dat.gz", "user_movie_pairs.dat"),
    "ml-100k": ("u.data", "u.data.gz"),
    "amazon-csv": ("ratings.csv", "ratings.csv.gz", "*.csv", "*.csv.gz"),
    "amazon-json": ("*.json", "*.json.gz"),
    "qb-article": ("*.csv", "*.csv.gz"),
    "mind": ("behaviors.tsv", "behaviors.tsv.gz"),
}


def find_file(name: str, data_dir: Path) -> Path:
  """Finds the standard file for dataset `name` in `data_dir`."""
  patterns = _CANDIDATES[name]
  looked = f"looked for {', '.join(patterns)} in {data_dir}"
  if data_dir.is_file():
    raise FileNotFoundError(f"{data_dir} is a file, not a directory: expected a {name} data "
                            f"directory (--data_dir names the folder holding {patterns[0]})")
  if not data_dir.is_dir():
    raise FileNotFoundError(f"{data_dir} not found: expected a {name} data directory; "
                            f"{looked}")
  for pattern in patterns:
    if "*" in pattern:
      continue
    if (data_dir / pattern).is_file():
      return data_dir / pattern
  globbed = sorted({p for pat in patterns if "*" in pat for p in data_dir.glob(pat)
                    if p.is_file()})
  if name == "qb-article" and len(globbed) > 1:
    globbed = [p for p in globbed if "article" in p.name.lower()] or globbed
  if not globbed:  # other names (.dat/.txt/.csv are used interchangeably): by content
    globbed = discover.sniff(name, data_dir)
  if len(globbed) == 1:
    return globbed[0]
  if len(globbed) > 1:
    raise FileNotFoundError(f"{data_dir}: several candidate {name} files "
                            f"{[p.name for p in globbed]}; {looked}")
  raise FileNotFoundError(f"{data_dir} has no {name} file: {looked}, or any file in its "
                          f"line format; the folder holds {discover.listing(data_dir)}")


def load_interactions(name: str, data_dir: PathLike) -> pd.DataFrame:
  """Finds and reads the standard raw file of dataset `name` in `data_dir`.

  Args:
    name: one of "ml-1m", "ml-100k", "amazon-csv", "amazon-json", "qb-article",
      "mind".
    data_dir: the dataset's directory.

  Returns:
    The reader's DataFrame (raw ids; see the individual readers).
  """
  readers = {"ml-1m": read_movielens_1m, "ml-100k": read_movielens_100k,
             "amazon-csv": read_amazon_csv, "amazon-json": read_amazon_json,
             "qb-article": read_tenrec_qb_article, "mind": read_mind_behaviors}
  if name not in readers:
    raise ValueError(f"unknown dataset {name!r}; known: {sorted(readers)}")
  return readers[name](find_file(name, Path(data_dir)))


# ----------------------------------------------------------------------------- reindex


def reindex(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
  """Maps raw ids to 0..n-1 by order of first appearance; drops duplicate pairs.

  Args:
    df: a DataFrame with columns `user` and `item` (other columns are kept).

  Returns:
    `(df, user_ids_raw, item_ids_raw)`: a copy without repeated (user, item) pairs
    (the first occurrence is kept), with int64 `user`/`item` codes, so that
    `user_ids_raw[code]` is the raw id.
  """
  out = df.drop_duplicates(subset=["user", "item"], keep="first").reset_index(drop=True)
  user_codes, users = pd.factorize(out["user"], sort=False)
  item_codes, items = pd.factorize(out["item"], sort=False)
  out["user"] = user_codes.astype(np.int64)
  out["item"] = item_codes.astype(np.int64)
  return out, np.asarray(users), np.asarray(items)
