"""The federated simulation: state, the epoch loop and evaluation.

A round is one jit (`rounds.make_round_step`): every client slot of the round's
length buckets runs the vmapped local update, the uploads are validated and
aggregated by the configured aggregator, and the server applies its optimizer
step. The host only picks each round's client ids.
"""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec import memory
from fedjax_rec import metrics as metrics_lib
from fedjax_rec import server as server_lib
from fedjax_rec import sharding
from fedjax_rec.aggregators import make_aggregator
from fedjax_rec.attacks import make_attack
from fedjax_rec.client import user_optimizer
from fedjax_rec.config import SimConfig, default_num_malicious
from fedjax_rec.data import clients as clients_lib
from fedjax_rec.data.dataset import ImplicitDataset
from fedjax_rec.data.split import sample_negatives
from fedjax_rec.methods import METHODS, make_method
from fedjax_rec.models import ncf
from fedjax_rec.rounds import (_attack_phase, _part, make_client_phase, make_round_step,
                               make_server_phase, uploads_from_parts)
from fedjax_rec.server import ServerState
from fedjax_rec.types import Array, ClientStates, PyTree

__all__ = ["SimConfig", "SimState", "Simulator", "default_num_malicious", "epoch_summary",
           "_attack_phase", "_part", "make_client_phase", "make_round_step",
           "make_server_phase", "uploads_from_parts"]

# `fold_in` of the epoch key that seeds the method's end-of-epoch steps (beyond any round).
EPOCH_END = 1 << 20


class SimState(NamedTuple):
  """The whole simulation state: a checkpoint is this pytree.

  Attributes:
    server: the server's state (public parameters and its own).
    clients: every benign client's private state.
    attackers: every attacker's private state (`()` without an attack).
    epoch: global epochs completed.
  """

  server: ServerState
  clients: ClientStates
  attackers: PyTree
  epoch: Array


