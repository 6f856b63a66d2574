r"""Scaling: seconds per round against clients per round, on large synthetic data.

  python -m experiments.benchmark --scaling            # 1,000,000 users, 100,000 items
  python -m experiments.benchmark --scaling --scaling_users=100000 \
      --scaling_items=10000 --scaling_clients=256,1024,4096,16384

The data come from the synthetic generator's O(interactions) sampler. One
simulator holds every client's rows; each round size gets its stratified plan
(one compilation), and the timed quantity is one round: dispatch, the jitted
local updates, aggregation and the server step, up to `block_until_ready`. The
first round of a size compiles; `s / round` is the median of the rounds after it.
Peak memory is the process's resident high-water mark over that size's rounds
(reset before them where Linux allows) and, on accelerators, the device's
`peak_bytes_in_use`. Writes a Markdown table and a log-log PNG.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import os
import subprocess
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from absl import flags

from fedjax_rec import checkpoints
from fedjax_rec import plots
from fedjax_rec import scheduling
from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
from fedjax_rec.oom import MemoryLimitError, memory_guard
from fedjax_rec.tasks.ncf.presets import get_preset
from fedjax_rec.simulation import Simulator

FLAGS = flags.FLAGS
flags.DEFINE_integer("scaling_users", 1_000_000, "Scaling: users (clients) in the data.")
flags.DEFINE_integer("scaling_items", 100_000, "Scaling: catalogue size.")
flags.DEFINE_float("scaling_mean_activity", 20.0, "Scaling: mean interactions per user.")
flags.DEFINE_list("scaling_clients", ["256", "1024", "4096", "16384", "65536"],
                  "Scaling: clients per round to time.")
flags.DEFINE_integer("scaling_rounds", 3, "Scaling: timed rounds per size (after one that "
                     "compiles).")
flags.DEFINE_string("scaling_preset", "paper", "Scaling: model and optimizer preset.")
flags.DEFINE_string("scaling_out", "benchmarks/scaling.md", "Scaling: Markdown table to "
                    "write; the figure goes beside it with a .png suffix.")

SLOPE_FROM = 4096  # the claim: at most linear from this round size up


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
  """What the scaling benchmark runs."""

  num_users: int = 1_000_000
  num_items: int = 100_000
  mean_activity: float = 20.0
  clients: tuple[int, ...] = (256, 1024, 4096, 16384, 65536)
  timed_rounds: int = 3
  preset: str = "paper"
  seed: int = 0

  def synthetic(self) -> SyntheticConfig:
    return SyntheticConfig(num_users=self.num_users, num_items=self.num_items,
                           num_clusters=max(12, self.num_items // 2000),
                           mean_activity=self.mean_activity, min_activity=5,
                           max_activity=min(500, self.num_items // 4))


@dataclasses.dataclass(frozen=True)
class ScalingRow:
  """One round size. Bytes are None where not measured."""

  clients_per_round: int
  rounds_per_epoch: int
  real_rows: float  # mean over the timed rounds
  padded_rows: int
  round_s: float  # median wall time
  round_min_s: float
  cpu_s: float  # median process CPU time (all threads): robust to a shared machine
  compile_s: float
  rss_before: int | None
  rss_peak: int | None
  device_before: int | None
  device_peak: int | None
  error: str = ""

  @property
  def round_bytes(self) -> int | None:
    """Memory the rounds added to what was resident: the device's where measured, else RSS."""
    if self.device_peak is not None and self.device_before is not None:
      return self.device_peak - self.device_before
    if self.rss_peak is not None and self.rss_before is not None:
      return self.rss_peak - self.rss_before
    return None


@dataclasses.dataclass(frozen=True)
class ScalingResult:
  config: ScalingConfig
  dataset: str
  data_s: float
  setup_s: float
  rows: list[ScalingRow]

  def slope(self, from_clients: int = SLOPE_FROM, field: str = "round_s") -> float | None:
    """Least-squares slope of log(s / round) on log(clients / round), sizes >= `from_clients`.

    `field`: "round_s" (medians), "round_min_s" (fastest rounds) or "cpu_s".
    """
    ok = [r for r in self.rows if not r.error and r.clients_per_round >= from_clients]
    if len(ok) < 2:
      return None
    x = np.log([r.clients_per_round for r in ok])
    y = np.log([getattr(r, field) for r in ok])
    return float(np.polyfit(x, y, 1)[0])


# ------------------------------------------------------------------ memory probes


def _status_bytes(field: str) -> int | None:
  """`VmRSS` / `VmHWM` of this process from /proc, in bytes (None off Linux)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def _reset_peak_rss() -> bool:
  """Resets the resident high-water mark (Linux `clear_refs`); whether it could."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _peak_rss() -> int | None:
  peak = _status_bytes("VmHWM")
  if peak is None:
    import resource  # pylint: disable=import-outside-toplevel
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return peak


def _device_bytes(field: str) -> int | None:
  """`bytes_in_use` / `peak_bytes_in_use` of the first device (None on CPU)."""
  stats = jax.local_devices()[0].memory_stats()
  return int(stats[field]) if stats and field in stats else None


