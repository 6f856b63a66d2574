"""`SimConfig`: everything that defines an NCF run."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

from fedjax_rec import attacks
from fedjax_rec.tasks.ncf import methods
from fedjax_rec.tasks.ncf.client import LocalConfig
from fedjax_rec.models import ncf
from fedjax_rec.task import RunConfig
from fedjax_rec.tasks.ncf import task as task_lib


@dataclasses.dataclass(frozen=True)
class SimConfig(RunConfig):
  """Everything that defines an NCF run: the protocol's fields (`task.RunConfig`) and
  these. Presets live in `fedjax_rec.tasks.ncf.presets`.

  Attributes:
    model: NCF shape.
    local: client-side training.
    method: training method name (see `methods.METHODS`).
    method_kwargs: method hyper-parameters: its `methods.PARAMS` dataclass, a dict or
      `(name, value)` pairs, held as sorted pairs (`hparams.canonical`).
    num_negatives: negatives per positive.
    resample_negatives: draw fresh negatives every epoch.
    round_assignment: "stratified" (balanced length profile per round, the
      default) or "uniform" (Algorithm 1's plain shuffle-and-cut).
    max_buckets: most length classes per round.
  """

  model: ncf.NCFConfig = ncf.NCFConfig()
  local: LocalConfig = LocalConfig()
  method: str = "original"
  method_kwargs: tuple[tuple[str, Any], ...] = ()
  num_negatives: int = 4
  resample_negatives: bool = False
  round_assignment: str = "stratified"
  max_buckets: int = 12
  ATTACK_PARAMS: ClassVar[Mapping[str, type]] = attacks.PARAMS

  def build_task(self, dataset):
    """The NCF task of this run on `dataset` (`tasks.ncf.task.build_task`)."""
    return task_lib.build_task(self, dataset)

  def __post_init__(self):
    super().__post_init__()
    self._set_hparams("method_kwargs", "method", self.method, methods.PARAMS)
    if self.num_negatives < 0:
      raise ValueError(f"num_negatives must be >= 0, got {self.num_negatives}")
    if dict(self.method_kwargs).get("rec_loss") == "bpr" and self.num_negatives < 1:
      raise ValueError("rec_loss 'bpr' pairs positives with negatives: num_negatives must be "
                       f">= 1, got {self.num_negatives}")
    if self.round_assignment not in ("stratified", "uniform"):
      raise ValueError("round_assignment must be 'stratified' or 'uniform', got "
                       f"{self.round_assignment!r}")


def default_num_malicious(num_benign: int, malicious_share: float) -> int:
  """`int(share · N_benign)`, as the public A-hum code (0.1% of 6040 users: 6)."""
  if not 0 <= malicious_share < 1:
    raise ValueError(f"malicious_share must be in [0, 1), got {malicious_share}")
  return int(malicious_share * num_benign)
