"""`SimConfig`: everything that defines a run."""

from __future__ import annotations

import dataclasses
from typing import Any

from fedjax_rec.tasks.ncf.client import LocalConfig
from fedjax_rec.faults import parse_faults
from fedjax_rec.models import ncf
from fedjax_rec.server import ServerConfig
from fedjax_rec.tasks.ncf import task as task_lib


@dataclasses.dataclass(frozen=True)
class SimConfig:
  """Everything that defines a run. Presets live in `fedjax_rec.tasks.ncf.presets`.

  Attributes:
    model: NCF shape.
    local: client-side training.
    server: server optimizer.
    method: training method name (see `methods.METHODS`).
    method_kwargs: method hyper-parameters, as sorted `(name, value)` pairs.
    aggregator: aggregator name (see `aggregators.make_aggregator`).
    aggregator_kwargs: its hyper-parameters, as sorted `(name, value)` pairs.
    convention: FedAvg convention: "sum", "mean" or "weighted".
    clients_per_round: `B`.
    epochs: global epochs `T`.
    num_negatives: negatives per positive.
    resample_negatives: draw fresh negatives every epoch.
    round_assignment: "stratified" (balanced length profile per round, the
      default) or "uniform" (Algorithm 1's plain shuffle-and-cut).
    max_buckets: most length classes per round.
    attack: attack name, or "none".
    attack_kwargs: its hyper-parameters, as sorted `(name, value)` pairs.
    num_malicious: attacker clients (see `default_num_malicious`).
    targets: target item ids of the attack (and of ER@K).
    seed: root seed of the run.
    inject_faults: `"none"`, or `"KIND:K"` (KIND nan, inf or huge): the first K benign
      clients of every round upload that value (see `faults.py`).
  """

  model: ncf.NCFConfig = ncf.NCFConfig()
  local: LocalConfig = LocalConfig()
  server: ServerConfig = ServerConfig()
  method: str = "original"
  method_kwargs: tuple[tuple[str, Any], ...] = ()
  aggregator: str = "fedavg"
  aggregator_kwargs: tuple[tuple[str, Any], ...] = ()
  convention: str = "sum"
  clients_per_round: int = 256
  epochs: int = 20
  num_negatives: int = 4
  resample_negatives: bool = False
  round_assignment: str = "stratified"
  max_buckets: int = 12
  attack: str = "none"
  attack_kwargs: tuple[tuple[str, Any], ...] = ()
  num_malicious: int = 0
  targets: tuple[int, ...] = ()
  seed: int = 0
  inject_faults: str = "none"

  def build_task(self, dataset):
    """The NCF task of this run on `dataset` (`tasks.ncf.task.build_task`)."""
    return task_lib.build_task(self, dataset)

  def __post_init__(self):
    parse_faults(self.inject_faults)
    if self.clients_per_round < 1:
      raise ValueError(f"clients_per_round must be >= 1, got {self.clients_per_round}")
    if self.epochs < 0:
      raise ValueError(f"epochs must be >= 0, got {self.epochs}")
    if self.num_negatives < 0:
      raise ValueError(f"num_negatives must be >= 0, got {self.num_negatives}")
    if self.round_assignment not in ("stratified", "uniform"):
      raise ValueError("round_assignment must be 'stratified' or 'uniform', got "
                       f"{self.round_assignment!r}")
    if self.convention not in ("sum", "mean", "weighted"):
      raise ValueError(f"convention must be sum, mean or weighted, got {self.convention!r}")
    if self.num_malicious < 0:
      raise ValueError(f"num_malicious must be >= 0, got {self.num_malicious}")
    if self.attack != "none" and not self.targets:
      raise ValueError(f"attack {self.attack!r} needs at least one target item")


def default_num_malicious(num_benign: int, malicious_share: float) -> int:
  """`int(share · N_benign)`, as the public A-hum code (0.1% of 6040 users: 6)."""
  if not 0 <= malicious_share < 1:
    raise ValueError(f"malicious_share must be in [0, 1), got {malicious_share}")
  return int(malicious_share * num_benign)
