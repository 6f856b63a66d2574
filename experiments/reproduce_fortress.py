r"""Reproduces the FORTRESS main table (a thin main around `fortress_table`).

  python -m experiments.reproduce_fortress --workdir=runs/fortress
  python -m experiments.reproduce_fortress --workdir=runs/fortress --epochs=20 \
      --datasets=ml-100k

Rerunning with the same flags resumes: finished configurations are skipped.
"""

from __future__ import annotations

from absl import app
from absl import flags

from experiments.fortress_table import ATTACKS, DATASETS, TableSettings, run_fortress_table

FLAGS = flags.FLAGS


def _define(kind: str, name: str, default, help_text: str) -> None:
  if name not in FLAGS:  # shared names when imported beside other binaries' flags
    getattr(flags, f"DEFINE_{kind}")(name, default, help=help_text)


_define("string", "workdir", "runs/fortress", "Root of the runs and of fortress_table.md/.csv.")
_define("list", "datasets", list(DATASETS), "Sequential datasets (ml-1m: reported unavailable).")
_define("list", "attacks", list(ATTACKS), "Attack columns: none and/or a_hum, psmu.")
_define("integer", "epochs", None, "Global epochs of every run (default: SeqConfig's).")
_define("float", "malicious_share", 0.01, "Attackers as a share of the benign users.")
_define("string", "target", "least_popular", "Target items (see attacks.targets).")
_define("integer", "seed", 0, "Root seed.")
_define("string", "data_root", None, "Folder holding <dataset>/ (default $FEDJAX_REC_DATA).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  settings = TableSettings(epochs=FLAGS.epochs, malicious_share=FLAGS.malicious_share,
                           target=FLAGS.target, seed=FLAGS.seed)
  run_fortress_table(FLAGS.workdir, datasets=FLAGS.datasets, data_root=FLAGS.data_root,
                     settings=settings, attacks=FLAGS.attacks)


if __name__ == "__main__":
  app.run(main)
