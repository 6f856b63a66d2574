r"""Speed of the simulator, side by side in one process; writes BENCHMARKS.md.

  python -m experiments.benchmark                 # ML-1M, both presets
  python -m experiments.benchmark --epochs=3 --out=BENCHMARKS.md
  python -m experiments.benchmark --scaling      # seconds per round against round size
  python -m experiments.benchmark --suite=device  # the accelerator rows (benchmarks/gpu.sh)

For each configuration: seconds per global epoch (median over `--epochs` after
one warm-up epoch that compiles), client updates per second, padding efficiency
(real samples / padded samples), and the floor: one fused forward and backward
pass of the same model over all the epoch's samples in a single batch. The
ratio epoch / floor is what the simulator itself costs.

What a user pays every epoch is training plus evaluation, so each row also times
one evaluation (all metrics of the run, ER@K included where it attacks) against
its own floor: one jitted pass of the model over every (user, item) pair with a
top-20 per user. The whole-run rows time `runner.run` end to end: 20 global epochs
with evaluation after every one, compilation included.
"""

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
from absl import app
from absl import flags

from experiments import benchmark_scaling
from experiments.eval_floor import eval_seconds
from fedjax_rec import runner
from fedjax_rec.tasks.ncf.client import LocalConfig
from fedjax_rec.data.loaders import default_data_dir, load_dataset
from fedjax_rec.server import ServerConfig
from fedjax_rec.models import ncf
from fedjax_rec.tasks.ncf.presets import get_preset
from fedjax_rec.simulation import Simulator
from fedjax_rec.tasks.ncf.config import SimConfig

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 3, "Timed epochs per configuration (after one warm-up).")
flags.DEFINE_string("out", "BENCHMARKS.md", "Markdown file whose epoch section is rewritten "
                    "(other sections are kept; '' to skip).")
flags.DEFINE_list("only", [], "Run only the configurations whose name contains one of these.")
flags.DEFINE_string("data_dir", None, "ML-1M directory (default $FEDJAX_REC_DATA/ml-1m).")
flags.DEFINE_integer("seeds_benchmark", 0, "S > 1: instead, time S vmapped replicas against "
                     "S sequential runs (experiments/benchmark_seeds.py).")
flags.DEFINE_bool("pairs", True, "Also time each issue target (CL4FedRec vs Original, each "
                  "robust aggregator vs FedAvg) as interleaved epochs A, B, A, B, ... so that "
                  "load drift on a shared machine cancels out of the ratio.")
flags.DEFINE_enum("suite", "cpu", ["cpu", "device"], "cpu: every row below. device: the "
                  "accelerator rows (ML-1M `paper` and `ahum-reference`, CL4FedRec, a "
                  "10k-user x 12k-item synthetic catalogue, whole runs, the memory guard) in "
                  "a few minutes, written to the 'device' section with the device's name.")
flags.DEFINE_bool("whole_run", True, "Also time whole runs (20 epochs, evaluation every "
                  "epoch, compile included) of `paper` and `ahum-reference` on the pre-split.")
flags.DEFINE_bool("scaling", False, "Run the scaling benchmark instead (`--scaling_*` flags; "
                  "experiments/benchmark_scaling.py).")


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
  lines = ["## Whole runs: training and evaluation every epoch", "", _stamp(), "",
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
                                              targets=(_least_popular(pre),)), pre)


def _least_popular(dataset) -> int:
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


def pair_configurations(spec):
  """(comparison, A, B, dataset, target): the issues' speed targets on ML-1M (`spec`)."""
  yield ("CL4FedRec / Original", get_preset("paper"), get_preset("paper", method="cl4fedrec"),
         spec, 3.0)
  for agg in ("median", "trimmed_mean", "krum", "hics", "norm_bound"):
    yield (f"{agg} / FedAvg", get_preset("paper"), get_preset("paper", aggregator=agg), spec,
           1.5)


