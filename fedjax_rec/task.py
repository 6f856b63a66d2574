"""The seam between the federated protocol and a recommender: a `Task`.

The protocol (`rounds`, `simulation`, `runner`, `server`, `aggregators`, `attacks`) is
the same for every recommender: deal clients into rounds, run each round's local
updates vmapped over its slots, aggregate the sparse uploads, step the server. What
differs is bundled in a `Task`, a tuple of pure functions in the shape of optax's
`(init, update)`, and in its host side (`TaskData`): the device-resident per-client
data, the clients' lengths that schedule rounds, and what evaluation ranks. The
protocol imports no task; a task is built by its config (`config.build_task`), so the
NCF task and the sequential task live in `fedjax_rec/tasks/` and plug in here.

Private state never reaches server code: `client_update` is the only function that
sees a client's private state, and `after_round` and `epoch_end` receive the server's
state and the round's uploads only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Mapping, NamedTuple

import numpy as np

from fedjax_rec import aggregators, hparams, threat
from fedjax_rec.faults import parse_faults
from fedjax_rec.server import ServerConfig
from fedjax_rec.types import Array, PublicParams, PyTree


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """The protocol's part of a run's configuration; every task's config extends it.

  Attributes:
    server: the server optimizer (`server.ServerConfig`).
    aggregator: aggregator name (see `aggregators.make_aggregator`).
    aggregator_kwargs: its hyper-parameters: its `aggregators.PARAMS` dataclass, a dict
      or `(name, value)` pairs, held as sorted pairs (`hparams.canonical`).
    convention: FedAvg convention: "sum", "mean" or "weighted".
    clients_per_round: `B`.
    epochs: global epochs `T`.
    attack: attack name, or "none".
    attack_kwargs: its hyper-parameters, likewise (the task's attacks' `PARAMS`; none
      without an attack).
    num_malicious: attacker clients.
    targets: target item ids of the attack (and of ER@K).
    seed: root seed of the run.
    inject_faults: `"none"`, or `"KIND:K"` (KIND nan, inf or huge): the first K benign
      clients of every round upload that value (see `faults.py`).
    target_choice: the `attacks.targets.select_targets` spec `targets` were chosen by
      (e.g. `band:0:50:1`), recorded beside the ids; "" where the ids were given
      directly or by the default `least_popular`.
    attack_start_epoch: first global epoch (0-based) with attackers (`threat.py`).
    attack_schedule: how attackers join rounds: "shuffled" or "every_round" (`threat.py`).
    attackers_per_round: K attackers in every round of "every_round" (0 otherwise).
  """

  server: ServerConfig = ServerConfig()
  aggregator: str = "fedavg"
  aggregator_kwargs: tuple[tuple[str, Any], ...] = ()
  convention: str = "sum"
  clients_per_round: int = 256
  epochs: int = 20
  attack: str = "none"
  attack_kwargs: tuple[tuple[str, Any], ...] = ()
  num_malicious: int = 0
  targets: tuple[int, ...] = ()
  seed: int = 0
  inject_faults: str = "none"
  target_choice: str = ""
  attack_start_epoch: int = 0
  attack_schedule: str = "shuffled"
  attackers_per_round: int = 0
  # The task's attacks' typed hyper-parameters (its registry's `PARAMS`).
  ATTACK_PARAMS: ClassVar[Mapping[str, type]] = {}

  def __post_init__(self):
    parse_faults(self.inject_faults)
    if self.clients_per_round < 1:
      raise ValueError(f"clients_per_round must be >= 1, got {self.clients_per_round}")
    if self.epochs < 0:
      raise ValueError(f"epochs must be >= 0, got {self.epochs}")
    if self.convention not in ("sum", "mean", "weighted"):
      raise ValueError(f"convention must be sum, mean or weighted, got {self.convention!r}")
    if self.num_malicious < 0:
      raise ValueError(f"num_malicious must be >= 0, got {self.num_malicious}")
    if self.attack != "none" and not self.targets:
      raise ValueError(f"attack {self.attack!r} needs at least one target item")
    threat.check(self)
    self._set_hparams("aggregator_kwargs", "aggregator", self.aggregator, aggregators.PARAMS)
    if self.attack != "none":
      self._set_hparams("attack_kwargs", "attack", self.attack, self.ATTACK_PARAMS)
    elif self.attack_kwargs:
      raise ValueError(f"attack_kwargs {self.attack_kwargs!r} given without an attack "
                       "(attack='none')")

  def _set_hparams(self, field: str, kind: str, name: str, params) -> None:
    """Checks the hyper-parameters in `field` against `params[name]` and holds them as
    sorted pairs (`hparams.canonical`); a task's config calls it for its own fields."""
    object.__setattr__(self, field, hparams.canonical(kind, name, getattr(self, field), params))

  def build_task(self, dataset) -> "TaskBundle":
    """The task of this run on `dataset`, with its host side for `seed`."""
    raise NotImplementedError


