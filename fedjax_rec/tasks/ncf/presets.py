"""Named configurations (docs/design.md). `experiments/` turns them into flag defaults."""

from __future__ import annotations

import dataclasses

from fedjax_rec.tasks.ncf.client import LocalConfig
from fedjax_rec.models.ncf import NCFConfig
from fedjax_rec.server import ServerConfig
from fedjax_rec.tasks.ncf.config import SimConfig

PRESETS: dict[str, SimConfig] = {
    # CL4FedRec §5.4 with one full-batch local step per round: d=32, MLP 64-32-16 on
    # concat(u, v), Adam lr 0.001, 20 epochs (the earlier `paper`, kept for comparison).
    "paper-onestep": SimConfig(
        model=NCFConfig(embed_dim=32, hidden=(64, 32, 16), embed_init_std=0.01,
                        mlp_init="kaiming"),
        local=LocalConfig(local_epochs=1, batch_size=0, lr=0.001, user_optimizer="adam",
                          user_lr=0.001),
        server=ServerConfig(optimizer="adam", lr=0.001),
        convention="sum", clients_per_round=256, epochs=20),
    # The public A-hum code: d=8, MLP [8, 8], N(0, 0.01²) embeddings, Kaiming MLP,
    # server SGD lr 0.001 on summed gradients, user SGD lr 0.001, 30 epochs.
    "ahum-reference": SimConfig(
        model=NCFConfig(embed_dim=8, hidden=(8, 8), embed_init_std=0.01, mlp_init="kaiming"),
        local=LocalConfig(local_epochs=1, batch_size=0, lr=0.001, user_optimizer="sgd",
                          user_lr=0.001),
        server=ServerConfig(optimizer="sgd", lr=0.001),
        convention="sum", clients_per_round=256, epochs=30),
}
# CL4FedRec §5.4's model with the local training and server step chosen on validation
# in the search's first two rounds (`experiments/search.py`, candidate o2: best
# validation Recall@20 at epoch 15 on the ML-1M pre-split): one full-batch local step,
# user Adam lr 0.1, server Adam lr 0.01. The `paper` preset before the third round.
PRESETS["paper-o2"] = dataclasses.replace(
    PRESETS["paper-onestep"],
    local=dataclasses.replace(PRESETS["paper-onestep"].local, user_lr=0.1),
    server=ServerConfig(optimizer="adam", lr=0.01), epochs=15)
# o2 with 16 negatives per positive, drawn afresh every epoch (the search's third round,
# candidate n16r: best validation Recall@20, 0.1019 against o2's 0.0777, at epoch 19).
PRESETS["paper"] = dataclasses.replace(PRESETS["paper-o2"], num_negatives=16,
                                       resample_negatives=True, epochs=19)


def get_preset(name: str, **overrides) -> SimConfig:
  """A preset with top-level fields replaced."""
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
  return dataclasses.replace(PRESETS[name], **overrides)
