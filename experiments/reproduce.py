r"""Reproduces the CL4FedRec paper's tables and figures, resumably.

  python -m experiments.reproduce --table=2 --workdir=runs/repro
  python -m experiments.reproduce --figure=6 --seeds=3
  python -m experiments.reproduce --figure=efficacy     # A-hum vs defenses, ahum-reference
  python -m experiments.reproduce --table=2 --dataset=ml-1m --preset=paper-onestep  # earlier
  python -m experiments.reproduce --peer=fedrecattack --epochs=30   # FedRecAttack's log

Every (configuration, seed) is a point of the multi-run store in `--workdir`
(`results_store`: `results.csv` and `points/<point>/`), shared by all tables and
figures, so an interrupted command resumes where it stopped and finished runs are
read back. Each table is printed with the paper's numbers beside ours (mean ±
std over seeds) and written as CSV and Markdown; figures also as PNG.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from absl import app
from absl import flags

from experiments import reproduce_fortress, reproduce_peer
from experiments.repro_specs import EXPERIMENTS, Experiment
from fedjax_rec import checkpoints, hparams, plots
from fedjax_rec.results_store import STORE_NAME, ResultsStore, run_point
from fedjax_rec.tasks.ncf import centralized, methods
from fedjax_rec import metrics as metrics_lib
from fedjax_rec.attacks import select_targets
from fedjax_rec.data.loaders import load_dataset, popularity_all
from fedjax_rec.tasks.ncf.presets import PRESETS, get_preset
from fedjax_rec.geometry import singular_values
from fedjax_rec.data.readers import DataFormatError
from fedjax_rec.runner import EvalConfig, NonFiniteError, WorkdirError, config_dict
from fedjax_rec.simulation import Simulator
from fedjax_rec.tasks.ncf.config import default_num_malicious

FLAGS = flags.FLAGS
flags.DEFINE_enum("paper", "cl4fedrec", ["cl4fedrec", "fortress"],
                  "Paper to reproduce; fortress: its main table (experiments.reproduce_fortress).")
flags.DEFINE_enum("peer", None, list(reproduce_peer.PEERS), "A peer's published log beside "
                  "ours (experiments.reproduce_peer); fedrecattack: ML-100K, 5% attackers.")
flags.DEFINE_string("table", None, "Table to reproduce: 2, 3, 4 or 5.")
flags.DEFINE_string("figure", None, "Figure to reproduce: 2, 4, 5, 6 or efficacy.")
flags.DEFINE_integer("seeds", 3, "Seeds per configuration.")
flags.DEFINE_integer("epochs", None, "Override the preset's global epochs.")
flags.DEFINE_string("workdir", "runs/reproduce", "Results directory.")
flags.DEFINE_string("data_dir", None, "Dataset directory (default: ../shared/data/<dataset>).")
flags.DEFINE_integer("eval_every", 1, "Evaluate every N epochs (figures need 1).")
flags.DEFINE_enum("dataset", None, ["ml-1m-presplit", "ml-1m"], "Data of the CL4FedRec "
                  "tables: the pre-split the paper's numbers fit (default) or the random split.")
flags.DEFINE_enum("preset", None, sorted(PRESETS), "Preset of the CL4FedRec tables and "
                  "figures (default: each one's own, `paper` for all but the efficacy "
                  "figure); paper-onestep with --dataset=ml-1m: the earlier measurements.")
flags.DEFINE_bool("references", True, "Add MostPop and the centralized NCF (test metrics at "
                  "its best validation epoch) beside each table's rows.")


def _config(exp: Experiment, overrides: dict, dataset, seed: int):
  over = dict(overrides)
  attack = over.pop("attack", "none")
  pop = popularity_all(dataset)
  targets = tuple(int(t) for t in select_targets(pop, "least_popular", seed))
  cfg = get_preset(exp.preset, seed=seed, targets=targets, **over)
  # A default spelled out is the default: the point is the one the other tables share.
  cfg = dataclasses.replace(cfg, method_kwargs=hparams.without_defaults(
      cfg.method_kwargs, methods.PARAMS[cfg.method]))
  if attack != "none":
    cfg = dataclasses.replace(cfg, attack=attack, num_malicious=max(
        1, default_num_malicious(dataset.num_users, exp.malicious_share)))
  if FLAGS.epochs:
    cfg = dataclasses.replace(cfg, epochs=FLAGS.epochs)
  return cfg


@functools.lru_cache(maxsize=4)
def _dataset(name: str, seed: int, valid_frac: float | None = None):
  if valid_frac is None:
    valid_frac = 0.0 if name.endswith("presplit") else 0.1
  return load_dataset(name, FLAGS.data_dir, seed=seed, valid_frac=valid_frac)


def references(exp: Experiment, workdir: Path, seeds: int) -> list[dict]:
  """MostPop and the centralized NCF per seed, each cached in `workdir/references/`.

  The centralized row trains on the split with a validation share (as the search
  did) and reports test metrics at its best validation epoch.
  """
  out = []
  for seed in range(seeds):
    path = workdir / "references" / f"{exp.dataset}-{exp.preset}-s{seed}.json"
    if path.exists():
      out.append(json.loads(path.read_text()))
      continue
    dataset = _dataset(exp.dataset, seed, 0.1)
    model = get_preset(exp.preset).model
    central = centralized.reference_row(dataset, model, centralized.CentralConfig(seed=seed),
                            log=lambda line: None)
    row = {"seed": seed, "mostpop": metrics_lib.mostpop_metrics(_dataset(exp.dataset, seed)),
           "centralized": central}
    checkpoints.atomic_write_json(path, row)
    out.append(row)
  return out


def reference_table(exp: Experiment, refs: list[dict]) -> pd.DataFrame:
  rows = []
  for name in ("mostpop", "centralized"):
    row = {"configuration": {"mostpop": "MostPop", "centralized": "centralized NCF"}[name]}
    for metric in exp.metrics:
      vals = np.array([r[name].get(metric, np.nan) for r in refs], float)
      row[f"{metric} (ours)"] = (f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f}"
                                 if len(vals) > 1 else f"{np.mean(vals):.4f} (1 seed)")
      row[f"{metric} (paper)"] = ""
    rows.append(row)
  return pd.DataFrame(rows)


class Run(NamedTuple):
  label: str
  seed: int
  config: Any
  workdir: Path


def run_experiment(exp: Experiment, workdir: Path, seeds: int) -> tuple[pd.DataFrame, list]:
  """Runs (or resumes) every configuration and seed; returns per-epoch rows and the runs.

  Points train seed by seed (every row's seed 0 first), so a reproduction cut short
  already has one seed of every row; rows and runs come back row by row.
  """
  done = {}
  total = len(exp.rows) * seeds
  eval_config = EvalConfig(every=FLAGS.eval_every)
  store = ResultsStore(workdir / STORE_NAME, STORE_KEYS)
  for seed in range(seeds):
    dataset = _dataset(exp.dataset, seed)
    for i, (label, overrides, _) in enumerate(exp.rows):
      cfg = _config(exp, overrides, dataset, seed)
      pid = point_name(exp, cfg, eval_config)
      prefix = f"[{len(done) + 1}/{total}] {exp.name}: {label} seed {seed}"
      rows = pd.DataFrame(run_point(
          store, pid, {"dataset": exp.dataset, "method": cfg.method, "seed": seed}, cfg,
          dataset, eval_config=eval_config,
          log=lambda line, prefix=prefix: print(f"{prefix} | {line}", flush=True)))
      rows["label"], rows["seed"] = label, seed
      done[i, seed] = rows, Run(label, seed, cfg, store.point_dir(pid))
  order = sorted(done)
  return (pd.concat([done[k][0] for k in order], ignore_index=True),
          [done[k][1] for k in order])


def spectra(exp: Experiment, runs: list, workdir: Path) -> pd.DataFrame:
  """Figure 4b: the sorted singular values of each run's final item table `V`.

  Each run's spectrum is kept beside the store (`<workdir>/spectra/<point>.json`, kept
  with the results) once taken, so a point read back from `results.csv` without its
  checkpoint (`points/` is not kept) still has its spectrum.
  """
  out = []
  for r in runs:
    cache = workdir / "spectra" / f"{r.workdir.name}.json"  # the point's name
    if cache.exists():
      values = json.loads(cache.read_text())["singular_values"]
    else:
      sim = Simulator(r.config, _dataset(exp.dataset, r.seed))
      state = checkpoints.load_checkpoint(r.workdir / "checkpoint.msgpack", sim.init())
      values = [float(v) for v in singular_values(state.server.params.item_emb,
                                                  normalize=True)]
      checkpoints.atomic_write_json(cache, {"singular_values": values})
    out += [{"label": r.label, "seed": r.seed, "index": i, "singular_value": float(v)}
            for i, v in enumerate(values)]
  return pd.DataFrame(out)


def spectra_figure(exp: Experiment, frame: pd.DataFrame, out: Path) -> None:
  fig, (ax,) = plots.new_figure()
  mean = frame.groupby(["label", "index"]).singular_value.mean().reset_index()
  for label, _, _ in exp.rows:
    sub = mean[mean.label == label]
    ax.plot(sub["index"], sub.singular_value, marker=".", label=label)
  ax.set_xlabel("index")
  ax.set_ylabel("singular value / largest")
  ax.set_title(exp.title.replace("4a", "4b").split(":")[0] + ": spectrum of V", fontsize=9)
  ax.legend(fontsize=7)
  plots.save_figure(fig, out)


STORE_KEYS = ("dataset", "method", "seed")


def point_name(exp: Experiment, cfg, eval_config: EvalConfig) -> str:
  """One point per distinct (dataset, configuration, evaluation): tables share runs.

  Table 3's CL4FedRec row and Table 2's, say, are the same point and train once. The
  digest is of the run's own `config.json` record (`runner.config_dict`).
  """
  key = json.dumps(config_dict(cfg, exp.dataset, eval_config), sort_keys=True)
  digest = hashlib.sha256(key.encode()).hexdigest()[:12]
  return f"{exp.dataset}-{cfg.method}-s{cfg.seed}-{digest}"


def table(exp: Experiment, frame: pd.DataFrame) -> pd.DataFrame:
  """Each row's metrics at its last epoch: mean ± sample std over seeds, paper beside."""
  last = frame.sort_values("epoch").groupby(["label", "seed"]).tail(1)
  out = []
  for label, _, paper in exp.rows:
    sub = last[last.label == label]
    row = {"configuration": label}
    for metric in exp.metrics:
      col = f"test/{metric}"
      vals = sub[col].to_numpy(float) if col in sub else np.array([np.nan])
      row[f"{metric} (ours)"] = (f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f}"
                                 if len(vals) > 1
                                 else f"{np.mean(vals):.4f} (1 seed)")
      row[f"{metric} (paper)"] = paper.get(metric, "")
    out.append(row)
  return pd.DataFrame(out)


