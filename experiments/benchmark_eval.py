r"""Cost of evaluation: `metrics.evaluate`'s one scoring pass against two calls and the floor.

  python -m experiments.benchmark_eval                      # ML-1M pre-split
  python -m experiments.benchmark_eval --data_dir=/data/ml-1m --repeats=5
  python -m experiments.benchmark_eval --synthetic          # 10k users x 12k items

For the NCF model of the `paper` and `ahum-reference` presets (freshly initialised:
the cost does not depend on training), on every user, in batches of `--batch_size`:

  floor     one jitted pass of the model over every (user, item) pair with a top-20 per
            user and nothing else: what any full-ranking evaluation must pay;
  two calls `ranking_metrics` (Recall/NDCG/Precision@20) + `exposure_ratio`
            (ER@5/10/20) of one target, the least popular item: a scoring pass each
            (before `evaluate`, this was the simulator's evaluation);
  one-pass  `evaluate` of the same metrics and target.

Each is called once to compile, then all six (preset, method) pairs run interleaved
`--repeats` times, so that load drift on a shared machine hits them alike; the table
gives the medians in seconds. Without ML-1M files the synthetic data are used.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Callable

import jax
import numpy as np
from absl import app
from absl import flags

from experiments.eval_floor import floor_pass
from fedjax_rec import metrics
from fedjax_rec.data.dataset import ImplicitDataset
from fedjax_rec.data.loaders import (check_data_present, default_data_dir, load_dataset,
                                     popularity_all)
from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
from fedjax_rec.models import ncf
from fedjax_rec.tasks.ncf.presets import PRESETS
from fedjax_rec.tasks.ncf.task import score_fn as ncf_score_fn

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "ML-1M directory (default $FEDJAX_REC_DATA/ml-1m).")
flags.DEFINE_integer("repeats", 3, "Timed calls of each method (after one warm-up call).")
flags.DEFINE_bool("synthetic", False, "Use synthetic data (10,000 users x 12,000 items) "
                  "instead of ML-1M.")
flags.DEFINE_integer("batch_size", 256, "Users scored per step.")

PRESET_NAMES = ("paper", "ahum-reference")
METHODS = ("floor", "two calls", "one-pass")
KS = (20,)
ER_KS = (5, 10, 20)


def load_data() -> ImplicitDataset:
  """ML-1M pre-split, or the synthetic set with `--synthetic` or without ML-1M files."""
  if not FLAGS.synthetic:
    data_dir = FLAGS.data_dir or default_data_dir("ml-1m")
    try:
      check_data_present("ml-1m-presplit", data_dir)
      return load_dataset("ml-1m-presplit", data_dir, seed=0)
    except FileNotFoundError as e:
      print(f"ML-1M not found ({e}); using synthetic data.")
  return load_synthetic(SyntheticConfig(num_users=10_000, num_items=12_000), seed=0,
                        scalable=True)


def methods(dataset: ImplicitDataset, preset: str,
            batch_size: int) -> dict[str, Callable[[], dict[str, float] | None]]:
  """The three timed calls for one preset, each returning its metrics (None: floor)."""
  model = PRESETS[preset].model
  key_public, key_users = jax.random.split(jax.random.key(0))
  params = (ncf.init_public(key_public, model, dataset.num_items),
            ncf.init_user_emb(key_users, model, dataset.num_users))
  score_fn = ncf_score_fn(model)  # the simulator's own NCF scorer
  exclude, test, interacted = dataset.seen(), dataset.test, dataset.interacted()
  target = [int(np.argmin(popularity_all(dataset)))]

  def floor():
    floor_pass(score_fn, params, dataset.num_users, batch_size)

  def two_calls():
    out = metrics.ranking_metrics(score_fn, params, exclude, test, ks=KS,
                                  batch_size=batch_size)
    out.update(metrics.exposure_ratio(score_fn, params, interacted, target, ks=ER_KS,
                                      batch_size=batch_size))
    return out

  def one_pass():
    return metrics.evaluate(score_fn, params, exclude, test, ks=KS, interacted=interacted,
                            targets=target, er_ks=ER_KS, batch_size=batch_size)

  return {"floor": floor, "two calls": two_calls, "one-pass": one_pass}


def timed(fn: Callable[[], object]) -> tuple[float, object]:
  """`(seconds, result)` of one call."""
  start = time.perf_counter()
  result = fn()
  return time.perf_counter() - start, result


def to_markdown(medians: dict[str, dict[str, float]]) -> str:
  lines = ["| preset | floor s | two calls s | one-pass s | one-pass / floor "
           "| two calls / one-pass |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
  for preset, m in medians.items():
    lines.append(f"| {preset} | {m['floor']:.3f} | {m['two calls']:.3f} | {m['one-pass']:.3f} | "
                 f"{m['one-pass'] / m['floor']:.2f} | {m['two calls'] / m['one-pass']:.2f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  dataset = load_data()
  print(dataset.summary())
  print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"JAX {jax.__version__} on {jax.devices()[0].platform}; batch {FLAGS.batch_size}, "
        f"{FLAGS.repeats} repeats")
  calls = {p: methods(dataset, p, FLAGS.batch_size) for p in PRESET_NAMES}
  for preset, fns in calls.items():
    warm = {name: timed(fn) for name, fn in fns.items()}
    two, one_pass = warm["two calls"][1], warm["one-pass"][1]
    gap = max(abs(two[k] - one_pass[k]) for k in two)
    print(f"{preset}: warm-up (compiling) "
          + ", ".join(f"{name} {sec:.1f} s" for name, (sec, _) in warm.items())
          + f"; largest |two calls - one-pass| over {len(two)} metrics: {gap:.2g}")
  times = {p: {name: [] for name in METHODS} for p in PRESET_NAMES}
  for _ in range(FLAGS.repeats):
    for preset, fns in calls.items():
      for name, fn in fns.items():
        times[preset][name].append(timed(fn)[0])
  medians = {p: {name: float(np.median(t)) for name, t in m.items()} for p, m in times.items()}
  print(to_markdown(medians))


if __name__ == "__main__":
  app.run(main)