# ------------------------------------------------------------------ the measurement


def run_scaling(config: ScalingConfig, log: Callable[[str], None] = print) -> ScalingResult:
  """Times one round per size in `config.clients`, on one simulator and dataset.

  Sizes above the number of users are skipped; after a size runs out of memory
  the larger ones are not tried.
  """
  t0 = time.perf_counter()
  dataset = load_synthetic(config.synthetic(), seed=config.seed, scalable=True)
  data_s = time.perf_counter() - t0
  log(f"{dataset.summary()} ({data_s:.1f}s)")
  sizes = sorted(b for b in config.clients if b <= dataset.num_users)
  sim_config = get_preset(config.preset, clients_per_round=sizes[0], epochs=1,
                          seed=config.seed)
  t0 = time.perf_counter()
  sim = Simulator(sim_config, dataset)
  state = sim.init()
  jax.block_until_ready(state)
  setup_s = time.perf_counter() - t0
  log(f"simulator set-up (negatives, client rows, placement, state) {setup_s:.1f}s")
  server, clients, attackers = state.server, state.clients, state.attackers
  num_rows = sim.data.client_data.num_rows
  key = jax.random.key(config.seed)
  rows = []
  for b in sizes:
    rounds = scheduling.stratified_rounds(num_rows, b, np.random.default_rng([config.seed, b]))
    plan = scheduling.stratified_plan(num_rows, b, max_buckets=sim_config.max_buckets)
    gc.collect()
    _reset_peak_rss()
    rss_before, device_before = _status_bytes("VmRSS"), _device_bytes("bytes_in_use")
    times, cpu, real = [], [], []
    try:
      for r in range(1 + config.timed_rounds):
        users = rounds[r % len(rounds)]
        t0, c0 = time.perf_counter(), time.process_time()
        with memory_guard(b):
          (server, clients, attackers, out), _ = sim.apply_round(
              server, clients, attackers, users, key=jax.random.fold_in(key, r), plan=plan)
          jax.block_until_ready((server.params, out))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        real.append(int(num_rows[users].sum()))
    except MemoryLimitError as e:
      nan = float("nan")
      rows.append(ScalingRow(b, len(rounds), nan, plan.padded_samples, nan, nan, nan, nan,
                             rss_before, _peak_rss(), device_before,
                             _device_bytes("peak_bytes_in_use"), str(e)))
      log(f"{b:>7} clients/round: {e}")
      break
    timed = times[1:] or times
    round_s = float(np.median(timed))
    row = ScalingRow(b, len(rounds), float(np.mean(real[1:] or real)), plan.padded_samples,
                     round_s, float(np.min(timed)), float(np.median(cpu[1:] or cpu)),
                     times[0] - round_s, rss_before, _peak_rss(), device_before,
                     _device_bytes("peak_bytes_in_use"))
    rows.append(row)
    log(f"{b:>7} clients/round: {round_s:8.3f} s/round (CPU {row.cpu_s:.3f} s)  "
        f"{b / round_s:10,.0f} updates/s  padded rows {plan.padded_samples:,}  "
        f"compile {row.compile_s:.1f}s  peak RSS {_gib(row.rss_peak)} GiB")
  return ScalingResult(config, dataset.summary(), data_s, setup_s, rows)


# ------------------------------------------------------------------ outputs


def _gib(x: float | None) -> str:
  return "–" if x is None else f"{x / 2**30:.2f}"


def _machine() -> str:
  cpu = "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
  except OSError:
    pass
  kinds = ", ".join(sorted({d.device_kind for d in jax.devices()}))
  return (f"{cpu}, {os.cpu_count()} cores visible; JAX {jax.__version__} on "
          f"{jax.default_backend()} ({jax.device_count()} × {kinds})")


def _revision() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
  except OSError:
    return ""


