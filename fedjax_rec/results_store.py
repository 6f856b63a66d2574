"""The resumable multi-run store: one CSV, one row per (point, epoch), rewritten atomically.

Every multi-run program (the sweep, the reproduced tables and figures, the FORTRESS
table) keeps its runs the same way: `<workdir>/results.csv` holds the finished points,
and `<workdir>/points/<point id>/` is each point's `runner.run` directory, where a cut
run resumes from its checkpoint (`run_point`).

A point's rows are added in one atomic rewrite (temp file + rename, `fedjax_rec.checkpoints`),
and only if its id is absent, so after a crash at any moment every finished point is
in the file exactly once and an unfinished one not at all. Every row carries the
marker column `MARKER_COLUMN = FORMAT`: a file without it (a foreign CSV, a corrupt
file) is refused and never overwritten.

Columns: the marker, `point_id`, the owner's key columns (the sweep's grid keys, a
table's dataset, method and seed, ...), `num_malicious`, `epoch`, then the runner's
metrics (`train/...`, `test/...`). A store opened without keys reads them from the file.
Floats are written with `repr` precision, which pandas' parser reads back exactly,
so a value survives the file bit for bit (tested).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from fedjax_rec import checkpoints, runner

FORMAT = "fedjax_rec.results.v1"
MARKER_COLUMN = "results_format"
ID_COLUMN = "point_id"
STORE_NAME = "results.csv"
POINTS_DIR = "points"
_TAIL = ("num_malicious", "epoch")
_STRING_COLUMNS = (MARKER_COLUMN, ID_COLUMN, "dataset", "method", "attack", "defense",
                   "preset", "target", "encoder")


class StoreError(ValueError):
  """The results file is not a fedjax_rec results store (it is left untouched)."""


class ResultsStore:
  """A results CSV at `path`; validated on open, appended to one point at a time.

  Args:
    path: the CSV.
    keys: the columns that describe a point, in order. None: those of the file (a
      store opened to read), or none for a new file.
  """

  def __init__(self, path: str | os.PathLike, keys: tuple[str, ...] | None = None):
    self.path = Path(path)
    self.keys = keys
    self._frame = self._load()

  @property
  def key_columns(self) -> tuple[str, ...]:
    return (MARKER_COLUMN, ID_COLUMN) + tuple(self.keys or ()) + _TAIL

  def _refuse(self, why: str) -> StoreError:
    return StoreError(f"{self.path} is not a fedjax_rec results store ({why}); refusing to "
                      "read or overwrite it: move it away or choose another --workdir")

  def _load(self) -> pd.DataFrame:
    if not self.path.exists():
      return pd.DataFrame(columns=list(self.key_columns))
    if not self.path.is_file():
      raise self._refuse("not a regular file")
    try:
      frame = pd.read_csv(self.path, keep_default_na=False, na_values=[""],
                          dtype={c: str for c in _STRING_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError) as e:
      raise self._refuse(f"unreadable as CSV: {str(e).splitlines()[0] if str(e) else e!r}")
    if self.keys is None and {ID_COLUMN, *_TAIL} <= set(frame.columns):
      cols = list(frame.columns)
      self.keys = tuple(cols[cols.index(ID_COLUMN) + 1:cols.index(_TAIL[0])])
    missing = [c for c in self.key_columns if c not in frame.columns]
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

  def point_dir(self, name: str) -> Path:
    """Where the point called `name` runs: `<the store's folder>/points/<name>`."""
    if not name or name != Path(name).name or name.startswith("."):
      raise ValueError(f"point directory {name!r} is not a plain directory name")
    return self.path.parent / POINTS_DIR / name

  def rows(self, pid: str) -> list[dict[str, Any]]:
    """A finished point's epoch rows: its metric columns (those other points alone
    have, empty for every one of its rows, left out)."""
    sub = self._frame[self._frame[ID_COLUMN] == pid]
    metrics = [c for c in sub.columns if (c not in self.key_columns or c == "epoch")
               and sub[c].notna().any()]
    return sub[metrics].to_dict("records")

  def append(self, pid: str, point: dict[str, Any], num_malicious: int,
             rows: list[dict[str, Any]]) -> bool:
    """Adds one finished point's epoch rows; returns False (and writes nothing) if present.

    Args:
      pid: the point's id (e.g. `grid.point_id`); also its directory name under
        `points/` when run by `run_point`.
      point: its key columns' values.
      num_malicious: attackers the run had.
      rows: the runner's `metrics.jsonl` rows (each with `epoch`).
    """
    if pid in self.done_ids():
      return False
    if not rows:
      raise ValueError(f"point {pid} has no metric rows")
    if self.keys is None:
      self.keys = tuple(point)
    head = {MARKER_COLUMN: FORMAT, ID_COLUMN: pid, **{k: point[k] for k in self.keys},
            "num_malicious": num_malicious}
    new = pd.DataFrame([{**head, **row} for row in rows])
    frame = pd.concat([self._frame, new], ignore_index=True) if len(self._frame) else new
    rest = sorted(c for c in frame.columns if c not in self.key_columns)
    frame = frame[list(self.key_columns) + rest]
    checkpoints.atomic_write_text(self.path, frame.to_csv(index=False))
    self._frame = frame
    return True


def run_point(store: ResultsStore, pid: str, point: dict[str, Any], config, dataset, *,
              eval_config: runner.EvalConfig = runner.EvalConfig(),
              checkpoint_every: int = 1, log: Callable[[str], None] = print,
              dirname: str | None = None, **run_kwargs) -> list[dict[str, Any]]:
  """One point's epoch rows: read back when the store has it, else run and stored.

  The run's directory is `<store's folder>/points/<dirname or pid>`: a point cut short resumes
  there from its last checkpoint, and its rows reach the store in one atomic rewrite
  once it has finished.

  Args:
    store: the multi-run store.
    pid: the point's id.
    point: its key columns' values.
    dirname: its directory's name (default: `pid`, which must then be a plain name).
    config, dataset: what `runner.run` trains.
    eval_config, checkpoint_every, log, run_kwargs: passed to `runner.run`.
  """
  if pid not in store.done_ids():
    pdir = store.point_dir(dirname or pid)
    runner.run(config, dataset, workdir=pdir, eval_config=eval_config,
               checkpoint_every=checkpoint_every, log=log, **run_kwargs)
    store.append(pid, point, config.num_malicious,
                 checkpoints.read_jsonl(pdir / "metrics.jsonl"))
  return store.rows(pid)
