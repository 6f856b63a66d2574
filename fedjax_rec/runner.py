"""A whole run: train, evaluate each epoch, write results, resume when rerun.

`experiments/train.py` is a thin flag parser around `run`; tests call `run` too.
A workdir holds `config.json`, `metrics.jsonl` (one row per global epoch),
`checkpoint.msgpack` (the whole `SimState`, with a format version and a sha256 checked on
load; the one before it is kept as `checkpoint.prev.msgpack` and resumed from when the
newest is refused) and, once finished, `summary.json`. A run stops (`NonFiniteError`,
naming the epoch) as soon as its state holds NaN or Inf; such a state is never checkpointed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec import checkpoints
from fedjax_rec.aggregators import resolve_kwargs
from fedjax_rec import oom
from fedjax_rec import metrics as metrics_lib
from fedjax_rec import metrics_loo
from fedjax_rec.simulation import Simulator
from fedjax_rec.types import Array


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Attributes:
    every: evaluate every this many global epochs (and after the last).
    ks: cut-offs of Recall/NDCG/Precision.
    er_ks: cut-offs of ER@K (when the run has targets).
    batch_size: users per evaluation batch.
    valid: also rank the validation items (`valid/` metrics; for choosing
      settings, never on test).
    users: rank a fixed, seeded sample of this many benign users (None: all); each
      ranking metric then has its standard error beside it (`<metric>_se`).
    precision: matmul precision of scoring: "fp32", "tf32" or "bf16".
  """

  every: int = 1
  ks: tuple[int, ...] = (20,)
  er_ks: tuple[int, ...] = (5, 10, 20)
  batch_size: int = 256
  valid: bool = False
  users: int | None = None
  precision: str = "fp32"

  @property
  def options(self) -> dict:
    """The keyword arguments `Simulator.evaluate` takes from this config."""
    return dict(ks=self.ks, er_ks=self.er_ks, batch_size=self.batch_size, users=self.users,
                precision=self.precision)


class WorkdirError(ValueError):
  """The workdir holds something this run must not overwrite (or cannot be read)."""


class NonFiniteError(RuntimeError):
  """Training produced non-finite state; the run stops without checkpointing it."""


@jax.jit
def _finite_parts(state) -> dict[str, Array]:
  """Whether every float of the public parameters and of the clients' states is finite."""
  def finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
  return {"public parameters": finite(state.server.params),
          "users' private state": finite(state.clients)}


def check_finite(state, epoch: int) -> None:
  """Raises `NonFiniteError` naming `epoch` (1-based) if `state` holds NaN or Inf.

  Only the host reads the two flags (an oracle check outside the protocol, like
  evaluation); no client state reaches server code.
  """
  bad = [name for name, ok in jax.device_get(_finite_parts(state)).items() if not ok]
  if bad:
    raise NonFiniteError(f"epoch {epoch}: non-finite {' and '.join(bad)}; stopped without "
                         "checkpointing it (lower the learning rates or use a robust "
                         "--aggregator)")


# Fields recorded only when set away from their default (added after records existed).
_ABSENT_UNLESS_SET = ((("inject_faults",), "none"), (("model", "interaction"), "mlp"),
                      (("target_choice",), ""), (("attack_start_epoch",), 0),
                      (("attack_schedule",), "shuffled"), (("attackers_per_round",), 0))


def config_dict(config, dataset_name: str, eval_config: EvalConfig) -> dict:
  """The JSON record of a run (`config.json`; also what run directories are hashed on).

  The aggregator's hyper-parameters are recorded with their defaults filled in
  (`aggregators.resolve_kwargs`), so a run made under an older default is never resumed
  or reused under a newer one. `inject_faults`, the model's `interaction`, the
  `--target` spec (`target_choice`) and the threat-model settings (`attack_start_epoch`,
  `attack_schedule`, `attackers_per_round`) are recorded only when set away from their
  defaults. What each attack knows is in its `attack_kwargs` (e.g. FedRecAttack's
  `known_share`).
  """
  sim = dataclasses.asdict(config)
  sim["aggregator_kwargs"] = resolve_kwargs(config.aggregator, config.aggregator_kwargs)
  for path, default in _ABSENT_UNLESS_SET:  # older records stay valid
    *parents, name = path
    node = sim
    for key in parents:
      node = node.get(key, {})
    if node.get(name, default) == default:
      node.pop(name, None)
  ev = dataclasses.asdict(eval_config)
  for name, default in (("users", None), ("precision", "fp32")):  # likewise
    if ev[name] == default:
      del ev[name]
  return json.loads(json.dumps({"sim": sim, "dataset": dataset_name, "eval": ev}, default=str))


