"""Federated sequential recommendation: FORTRESS and its baselines (docs/design.md).

A `Task` (`fedjax_rec.task`) of the one protocol: the same round, driver
(`simulation.Simulator`), aggregators, server step, attack interface and run loop as
the NCF task. Layout:

  data.py          time-ordered split -> left-padded [U, L + 1] windows with masks
  synthetic.py     the built-in Markov-in-clusters sequential dataset
  augment.py       crop / mask / reorder of ONE sequence; adjacent halves
  objective.py     the client objective (next-item loss, three views, temporal term)
  client.py        the local update of ONE client, sparse upload
  regularizers.py  server defense: surge flags, separation, variance
  attacks.py       A-hum and PSMU for sequences
  config.py        `SeqConfig` and the method presets
  task.py          the `Task`: gather, client update, the defense after a round, scorer
"""

from fedjax_rec.tasks.sequential.config import METHODS, SeqConfig, method_config
from fedjax_rec.tasks.sequential.data import (SEQ_DATASETS, NoTimestampsError, SeqDataset,
                                              load_seq_dataset)

__all__ = ["METHODS", "NoTimestampsError", "SEQ_DATASETS", "SeqConfig", "SeqDataset",
           "load_seq_dataset", "method_config"]
