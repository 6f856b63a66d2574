"""The benchmark's measuring and reporting, without flags (`experiments.benchmark`,
`experiments.benchmark_device` and the tests import it)."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.eval_floor import eval_seconds
from fedjax_rec import runner
from fedjax_rec.models import ncf
from fedjax_rec.simulation import Simulator
from fedjax_rec.tasks.ncf.config import SimConfig
from fedjax_rec.tasks.ncf.presets import get_preset


@dataclasses.dataclass
class Row:
  name: str
  dataset: str
  epoch_s: float
  updates_per_s: float
  padding_eff: float
  floor_s: float
  compile_s: float
  note: str = ""
  eval_s: float = float("nan")
  eval_floor_s: float = float("nan")

  @property
  def ratio(self) -> float:
    return self.epoch_s / self.floor_s if self.floor_s > 0 else float("nan")

  @property
  def eval_ratio(self) -> float:
    return self.eval_s / self.eval_floor_s if self.eval_floor_s > 0 else float("nan")


def floor_seconds(config: SimConfig, sim: Simulator, reps: int = 3) -> float:
  """`L` fused forward+backward passes over every sample of an epoch, each in one batch.

  `L` is the preset's local epochs. Duplicate negatives are merged into weighted rows,
  exactly as in the clients.
  """
  data = sim.data.client_data
  users = jnp.asarray(np.repeat(np.arange(data.num_users), data.num_rows))
  items = jnp.asarray(data.item)
  labels = jnp.asarray(data.label)
  weights = jnp.asarray(data.weight)
  state = sim.init()
  params = (state.server.params, state.clients.user_emb)

  @jax.jit
  def step(params):
    def loss(params):
      public, user_emb = params
      logits = ncf.logits(config.model, public.net, user_emb[users], public.item_emb[items])
      bce = optax.sigmoid_binary_cross_entropy(logits, labels)
      return jnp.sum(weights * bce) / jnp.sum(weights)
    return jax.grad(loss)(params)

  jax.block_until_ready(step(params))
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(step(params))
    times.append(time.perf_counter() - t0)
  return float(np.median(times)) * config.local.local_epochs


def bench(name: str, config: SimConfig, dataset, epochs: int, note: str = "") -> Row:
  t0 = time.perf_counter()
  sim = Simulator(config, dataset)
  state = sim.init()
  state, m = sim.run_epoch(state)  # compiles
  compile_s = time.perf_counter() - t0
  secs, eff = [], m["padding_efficiency"]
  for _ in range(epochs):
    state, m = sim.run_epoch(state)
    secs.append(m["seconds"])
  epoch_s = float(np.median(secs))
  n_clients = dataset.num_users + config.num_malicious
  eval_s, eval_floor_s = eval_seconds(sim, state)
  row = Row(name, dataset.name, epoch_s, n_clients / epoch_s, eff,
            floor_seconds(config, sim), compile_s, note, eval_s, eval_floor_s)
  print(f"{name:40s} epoch {row.epoch_s:7.3f}s  floor {row.floor_s:7.3f}s  "
        f"ratio {row.ratio:5.2f}  eval {eval_s:6.3f}s / floor {eval_floor_s:6.3f}s = "
        f"{row.eval_ratio:4.2f}  eff {row.padding_eff:.3f}  "
        f"{row.updates_per_s:9.0f} updates/s  (setup+compile {compile_s:.1f}s)", flush=True)
  return row


@dataclasses.dataclass
class WholeRun:
  name: str
  dataset: str
  epochs: int
  seconds: float
  train_s: float
  eval_s: float


def bench_whole_run(name: str, config: SimConfig, dataset, epochs: int = 20) -> WholeRun:
  """`runner.run` of `epochs` global epochs, evaluating after each, compile included."""
  config = dataclasses.replace(config, epochs=epochs)
  rows = []
  t0 = time.perf_counter()
  runner.run(config, dataset, eval_config=runner.EvalConfig(every=1), log=lambda line: None,
             progress=False, on_epoch=lambda state, new: rows.extend(new or []))
  seconds = time.perf_counter() - t0
  run = WholeRun(name, dataset.name, epochs, seconds,
                 sum(r["train/seconds"] for r in rows), sum(r["eval_seconds"] for r in rows))
  print(f"{name:40s} whole run of {epochs} epochs {seconds:7.1f}s (training {run.train_s:.1f}s, "
        f"evaluation {run.eval_s:.1f}s)", flush=True)
  return run


def whole_run_markdown(runs: list[WholeRun]) -> str:
  lines = ["## Whole runs: training and evaluation every epoch", "", stamp(), "",
           "`runner.run` end to end: set-up, compilation, every epoch's training and its "
           "evaluation (Recall/NDCG/Precision@20, ER@5/10/20 where the run attacks).", "",
           "| run | data | epochs | wall s | training s | evaluation s | wall s / epoch |",
           "|---|---|---:|---:|---:|---:|---:|"]
  for r in runs:
    lines.append(f"| {r.name} | {r.dataset} | {r.epochs} | {r.seconds:.1f} | {r.train_s:.1f} | "
                 f"{r.eval_s:.1f} | {r.seconds / r.epochs:.2f} |")
  return "\n".join(lines) + "\n"


def whole_run_configurations(pre):
  yield "paper / original", get_preset("paper"), pre
  yield ("ahum-reference / a_hum", get_preset("ahum-reference", attack="a_hum", num_malicious=6,
                                              targets=(least_popular(pre),)), pre)


def least_popular(dataset) -> int:
  return int(np.argmin(np.bincount(dataset.train.items, minlength=dataset.num_items)))


@dataclasses.dataclass
class Pair:
  name: str
  target: float
  a_s: list
  b_s: list

  @property
  def ratios(self) -> np.ndarray:
    return np.asarray(self.b_s) / np.asarray(self.a_s)

  @property
  def ratio(self) -> float:
    return float(np.median(self.ratios))


def bench_pair(name: str, config_a: SimConfig, config_b: SimConfig, dataset, epochs: int,
               target: float) -> Pair:
  """Seconds per epoch of B over A, from epochs run alternately (A, B, A, B, ...).

  Each pair of neighbouring epochs sees about the same load, so their ratio is robust to
  drift; the reported ratio is the median over the pairs.
  """
  sims = [Simulator(c, dataset) for c in (config_a, config_b)]
  states = [s.init() for s in sims]
  for k, sim in enumerate(sims):
    states[k], _ = sim.run_epoch(states[k])  # compiles
  times = ([], [])
  for _ in range(epochs):
    for k, sim in enumerate(sims):
      states[k], m = sim.run_epoch(states[k])
      times[k].append(m["seconds"])
  pair = Pair(name, target, *times)
  print(f"{name:40s} A {np.median(pair.a_s):7.3f}s  B {np.median(pair.b_s):7.3f}s  "
        f"ratio {pair.ratio:5.2f} (pairs {pair.ratios.min():.2f}-{pair.ratios.max():.2f}, "
        f"target <= {target})", flush=True)
  return pair


def pairs_markdown(pairs: list[Pair]) -> str:
  lines = [
      "## Speed targets as interleaved ratios (ML-1M, `paper` preset)", "", stamp(), "",
      "A and B are built side by side and their timed epochs alternate (A, B, A, B, ...) "
      "after one compiling epoch each, so load from other jobs falls on both alike; the "
      "ratio is the median of the per-pair ratios B / A (range over the pairs beside it).",
      "", "| comparison (B / A) | A s / epoch | B s / epoch | ratio | pair range | target | met |",
      "|---|---:|---:|---:|---|---:|---|"]
  for p in pairs:
    lines.append(f"| {p.name} | {np.median(p.a_s):.3f} | {np.median(p.b_s):.3f} | "
                 f"{p.ratio:.2f} | {p.ratios.min():.2f}-{p.ratios.max():.2f} | "
                 f"<= {p.target} | {'yes' if p.ratio <= p.target else 'no'} |")
  return "\n".join(lines) + "\n"


def machine() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
  return (f"{cpu}; {os.cpu_count()} cores; JAX {jax.__version__} on "
          f"{jax.default_backend()} ({devices})")


def stamp() -> str:
  """'Written by ... on <date> at <revision>.' and the machine, for a section's head."""
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  try:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, check=False).stdout.strip()
  except OSError:
    rev = ""
  args = " ".join(shlex.quote(a) for a in sys.argv[1:])
  command = "python -m experiments.benchmark" + (f" {args}" if args else "")
  return (f"Written by `{command}` on {when}"
          + (f" at {rev}" if rev else "") + f".\n\nMachine: {machine()}.")