def run(config, dataset, *, workdir: str | Path | None = None,
        eval_config: EvalConfig = EvalConfig(), checkpoint_every: int = 1,
        log: Callable[[str], None] = print, progress: bool = True,
        simulator_factory: Callable = Simulator, num_seeds: int | None = None,
        vmap_size: int | None = None, write: bool = True,
        on_epoch: Callable[[object, list[dict] | None], None] | None = None) -> dict:
  """Trains `config.epochs` global epochs of any task; returns the summary dict.

  With a `workdir`, results are written atomically after every epoch and a rerun
  with the same configuration resumes from the last checkpoint.

  With `num_seeds=S`, the S runs of seeds `config.seed + s` train as one vmapped
  program (`simulation.Simulator`). The workdir keeps one run's layout: `config.json`
  (the base config plus `num_seeds`), `metrics.jsonl` with one row per (epoch,
  replica) carrying a `seed` column, `checkpoint.msgpack` holding the stacked state, and
  `summary.json` with each replica's final row and their mean and standard deviation.

  Args:
    config: the run's configuration (`SimConfig` or `SeqConfig`; its `epochs`,
      `targets`, `seed` are read).
    dataset: the split dataset.
    workdir: results directory, or None.
    eval_config: evaluation settings.
    checkpoint_every: epochs between checkpoints.
    log: where progress lines go.
    progress: log a line before the first (compiling) epoch.
    simulator_factory: `(config, dataset) -> Simulator` of a single run (e.g. one with a
      client mesh); replicas always use `Simulator`.
    num_seeds: None for one run, else S replicas.
    vmap_size: replicas vmapped together (speed, not results).
    write: whether this process writes the workdir (multi-host: process 0 only;
      every process reads it to resume from the same checkpoint).
    on_epoch: called as `on_epoch(state, None)` with the state training starts from and
      `on_epoch(state, rows)` after each epoch with that epoch's rows (e.g. to record
      the embeddings' geometry, `diagnostics.train_tracked`).
  """
  if num_seeds is None:
    sim = simulator_factory(config, dataset)
  else:
    sim = Simulator(config, dataset, num_seeds=num_seeds, vmap_size=vmap_size)
  seeds = sim.seeds if num_seeds is not None else None
  # A single run's simulator returns one summary (metrics dict), replicas one per seed.
  per_replica = (lambda x: [x]) if seeds is None else list
  state = sim.init()
  rows: list[dict] = []
  wd = Path(workdir) if workdir is not None else None
  cfg = config_dict(config, dataset.name, eval_config)
  if num_seeds is not None:
    cfg["num_seeds"] = num_seeds
  if wd is not None:
    state, rows = resume_workdir(wd, cfg, sim, state, log)
    if (wd / "summary.json").exists() and int(np.min(state.epoch)) >= config.epochs:
      log(f"{wd}: already finished ({config.epochs} epochs); nothing to do")
      return json.loads((wd / "summary.json").read_text())
    if write:
      checkpoints.atomic_write_json(wd / "config.json", cfg)
  targets = np.asarray(config.targets, np.int64)
  mostpop = metrics_lib.mostpop_metrics(dataset, ks=eval_config.ks)
  if dataset.eval_negatives is not None:  # leave-one-out
    mostpop = metrics_loo.hit_rate_names(mostpop)
    mostpop.update(metrics_loo.mostpop_sampled(dataset, eval_config.ks))
  log(f"{dataset.summary()}")
  plan = (f"plan: {len(sim.plan.lengths)} length buckets, {sim.plan.num_slots} slots/round; "
          "MostPop " + _fmt(mostpop))
  log(plan if seeds is None else f"{num_seeds} replicas (seeds {seeds[0]}..{seeds[-1]}); {plan}")
  start = int(np.min(state.epoch))
  if on_epoch is not None:
    on_epoch(state, None)
  for epoch in range(start, config.epochs):
    if progress and epoch == start:
      log(f"epoch {epoch + 1}: compiling the round (once per run) ...")
    with oom.memory_guard(config.clients_per_round):  # errors surfacing after dispatch
      state, train_m = sim.run_epoch(state)
    check_finite(state, epoch + 1)
    new = [{"epoch": epoch + 1, **({} if seeds is None else {"seed": seed}),
            **{f"train/{k}": v for k, v in m.items() if k != "epoch"}}
           for seed, m in zip(seeds or (None,), per_replica(train_m))]
    if (epoch + 1) % eval_config.every == 0 or epoch + 1 == config.epochs:
      t0 = time.perf_counter()
      evals = sim.evaluate(state, targets=targets if len(targets) else None,
                           **eval_config.options)
      for row, ev in zip(new, per_replica(evals)):
        row.update({f"test/{k}": v for k, v in ev.items()})
      if eval_config.valid:
        valids = sim.evaluate(state, split="valid", **eval_config.options)
        for row, ev in zip(new, per_replica(valids)):
          row.update({f"valid/{k}": v for k, v in ev.items()})
      seconds = (time.perf_counter() - t0) / len(new)
      for row in new:
        row["eval_seconds"] = seconds
    rows += new
    if on_epoch is not None:
      on_epoch(state, new)
    for row in new:
      log(epoch_line(row) if seeds is None else f"seed {row['seed']}: " + epoch_line(row))
    if wd is not None and write:
      checkpoints.write_jsonl(wd / "metrics.jsonl", rows)
      if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == config.epochs:
        checkpoints.save_checkpoint(wd / checkpoints.CHECKPOINT_NAME, state)
  if seeds is None:
    summary = {"dataset": dataset.name, "epochs": config.epochs,
               "final": {k: v for k, v in rows[-1].items()} if rows else {},
               "mostpop": mostpop,
               "best_recall": max((r.get(f"test/recall@{eval_config.ks[0]}", float("nan"))
                                   for r in rows), default=float("nan"))}
  else:
    summary = replica_summary(rows, dataset.name, config.epochs, seeds, mostpop)
  if wd is not None and write:
    checkpoints.atomic_write_json(wd / "summary.json", summary)
  return summary


