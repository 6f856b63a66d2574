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

from absl import app
from absl import flags

from experiments import benchmark_scaling
from experiments.bench_lib import (bench, bench_pair, bench_whole_run, pairs_markdown,
                                   to_markdown, whole_run_configurations, whole_run_markdown)
from fedjax_rec.data.loaders import default_data_dir, load_dataset
from fedjax_rec.server import ServerConfig
from fedjax_rec.tasks.ncf.client import LocalConfig
from fedjax_rec.tasks.ncf.presets import get_preset

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


# The robust aggregators timed against FedAvg (each row's target: <= 1.5x FedAvg).
ROBUST = ("median", "trimmed_mean", "krum", "hics", "norm_bound", "multi_krum", "bulyan",
          "union_filter")


def pair_configurations(spec):
  """(comparison, A, B, dataset, target): the issues' speed targets on ML-1M (`spec`)."""
  yield ("CL4FedRec / Original", get_preset("paper"), get_preset("paper", method="cl4fedrec"),
         spec, 3.0)
  yield ("UNION / Original", get_preset("paper"), get_preset("paper", method="union"), spec,
         3.0)
  for agg in ROBUST:
    yield (f"{agg} / FedAvg", get_preset("paper"), get_preset("paper", aggregator=agg), spec,
           1.5)
  yield "MF / NCF", get_preset("paper"), get_preset("paper", model=mf_model()), spec, 1.0


def mf_model():
  """The `paper` preset's model as MF: the same embeddings, the logit `u · v`, no MLP."""
  return dataclasses.replace(get_preset("paper").model, interaction="dot", hidden=())


def configurations(spec, pre):
  """(name, config, dataset, note) rows on ML-1M: `spec` (random split), `pre` (pre-split)."""
  yield "paper / original / fedavg", get_preset("paper"), spec, ""
  yield "paper-onestep / original / fedavg", get_preset("paper-onestep"), spec, ""
  yield ("paper-onestep / L=5 b=64 adam delta", get_preset(
      "paper-onestep", local=LocalConfig(local_epochs=5, batch_size=64, optimizer="adam", lr=0.01,
                                 user_lr=0.01, upload="delta"),
      server=ServerConfig("sgd", 1.0), convention="mean"), spec,
         "mini-batch local training (search candidate c3)")
  yield ("ahum-reference / original / fedavg", get_preset("ahum-reference"), pre,
         "pre-split data")
  yield ("paper / cl4fedrec / fedavg", get_preset("paper", method="cl4fedrec"), spec,
         "target: <= 3x original")
  yield ("paper / rcl4fedrec / fedavg", get_preset("paper", method="rcl4fedrec"), spec, "")
  yield ("paper / union / fedavg", get_preset("paper", method="union"), spec,
         "target: <= 3x original")
  yield "paper / original / fedavg / MF", get_preset("paper", model=mf_model()), spec, "MF"
  for agg in ROBUST:
    yield (f"paper / original / {agg}", get_preset("paper", aggregator=agg), spec,
           "target: <= 1.5x fedavg")
  yield ("ahum-reference / original / median", get_preset("ahum-reference", aggregator="median"),
         pre, "pre-split data")
  yield ("paper / original / fedavg / uniform rounds",
         get_preset("paper", round_assignment="uniform"), spec, "Algorithm 1's plain shuffle")


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
  seq_rows = seq_benchmark_rows(epochs=FLAGS.epochs, only=FLAGS.only)
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
