"""The one epoch driver of every task: state, rounds, the epoch loop and evaluation.

A round is one jit (`rounds.make_round_step`): every client slot of the round's length
classes runs the task's vmapped local update, the uploads are validated and aggregated
by the configured aggregator, and the server applies its optimizer step. The host only
picks each round's client ids (`scheduling`).

Seeds are an optional leading axis. `Simulator(config, dataset, num_seeds=S)` trains
the runs with seeds `config.seed + s`, `s = 0..S-1`, on the same split dataset: each
replica has its own initial state, negatives, round assignment, client and attacker
keys, i.e. everything a run derives from its seed. The state of all replicas is one
`SimState` whose leaves have a leading `[S]` axis, and a round is `jax.vmap` of the same
round over that axis, so the S rounds run as one program (`vmap_size` groups of them
in sequence with `lax.map`: less memory at once, the same results). The results equal
S separate runs to float tolerance (`tests/test_replicas.py`).

Vmapped rounds need the same static shapes in every replica, but a seed's negatives
change its clients' lengths and so its `BucketPlan`. The replicas share one plan that
fits all of them: for stratified rounds, `stratified_plan` of the seeds' sorted lengths
taken slot by slot at their maximum; for uniform rounds, `merge_plans` of the seeds'
plans, with a merged exact plan for a round that overflows it. Padded slots are masked
and weigh 0, so they change sums only in the order of additions. Random draws over a
padded axis agree on the real rows too: with JAX's partitionable Threefry (the
default) a draw of shape `[L', ...]` starts with the draw of shape `[L, ...]`.

Limits of replicas: one device (no client mesh); the seeds share the data split and
the attack targets (they are data, chosen before the simulation).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec import oom
from fedjax_rec import metrics as metrics_lib
from fedjax_rec import metrics_loo
from fedjax_rec import scheduling
from fedjax_rec import server as server_lib
from fedjax_rec import sharding
from fedjax_rec import threat
from fedjax_rec.aggregators import make_aggregator
from fedjax_rec.aggregators.detection import pooled_rates
from fedjax_rec.attacks.base import upload_rows
from fedjax_rec.rounds import make_round_step
from fedjax_rec.seed_axis import replicate_round_step, stack, take
from fedjax_rec.server import ServerState
from fedjax_rec.task import TaskData
from fedjax_rec.types import Array, PyTree

__all__ = ["EPOCH_END", "SimState", "Simulator", "epoch_summary", "stack", "take"]

# `fold_in` of the epoch key that seeds the method's end-of-epoch steps (beyond any round).
EPOCH_END = 1 << 20


class SimState(NamedTuple):
  """The whole simulation state: a checkpoint is this pytree.

  Attributes:
    server: the server's state (public parameters and its own).
    clients: every benign client's private state (the task's pytree, leaves `[U, ...]`).
    attackers: every attacker's private state (`()` without an attack).
    epoch: global epochs completed (`[S]` with replicas).
  """

  server: ServerState
  clients: PyTree
  attackers: PyTree
  epoch: Array


class Simulator:
  """Host-side driver of any task: data placement, jitted round, epoch loop, evaluation."""

  def __init__(self, config, dataset, mesh=None, *, num_seeds: int | None = None,
               vmap_size: int | None = None, compiler_options: dict[str, Any] | None = None):
    """Args:
      config: the run; its `build_task(dataset)` gives the task (NCF: `SimConfig`,
        sequential: `SeqConfig`). With replicas, the run of seed `config.seed`.
      dataset: the split dataset.
      mesh: a `sharding.make_mesh` mesh to split each round's clients over, or None
        for one device (replicas: None only).
      num_seeds: None for one run; S for S replicas on a leading axis.
      vmap_size: replicas vmapped together, the groups in sequence (None: all).
      compiler_options: XLA options of the round's jit (e.g. tests lower
        `xla_backend_optimization_level` to compile faster); None for the defaults.
    """
    if num_seeds is not None and num_seeds < 1:
      raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    if vmap_size is not None and vmap_size < 1:
      raise ValueError(f"vmap_size must be >= 1 or None, got {vmap_size}")
    if num_seeds is not None and mesh is not None:
      raise ValueError("replicas (num_seeds) run on one device: no client mesh")
    self.config = config
    self.dataset = dataset
    self.mesh = mesh
    self.num_seeds = num_seeds
    self.seeds = tuple(config.seed + s for s in range(num_seeds or 1))
    bundles = [(config if seed == config.seed else dataclasses.replace(config, seed=seed))
               .build_task(dataset) for seed in self.seeds]
    self.task, self.data, self.attack = bundles[0]
    self.hosts: list[TaskData] = [b.data for b in bundles]
    self.aggregator = make_aggregator(config.aggregator, dataset.num_items, config.convention,
                                      **dict(config.aggregator_kwargs))
    with oom.memory_guard(config.clients_per_round, "placing the client data",
                             "the rows of all clients do not fit: use fewer users or more memory"):
      self.device_data = self._place_data()
    self.plan = self._common_plan()
    if mesh is not None:
      self.plan = sharding.pad_plan(self.plan, mesh.size)
    self._grid = scheduling.length_grid(
        int(max(max(h.num_rows.max(initial=1) for h in self.hosts), 1)))
    self._fitting_plans: set[scheduling.BucketPlan] = set()
    self._eval_cache: dict[str, Any] = {}
    self.check_fits(self.plan)
    step = make_round_step(self.task, config.server, self.aggregator, dataset.num_users,
                           self.attack, mesh, inject=config.inject_faults)
    if num_seeds is not None:
      step = replicate_round_step(step, vmap_size)
    self.round_step = jax.jit(step, donate_argnums=(1, 2) if num_seeds is None else (0, 1, 2),
                              static_argnames=("lengths", "pos_lengths"),
                              compiler_options=compiler_options)
    epoch_end = lambda params, aux, key_data: self.task.epoch_end(
        params, aux, jax.random.wrap_key_data(key_data))
    self._epoch_end = jax.jit(epoch_end if num_seeds is None else jax.vmap(epoch_end))

  # ---- set-up -------------------------------------------------------------
  def _place_data(self):
    if self.num_seeds is None:
      return sharding.replicate(self.data.device_data, self.mesh)
    return stack([h.device_data for h in self.hosts])

  def _common_plan(self) -> scheduling.BucketPlan:
    if len(self.hosts) == 1:
      return self.data.plan
    if self.data.round_assignment == "stratified":
      sized = [h.num_rows if h.plan_lengths is None else h.plan_lengths for h in self.hosts]
      rows = np.max([np.sort(r)[::-1] for r in sized], axis=0)
      return scheduling.stratified_plan(rows, self.config.clients_per_round,
                                        max_buckets=self.data.max_buckets)
    return scheduling.merge_plans([h.plan for h in self.hosts])

  def check_fits(self, plan: scheduling.BucketPlan) -> None:
    """Refuses, before allocating, a round that cannot fit the device's free memory.

    Only where the device reports its limit (accelerators; not CPU).

    Raises:
      oom.MemoryLimitError: naming the round size.
    """
    if plan in self._fitting_plans or self.data.row_dim is None:
      return
    devices = self.mesh.size if self.mesh is not None else 1
    attack_rows = self._num_attackers * upload_rows(self.attack, self.dataset.num_items)
    needed = oom.round_bytes_floor((plan.padded_samples + attack_rows) * len(self.hosts)
                                   // devices, self.data.row_dim)
    oom.check_round_fits(needed, plan.num_slots, jax.local_devices()[0].memory_stats())
    self._fitting_plans.add(plan)

  def place(self, state: SimState) -> SimState:
    """Puts a (host or restored) state where the jitted round expects it."""
    return sharding.replicate(state, self.mesh)

  def init(self) -> SimState:
    """The initial state, from the seeds alone (stacked `[S]` with replicas)."""
    states = [self._init_one(seed) for seed in self.seeds]
    if self.num_seeds is None:
      return self.place(states[0])
    return stack(states)

  def _init_one(self, seed: int) -> SimState:
    params, private, aux, key_attack = self.task.init(jax.random.key(seed))
    server = server_lib.init_server(params, self.config.server, self.aggregator.init(), aux)
    attackers = (self.attack.init(key_attack, self.config.num_malicious, params)
                 if self.attack is not None else ())
    return SimState(server, private, attackers, jnp.asarray(0, jnp.int32))

  # ---- scheduling ---------------------------------------------------------
  @property
  def _num_attackers(self) -> int:
    return self.config.num_malicious if self.attack is not None else 0

  def epoch_rounds(self, epoch: int, replica: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`(benign ids, attacker ids)` of every round of global epoch `epoch`.

    Uniform: Algorithm 1's shuffle of benign and malicious clients together, cut
    into chunks. Stratified: benign clients by `stratified_rounds`, and each
    attacker placed in a uniformly random round. The attack's start epoch and
    schedule (`threat.deal_rounds`) may keep attackers out or put K in every round.
    """
    host = self.hosts[replica]
    rng = np.random.default_rng([self.seeds[replica], 104729, epoch])
    return threat.deal_rounds(host.num_rows, host.round_assignment, self._num_attackers,
                              self.config, epoch, rng)

  def attack_slots(self, attackers: np.ndarray):
    if self.attack is None:
      return None
    slots = np.full(self._num_attackers, -1, np.int32)
    slots[:len(attackers)] = attackers
    return slots

  def round_slots(self, users: np.ndarray, replica: int = 0):
    """`(slots, plan)` of a round: the plan, or an exact one if the users overflow it."""
    plan, rows = self.plan, self.hosts[replica].num_rows
    lengths = np.sort(rows[users])[::-1]
    if not plan.fits(lengths):
      plan = scheduling.exact_plan(lengths, plan.num_slots, self._grid)
    return scheduling.fill_slots(rows, users, plan), plan

  def replica_round_slots(self, assignment: list[tuple[np.ndarray, np.ndarray]]):
    """`(slots, attack_slots, plan)` of one round of every replica.

    Args:
      assignment: each replica's `(benign ids, attacker ids)` of the round.

    Returns:
      Each class's `[S, capacity]` user ids, the `[S, A]` attacker slots (None
      without an attack) and the plan they share.
    """
    plan = self.plan
    misfits = [self.round_slots(users, s)[1] for s, (users, _) in enumerate(assignment)
               if not plan.fits(np.sort(self.hosts[s].num_rows[users])[::-1])]
    if misfits:
      plan = scheduling.merge_plans([plan] + misfits)
    per_seed = [scheduling.fill_slots(self.hosts[s].num_rows, users, plan)
                for s, (users, _) in enumerate(assignment)]
    slots = tuple(np.stack(cls) for cls in zip(*per_seed))
    attack_slots = None
    if self.attack is not None:
      attack_slots = np.stack([self.attack_slots(np.asarray(bad, np.int64))
                               for _, bad in assignment])
    return slots, attack_slots, plan

  def arrange(self, slots, lengths: tuple[int, ...]):
    """`(slots, lengths, pos_lengths)` as the task lays out a round's classes
    (`TaskData.arrange`); replicas keep the plan's classes, bounded over them all."""
    if len(self.hosts) == 1:
      return self.data.arrange(slots, lengths)
    pos = np.max([h.pos_lengths(lengths) for h in self.hosts], 0)
    return slots, lengths, tuple(int(x) for x in pos)

  # ---- training -----------------------------------------------------------
  def apply_round(self, server, clients, attackers, users, attackers_in_round=(), key=None,
                  plan=None):
    """Runs one round for `users` (and attacker ids) of a single run; the jitted round."""
    if plan is None:
      slots, plan = self.round_slots(users)
    else:
      slots = scheduling.fill_slots(self.data.num_rows, users, plan)
    self.check_fits(plan)
    slots, lengths, pos_lengths = self.arrange(slots, plan.lengths)
    slots = tuple(sharding.shard_clients(s, self.mesh) for s in slots)
    key_data = np.asarray(jax.random.key_data(jax.random.key(0) if key is None else key))
    with oom.memory_guard(plan.num_slots):
      return self.round_step(server, clients, attackers, self.device_data, slots,
                             self.attack_slots(np.asarray(attackers_in_round, np.int64)),
                             key_data, lengths=lengths, pos_lengths=pos_lengths), plan

  def refresh_data(self, epoch: int) -> bool:
    """Renews the tasks' data for `epoch` where they ask (e.g. fresh negatives)."""
    if any([h.refresh(epoch) for h in self.hosts]):
      self.device_data = self._place_data()
      return True
    return False

  def epoch_key(self, epoch: int, replica: int = 0) -> Array:
    """The key of global epoch `epoch`: round `r` folds in `r`, the epoch end `EPOCH_END`."""
    return jax.random.fold_in(jax.random.key(self.seeds[replica]), epoch)

  def run_epoch(self, state: SimState):
    """One global epoch: every client once, then the method's server steps.

    Returns:
      `(state, summary)`; with replicas, `summary` is a list of each replica's (a
      summary's `seconds` is then the wall time of all replicas' epoch together).
    """
    epoch = int(np.min(state.epoch))
    self.refresh_data(epoch)
    replicas = range(len(self.seeds))
    keys = [self.epoch_key(epoch, s) for s in replicas]
    rounds = [self.epoch_rounds(epoch, s) for s in replicas]
    if len({len(r) for r in rounds}) != 1:
      raise ValueError("replicas disagree on the number of rounds per epoch")
    server, clients, attackers = state.server, state.clients, state.attackers
    t0 = time.perf_counter()
    round_metrics = []
    padded, real = 0, np.zeros(len(self.seeds), np.int64)
    for r, assignment in enumerate(zip(*rounds)):
      if self.num_seeds is None:
        (users, bad), = assignment
        (server, clients, attackers, out), plan = self.apply_round(
            server, clients, attackers, users, bad, jax.random.fold_in(keys[0], r))
      else:
        slots, attack_slots, plan = self.replica_round_slots(list(assignment))
        slots, lengths, pos_lengths = self.arrange(slots, plan.lengths)
        key_data = np.stack([jax.random.key_data(jax.random.fold_in(k, r)) for k in keys])
        server, clients, attackers, out = self.round_step(
            server, clients, attackers, self.device_data, slots, attack_slots, key_data,
            lengths=lengths, pos_lengths=pos_lengths)
      padded += plan.padded_samples
      real += [int(h.num_rows[users].sum()) for h, (users, _) in zip(self.hosts, assignment)]
      round_metrics.append(out)
    end_keys = np.stack([jax.random.key_data(jax.random.fold_in(k, EPOCH_END)) for k in keys])
    params, aux, end_metrics = self._epoch_end(
        server.params, server.aux, end_keys[0] if self.num_seeds is None else end_keys)
    server = server._replace(params=params, aux=aux)
    jax.block_until_ready(server.params)
    seconds = time.perf_counter() - t0
    host, end_host = sharding.fetch((round_metrics, end_metrics))
    if self.num_seeds is None:
      summary = epoch_summary(host, end_host, epoch=epoch, seconds=seconds, real=int(real[0]),
                              padded=padded)
      return SimState(server, clients, attackers, jnp.asarray(epoch + 1, jnp.int32)), summary
    summaries = [epoch_summary([take(m, s) for m in host], take(end_host, s), epoch=epoch,
                               seconds=seconds, real=int(real[s]), padded=padded)
                 for s in replicas]
    new_epoch = jnp.full((self.num_seeds,), epoch + 1, jnp.int32)
    return SimState(server, clients, attackers, new_epoch), summaries

  # ---- evaluation ---------------------------------------------------------
  def score_fn(self):
    """`(params, user_ids) -> [b, num_items]`, params from `eval_params`."""
    return self.task.score

  def eval_params(self, state: SimState):
    """The scorer's params of a single run's state (a host copy: evaluation is an oracle
    outside the protocol)."""
    return sharding.fetch(self.task.eval_params(state.server.params, state.clients))

  def evaluate(self, state: SimState, ks=(20,), targets=None, er_ks=(5, 10, 20),
               batch_size: int = 256, split: str = "test", users: int | None = None,
               precision: str = "fp32"):
    """Recall/NDCG/Precision@K (and ER@K for `targets`) over benign users, from one
    scoring pass (`metrics.evaluate`).

    `split="test"` ranks the test items with train and validation masked;
    `split="valid"` ranks the validation items with train masked (test unseen).
    `users=N` ranks a fixed, seeded sample of N users and adds each ranking metric's
    standard error (`<metric>_se`). Tasks with one test item per user also report
    `hr@K` (= `recall@K`) and no precision. With replicas, a list of each replica's
    metrics.
    """
    one = functools.partial(self._evaluate_one, ks=tuple(ks), targets=targets,
                            er_ks=tuple(er_ks), batch_size=batch_size, split=split,
                            users=users, precision=precision)
    if self.num_seeds is not None:
      return [one(take(state, s)) for s in range(self.num_seeds)]
    return one(state)

  def _evaluate_one(self, state, *, ks, targets, er_ks, batch_size, split, users,
                    precision) -> dict[str, float]:
    cache = self._eval_cache
    if "seen" not in cache:
      cache["seen"] = self.dataset.seen()
      cache["interacted"] = self.dataset.interacted()
    if split == "valid":
      exclude, test, targets = self.dataset.train, self.dataset.valid, None
    else:
      exclude, test = cache["seen"], self.dataset.test
    params = self.eval_params(state)
    out = metrics_lib.evaluate(
        self.task.score, params, exclude, test, ks,
        interacted=cache["interacted"], targets=targets, er_ks=er_ks, batch_size=batch_size,
        num_users_sample=users, sample_seed=self.config.seed, precision=precision)
    out = metrics_loo.hit_rate_names(out) if self.data.hit_rate else out
    if split == "test" and self.dataset.eval_negatives is not None:  # leave-one-out
      out.update(metrics_loo.sampled_metrics(
          self.task.score, params, test, self.dataset.eval_negatives, ks,
          batch_size=batch_size, num_users_sample=users, sample_seed=self.config.seed,
          precision=precision))
    return out


def epoch_summary(round_metrics: list[dict], end_metrics: dict, *, epoch: int,
                  seconds: float, real: int, padded: int) -> dict[str, float]:
  """One epoch's host metrics: the rounds' means (detection rates pooled), the epoch end's,
  timing and padding.

  Args:
    round_metrics: every round's host metrics (scalars).
    end_metrics: the method's end-of-epoch metrics.
    epoch: the epoch just run (0-based; reported 1-based).
    seconds: its wall time.
    real: real rows trained; `padded`: rows the plans padded them to.
  """
  summary = ({k: float(np.mean([m[k] for m in round_metrics])) for k in round_metrics[0]}
             if round_metrics else {})
  summary.update(pooled_rates(summary))  # detection rates pooled over the rounds
  summary.update({k: float(v) for k, v in end_metrics.items()})
  summary.update(epoch=epoch + 1, seconds=seconds, rounds=len(round_metrics),
                 padding_efficiency=real / max(padded, 1))
  return summary
