"""The sweep's results store: one CSV, one row per (point, epoch), rewritten atomically.

A point's rows are added in one atomic rewrite (temp file + rename, `fedjax_rec.checkpoints`),
and only if its id is absent, so after a crash at any moment every finished point is
in the file exactly once and an unfinished one not at all. Every row carries the
marker column `MARKER_COLUMN = FORMAT`: a file without it (a foreign CSV, a corrupt
file) is refused and never overwritten.

Columns: the marker, `point_id`, the grid keys (`fedjax_rec.grid.GRID_KEYS`),
`num_malicious`, `epoch`, then the runner's metrics (`train/...`, `test/...`).
Floats are written with `repr` precision, which pandas' parser reads back exactly,
so a value survives the file bit for bit (tested).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from fedjax_rec import checkpoints
from fedjax_rec.grid import GRID_KEYS

FORMAT = "fedjax_rec.results.v1"
MARKER_COLUMN = "results_format"
ID_COLUMN = "point_id"
KEY_COLUMNS = (MARKER_COLUMN, ID_COLUMN) + GRID_KEYS + ("num_malicious", "epoch")
_STRING_COLUMNS = (MARKER_COLUMN, ID_COLUMN, "dataset", "method", "attack", "defense",
                   "preset", "target")


class StoreError(ValueError):
  """The results file is not a fedjax_rec results store (it is left untouched)."""


class ResultsStore:
  """A results CSV at `path`; validated on open, appended to one point at a time."""

  def __init__(self, path: str | os.PathLike):
    self.path = Path(path)
    self._frame = self._load()

  def _refuse(self, why: str) -> StoreError:
    return StoreError(f"{self.path} is not a fedjax_rec results store ({why}); refusing to "
                      "read or overwrite it: move it away or choose another --workdir")

  def _load(self) -> pd.DataFrame:
    if not self.path.exists():
      return pd.DataFrame(columns=list(KEY_COLUMNS))
    if not self.path.is_file():
      raise self._refuse("not a regular file")
    try:
      frame = pd.read_csv(self.path, keep_default_na=False, na_values=[""],
                          dtype={c: str for c in _STRING_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError) as e:
      raise self._refuse(f"unreadable as CSV: {str(e).splitlines()[0] if str(e) else e!r}")
    missing = [c for c in KEY_COLUMNS if c not in frame.columns]
    if missing:
      raise self._refuse(f"missing column(s) {', '.join(missing)}")
    if not (frame[MARKER_COLUMN] == FORMAT).all():
      raise self._refuse(f"column {MARKER_COLUMN} is not {FORMAT!r} on every row")
    if frame.duplicated([ID_COLUMN, "epoch"]).any():
      raise self._refuse("a (point_id, epoch) pair appears twice")
    return frame

  def frame(self) -> pd.DataFrame:
    """All rows (a copy), in the order they were added."""
    return self._frame.copy()

  def done_ids(self) -> set[str]:
    """Ids of the points already in the store."""
    return set(self._frame[ID_COLUMN])

  def append(self, pid: str, point: dict[str, Any], num_malicious: int,
             rows: list[dict[str, Any]]) -> bool:
    """Adds one finished point's epoch rows; returns False (and writes nothing) if present.

    Args:
      pid: the point's id (`grid.point_id`).
      point: its resolved grid keys.
      num_malicious: attackers the run had.
      rows: the runner's `metrics.jsonl` rows (each with `epoch`).
    """
    if pid in self.done_ids():
      return False
    if not rows:
      raise ValueError(f"point {pid} has no metric rows")
    head = {MARKER_COLUMN: FORMAT, ID_COLUMN: pid, **{k: point[k] for k in GRID_KEYS},
            "num_malicious": num_malicious}
    new = pd.DataFrame([{**head, **row} for row in rows])
    frame = pd.concat([self._frame, new], ignore_index=True) if len(self._frame) else new
    rest = sorted(c for c in frame.columns if c not in KEY_COLUMNS)
    frame = frame[list(KEY_COLUMNS) + rest]
    checkpoints.atomic_write_text(self.path, frame.to_csv(index=False))
    self._frame = frame
    return True