def pairs_markdown(pairs: list[Pair]) -> str:
  lines = [
      "## Speed targets as interleaved ratios (ML-1M, `paper` preset)", "", _stamp(), "",
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


def configurations(spec, pre):
  """(name, config, dataset, note) rows on ML-1M: `spec` (random split), `pre` (pre-split)."""
  yield "paper / original / fedavg", get_preset("paper"), spec, ""
  yield "paper-onestep / original / fedavg", get_preset("paper-onestep"), spec, ""
  yield ("paper / L=5 b=64 adam delta", get_preset(
      "paper", local=LocalConfig(local_epochs=5, batch_size=64, optimizer="adam", lr=0.01,
                                 user_lr=0.01, upload="delta"),
      server=ServerConfig("sgd", 1.0), convention="mean"), spec,
         "mini-batch local training (search candidate c3)")
  yield ("ahum-reference / original / fedavg", get_preset("ahum-reference"), pre,
         "pre-split data")
  yield ("paper / cl4fedrec / fedavg", get_preset("paper", method="cl4fedrec"), spec,
         "target: <= 3x original")
  yield ("paper / rcl4fedrec / fedavg", get_preset("paper", method="rcl4fedrec"), spec, "")
  for agg in ("median", "trimmed_mean", "krum", "hics", "norm_bound"):
    yield (f"paper / original / {agg}", get_preset("paper", aggregator=agg), spec,
           "target: <= 1.5x fedavg")
  yield ("ahum-reference / original / median", get_preset("ahum-reference", aggregator="median"),
         pre, "pre-split data")
  yield ("paper / original / fedavg / uniform rounds",
         get_preset("paper", round_assignment="uniform"), spec, "Algorithm 1's plain shuffle")


def _stamp() -> str:
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
      f"## {title}", "", _stamp(), "",
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


def main(argv):
  del argv
  if FLAGS.suite == "device":
    from experiments.benchmark_device import main_device  # pylint: disable=import-outside-toplevel
    main_device(FLAGS.data_dir or default_data_dir("ml-1m"), FLAGS.epochs, FLAGS.out)
    return
  if FLAGS.scaling:
    benchmark_scaling.main_scaling()
    return
  ml1m = FLAGS.data_dir or default_data_dir("ml-1m")
  if FLAGS.seeds_benchmark > 1:
    from experiments.benchmark_seeds import main_seeds  # pylint: disable=import-outside-toplevel
    main_seeds(ml1m, FLAGS.seeds_benchmark, FLAGS.epochs)
    return
  selected = lambda name: not FLAGS.only or any(o in name for o in FLAGS.only)
  spec = load_dataset("ml-1m", ml1m, seed=0)  # loaded once for both groups
  pre = load_dataset("ml-1m-presplit", ml1m, seed=0, valid_frac=0.0)
  rows = [bench(name, config, dataset, FLAGS.epochs, note)
          for name, config, dataset, note in configurations(spec, pre) if selected(name)]
  whole = [bench_whole_run(name, config, dataset)
           for name, config, dataset in whole_run_configurations(pre)
           if FLAGS.whole_run and selected(name)]
  pairs = [bench_pair(name, config_a, config_b, dataset, FLAGS.epochs, target)
           for name, config_a, config_b, dataset, target in pair_configurations(spec)
           if FLAGS.pairs and selected(name)]
  from experiments.benchmark_seq import seq_benchmark_rows  # pylint: disable=import-outside-toplevel
  seq_rows = []
  for r in seq_benchmark_rows(epochs=FLAGS.epochs, only=FLAGS.only):
    seq_rows.append(Row(r.name, r.dataset, r.epoch_s, r.updates_per_s, r.padding_eff,
                        r.floor_s, r.compile_s, r.note, r.eval_s, r.eval_floor_s))
    print(f"{r.name:40s} epoch {r.epoch_s:7.3f}s  floor {r.floor_s:7.3f}s  ratio {r.ratio:5.2f}",
          flush=True)
  if FLAGS.out:
    from fedjax_rec.checkpoints import replace_section  # pylint: disable=import-outside-toplevel
    # Each group rewrites only its own section, so `--only` keeps the other groups.
    if pairs:
      replace_section(FLAGS.out, "ratios", pairs_markdown(pairs))
      print(f"wrote the 'ratios' section of {FLAGS.out}")
    if whole:
      replace_section(FLAGS.out, "whole-runs", whole_run_markdown(whole))
      print(f"wrote the 'whole-runs' section of {FLAGS.out}")
    for section, title, group in (("epochs", "Global epochs (NCF)", rows),
                                  ("sequential", "Global epochs (sequential)", seq_rows)):
      if group:
        replace_section(FLAGS.out, section, to_markdown(group, title))
        print(f"wrote the {section!r} section of {FLAGS.out}")

if __name__ == "__main__":
  app.run(main)