def figure(exp: Experiment, frame: pd.DataFrame, out: Path) -> None:
  """A hyper-parameter sweep as one curve (± seed std); per-epoch curves as small multiples.

  Per-epoch curves get a grid of panels, one column per row of the experiment, so no line
  can hide another: each panel draws its line (mean over seeds, ± one std shaded) over the
  first line in grey, the reference (Figure 2: Original). Rows labelled `panel / line`
  (Figure 5: attack / defense) get one grid row per prefix, each with its own reference
  (Figure 5: no defense).
  """
  metric = f"test/{exp.metrics[0]}"
  if exp.x_axis:  # a sweep over one hyper-parameter: final metric vs value
    fig, (ax,) = plots.new_figure()
    last = frame.sort_values("epoch").groupby(["label", "seed"]).tail(1)
    xs = [float(label.split("=")[1]) for label, _, _ in exp.rows]
    vals = [last[last.label == label][metric] for label, _, _ in exp.rows]
    # The seed spread beside the mean: differences within it are not effects.
    ax.errorbar(xs, [v.mean() for v in vals], yerr=[v.std(ddof=1) if len(v) > 1 else 0.0
                                                   for v in vals], marker="o", capsize=3)
    ax.set_xlabel(exp.x_axis)
    ax.set_ylabel(exp.metrics[0])
    fig.suptitle(exp.title, fontsize=9)
    plots.save_figure(fig, out)
    return
  labels = [label for label, _, _ in exp.rows]
  bounds = (0.0, 1.0) if exp.metrics[0].startswith("er@") else None  # a share: 0-1
  split = lambda label: tuple(label.split(" / ", 1)) if " / " in label else ("", label)
  cells = {split(label): label for label in labels}
  panels = list(dict.fromkeys(panel for panel, _ in cells))
  lines = list(dict.fromkeys(line for _, line in cells))
  curve = lambda ax, label, legend, style, band=True: plots.mean_curve(
      ax, frame[frame.label == label], metric, legend, style, band, bounds)
  fig, axes = plots.new_figure(ncols=len(lines), nrows=len(panels), size=(2.6, 2.2))
  for i, panel in enumerate(panels):
    reference = cells.get((panel, lines[0]))
    for j, line in enumerate(lines):
      ax, label = axes[i * len(lines) + j], cells.get((panel, line))
      if j and reference:
        curve(ax, reference, lines[0], {"color": "0.6", "linestyle": "--"}, band=False)
      if label:
        curve(ax, label, line, plots.line_style(j))
      plots.epoch_axis(ax)
      if bounds:
        ax.set_ylim(bounds[0] - 0.05, bounds[1] + 0.05)
      ax.set_title(label or line, fontsize=8)
      ax.set_xlabel("global epoch" if i == len(panels) - 1 else "")
      ax.set_ylabel(exp.metrics[0] if j == 0 else "")
      if i == 0 and j == 1:
        ax.legend(fontsize=6, loc="upper right")
  fig.suptitle(exp.title, fontsize=9)
  plots.save_figure(fig, out)


