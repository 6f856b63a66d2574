"""Finding a dataset's files by content, whatever their extension.

Public copies of the same data name their files `.dat`, `.txt` or `.csv` at random
(`ratings.dat` / `ratings.txt`, `train.dat` / `train.txt`). The standard names are
tried first; failing them, every file of the folder with a text-like name is sniffed
(its first non-blank line, gzip or not) against the dataset's line format. None or
several candidates is an error that lists what the folder holds and what was expected.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

TEXT_SUFFIXES = (".dat", ".txt", ".csv", ".tsv", ".data", ".json", ".inter")

# First non-blank line of each raw format.
_FIRST_LINE = {
    "ml-1m": re.compile(r"^\d+::\d+(::[\d.]+::\d+)?$"),
    "ml-100k": re.compile(r"^\d+\t\d+\t[\d.]+\t\d+$"),
    "amazon-csv": re.compile(r"^[^,]+,[^,]+,[\d.]+,\d+$"),
    "amazon-json": re.compile(r'^\{.*"reviewerID".*"asin"|^\{.*"asin".*"reviewerID"'),
    "mind": re.compile(r"^[^\t]+\t[^\t]+\t[^\t]*\t[^\t]*\t[^\t]*$"),
}
_PRESPLIT_LINE = re.compile(r"^\d+(\s+\d+)*$")


def _is_text_name(path: Path) -> bool:
  name = path.name.lower().removesuffix(".gz")
  return path.is_file() and any(name.endswith(s) for s in TEXT_SUFFIXES)


def first_line(path: Path, limit: int = 1 << 16) -> str:
  """The first non-blank line of `path` (gunzipped if needed); '' if unreadable."""
  try:
    with open(path, "rb") as f:
      head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
      chunk = f.read(limit)
  except (OSError, EOFError):
    return ""
  for line in chunk.decode("latin-1").splitlines():
    if line.strip():
      return line.strip()
  return ""


def listing(folder: Path, most: int = 12) -> str:
  names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
  more = f" and {len(names) - most} more" if len(names) > most else ""
  return (", ".join(names[:most]) + more) if names else "nothing"


def sniff(name: str, folder: Path) -> list[Path]:
  """Files of `folder` with a text-like name whose first line is in `name`'s format."""
  pattern = _FIRST_LINE.get(name)
  if pattern is None or not folder.is_dir():
    return []
  return sorted(p for p in folder.iterdir()
                if _is_text_name(p) and pattern.match(first_line(p)))


def find_presplit_pair(folder: Path) -> tuple[Path, Path] | None:
  """`(train, test)` named `train`/`test` with any text-like extension and the
  pre-split line format (`uid i1 i2 ...`), or None.

  Raises:
    FileNotFoundError: several candidates for one of them.
  """
  if not folder.is_dir():
    return None
  found = []
  for stem in ("train", "test"):
    cands = sorted(p for p in folder.iterdir()
                   if _is_text_name(p) and p.name.lower().split(".")[0] == stem
                   and _PRESPLIT_LINE.match(first_line(p)))
    if len(cands) > 1:
      raise FileNotFoundError(f"{folder}: several {stem} files in the pre-split format "
                              f"({', '.join(p.name for p in cands)}); keep one")
    found.append(cands[0] if cands else None)
  return (found[0], found[1]) if all(found) else None