def to_markdown(result: ScalingResult, command: str, figure: str | None = None) -> str:
  """The table, the slope from `SLOPE_FROM` up, and a link to `figure`."""
  c = result.config
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  rev = _revision()
  lines = [
      "# Scaling: seconds per round against clients per round", "",
      f"`{command}`, {when}" + (f", at {rev}" if rev else "") + ".", "",
      f"Machine: {_machine()}.", "",
      f"Data: {result.dataset} (synthetic, O(interactions) sampler, mean activity "
      f"{c.mean_activity:g}), generated and split in {result.data_s:.1f} s; simulator set-up "
      f"(negatives, client rows, placement, state) {result.setup_s:.1f} s. Model: preset "
      f"`{c.preset}`; stratified rounds; FedAvg.", "",
      f"*s / round*: median (and fastest) wall time of {c.timed_rounds} rounds after the "
      "one that compiles; one round = the jitted client updates, aggregation and server "
      "step, host dispatch included. *CPU s*: the process's CPU time (all threads) per "
      "round, median: the work done, whatever else shares the machine. *Peak RSS*: the "
      "process's resident high-water mark over that size's rounds, the compiling one "
      "included (it holds the resident data, client rows and state, and at small sizes "
      "mostly the compiler's memory); *device peak*: `peak_bytes_in_use` on an "
      "accelerator. *Bytes / padded row*: what the rounds added to the memory resident "
      "before them (device where measured, else RSS), per padded row: flat when memory "
      "follows the interactions. *[B, items] f32*: what one dense clients × items float32 "
      "array would take; nothing of that size is allocated.", "",
      "| clients / round | rounds / epoch | real rows / round | padded rows / round "
      "| s / round | fastest s | CPU s / round | client updates / s | est. s / epoch "
      "| compile s | peak RSS GiB | device peak GiB | bytes / padded row "
      "| [B, items] f32 GiB |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in result.rows:
    dense = r.clients_per_round * c.num_items * 4
    per_row = "–" if r.round_bytes is None else f"{r.round_bytes / r.padded_rows:,.0f}"
    if r.error:
      lines.append(f"| {r.clients_per_round:,} | {r.rounds_per_epoch:,} | – | "
                   f"{r.padded_rows:,} | {r.error} | | | | | | {_gib(r.rss_peak)} | "
                   f"{_gib(r.device_peak)} | | {_gib(dense)} |")
      continue
    lines.append(
        f"| {r.clients_per_round:,} | {r.rounds_per_epoch:,} | {r.real_rows:,.0f} | "
        f"{r.padded_rows:,} | {r.round_s:.3f} | {r.round_min_s:.3f} | {r.cpu_s:.3f} | "
        f"{r.clients_per_round / r.round_s:,.0f} | {r.round_s * r.rounds_per_epoch:,.0f} | "
        f"{r.compile_s:.1f} | {_gib(r.rss_peak)} | {_gib(r.device_peak)} | {per_row} | "
        f"{_gib(dense)} |")
  slope, slope_min = result.slope(), result.slope(field="round_min_s")
  slope_cpu = result.slope(field="cpu_s")
  lines.append("")
  if slope is None:
    lines.append(f"Slope from {SLOPE_FROM:,} clients / round up: fewer than two sizes measured.")
  else:
    verdict = "at most linear" if slope <= 1.0 else "super-linear"
    lines.append(f"Slope of log(s / round) on log(clients / round) from {SLOPE_FROM:,} up "
                 f"(least squares): **{slope:.2f}** on median wall time ({verdict}), "
                 f"{slope_min:.2f} on the fastest rounds, {slope_cpu:.2f} on CPU time.")
  if figure:
    lines += ["", f"![seconds per round against clients per round]({figure})"]
  return "\n".join(lines) + "\n"


def plot_scaling(result: ScalingResult):
  """Log-log seconds per round against clients per round, with a slope-1 reference."""
  ok = [r for r in result.rows if not r.error]
  fig, (ax,) = plots.new_figure(size=(5.5, 4.0))
  b = np.asarray([r.clients_per_round for r in ok], np.float64)
  t = np.asarray([r.round_s for r in ok])
  ax.loglog(b, t, "o-", label="measured")
  if len(ok):
    anchor = next((i for i, r in enumerate(ok) if r.clients_per_round >= SLOPE_FROM), 0)
    ax.loglog(b, t[anchor] * b / b[anchor], "--", color="gray",
              label=f"linear through {int(b[anchor]):,}")
  ax.set(xlabel="clients per round", ylabel="seconds per round",
         title=f"{result.dataset.split(':')[0]} ({jax.default_backend()})")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize="small")
  return fig


def write_outputs(result: ScalingResult, out: str | Path, command: str) -> tuple[Path, Path]:
  """Writes `out` (Markdown) and the figure beside it; returns both paths."""
  out = Path(out)
  png = out.with_suffix(".png")
  plots.save_figure(plot_scaling(result), png)
  checkpoints.atomic_write_text(out, to_markdown(result, command, figure=png.name))
  return out, png


def main_scaling() -> None:
  """`--scaling`: the flags into a `ScalingConfig`, then run and write."""
  config = ScalingConfig(num_users=FLAGS.scaling_users, num_items=FLAGS.scaling_items,
                         mean_activity=FLAGS.scaling_mean_activity,
                         clients=tuple(int(b) for b in FLAGS.scaling_clients),
                         timed_rounds=FLAGS.scaling_rounds, preset=FLAGS.scaling_preset)
  result = run_scaling(config)
  for field in ("round_s", "round_min_s", "cpu_s"):
    slope = result.slope(field=field)
    print(f"slope of log(s/round) on log(clients/round) from {SLOPE_FROM} up ({field}): "
          + ("n/a" if slope is None else f"{slope:.3f}"))
  if FLAGS.scaling_out:
    command = ("python -m experiments.benchmark --scaling "
               f"--scaling_users={config.num_users} --scaling_items={config.num_items} "
               f"--scaling_clients={','.join(str(b) for b in config.clients)}")
    for path in write_outputs(result, FLAGS.scaling_out, command):
      print(f"wrote {path}")