class Simulator:
  """Host-side driver: data layout, jitted round, epoch loop and evaluation."""

  def __init__(self, config: SimConfig, dataset: ImplicitDataset, mesh=None):
    """Args:
      config: the run.
      dataset: the split dataset.
      mesh: a `sharding.make_mesh` mesh to split each round's clients over, or
        None for one device.
    """
    self.config = config
    self.mesh = mesh
    self.dataset = dataset
    self.method = make_method(config.method, config.model, **self._method_kwargs())
    self.aggregator = make_aggregator(config.aggregator, dataset.num_items, config.convention,
                                      **dict(config.aggregator_kwargs))
    self.attack = None
    if config.attack != "none" and config.num_malicious > 0:
      self.attack = make_attack(config.attack, config.model, np.asarray(config.targets),
                                **dict(config.attack_kwargs))
    self._seen = dataset.seen()
    self._negatives_rng_seed = config.seed
    self.client_data = self._build_client_data(epoch=0)
    # Rows never outnumber samples: a fixed capacity keeps shapes when negatives change.
    self._row_capacity = int(self.dataset.train.nnz * (1 + config.num_negatives))
    with memory.memory_guard(config.clients_per_round, "placing the client data",
                             "the rows of all clients do not fit: use fewer users or more memory"):
      self.device_data = self._place_data(self.client_data)
    lengths = self.client_data.num_rows
    if config.round_assignment == "stratified":
      self.plan = clients_lib.stratified_plan(lengths, config.clients_per_round,
                                              max_buckets=config.max_buckets)
    else:
      self.plan = clients_lib.plan_buckets(lengths, config.clients_per_round, seed=config.seed)
    if mesh is not None:
      self.plan = sharding.pad_plan(self.plan, mesh.size)
    self._grid = clients_lib.length_grid(int(max(lengths.max(initial=1), 1)))
    self._fitting_plans: set[clients_lib.BucketPlan] = set()
    self.check_fits(self.plan)
    self.round_step = jax.jit(
        make_round_step(config, self.method, self.aggregator, dataset.num_users, self.attack,
                        mesh),
        donate_argnums=(1, 2), static_argnames=("lengths", "pos_lengths"))
    self._eval_cache: dict[str, Any] = {}
    self._epoch_end = jax.jit(
        lambda params, aux, key_data: self.method.epoch_end(
            params, aux, jax.random.wrap_key_data(key_data)))

  # ---- set-up -------------------------------------------------------------
  def _method_kwargs(self) -> dict:
    """The config's method kwargs, plus what a builder needs from the data.

    Training popularity (never test) and the local learning rate are supplied
    to builders that take them, unless the config sets them.
    """
    kwargs = dict(self.config.method_kwargs)
    params = inspect.signature(METHODS[self.config.method]).parameters \
        if self.config.method in METHODS else {}
    takes = lambda name: name in params or any(
        p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
    if takes("popularity") and "popularity" not in kwargs:
      kwargs["popularity"] = np.bincount(self.dataset.train.items,
                                         minlength=self.dataset.num_items)
    if takes("local_lr") and "local_lr" not in kwargs:
      kwargs["local_lr"] = self.config.local.lr
    return kwargs

  def check_fits(self, plan: clients_lib.BucketPlan) -> None:
    """Refuses, before allocating, a round that cannot fit the device's free memory.

    Only where the device reports its limit (accelerators; not CPU).

    Raises:
      memory.MemoryLimitError: naming the round size.
    """
    if plan in self._fitting_plans:
      return
    devices = self.mesh.size if self.mesh is not None else 1
    needed = memory.round_bytes_floor(plan.padded_samples // devices,
                                      self.config.model.embed_dim)
    memory.check_round_fits(needed, plan.num_slots, jax.local_devices()[0].memory_stats())
    self._fitting_plans.add(plan)

  def _place_data(self, data: clients_lib.ClientData):
    return sharding.replicate(clients_lib.to_device(data, self._row_capacity), self.mesh)

  def place(self, state: "SimState") -> "SimState":
    """Puts a (host or restored) state where the jitted round expects it."""
    return sharding.replicate(state, self.mesh)

  def _build_client_data(self, epoch: int) -> clients_lib.ClientData:
    rng = np.random.default_rng([self.config.seed, 7919, epoch])
    self.negatives = sample_negatives(self._seen, self.dataset.num_items,
                                      self.config.num_negatives, self.dataset.train, rng)
    return clients_lib.build_client_data(self.dataset.train, self.negatives,
                                         self.dataset.num_items)

  def init(self) -> SimState:
    """The initial state, from `config.seed` alone."""
    key = jax.random.key(self.config.seed)
    key_pub, key_user, key_aux, key_attack = jax.random.split(key, 4)
    params = ncf.init_public(key_pub, self.config.model, self.dataset.num_items)
    aux = self.method.init_aux(key_aux, params)
    server = server_lib.init_server(params, self.config.server, self.aggregator.init(), aux)
    user_emb = ncf.init_user_emb(key_user, self.config.model, self.dataset.num_users)
    opt_state = user_optimizer(self.config.local).init(user_emb[0])
    opt_state = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (self.dataset.num_users,) + x.shape).copy(), opt_state)
    attackers = (self.attack.init(key_attack, self.config.num_malicious, params)
                 if self.attack is not None else ())
    return self.place(SimState(server, ClientStates(user_emb, opt_state), attackers,
                               jnp.asarray(0, jnp.int32)))

  # ---- training -----------------------------------------------------------
  def epoch_rounds(self, epoch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`(benign ids, attacker ids)` of every round of global epoch `epoch`.

    Uniform: Algorithm 1's shuffle of benign and malicious clients together, cut
    into chunks. Stratified: benign clients by `stratified_rounds`, and each
    attacker placed in a uniformly random round.
    """
    rng = np.random.default_rng([self.config.seed, 104729, epoch])
    n, a = self.dataset.num_users, self._num_attackers
    if self.config.round_assignment == "stratified":
      benign = clients_lib.stratified_rounds(self.client_data.num_rows,
                                             self.config.clients_per_round, rng)
      where = rng.integers(0, len(benign), size=a)
      return [(b, np.flatnonzero(where == r)) for r, b in enumerate(benign)]
    chunks = clients_lib.shuffle_rounds(n + a, self.config.clients_per_round, rng)
    return [(c[c < n], c[c >= n] - n) for c in chunks]

  @property
  def _num_attackers(self) -> int:
    return self.config.num_malicious if self.attack is not None else 0

  def attack_slots(self, attackers: np.ndarray):
    if self.attack is None:
      return None
    slots = np.full(self._num_attackers, -1, np.int32)
    slots[:len(attackers)] = attackers
    return slots

  def round_slots(self, users: np.ndarray):
    """`(slots, plan)` of a round: the plan, or an exact one if the users overflow it."""
    plan = self.plan
    lengths = np.sort(self.client_data.num_rows[users])[::-1]
    if not plan.fits(lengths):
      plan = clients_lib.exact_plan(lengths, plan.num_slots, self._grid)
    return clients_lib.fill_slots(self.client_data.num_rows, users, plan), plan

  def apply_round(self, server, clients, attackers, users, attackers_in_round=(), key=None,
                  plan=None):
    """Runs one round for `users` (and attacker ids); the jitted `round_step`."""
    if plan is None:
      slots, plan = self.round_slots(users)
    else:
      slots = clients_lib.fill_slots(self.client_data.num_rows, users, plan)
    self.check_fits(plan)
    slots = tuple(sharding.shard_clients(s, self.mesh) for s in slots)
    key_data = np.asarray(jax.random.key_data(jax.random.key(0) if key is None else key))
    with memory.memory_guard(plan.num_slots):
      return self.round_step(server, clients, attackers, self.device_data, slots,
                             self.attack_slots(np.asarray(attackers_in_round, np.int64)),
                             key_data, lengths=plan.lengths,
                             pos_lengths=self.pos_lengths(plan.lengths)), plan

  def pos_lengths(self, lengths: tuple[int, ...]) -> tuple[int, ...]:
    """Per-class bound on positives (cached: it scans every client's rows)."""
    key = (id(self.client_data), lengths)
    if key not in self._eval_cache:
      self._eval_cache[key] = tuple(self.client_data.positive_capacity(l) for l in lengths)
    return self._eval_cache[key]

  def refresh_data(self, epoch: int) -> bool:
    """Draws fresh negatives for `epoch` if the config asks; whether it did."""
    if not (self.config.resample_negatives and epoch > 0):
      return False
    self.client_data = self._build_client_data(epoch)
    self.device_data = self._place_data(self.client_data)
    return True

  def epoch_key(self, epoch: int) -> Array:
    """The key of global epoch `epoch`: round `r` folds in `r`, the epoch end `EPOCH_END`."""
    return jax.random.fold_in(jax.random.key(self.config.seed), epoch)

  def run_epoch(self, state: SimState) -> tuple[SimState, dict[str, float]]:
    """One global epoch: every client once, then the method's server steps."""
    epoch = int(state.epoch)
    self.refresh_data(epoch)
    key_epoch = self.epoch_key(epoch)
    server, clients, attackers = state.server, state.clients, state.attackers
    t0 = time.perf_counter()
    round_metrics = []
    padded = real = 0
    for r, (users, bad) in enumerate(self.epoch_rounds(epoch)):
      (server, clients, attackers, out), plan = self.apply_round(
          server, clients, attackers, users, bad, jax.random.fold_in(key_epoch, r))
      padded += plan.padded_samples
      real += int(self.client_data.num_rows[users].sum())
      round_metrics.append(out)
    params, aux, end_metrics = self._epoch_end(
        server.params, server.aux,
        np.asarray(jax.random.key_data(jax.random.fold_in(key_epoch, EPOCH_END))))
    server = server._replace(params=params, aux=aux)
    jax.block_until_ready(server.params)
    seconds = time.perf_counter() - t0
    summary = epoch_summary(sharding.fetch(round_metrics), sharding.fetch(end_metrics),
                            epoch=epoch, seconds=seconds, real=real, padded=padded)
    return SimState(server, clients, attackers, jnp.asarray(epoch + 1, jnp.int32)), summary

  # ---- evaluation ---------------------------------------------------------
  def score_fn(self):
    """`(params, user_ids) -> [b, num_items]` with params `(public, user_emb)`."""
    return _score_fn(self.config.model)

  def evaluate(self, state: SimState, ks=(20,), targets=None, er_ks=(5, 10, 20),
               batch_size: int = 256, split: str = "test") -> dict[str, float]:
    """Recall/NDCG/Precision@K (and ER@K for `targets`) over benign users.

    `split="test"` ranks the test items with train and validation masked;
    `split="valid"` ranks the validation items with train masked (test unseen).
    """
    # Evaluation is an oracle outside the protocol; it runs on a host copy.
    params = sharding.fetch((state.server.params, state.clients.user_emb))
    if split == "valid":
      return metrics_lib.ranking_metrics(self.score_fn(), params, self.dataset.train,
                                         self.dataset.valid, ks=ks, batch_size=batch_size)
    out = metrics_lib.ranking_metrics(self.score_fn(), params, self._seen, self.dataset.test,
                                      ks=ks, batch_size=batch_size)
    out.update(metrics_lib.target_exposure(self._eval_cache, self.dataset, self.score_fn(),
                                           params, targets, er_ks, batch_size))
    return out


@functools.lru_cache(maxsize=None)
def _score_fn(model: ncf.NCFConfig):
  """One score function per model shape: runs of it (seeds, replicas) share its compilation."""

  def score(params, user_ids):
    public, user_emb = params
    return ncf.score_all(model, public.mlp, user_emb[user_ids], public.item_emb)

  return score


def epoch_summary(round_metrics: list[dict], end_metrics: dict, *, epoch: int,
                  seconds: float, real: int, padded: int) -> dict[str, float]:
  """One epoch's host metrics: the rounds' means, the epoch end's, timing and padding.

  Args:
    round_metrics: every round's host metrics (scalars).
    end_metrics: the method's end-of-epoch metrics.
    epoch: the epoch just run (0-based; reported 1-based).
    seconds: its wall time.
    real: real rows trained; `padded`: rows the plans padded them to.
  """
  summary = ({k: float(np.mean([m[k] for m in round_metrics])) for k in round_metrics[0]}
             if round_metrics else {})
  summary.update({k: float(v) for k, v in end_metrics.items()})
  summary.update(epoch=epoch + 1, seconds=seconds, rounds=len(round_metrics),
                 padding_efficiency=real / max(padded, 1))
  return summary


def tree_size_bytes(tree: PyTree) -> int:
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))