def to_markdown(rows: list[Row], title: str = "Global epochs") -> str:
  lines = [
      f"## {title}", "", stamp(), "",
      "Seconds per global epoch are the median of timed epochs after a warm-up epoch "
      "(which compiles). *Floor*: one fused forward and backward of the same model over "
      "all of the epoch's samples in a single batch; *ratio* = epoch / floor. *Eval s*: "
      "one evaluation of the run's metrics (median of 3 after a warm-up); *eval floor*: "
      "one jitted pass of the model over every (user, item) pair with a top-20 per user. "
      "*Padding efficiency* = real samples / padded samples.", "",
      "| configuration | data | train s / epoch | eval s | train + eval s | client updates / s "
      "| padding eff. | floor s | epoch / floor | eval floor s | eval / floor "
      "| set-up + compile s | note |",
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
  for r in rows:
    lines.append(f"| {r.name} | {r.dataset} | {r.epoch_s:.3f} | {r.eval_s:.3f} | "
                 f"{r.epoch_s + r.eval_s:.3f} | {r.updates_per_s:,.0f} | "
                 f"{r.padding_eff:.3f} | {r.floor_s:.3f} | {r.ratio:.2f} | "
                 f"{r.eval_floor_s:.3f} | {r.eval_ratio:.2f} | {r.compile_s:.1f} | "
                 f"{r.note} |")
  return "\n".join(lines) + "\n"
