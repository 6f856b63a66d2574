r"""S vmapped replicas against S sequential runs: the `--seeds_benchmark` mode of benchmark.py.

  python -m experiments.benchmark --seeds_benchmark=4 --epochs=1

For the `paper` preset on ML-1M, seeds 0..S-1: each sequential run is built,
warmed up by one epoch (which compiles) and timed over `--epochs` epochs, one
after the other; then one `ReplicaSimulator` of the same S seeds does the same.
The ratio of the replicas' epoch to the sum of the sequential runs' epochs is
what one vmapped program saves (below 1: it is faster). Set-up and compilation
are reported apart: S separate processes would compile S times.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from fedjax_rec.data.loaders import load_dataset
from fedjax_rec.presets import get_preset
from fedjax_rec.replicas import ReplicaSimulator
from fedjax_rec.simulation import SimConfig, Simulator


@dataclasses.dataclass
class SeedsResult:
  """Attributes:
    num_seeds: S.
    sequential_s: each sequential run's seconds per epoch (median of the timed epochs).
    replicas_s: the vmapped replicas' seconds per epoch (all S together).
    sequential_setup_s: set-up + warm-up (compiling) epoch of each sequential run.
    replicas_setup_s: the same for the replicas.
    padding_eff: each sequential run's, and the replicas' shared plan's (mean over seeds).
  """

  num_seeds: int
  sequential_s: list[float]
  replicas_s: float
  sequential_setup_s: list[float]
  replicas_setup_s: float
  padding_eff: tuple[float, float]

  @property
  def ratio(self) -> float:
    return self.replicas_s / sum(self.sequential_s)

  def lines(self) -> list[str]:
    seq = sum(self.sequential_s)
    return [
        f"{self.num_seeds} sequential runs: {seq:.2f} s per epoch in all "
        f"({', '.join(f'{s:.2f}' for s in self.sequential_s)}); set-up + compile "
        f"{sum(self.sequential_setup_s):.1f} s; padding eff. {self.padding_eff[0]:.3f}",
        f"{self.num_seeds} vmapped replicas: {self.replicas_s:.2f} s per epoch; set-up + "
        f"compile {self.replicas_setup_s:.1f} s; padding eff. {self.padding_eff[1]:.3f}",
        f"ratio replicas / sequential = {self.ratio:.3f} per epoch; with set-up and compile "
        f"{(self.replicas_s + self.replicas_setup_s) / (seq + sum(self.sequential_setup_s)):.3f}",
    ]


def _timed(run_epoch, state, epochs: int) -> tuple[float, float, float]:
  """`(warm-up epoch seconds, median timed epoch seconds, padding efficiency)`."""
  t0 = time.perf_counter()
  state, _ = run_epoch(state)
  warm = time.perf_counter() - t0
  secs, eff = [], []
  for _ in range(epochs):
    t0 = time.perf_counter()
    state, m = run_epoch(state)
    secs.append(time.perf_counter() - t0)
    summaries = m if isinstance(m, list) else [m]  # replicas: one per seed
    eff.append(np.mean([x["padding_efficiency"] for x in summaries]))
  return warm, float(np.median(secs)), float(np.mean(eff))


def seeds_benchmark(config: SimConfig, dataset, num_seeds: int, epochs: int,
                    log=print) -> SeedsResult:
  """Times `num_seeds` sequential `Simulator` runs, then one `ReplicaSimulator`."""
  seq_s, seq_setup, seq_eff = [], [], []
  for s in range(num_seeds):
    t0 = time.perf_counter()
    sim = Simulator(dataclasses.replace(config, seed=config.seed + s), dataset)
    state = sim.init()
    build = time.perf_counter() - t0
    warm, epoch_s, eff = _timed(sim.run_epoch, state, epochs)
    del sim, state
    seq_s.append(epoch_s)
    seq_setup.append(build + warm)
    seq_eff.append(eff)
    log(f"sequential seed {config.seed + s}: {epoch_s:.2f} s/epoch "
        f"(set-up + compile {build + warm:.1f} s)")
  t0 = time.perf_counter()
  rep = ReplicaSimulator(config, dataset, num_seeds)
  state = rep.init()
  build = time.perf_counter() - t0
  warm, rep_s, rep_eff = _timed(rep.run_epoch, state, epochs)
  log(f"{num_seeds} replicas: {rep_s:.2f} s/epoch (set-up + compile {build + warm:.1f} s)")
  return SeedsResult(num_seeds, seq_s, rep_s, seq_setup, build + warm,
                     (float(np.mean(seq_eff)), rep_eff))


def main_seeds(data_dir, num_seeds: int, epochs: int) -> SeedsResult:
  """`--seeds_benchmark`: the `paper` preset on ML-1M; prints the comparison."""
  dataset = load_dataset("ml-1m", data_dir, seed=0)
  result = seeds_benchmark(get_preset("paper"), dataset, num_seeds, max(epochs, 1))
  print("\n".join(result.lines()), flush=True)
  return result
