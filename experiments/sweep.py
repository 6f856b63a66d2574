r"""Runs a grid of federated runs into a resumable results store.

  python -m experiments.sweep --workdir=runs/sweep \
    --grid='dataset=ml-100k;method=original,cl4fedrec,rcl4fedrec;attack=none,a_hum;seed=0,1,2'
  python -m experiments.sweep --flagfile=sweep.flags     # --grid=... on one line
  python -m experiments.plot --workdir=runs/sweep        # plots and Markdown tables

Grid keys: dataset, method, attack, defense (aggregator; none = fedavg), seed, preset,
epochs, clients_per_round, malicious_share, target (see `fedjax_rec.grid`). Finished
points go to `<workdir>/results.csv` one atomic rewrite at a time; a killed sweep loses
at most the point in progress (which resumes from its checkpoint) and the same command
continues where it stopped. `--noresume` refuses a workdir that already holds a sweep.
"""

from __future__ import annotations

import sys

import pandas as pd
from absl import app
from absl import flags

from fedjax_rec.data.readers import DataFormatError
from fedjax_rec.data.synthetic import SyntheticConfig
from fedjax_rec.grid import parse_grid
from fedjax_rec.results_store import StoreError
from fedjax_rec.runner import EvalConfig, NonFiniteError, WorkdirError
from fedjax_rec.sweep import SweepError, SweepSettings, format_summary, run_sweep

FLAGS = flags.FLAGS

flags.DEFINE_string("grid", None, "key=v1,v2;key=... (see fedjax_rec.grid).")
flags.DEFINE_string("workdir", None, "Sweep directory: results.csv and points/.")
flags.DEFINE_bool("resume", True, "Continue a sweep found in --workdir (false: refuse it).")
flags.DEFINE_string("data_root", None, "Folder of <dataset>/ raw files (default: "
                    "$FEDJAX_REC_DATA, else ../shared/data).")
flags.DEFINE_integer("checkpoint_every", 1, "Epochs between a point's checkpoints.")
flags.DEFINE_integer("eval_every", 1, "Evaluate every N global epochs.")
flags.DEFINE_list("topk", ["20"], "Cut-offs K of Recall/NDCG/Precision.")
flags.DEFINE_list("er_k", ["5", "10", "20"], "Cut-offs K of ER@K.")
flags.DEFINE_integer("embed_dim", None, "Embedding size override for every point.")
flags.DEFINE_list("hidden", None, "MLP widths override for every point, e.g. 16,8.")
flags.DEFINE_integer("max_buckets", None, "Length buckets per round override.")
flags.DEFINE_integer("synthetic_users", None, "Users of the synthetic dataset.")
flags.DEFINE_integer("synthetic_items", None, "Items of the synthetic dataset.")


def _ints(name: str, values: list[str]) -> tuple[int, ...]:
  try:
    out = tuple(int(v) for v in values)
  except ValueError:
    raise ValueError(f"--{name} expects comma-separated integers, got {','.join(values)}")
  if not out or min(out) <= 0:
    raise ValueError(f"--{name} values must be positive")
  return out


def settings_from_flags() -> SweepSettings:
  """The flags as `SweepSettings` (ValueError on a bad value)."""
  syn = SyntheticConfig()
  users = FLAGS.synthetic_users or syn.num_users
  items = FLAGS.synthetic_items or syn.num_items
  syn = SyntheticConfig(num_users=users, num_items=items,
                        max_activity=min(syn.max_activity, max(items // 2, syn.min_activity)))
  if FLAGS.eval_every <= 0 or FLAGS.checkpoint_every <= 0:
    raise ValueError("--eval_every and --checkpoint_every must be positive")
  return SweepSettings(
      data_root=FLAGS.data_root, synthetic=syn,
      eval_config=EvalConfig(every=FLAGS.eval_every, ks=_ints("topk", FLAGS.topk),
                             er_ks=_ints("er_k", FLAGS.er_k)),
      checkpoint_every=FLAGS.checkpoint_every, resume=FLAGS.resume,
      embed_dim=FLAGS.embed_dim,
      hidden=_ints("hidden", FLAGS.hidden) if FLAGS.hidden else None,
      max_buckets=FLAGS.max_buckets)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.grid or not FLAGS.workdir:
    _fail("--grid and --workdir are required")
  try:
    points = parse_grid(FLAGS.grid)
    settings = settings_from_flags()
  except ValueError as e:  # GridError included: bad flags, named in the message
    _fail(str(e))
  try:
    summary = run_sweep(points, FLAGS.workdir, settings)
  except (StoreError, SweepError, WorkdirError, DataFormatError, FileNotFoundError,
          NonFiniteError) as e:
    _fail(str(e))
  with _wide_pandas():
    print(format_summary(summary).to_string())


def _wide_pandas():
  return pd.option_context("display.width", 200, "display.max_columns", None,
                           "display.max_colwidth", 60)


def _fail(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


if __name__ == "__main__":
  app.run(main)