def replica_summary(rows: list[dict], dataset_name: str, epochs: int, seeds: tuple[int, ...],
                    mostpop: dict) -> dict:
  """Each replica's last row, and the mean and standard deviation of its numbers."""
  final = [max((r for r in rows if r["seed"] == seed), key=lambda r: r["epoch"], default={})
           for seed in seeds]
  keys = [k for k in final[0] if k not in ("epoch", "seed")] if final and final[0] else []
  values = {k: np.asarray([f.get(k, np.nan) for f in final], np.float64) for k in keys}
  return {"dataset": dataset_name, "epochs": epochs, "seeds": list(seeds), "final": final,
          "mean": {k: float(np.mean(v)) for k, v in values.items()},
          "std": {k: float(np.std(v)) for k, v in values.items()}, "mostpop": mostpop}


def resume_workdir(wd: Path, cfg: dict, sim, state, log):
  """`(state, rows)` to continue from: the checkpoint of a run of config `cfg` in `wd`.

  Raises:
    WorkdirError: `wd` holds another run, or results without a config.
  """
  rows: list[dict] = []
  if wd.exists() and not wd.is_dir():
    raise WorkdirError(f"--workdir={wd} is a file, not a directory: choose another --workdir")
  cfg_path = wd / "config.json"
  if cfg_path.exists():
    try:
      old = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise WorkdirError(f"{cfg_path}: not a fedjax_rec config ({e}); "
                         "refusing to overwrite it: choose another --workdir") from None
    old_seeds = old.get("num_seeds", 1) if isinstance(old, dict) else None
    if old_seeds is not None and old_seeds != cfg.get("num_seeds", 1):
      raise WorkdirError(f"{wd} holds a run with --num_seeds={old_seeds}; "
                         "rerun with that --num_seeds or choose another --workdir")
    if not _same_run(old, cfg):
      raise WorkdirError(f"{wd} holds a run with a different configuration; "
                         "choose another --workdir or delete that one")
    try:
      restored = checkpoints.load_latest_checkpoint(wd / checkpoints.CHECKPOINT_NAME, state, log)
    except checkpoints.CheckpointError as e:
      raise WorkdirError(str(e)) from None
    if restored is not None:
      state = sim.place(restored)
      done = int(jnp.min(state.epoch))  # replicas carry one per seed
      if (wd / "metrics.jsonl").exists():
        rows = [r for r in read_metrics(wd / "metrics.jsonl") if r.get("epoch", 0) <= done]
      log(f"{wd}: resuming after epoch {done}")
  elif wd.exists() and any(wd.iterdir()):
    foreign = sorted(p.name for p in wd.iterdir())[:5]
    if {"metrics.jsonl", checkpoints.CHECKPOINT_NAME, "summary.json"} & set(foreign):
      raise WorkdirError(f"{wd} holds results but no config.json; refusing to overwrite them")
  return state, rows


def _same_run(old, cfg: dict) -> bool:
  """Whether the record `old` is of the run `cfg`. A record older than `target_choice`
  lacks it: the target ids it holds are the same run."""
  if old == cfg:
    return True
  if not (isinstance(old, dict) and isinstance(old.get("sim"), dict)) or (
      "target_choice" in old["sim"]):
    return False
  sim = {k: v for k, v in cfg.get("sim", {}).items() if k != "target_choice"}
  return old == {**cfg, "sim": sim}


def read_metrics(path: Path) -> list[dict]:
  """The rows of a run's `metrics.jsonl`.

  Raises:
    WorkdirError: a line that is not a JSON object (named by file and line).
  """
  try:
    rows = checkpoints.read_jsonl(path)
  except (ValueError, UnicodeDecodeError) as e:
    raise WorkdirError(f"{e}; fix or delete that line, or choose another --workdir") from None
  for lineno, row in enumerate(rows, 1):
    if not isinstance(row, dict):
      raise WorkdirError(f"{path}: row {lineno} is not a JSON object; fix or delete it, or "
                         "choose another --workdir")
  return rows


def _fmt(m: dict) -> str:
  return " ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float))


def epoch_line(row: dict) -> str:
  parts = [f"epoch {row['epoch']:3d}"]
  for k, v in row.items():
    if k.startswith(("test/", "valid/")) and isinstance(v, float):
      parts.append(f"{k.removeprefix('test/')}={v:.4f}")
  parts.append(f"{row['train/seconds']:.2f}s")
  if "eval_seconds" in row:
    parts.append(f"(eval {row['eval_seconds']:.2f}s)")
  if row.get("train/rejected"):
    parts.append(f"rejected={row['train/rejected']:.0f}")
  return " ".join(parts)

