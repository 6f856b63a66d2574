"""`SeqConfig` (one frozen dataclass per run) and the method presets.

Methods (`--method`): `fedseq` (plain federated SASRec/GRU4Rec), `cl` (sequence,
user and item views), `cl_temporal` (plus the temporal regularizer) and `fortress`
(plus the server-side defense). A preset only switches terms on; every weight stays
a field, so an ablation is a preset with one field replaced.

Budget defaults (our choice): d = 32, one local full-batch step, server Adam lr 0.01
on the weighted FedAvg gradient, 256 clients per round, 40 global epochs. ML-100K has
943 users, so an epoch is only 4 rounds (server steps): 160 server steps in all, and
lr 0.001 (the static presets' value) learns too little in that many steps.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Mapping

from fedjax_rec.models.encoders import EncoderConfig
from fedjax_rec.tasks.sequential.objective import ObjectiveConfig
from fedjax_rec.tasks.sequential.regularizers import DefenseConfig
from fedjax_rec.server import ServerConfig
from fedjax_rec.task import RunConfig
from fedjax_rec.tasks.sequential import attacks as seq_attacks
from fedjax_rec.tasks.sequential import task as task_lib

METHODS = ("fedseq", "cl", "cl_temporal", "fortress")


@dataclasses.dataclass(frozen=True)
class SeqConfig(RunConfig):
  """Everything that defines a sequential run: the protocol's fields (`task.RunConfig`,
  with the sequential defaults below) and these.

  Attributes:
    encoder: model shape (`--encoder`).
    objective: client objective and its term weights.
    defense: FORTRESS server defense.
    method: the preset the config came from (a label for logs and tables).
    server: server Adam lr 0.01 on the aggregated gradient (see the module docstring).
    convention: "weighted" = FedAvg weighted by `n_u` (the paper).
    epochs: 40 global epochs.
  """

  encoder: EncoderConfig = EncoderConfig(embed_dim=32)
  objective: ObjectiveConfig = ObjectiveConfig()
  defense: DefenseConfig = DefenseConfig()
  method: str = "fedseq"
  server: ServerConfig = ServerConfig(optimizer="adam", lr=0.01)
  convention: str = "weighted"
  epochs: int = 40
  ATTACK_PARAMS: ClassVar[Mapping[str, type]] = seq_attacks.PARAMS

  def build_task(self, dataset):
    """The sequential task of this run on `dataset` (`tasks.sequential.task`)."""
    return task_lib.build_task(self, dataset)


# Term weights of the presets (each a flag of its own in experiments/train.py). 0.1 is
# CL4SRec's usual weight. Measured on ML-100K (SASRec, 20 epochs, seed 0; fedseq HR@10
# 0.118): each term alone at 0.1 lowers HR@10 (seq 0.090, user 0.112, item 0.103,
# temporal 0.093), all four at 0.01 give 0.094, at 0.001 0.115. The views also raise
# A-hum's ER@5 (they spread the item table), which is what the server defense is for.
CL_WEIGHTS = dict(seq_weight=0.1, user_weight=0.1, item_weight=0.1)
TEMPORAL_WEIGHT = 0.1


def method_config(method: str, base: SeqConfig = SeqConfig(), **overrides) -> SeqConfig:
  """`base` with the terms of `method` switched on, then `overrides` applied.

  Args:
    method: one of `METHODS`.
    base: the starting configuration (its term weights are replaced).
    **overrides: top-level `SeqConfig` fields.
  """
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
  weights = dict(seq_weight=0.0, user_weight=0.0, item_weight=0.0, temporal_weight=0.0)
  if method != "fedseq":
    weights.update(CL_WEIGHTS)
  if method in ("cl_temporal", "fortress"):
    weights["temporal_weight"] = TEMPORAL_WEIGHT
  objective = dataclasses.replace(base.objective, **weights)
  defense = dataclasses.replace(base.defense, enabled=method == "fortress")
  return dataclasses.replace(base, objective=objective, defense=defense, method=method,
                             **overrides)
