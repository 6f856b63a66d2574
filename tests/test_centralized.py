"""The centralized NCF reference learns taste, not only popularity."""

from __future__ import annotations

import pytest

from fedjax_rec import metrics
from fedjax_rec.tasks.ncf import centralized
from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
from fedjax_rec.models.ncf import NCFConfig


def test_centralized_beats_mostpop_on_planted_taste():
  ds = load_synthetic(SyntheticConfig(num_users=300, num_items=120, num_clusters=4,
                                      max_activity=60), seed=0)
  row = centralized.reference_row(ds, NCFConfig(embed_dim=8, hidden=(16, 8)),
                      centralized.CentralConfig(epochs=8, batch_size=256, lr=0.01),
                      log=lambda s: None)
  mostpop = metrics.mostpop_metrics(ds)["recall@20"]
  assert row["recall@20"] > 1.3 * mostpop
  assert 1 <= row["epoch"] <= 8


def test_centralized_config_is_checked():
  with pytest.raises(ValueError, match="batch_size"):
    centralized.CentralConfig(batch_size=0)
