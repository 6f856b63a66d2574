r"""The centralized NCF reference row: all data in one model, on the same split.

  python -m experiments.centralized --dataset=ml-1m-presplit --valid_frac=0.1
  python -m experiments.centralized --dataset=synthetic --epochs=5

Prints validation and test Recall/NDCG@20 after every epoch and the test metrics at
the epoch of best validation Recall@20 (the row the tables show; without a
validation share, the last epoch's).
"""

from __future__ import annotations

import json
import sys

from absl import app
from absl import flags

from fedjax_rec import metrics
from fedjax_rec.tasks.ncf import centralized
from fedjax_rec.data.loaders import DATASETS, load_dataset
from fedjax_rec.data.readers import DataFormatError
from fedjax_rec.tasks.ncf.presets import PRESETS

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "synthetic", DATASETS, "Dataset to train on.")
flags.DEFINE_string("data_dir", None, "Directory of the dataset's raw files.")
flags.DEFINE_enum("preset", "paper", sorted(PRESETS), "Whose NCF shape to train.")
flags.DEFINE_integer("epochs", 20, "Passes over the training samples.")
flags.DEFINE_integer("batch_size", 1024, "Samples per Adam step.")
flags.DEFINE_float("lr", 0.001, "Adam learning rate.")
flags.DEFINE_integer("seed", 0, "Split, initialisation, shuffles and negatives.")
flags.DEFINE_float("valid_frac", 0.1, "Validation share of each user's train items.")


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = centralized.CentralConfig(epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
                                       lr=FLAGS.lr, seed=FLAGS.seed)
    dataset = load_dataset(FLAGS.dataset, FLAGS.data_dir, seed=FLAGS.seed,
                           valid_frac=FLAGS.valid_frac)
  except (ValueError, FileNotFoundError, DataFormatError) as e:
    _fail(str(e))
  print(dataset.summary())
  print("MostPop", json.dumps(metrics.mostpop_metrics(dataset)))
  row = centralized.reference_row(dataset, PRESETS[FLAGS.preset].model, config)
  print("centralized (best validation epoch)", json.dumps(row))


def _fail(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


if __name__ == "__main__":
  app.run(main)