class ClientUpload(NamedTuple):
  """What ONE client (benign or malicious) sends: sparse rows plus the network update.

  Attributes:
    row_item: [R] item ids of the uploaded rows (each at most once where `row_mask`).
    row_grad: [R, d] their updates (gradient or delta, as the local training says).
    row_mask: [R] real rows.
    net: the update of the interaction network (NCF's MLP, or the sequence encoder).
    weight: [] the sample count the client reports (for weighted FedAvg).
  """

  row_item: Array
  row_grad: Array
  row_mask: Array
  net: PyTree
  weight: Array


class Task(NamedTuple):
  """A recommender as the protocol sees it: pure, jittable functions.

  Attributes:
    name: e.g. "ncf/original" or "sequential/fortress".
    init: `key -> (public, private, aux, attack_key)`: the public parameters, every
      client's private state (leaves `[U, ...]`), the server-side state of the method
      (`aux`), and the key the attackers are initialised from.
    context: `aux -> ctx`, the public part of `aux` broadcast with the model.
    gather: `(client_data, slot_users [C], length, pos_length) -> data`, the padded
      local data of a length class's slots (leaves `[C, ...]`; -1 slots are empty).
    client_update: `(public, ctx, private, data, key) -> (private', ClientUpload,
      metrics)` for ONE client; `metrics` are scalars, averaged over real clients.
    round_keys: `key -> (clients, attack, after_round)` keys of a round.
    after_round: None, or `(server, uploads, key) -> (server, metrics)`: a server step
      after the aggregate (e.g. the FORTRESS defense). Sees no client state.
    epoch_end: `(params, aux, key) -> (params, aux, metrics)`, server steps after each
      global epoch (e.g. the popularity regularizer).
    eval_params: `(public, private) -> params` of `score` (an oracle outside the
      protocol: evaluation may read private state, the server never does).
    score: `(params, user_ids [b]) -> [b, num_items]` scores.
  """

  name: str
  init: Callable[[Array], tuple[PublicParams, PyTree, PyTree, Array]]
  context: Callable[[PyTree], PyTree]
  gather: Callable[..., PyTree]
  client_update: Callable[..., tuple[PyTree, ClientUpload, dict]]
  round_keys: Callable[[Array], tuple[Array, Array, Array | None]]
  after_round: Callable[..., tuple[Any, dict]] | None
  epoch_end: Callable[[PublicParams, PyTree, Array], tuple[PublicParams, PyTree, dict]]
  eval_params: Callable[[PublicParams, PyTree], PyTree]
  score: Callable[[PyTree, Array], Array]


@dataclasses.dataclass
class TaskData:
  """The host side of a task for one seed: data placement, scheduling and evaluation.

  A task subclasses it to keep its own host state (e.g. the NCF task's negatives).

  Attributes:
    device_data: the clients' data as device arrays (what `Task.gather` reads); the
      driver places it on the client mesh.
    num_rows: [U] each client's local length (schedules rounds into length classes).
    plan: the length classes of a round (`scheduling.BucketPlan`).
    round_assignment: "stratified" or "uniform" (`scheduling`).
    dataset: the split dataset (`train`, `valid`, `test`, `seen()`, `interacted()`):
      evaluation ranks its test items with `seen()` masked.
    hit_rate: report `hr@K` beside `recall@K` (one test item per user).
    row_dim: width of an uploaded row, for the memory check of a round (None: none).
    plan_lengths: [U] the lengths `plan` is sized for (None: `num_rows`); an upper bound
      on `num_rows` when a task's lengths change between epochs.
    max_buckets: most length classes of a plan (replicas merge their plans with it).
  """

  device_data: PyTree
  num_rows: np.ndarray
  plan: Any
  round_assignment: str
  dataset: Any
  hit_rate: bool = False
  row_dim: int | None = None
  plan_lengths: np.ndarray | None = None
  max_buckets: int = 1

  def pos_lengths(self, lengths: tuple[int, ...]) -> tuple[int, ...]:
    """Each length class's static bound on positives (default: its length)."""
    return lengths

  def arrange(self, slots: tuple, lengths: tuple[int, ...]):
    """A round's classes as the task lays them out: `(slots, lengths, pos_lengths)`.

    The default keeps the plan's classes. A task may reorder a class's clients and
    split it into parts of the same length with tighter `pos_lengths` (the same
    clients train, so only float order may change).
    """
    return slots, lengths, self.pos_lengths(lengths)

  def refresh(self, epoch: int) -> bool:
    """Renews `device_data` for global epoch `epoch` if the task asks; whether it did."""
    del epoch
    return False


class TaskBundle(NamedTuple):
  """What `config.build_task(dataset)` returns: the pure task, its host side (for the
  config's seed) and the attack (an `attacks.Attack`, or None without one)."""

  task: Task
  data: TaskData
  attack: Any