def selected(exp: Experiment) -> Experiment:
  """The experiment with `--dataset` (ML-1M's two splits only) and `--preset` applied."""
  if FLAGS.dataset and exp.dataset in ("ml-1m", "ml-1m-presplit"):
    exp = exp._replace(dataset=FLAGS.dataset)
  if FLAGS.preset:
    exp = exp._replace(preset=FLAGS.preset)
  return exp


def main(argv):
  """Bad input (flags, data, a workdir it must not overwrite) is one `error:` line, exit 2."""
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.seeds < 1 or FLAGS.eval_every < 1 or (FLAGS.epochs is not None and FLAGS.epochs < 0):
    _fail("--seeds and --eval_every must be >= 1 and --epochs >= 0")
  try:
    _main()
  except (app.UsageError, WorkdirError, NonFiniteError, DataFormatError,
          FileNotFoundError) as e:
    _fail(str(e))


def _fail(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def _main():
  if FLAGS.peer:
    return reproduce_peer.main()
  if FLAGS.paper == "fortress":
    return reproduce_fortress.main()
  names = ([f"table{FLAGS.table}"] if FLAGS.table else []) + (
      [f"figure{FLAGS.figure}"] if FLAGS.figure else [])
  if not names:
    raise app.UsageError("give --table=2|3|4|5 and/or --figure=2|4|5|6|efficacy")
  workdir = Path(FLAGS.workdir)
  for name in names:
    if name not in EXPERIMENTS:
      raise app.UsageError(f"unknown {name}; known: {', '.join(sorted(EXPERIMENTS))}")
    exp = selected(EXPERIMENTS[name])
    frame, runs = run_experiment(exp, workdir, FLAGS.seeds)
    tab = table(exp, frame)
    if FLAGS.references and name.startswith("table"):
      tab = pd.concat([tab, reference_table(exp, references(exp, workdir, FLAGS.seeds))],
                      ignore_index=True)
    md = f"### {exp.title}\n\n{plots.markdown_table(tab)}\n"
    print(md)
    checkpoints.atomic_write_text(workdir / f"{name}.md", md)
    checkpoints.atomic_write_text(workdir / f"{name}.csv", frame.to_csv(index=False))
    if name.startswith("figure"):
      figure(exp, frame, workdir / f"{name}.png")
      print(f"wrote {workdir / (name + '.png')}")
    if exp.spectra:
      spec = spectra(exp, runs, workdir)
      checkpoints.atomic_write_text(workdir / f"{name}b.csv", spec.to_csv(index=False))
      spectra_figure(exp, spec, workdir / f"{name}b.png")
      print(f"wrote {workdir / (name + 'b.png')}")


if __name__ == "__main__":
  app.run(main)
