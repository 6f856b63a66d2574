"""Learning check (slow, opt-in): federated SASRec beats MostPop on ML-100K.

Runs the default budget (`SeqConfig()`: 40 global epochs) on the sequential split of
ML-100K; a few minutes on two CPU cores, so it only runs with FEDJAX_REC_SLOW=1.
"""

from __future__ import annotations

import os

import pytest

from fedjax_rec import metrics as metrics_lib
from fedjax_rec.tasks.sequential.config import method_config
from fedjax_rec.tasks.sequential.data import load_seq_dataset
from fedjax_rec.simulation import Simulator


@pytest.mark.skipif(not os.environ.get("FEDJAX_REC_SLOW"), reason="set FEDJAX_REC_SLOW=1")
def test_federated_sasrec_beats_mostpop_on_ml100k(shared_data_dir):
  if not (shared_data_dir / "ml-100k").is_dir():
    pytest.skip("ml-100k not available")
  dataset = load_seq_dataset("ml-100k", shared_data_dir / "ml-100k")
  sim = Simulator(method_config("fedseq"), dataset)
  state = sim.init()
  for _ in range(sim.config.epochs):
    state, _ = sim.run_epoch(state)
  got = sim.evaluate(state, ks=(10,))
  mostpop = metrics_lib.mostpop_metrics(dataset, ks=(10,))
  assert got["hr@10"] > mostpop["recall@10"], (got, mostpop)
