"""Sweeps: run every point of a grid once, resumably, into a results store.

Layout of a sweep workdir:

  results.csv            the store (`results_store.ResultsStore`): finished points only
  points/<dirname>/      one `runner.run` workdir per point (config, metrics, checkpoint)

A point runs in its own directory, so a sweep killed mid-point resumes that point
from its last checkpoint; its rows reach `results.csv` in one atomic rewrite once it
has finished. Rerunning the same command skips the points already in the store.

Point -> `SimConfig`: the point's preset, with `method`, `aggregator` (= `defense`,
"none" = fedavg), `attack`, `seed`, `epochs`, `clients_per_round`; targets from
`select_targets(popularity_all(dataset), target, seed)` (also used for ER@K without
an attack); `num_malicious = max(1, default_num_malicious(num_users, share))` when
attacked (at least one, so that e.g. ML-100K at 0.1% is still attacked); methods
that take a `popularity` argument get the training interaction counts.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from fedjax_rec import runner
from fedjax_rec.attacks.targets import select_targets
from fedjax_rec.data.dataset import ImplicitDataset
from fedjax_rec.aggregators import make_aggregator
from fedjax_rec.data.loaders import (check_data_present, default_data_dir, load_dataset,
                                     popularity_all)
from fedjax_rec.data.synthetic import SyntheticConfig
from fedjax_rec.grid import GRID_KEYS, point_dirname, point_id
from fedjax_rec.tasks.ncf.methods import TAKES_TRAINING_DATA
from fedjax_rec.tasks.ncf.presets import get_preset
from fedjax_rec.results_store import POINTS_DIR, STORE_NAME, ResultsStore, run_point
from fedjax_rec.tasks.ncf.config import SimConfig, default_num_malicious


class SweepError(ValueError):
  """The sweep cannot start as asked (e.g. a previous sweep is there and resume is off)."""


@dataclasses.dataclass(frozen=True)
class SweepSettings:
  """What every point of a sweep shares.

  Attributes:
    data_root: folder holding `<dataset>/` raw files (None: `loaders.default_data_root`).
    synthetic: generator settings of the "synthetic" dataset.
    eval_config: evaluation settings of every run.
    checkpoint_every: epochs between a point's checkpoints.
    resume: continue a sweep found in the workdir; False refuses a non-empty one.
    embed_dim: model embedding size override (None: the preset's).
    hidden: MLP widths override (None: the preset's).
    max_buckets: length buckets per round override (None: the preset's).
  """

  data_root: str | None = None
  synthetic: SyntheticConfig = SyntheticConfig()
  eval_config: runner.EvalConfig = runner.EvalConfig()
  checkpoint_every: int = 1
  resume: bool = True
  embed_dim: int | None = None
  hidden: tuple[int, ...] | None = None
  max_buckets: int | None = None


def _method_kwargs(method: str, dataset: ImplicitDataset) -> tuple[tuple[str, Any], ...]:
  """`(("popularity", counts),)` for the methods that take item popularity (recorded in
  the point's config, so its run directory names the counts it trained with)."""
  if method not in TAKES_TRAINING_DATA:
    return ()
  return (("popularity", tuple(int(c) for c in dataset.item_popularity())),)


def build_config(point: dict[str, Any], dataset: ImplicitDataset,
                 settings: SweepSettings = SweepSettings()) -> SimConfig:
  """The `SimConfig` of one resolved grid point on its loaded dataset."""
  base = get_preset(point["preset"])
  model = base.model
  if settings.embed_dim is not None:
    model = dataclasses.replace(model, embed_dim=settings.embed_dim)
  if settings.hidden is not None:
    model = dataclasses.replace(model, hidden=tuple(settings.hidden))
  attacked = point["attack"] != "none"
  num_malicious = (max(1, default_num_malicious(dataset.num_users, point["malicious_share"]))
                   if attacked else 0)
  targets = select_targets(popularity_all(dataset), point["target"], seed=point["seed"])
  method_kwargs = _method_kwargs(point["method"], dataset)
  extra = {} if settings.max_buckets is None else {"max_buckets": settings.max_buckets}
  return dataclasses.replace(
      base, model=model, method=point["method"], method_kwargs=method_kwargs,
      aggregator="fedavg" if point["defense"] == "none" else point["defense"],
      attack=point["attack"], num_malicious=num_malicious,
      targets=tuple(int(t) for t in targets), seed=point["seed"], epochs=point["epochs"],
      clients_per_round=point["clients_per_round"], **extra)


def check_workdir(workdir: str | Path, resume: bool) -> ResultsStore:
  """Opens the workdir's store; with `resume=False` refuses a workdir holding a sweep."""
  wd = Path(workdir)
  if wd.exists() and not wd.is_dir():
    raise SweepError(f"--workdir={wd} is a file, not a directory: choose another --workdir")
  store = ResultsStore(wd / STORE_NAME, GRID_KEYS)  # refuses a foreign or corrupt results file
  if not resume:
    started = [p.name for p in (wd / POINTS_DIR).iterdir()] if (wd / POINTS_DIR).is_dir() else []
    if (wd / STORE_NAME).exists() or started:
      raise SweepError(f"{wd} holds a previous sweep ({len(store.done_ids())} finished "
                       f"point(s), {len(started)} started); pass --resume to continue it or "
                       "choose a new --workdir")
  return store


def validate_points(points: list[dict[str, Any]],
                    settings: SweepSettings = SweepSettings()) -> None:
  """Checks every point before the first runs: its data is on disk, its values are valid.

  Cheap: data files are located, not read; each point's preset, epochs, clients per round,
  defense and attack are checked as `build_config` would combine them.

  Raises:
    FileNotFoundError: a point's dataset is missing (named with the point).
    SweepError: a point's values are refused (named with the point).
  """
  for name in dict.fromkeys(p["dataset"] for p in points):
    data_dir = (Path(settings.data_root) / default_data_dir(name).name
                if settings.data_root is not None and name != "synthetic" else None)
    first = next(point_id(p) for p in points if p["dataset"] == name)
    try:
      check_data_present(name, data_dir)
    except FileNotFoundError as e:
      raise FileNotFoundError(f"grid point {first} (and every point of dataset={name}): "
                              f"{e}") from None
  for point in points:
    try:
      base = get_preset(point["preset"])
      dataclasses.replace(base, epochs=point["epochs"],
                          clients_per_round=point["clients_per_round"],
                          method=point["method"], attack=point["attack"],
                          aggregator="fedavg" if point["defense"] == "none" else point["defense"],
                          num_malicious=1 if point["attack"] != "none" else 0, targets=(0,))
      make_aggregator("fedavg" if point["defense"] == "none" else point["defense"], 1)
    except (ValueError, KeyError) as e:
      raise SweepError(f"grid point {point_id(point)}: {e}") from None


def load_point_dataset(name: str, seed: int,
                       settings: SweepSettings = SweepSettings()) -> ImplicitDataset:
  """The dataset `name` split with `seed` (as `experiments.train` does)."""
  data_dir = None
  if settings.data_root is not None and name != "synthetic":
    data_dir = Path(settings.data_root) / default_data_dir(name).name
  return load_dataset(name, data_dir, seed=seed, synthetic=settings.synthetic)


class _DatasetCache:
  """The last loaded dataset (points are ordered so that seeds change fastest)."""

  def __init__(self, settings: SweepSettings):
    self.settings = settings
    self.key = None
    self.value = None

  def get(self, name: str, seed: int) -> ImplicitDataset:
    if self.key != (name, seed):
      self.value = load_point_dataset(name, seed, self.settings)
      self.key = (name, seed)
    return self.value


def _fmt_seconds(s: float) -> str:
  s = int(round(s))
  return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def run_sweep(points: list[dict[str, Any]], workdir: str | Path,
              settings: SweepSettings = SweepSettings(),
              log: Callable[[str], None] = print) -> pd.DataFrame:
  """Runs every point not yet in the store, in order; returns `summarize` of the grid.

  Args:
    points: resolved grid points (`grid.parse_grid`).
    workdir: the sweep's directory (created if needed).
    settings: what every point shares.
    log: where progress lines go.
  """
  wd = Path(workdir)
  store = check_workdir(wd, settings.resume)
  ids = [point_id(p) for p in points]
  if len(set(ids)) != len(ids):
    raise SweepError("the grid has repeated points")
  todo = [p for p, i in zip(points, ids) if i not in store.done_ids()]
  validate_points(todo, settings)
  log(f"sweep: {len(points)} points, {len(points) - len(todo)} already done, "
      f"{len(todo)} to run -> {wd}")
  datasets = _DatasetCache(settings)
  t_start, epochs_run = time.perf_counter(), 0
  epochs_left = sum(p["epochs"] for p in todo)
  for n, point in enumerate(todo):
    pid = point_id(point)
    eta = ("?" if not epochs_run else
           _fmt_seconds((time.perf_counter() - t_start) / epochs_run * epochs_left))
    log(f"[{len(points) - len(todo) + n}/{len(points)} done, {len(todo) - n} left, "
        f"~{eta} left] {pid}")
    dataset = datasets.get(point["dataset"], point["seed"])
    config = build_config(point, dataset, settings)
    run_point(store, pid, point, config, dataset, eval_config=settings.eval_config,
              checkpoint_every=settings.checkpoint_every, log=lambda s: log("  " + s),
              dirname=point_dirname(point))
    epochs_run += point["epochs"]
    epochs_left -= point["epochs"]
  log(f"sweep: {len(points)}/{len(points)} points done in "
      f"{_fmt_seconds(time.perf_counter() - t_start)}")
  return summarize(store.frame(), ids)


def summarize(frame: pd.DataFrame, ids: list[str] | None = None) -> pd.DataFrame:
  """Mean and std over seeds of every `test/` metric at each point's last epoch.

  Args:
    frame: store rows (`ResultsStore.frame()`).
    ids: restrict to these point ids (None: all).

  Returns:
    One row per configuration (the grid keys but `seed`), columns
    `(metric, "mean" | "std")` plus `("seeds", "n")`; std is the sample std (NaN
    for one seed). Rows are in the store's order.
  """
  if ids is not None:
    frame = frame[frame["point_id"].isin(ids)]
  last = frame.loc[frame.groupby("point_id", sort=False)["epoch"].idxmax()]
  keys = [k for k in GRID_KEYS if k != "seed"]
  metrics = sorted((c for c in last.columns if c.startswith("test/") and last[c].notna().any()),
                   key=_metric_order)
  grouped = last.groupby(keys, sort=False, dropna=False)
  out = grouped[metrics].agg(["mean", "std"]).astype(np.float64)
  out[("seeds", "n")] = grouped["seed"].count()
  return out


def _metric_order(name: str) -> tuple:
  """recall, ndcg, precision, then the rest (ER last); cut-offs in numeric order."""
  family, _, k = name.removeprefix("test/").partition("@")
  rank = {"recall": 0, "ndcg": 1, "precision": 2, "hr": 3, "er": 5}.get(family, 4)
  return (rank, family, int(k) if k.isdigit() else 0, name)


def format_summary(summary: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
  """`summarize` as strings `mean ± std`, dropping index levels that never vary."""
  cols = {}
  for metric in dict.fromkeys(m for m, _ in summary.columns if m != "seeds"):
    mean, std = summary[(metric, "mean")], summary[(metric, "std")]
    cols[metric] = [f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"
                    for m, s in zip(mean, std)]
  cols["seeds"] = list(summary[("seeds", "n")])
  table = pd.DataFrame(cols, index=summary.index).reset_index()
  keys = list(summary.index.names)
  varying = [k for k in keys if table[k].nunique(dropna=False) > 1] or keys
  return table.drop(columns=[k for k in keys if k not in varying]).set_index(varying)
