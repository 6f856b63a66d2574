r"""S vmapped replicas against S sequential runs: the `--seeds_benchmark` mode of benchmark.py.

  python -m experiments.benchmark --seeds_benchmark=4 --epochs=1

For the `paper` preset on ML-1M, seeds 0..S-1: each sequential run is built,
warmed up by one epoch (which compiles) and timed over `--epochs` epochs, one
after the other; then a `Simulator(num_seeds=S)` of the same S seeds does the same,
all vmapped and one replica at a time inside the program (`vmap_size=1`).
Printed: the replicas' epoch over the sequential runs' epochs summed (steady
state; below 1: the vmapped program is faster), the same for set-up plus the
first (compiling) epoch, where S separate runs compile S times, and for a whole
run of the preset's epochs.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from fedjax_rec.data.loaders import load_dataset
from fedjax_rec.tasks.ncf.presets import get_preset
from fedjax_rec.simulation import Simulator
from fedjax_rec.tasks.ncf.config import SimConfig


@dataclasses.dataclass(frozen=True)
class Timing:
  """Attributes:
    epoch_s: seconds per epoch (median of the timed epochs).
    setup_s: set-up and the first (compiling) epoch.
    padding_eff: real rows / padded rows (mean over seeds).
  """

  epoch_s: float
  setup_s: float
  padding_eff: float

  def run_s(self, epochs: int) -> float:
    """A whole `epochs`-epoch run: set-up and the compiling epoch, then the others."""
    return self.setup_s + (epochs - 1) * self.epoch_s


@dataclasses.dataclass
class SeedsResult:
  """Attributes:
    num_seeds: S.
    sequential: each sequential run's timing.
    replicas: the replicas' timing (all S together) by `vmap_size` (None: all vmapped).
  """

  num_seeds: int
  sequential: list[Timing]
  replicas: dict[int | None, Timing]

  @property
  def sequential_total(self) -> Timing:
    return Timing(sum(t.epoch_s for t in self.sequential),
                  sum(t.setup_s for t in self.sequential),
                  float(np.mean([t.padding_eff for t in self.sequential])))

  def ratio(self, vmap_size: int | None) -> float:
    """Steady state: the replicas' epoch over the sequential runs' epochs summed."""
    return self.replicas[vmap_size].epoch_s / self.sequential_total.epoch_s

  def run_ratio(self, vmap_size: int | None, epochs: int) -> float:
    return self.replicas[vmap_size].run_s(epochs) / self.sequential_total.run_s(epochs)

  def lines(self, epochs: int) -> list[str]:
    seq = self.sequential_total
    out = [f"{self.num_seeds} sequential runs: {seq.epoch_s:.2f} s per epoch in all "
           f"({', '.join(f'{t.epoch_s:.2f}' for t in self.sequential)}); set-up + first "
           f"(compiling) epoch {seq.setup_s:.1f} s; padding eff. {seq.padding_eff:.3f}"]
    for size, t in self.replicas.items():
      name = f"{self.num_seeds} replicas, " + ("all vmapped" if size is None else
                                                f"vmap_size={size}")
      out.append(f"{name}: {t.epoch_s:.2f} s per epoch; set-up + first (compiling) epoch "
                 f"{t.setup_s:.1f} s; padding eff. {t.padding_eff:.3f}; replicas / "
                 f"sequential: {self.ratio(size):.3f} per epoch, {self.run_ratio(size, 1):.3f} "
                 f"for set-up + first epoch, {self.run_ratio(size, epochs):.3f} for a "
                 f"{epochs}-epoch run")
    return out


def _timed(build, epochs: int) -> Timing:
  """Builds `(simulator, state)`, runs the compiling epoch, then times `epochs` more."""
  t0 = time.perf_counter()
  sim, state = build()
  state, _ = sim.run_epoch(state)
  setup = time.perf_counter() - t0
  secs, eff = [], []
  for _ in range(epochs):
    t0 = time.perf_counter()
    state, m = sim.run_epoch(state)
    secs.append(time.perf_counter() - t0)
    summaries = m if isinstance(m, list) else [m]  # replicas: one per seed
    eff.append(np.mean([x["padding_efficiency"] for x in summaries]))
  return Timing(float(np.median(secs)), setup, float(np.mean(eff)))


def _built(sim):
  return sim, sim.init()


def seeds_benchmark(config: SimConfig, dataset, num_seeds: int, epochs: int,
                    vmap_sizes=(None, 1), log=print) -> SeedsResult:
  """Times `num_seeds` sequential `Simulator` runs, then replicas of them (`Simulator(num_seeds=S)`)."""
  sequential = []
  for s in range(num_seeds):
    seed = config.seed + s
    t = _timed(lambda: _built(Simulator(dataclasses.replace(config, seed=seed), dataset)),
               epochs)
    sequential.append(t)
    log(f"sequential seed {seed}: {t.epoch_s:.2f} s/epoch (set-up + compile {t.setup_s:.1f} s)")
  replicas = {}
  for size in vmap_sizes:
    t = _timed(lambda: _built(Simulator(config, dataset, num_seeds=num_seeds, vmap_size=size)), epochs)
    replicas[size] = t
    log(f"{num_seeds} replicas, vmap_size={size}: {t.epoch_s:.2f} s/epoch "
        f"(set-up + compile {t.setup_s:.1f} s)")
  return SeedsResult(num_seeds, sequential, replicas)


def main_seeds(data_dir, num_seeds: int, epochs: int) -> SeedsResult:
  """`--seeds_benchmark`: the `paper` preset on ML-1M; prints the comparison."""
  dataset = load_dataset("ml-1m", data_dir, seed=0)
  config = get_preset("paper")
  result = seeds_benchmark(config, dataset, num_seeds, max(epochs, 1))
  print("\n".join(result.lines(config.epochs)), flush=True)
  return result
