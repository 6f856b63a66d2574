r"""Trains a federated recommender and evaluates it every global epoch.

  python -m experiments.train                       # synthetic data, `paper` preset
  python -m experiments.train --dataset=ml-1m --workdir=runs/ml1m
  python -m experiments.train --dataset=ml-1m-presplit --preset=ahum-reference
  python -m experiments.train --dataset=ml-1m --num_seeds=4 --workdir=runs/ml1m_x4
  python -m experiments.train --dataset=ml-100k --split=loo --preset=fedrecattack --epochs=5
  python -m experiments.train --task=sequential --dataset=ml-100k --method=fortress \
      --encoder=sasrec --attack=a_hum --workdir=runs/ml100k_fortress
  python -m experiments.train --task=sequential --dataset=ml-100k --num_seeds=3
"""

from __future__ import annotations

from absl import app
from absl import flags

import jax

from experiments import flag_checks
from experiments import flags_lib
from experiments import flags_model
from fedjax_rec.data.loaders import load_dataset
from fedjax_rec.data.readers import DataFormatError
from fedjax_rec.oom import MemoryLimitError
from fedjax_rec.runner import NonFiniteError, WorkdirError, run
from fedjax_rec.tasks.sequential.data import SEQ_DATASETS, load_seq_dataset
from fedjax_rec.simulation import Simulator

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_seeds", 1, "Independent replicas (seeds --seed .. --seed + S - 1, "
                     "same data split) trained as one vmapped program; metrics rows carry a "
                     "`seed` column.", lower_bound=1)


def load(task: str):
  """The split dataset of `--dataset` for `task`, checked against the flags."""
  if task == "sequential":
    if FLAGS.dataset not in SEQ_DATASETS:
      raise flags_lib.UsageError(f"--task=sequential needs --dataset in "
                                 f"{', '.join(SEQ_DATASETS)}, got {FLAGS.dataset}")
    dataset = load_seq_dataset(FLAGS.dataset, FLAGS.data_dir, max_len=FLAGS.max_len,
                               seed=FLAGS.seed)
  else:
    dataset = load_dataset(FLAGS.dataset, FLAGS.data_dir, seed=FLAGS.seed,
                           valid_frac=flags_model.valid_frac(), split=FLAGS.split)
  flag_checks.check_dataset_flags(dataset.num_users, dataset.num_items, FLAGS.dataset)
  return dataset


def main(argv):
  if len(argv) > 1:
    flags_lib.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    flags_lib.check_task_flags()
    flags_lib.check_resume()
    flag_checks.check_flags()
    mesh = flags_lib.setup_devices()
    if (mesh is not None or jax.process_count() > 1) and (
        FLAGS.num_seeds > 1 or FLAGS.task == "sequential"):
      raise flags_lib.UsageError(
          "--num_seeds > 1 and --task=sequential run on one device: pass --mesh_shape=1 "
          "and no --coordinator_address")
    eval_config = flags_lib.eval_config_from_flags()
    dataset = load(FLAGS.task)
    config = flags_lib.config_from_flags(dataset)
    lead = jax.process_index() == 0
    run(config, dataset, workdir=FLAGS.workdir, eval_config=eval_config, write=lead,
        log=print if lead else (lambda line: None),
        num_seeds=FLAGS.num_seeds if FLAGS.num_seeds > 1 else None,
        simulator_factory=lambda c, d: Simulator(c, d, mesh=mesh))
  except (flags_lib.UsageError, FileNotFoundError, DataFormatError, WorkdirError,
          MemoryLimitError, NonFiniteError) as e:
    flags_lib.fail(str(e))


if __name__ == "__main__":
  app.run(main)
