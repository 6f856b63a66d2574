r"""The accuracy drop of an attacked run against the same run without attackers.

  python -m experiments.accuracy_drop RUN_DIR BASELINE_DIR
  python -m experiments.accuracy_drop runs/lie runs/none --json

Both are `experiments.train --workdir`s; their `config.json` must agree in everything
but the attack (`fedjax_rec/accuracy_drop.py`). Prints, per evaluated epoch, each
ranking metric of the attacked run, the baseline's, and the relative drop.
"""

from __future__ import annotations

import json
import sys

from absl import app
from absl import flags

from fedjax_rec.accuracy_drop import BaselineMismatch, accuracy_drop
from fedjax_rec.runner import WorkdirError

FLAGS = flags.FLAGS
flags.DEFINE_bool("json", False, "Print the rows as JSON lines instead of a table.")


def table(rows: list[dict]) -> list[str]:
  """One line per row: `epoch E [seed S]: metric attacked / baseline (-x.x%) ...`."""
  lines = []
  for row in rows:
    head = f"epoch {row['epoch']:3d}" + (f" seed {row['seed']}" if "seed" in row else "")
    parts = [f"{name}={row[name]:.4f}/{row[f'baseline/{name}']:.4f} "
             f"(drop {100 * row[f'rel_drop/{name}']:+.1f}%)"
             for name in row if not name.startswith(("epoch", "seed", "baseline/", "drop/",
                                                     "rel_drop/"))]
    lines.append(f"{head}: " + " ".join(parts))
  return lines


def fail(message: str) -> None:
  """One line on stderr and exit status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) != 3:
    fail("usage: python -m experiments.accuracy_drop RUN_DIR BASELINE_DIR")
  try:
    rows = accuracy_drop(argv[1], argv[2])
  except (BaselineMismatch, WorkdirError) as e:
    fail(f"{argv[2]}: {e}" if isinstance(e, BaselineMismatch) else str(e))
  for line in ([json.dumps(r) for r in rows] if FLAGS.json else table(rows)):
    print(line)


if __name__ == "__main__":
  app.run(main)
