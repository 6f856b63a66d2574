"""A tiny `paper`-preset run on the small synthetic data, for attacks' effect tests."""

from __future__ import annotations

import dataclasses

from fedjax_rec.attacks import select_targets
from fedjax_rec.data.synthetic import load_synthetic
from fedjax_rec.runner import EvalConfig, run
from fedjax_rec.tasks.ncf.presets import get_preset
from tests import test_simulation as ts


def exposure(attack: str, epochs: int = 3) -> float:
  """ER@5 of the least popular item after a tiny `paper`-preset run with 3 attackers."""
  ds = load_synthetic(ts.SMALL, seed=3)
  targets = tuple(int(t) for t in select_targets(ds.item_popularity(include_test=True),
                                                 "least_popular", 0))
  base = get_preset("paper")
  cfg = dataclasses.replace(base, epochs=epochs, clients_per_round=16, targets=targets,
                            model=dataclasses.replace(base.model, embed_dim=8),
                            attack=attack, num_malicious=0 if attack == "none" else 3)
  out = run(cfg, ds, eval_config=EvalConfig(ks=(10,), er_ks=(5,)), log=lambda line: None)
  return out["final"]["test/er@5"]
