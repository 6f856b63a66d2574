"""Line parsing shared by the raw-data readers: one clear error per bad line.

A malformed line raises `DataFormatError` as `"{path}:{lineno}: expected ..., got
{line!r}"`; a missing file `FileNotFoundError` naming the path and the expected layout.
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

PathLike = str | os.PathLike


class DataFormatError(ValueError):
  """A raw data file does not have the expected format."""


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
