"""Federated sequential recommendation: FORTRESS and its baselines (docs/design.md).

Built on the core's pieces: the same `PublicParams` / `Uploads` pytrees, aggregators,
server step (`server.apply_aggregate` via `rounds.make_server_phase`), attack
interface and `runner.run`. Layout:

  data.py          time-ordered split -> left-padded [U, L + 1] windows with masks
  synthetic.py     the built-in Markov-in-clusters sequential dataset
  augment.py       crop / mask / reorder of ONE sequence; adjacent halves
  objective.py     the client objective (next-item loss, three views, temporal term)
  client.py        the local update of ONE client, sparse upload
  regularizers.py  server defense: surge flags, separation, variance
  attacks.py       A-hum and PSMU for sequences
  config.py        `SeqConfig` and the method presets
  simulation.py    `SeqSimulator` (the `Simulator` API) and the jitted round
"""

from fedjax_rec.sequential.config import METHODS, SeqConfig, method_config
from fedjax_rec.sequential.data import (SEQ_DATASETS, NoTimestampsError, SeqDataset,
                                        load_seq_dataset)
from fedjax_rec.sequential.simulation import SeqSimState, SeqSimulator

__all__ = ["METHODS", "NoTimestampsError", "SEQ_DATASETS", "SeqConfig", "SeqDataset",
           "SeqSimState", "SeqSimulator", "load_seq_dataset", "method_config"]
