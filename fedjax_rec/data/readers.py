"""Readers for raw interaction files (docs/design.md).

Every reader takes a plain or gzipped file (gzip is detected by its magic bytes) and
returns a `pandas.DataFrame` with columns `user`, `item` (raw ids as the file holds
them) and, where the format has them, `rating` (float64) and `timestamp` (int64
seconds). `reindex` then maps raw ids to 0..n-1.

MovieLens and the dispatcher live here; Amazon, Tenrec and MIND readers live in
`readers_other`, the pre-split reader in `readers_presplit`; both are re-exported from
this module.

Errors: a missing file raises `FileNotFoundError` naming the path and the expected
layout; a malformed line raises `DataFormatError` as `"{path}:{lineno}: expected ...,
got {line!r}"`.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fedjax_rec.data import discover

PathLike = str | os.PathLike

_OTHER = ("read_amazon_csv", "read_amazon_json", "read_tenrec_qb_article",
          "read_mind_behaviors")
_PRESPLIT = ("read_presplit", "load_presplit_dir", "find_presplit_files", "PRESPLIT_ID_FACTOR",
             "PRESPLIT_ID_SLACK")

__all__ = ["DataFormatError", "read_movielens_1m", "read_movielens_100k",
           "read_presplit", "load_interactions", "load_presplit_dir", "reindex",
           *_OTHER]

ML1M_LAYOUT = ("MovieLens-1M ratings.dat (UserID::MovieID::Rating::Timestamp) or "
               "user_movie_pairs.dat.gz (UserID::MovieID)")
ML100K_LAYOUT = "MovieLens-100K u.data (user \\t item \\t rating \\t timestamp)"
PRESPLIT_LAYOUT = "pre-split train.dat/test.dat (one line per user: 'uid i1 i2 ...')"


class DataFormatError(ValueError):
  """A raw data file does not have the expected format."""


def __getattr__(name: str):
  # Lazy re-export (PEP 562) so that either module may be imported first.
  if name in _OTHER:
    from fedjax_rec.data import readers_other  # pylint: disable=import-outside-toplevel
    return getattr(readers_other, name)
  if name in _PRESPLIT:
    from fedjax_rec.data import readers_presplit  # pylint: disable=import-outside-toplevel
    return getattr(readers_presplit, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- helpers


def shorten(line: str, width: int = 80) -> str:
  return line if len(line) <= width else line[:width - 3] + "..."


def bad_line(path: PathLike, lineno: int, desc: str, line: str) -> DataFormatError:
  """Builds the standard malformed-line error."""
  return DataFormatError(f"{path}:{lineno}: expected {desc}, got {shorten(line)!r}")


def read_text(path: PathLike, layout: str, encoding: str = "utf-8") -> str:
  """Reads a plain or gzipped text file; raises on a missing or empty file.

  Args:
    path: the file.
    layout: what the file should be, for error messages.
    encoding: text encoding (MovieLens files are latin-1).

  Returns:
    The whole decoded text.
  """
  p = Path(path)
  if not p.is_file():
    raise FileNotFoundError(f"{p} not found: expected {layout} in {p.parent}")
  data = p.read_bytes()
  if data[:2] == b"\x1f\x8b":
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError) as e:
      raise DataFormatError(f"{p}: corrupt gzip file ({e}); expected {layout}") from e
  try:
    text = data.decode(encoding)
  except UnicodeDecodeError as e:
    raise DataFormatError(f"{p}: not {encoding} text ({e}); expected {layout}") from e
  if not text.strip():
    raise DataFormatError(f"{p}: empty file, expected {layout}")
  return text


def split_lines(text: str) -> list[str]:
  """Splits on '\\n' only (not on the exotic breaks `str.splitlines` honours)."""
  lines = text.split("\n")
  return [l[:-1] if l.endswith("\r") else l for l in lines]


def _int64(text: str) -> int:
  value = int(text)
  if not -2**63 <= value < 2**63:
    raise ValueError("out of the int64 range")
  return value


_CONVERT = {"int": _int64, "float": float, "str": str}
_KIND_WORD = {"int": "an integer", "float": "a number", "str": "text"}
_DTYPE = {"int": np.int64, "float": np.float64, "str": str}


def parse_fixed(path: PathLike, text: str, sep: str, names: Sequence[str],
                kinds: Sequence[str], desc: str, offset: int = 0) -> pd.DataFrame:
  """Parses lines of exactly `len(names)` `sep`-separated fields, no quoting.

  Blank lines are skipped. A vectorised pandas parse is tried first; if it fails
  or its field count check does not add up, a line-by-line scan either finds the
  first bad line or parses the text itself.

  Args:
    path: file name, for error messages.
    text: the text (without any header line).
    sep: the field separator (a longer one is swapped for a tab for pandas).
    names: column names.
    kinds: per column "int", "float" or "str".
    desc: format description for error messages.
    offset: number of physical lines preceding `text` in the file.

  Returns:
    A DataFrame with the given columns.
  """
  dtypes = {i: _DTYPE[k] for i, k in enumerate(kinds)}
  fast_text, fast_sep = text, sep
  if len(sep) > 1 and "\t" not in text:  # The C parser wants a 1-character separator.
    fast_text, fast_sep = text.replace(sep, "\t"), "\t"
  try:
    df = pd.read_csv(io.StringIO(fast_text), sep=fast_sep, header=None, dtype=dtypes,
                     quoting=csv.QUOTE_NONE, na_filter=False, engine="c")
    if (df.shape[1] == len(names)
        and fast_text.count(fast_sep) == (len(names) - 1) * len(df)):
      df.columns = list(names)
      return df
  except (ValueError, pd.errors.ParserError, OverflowError):
    pass
  del fast_text
  cols: list[list] = [[] for _ in names]
  for lineno, line in enumerate(split_lines(text), offset + 1):
    if not line.strip():
      continue
    parts = line.split(sep)
    if len(parts) != len(names):
      raise bad_line(path, lineno, desc, line)
    for i, (col, kind, part) in enumerate(zip(cols, kinds, parts)):
      try:
        col.append(_CONVERT[kind](part))
      except (ValueError, OverflowError):
        raise DataFormatError(f"{path}:{lineno}: expected field {i + 1} ({names[i]}) to be "
                              f"{_KIND_WORD[kind]} (not {shorten(part, 40)!r}), got "
                              f"{shorten(line)!r}") from None
  return pd.DataFrame({n: np.asarray(c, dtype=_DTYPE[k]) if k != "str" else c
                       for n, k, c in zip(names, kinds, cols)})


def check_ids(path: PathLike, text: str, df: pd.DataFrame, columns: Sequence[str],
              offset: int = 0) -> pd.DataFrame:
  """Refuses a negative id in integer `columns`, naming the file and line.

  Args:
    path: file name, for error messages.
    text: the parsed text (row `i` of `df` is its `i`-th non-blank line).
    df: the parsed rows.
    columns: integer id columns.
    offset: number of physical lines preceding `text` in the file.

  Returns:
    `df`, unchanged.
  """
  for col in columns:
    values = df[col].to_numpy()
    if values.dtype.kind != "i" or not len(values) or values.min() >= 0:
      continue
    row = int(np.flatnonzero(values < 0)[0])
    lineno, line = nonblank_line(text, row)
    raise DataFormatError(f"{path}:{lineno + offset}: negative {col} id {int(values[row])} "
                          f"in {shorten(line)!r}; expected non-negative integer ids")
  return df


def nonblank_line(text: str, index: int) -> tuple[int, str]:
  """(1-based line number, line) of the `index`-th (0-based) non-blank line."""
  seen = 0
  for lineno, line in enumerate(split_lines(text), 1):
    if line.strip():
      if seen == index:
        return lineno, line
      seen += 1
  raise IndexError(index)


def first_nonblank(text: str) -> tuple[int, str]:
  """Returns (1-based line number, line) of the first non-blank line."""
  for lineno, line in enumerate(split_lines(text), 1):
    if line.strip():
      return lineno, line
  raise AssertionError("read_text guarantees a non-blank line")


# --------------------------------------------------------------------------- MovieLens


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
  from fedjax_rec.data import readers_other as other  # pylint: disable=import-outside-toplevel
  readers = {"ml-1m": read_movielens_1m, "ml-100k": read_movielens_100k,
             "amazon-csv": other.read_amazon_csv, "amazon-json": other.read_amazon_json,
             "qb-article": other.read_tenrec_qb_article,
             "mind": other.read_mind_behaviors}
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
