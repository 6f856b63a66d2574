r"""Turns a sweep's results store into the standard plots and a Markdown table.

  python -m experiments.plot --workdir=runs/sweep            # -> runs/sweep/plots/
  python -m experiments.plot --workdir=runs/sweep --metrics=test/recall@20,test/er@5

Writes `<metric>.png` (metric per epoch, a line per configuration, a panel per
dataset; ER@K included) and `summary.md` (final epoch, mean ± std over seeds).
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app
from absl import flags

from fedjax_rec.plots import standard_plots
from fedjax_rec.results_store import ResultsStore, StoreError
from fedjax_rec.sweep import STORE_NAME

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Sweep directory holding results.csv.")
flags.DEFINE_string("out", None, "Output directory (default: <workdir>/plots).")
flags.DEFINE_list("metrics", None, "test/... columns to plot (default: all with data).")


def main(argv):
  if len(argv) > 1 or not FLAGS.workdir:
    _fail("usage: python -m experiments.plot --workdir=DIR [--out=DIR] [--metrics=...]")
  path = Path(FLAGS.workdir) / STORE_NAME
  if not path.exists():
    _fail(f"{path} not found: run experiments.sweep with this --workdir first")
  try:
    frame = ResultsStore(path).frame()
    missing = [m for m in FLAGS.metrics or [] if m not in frame.columns]
    if missing:
      raise ValueError(f"unknown metric(s) {', '.join(missing)}; the store has "
                       f"{', '.join(c for c in frame.columns if c.startswith('test/'))}")
    paths = standard_plots(frame, FLAGS.out or Path(FLAGS.workdir) / "plots", FLAGS.metrics)
  except (StoreError, ValueError) as e:
    _fail(str(e))
  for p in paths:
    print(p)
  print((paths[-1]).read_text())


def _fail(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


if __name__ == "__main__":
  app.run(main)
