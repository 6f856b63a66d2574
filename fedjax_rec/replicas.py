"""Independent replicas of a run as a leading `seed` axis of one jitted program.

`ReplicaSimulator(config, dataset, num_seeds=S)` trains the runs with seeds
`config.seed + s`, `s = 0..S-1`, on the same split dataset: each replica has its
own initial state, negatives, round assignment, client and attacker keys, i.e.
everything that `Simulator` derives from `config.seed`. The results equal S
separate `Simulator` runs to float tolerance (`tests/test_replicas.py`).

One `Simulator` per seed does the host-side work (negatives, round assignment,
slot filling, evaluation); the state of all replicas is one `SimState` whose
leaves have a leading `[S]` axis, and a round is `jax.vmap` of the same
`rounds.make_round_step` over that axis, so the S rounds run as one program.
With `vmap_size` set, that many replicas are vmapped together and the groups
run one after another in the same program (`lax.map`): less memory at once, the
same results. On a CPU the round is bound by its arithmetic, so one vmapped
program costs about what S runs do per epoch; what it saves there is S - 1
compilations (`python -m experiments.benchmark --seeds_benchmark=4`).

Vmapped rounds need the same static shapes in every replica, but a seed's
negatives change its clients' row counts and so its `BucketPlan`. The replicas
share one plan that fits all of them: for stratified rounds, `stratified_plan`
of the seeds' sorted row counts, taken slot by slot at their maximum (every
seed's stratified rounds fit it, so a run compiles once); for uniform rounds,
`merge_plans` of the seeds' plans, with a merged exact plan for a round that
overflows it. A replica's clients then sit in slots that may be longer than in
its own run, and its unfilled slots hold padding clients (id -1): both are
masked and weigh 0, so they change sums only in the order of additions. Random
draws over a padded axis (mini-batch shuffles, item views) agree on the real
rows too: with JAX's partitionable Threefry (the default) a draw of shape
`[L', ...]` starts with the draw of shape `[L, ...]` for `L <= L'`.

Limits: one device (no client mesh); the seeds share the data split and the
attack targets (they are data, chosen before the simulation).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec import io
from fedjax_rec import metrics as metrics_lib
from fedjax_rec import runner
from fedjax_rec.data import clients as clients_lib
from fedjax_rec.data.dataset import ImplicitDataset
from fedjax_rec.rounds import make_round_step
from fedjax_rec.simulation import EPOCH_END, SimConfig, SimState, Simulator, epoch_summary
from fedjax_rec.types import PyTree


def stack(trees: list[PyTree]) -> PyTree:
  """Stacks same-shaped pytrees along a new leading axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def take(tree: PyTree, s: int) -> PyTree:
  """Replica `s` of a stacked pytree."""
  return jax.tree.map(lambda x: x[s], tree)


def replicate_round_step(round_step: Callable, vmap_size: int | None = None) -> Callable:
  """`round_step` over a leading replica axis of everything but the (static) shapes.

  Args:
    round_step: `rounds.make_round_step`'s function of one replica.
    vmap_size: replicas vmapped together; groups run in sequence (`lax.map`).
      None: all of them at once.
  """

  def step(server, clients, attackers, client_data, slots, attack_slots, key_data, lengths,
           pos_lengths):
    one = functools.partial(round_step, lengths=lengths, pos_lengths=pos_lengths)
    args = (server, clients, attackers, client_data, slots, attack_slots, key_data)
    if vmap_size is None or vmap_size >= len(key_data):
      return jax.vmap(one)(*args)
    return jax.lax.map(lambda xs: one(*xs), args, batch_size=vmap_size)

  return step


class ReplicaSimulator:
  """S independent runs of `config` (seeds `config.seed + s`) in one jitted round."""

  def __init__(self, config: SimConfig, dataset: ImplicitDataset, num_seeds: int,
               vmap_size: int | None = None):
    """Args:
      config: the run of seed `config.seed`; replica `s` has seed `config.seed + s`.
      dataset: the split dataset, shared by the replicas.
      num_seeds: S.
      vmap_size: replicas vmapped together, the groups in sequence (None: all).
    """
    if num_seeds < 1:
      raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    self.vmap_size = vmap_size
    if vmap_size is not None and vmap_size < 1:
      raise ValueError(f"vmap_size must be >= 1 or None, got {vmap_size}")
    self.config = config
    self.dataset = dataset
    self.seeds = tuple(config.seed + s for s in range(num_seeds))
    self.sims = [Simulator(dataclasses.replace(config, seed=seed), dataset)
                 for seed in self.seeds]
    self.plan = self._common_plan()
    self.device_data = stack([sim.device_data for sim in self.sims])
    lead = self.sims[0]
    self.round_step = jax.jit(
        replicate_round_step(make_round_step(config, lead.method, lead.aggregator,
                                             dataset.num_users, lead.attack),
                             self.vmap_size),
        donate_argnums=(0, 1, 2), static_argnames=("lengths", "pos_lengths"))
    self._epoch_end = jax.jit(jax.vmap(
        lambda params, aux, key_data: lead.method.epoch_end(
            params, aux, jax.random.wrap_key_data(key_data))))

  @property
  def num_seeds(self) -> int:
    return len(self.seeds)

  def _common_plan(self) -> clients_lib.BucketPlan:
    if self.config.round_assignment == "stratified":
      rows = np.max([np.sort(sim.client_data.num_rows)[::-1] for sim in self.sims], axis=0)
      return clients_lib.stratified_plan(rows, self.config.clients_per_round,
                                         max_buckets=self.config.max_buckets)
    return clients_lib.merge_plans([sim.plan for sim in self.sims])

  def init(self) -> SimState:
    """Every replica's initial state, stacked: `epoch` is `[S]`."""
    return stack([sim.init() for sim in self.sims])

  def place(self, state: SimState) -> SimState:
    return state

  def round_slots(self, assignment: list[tuple[np.ndarray, np.ndarray]]):
    """`(slots, attack_slots, plan)` of one round of every replica.

    Args:
      assignment: each replica's `(benign ids, attacker ids)` of the round.

    Returns:
      Each class's `[S, capacity]` user ids, the `[S, A]` attacker slots (None
      without an attack) and the plan they share.
    """
    plan = self.plan
    misfits = [sim.round_slots(users)[1] for sim, (users, _) in zip(self.sims, assignment)
               if not plan.fits(np.sort(sim.client_data.num_rows[users])[::-1])]
    if misfits:
      plan = clients_lib.merge_plans([plan] + misfits)
    per_seed = [clients_lib.fill_slots(sim.client_data.num_rows, users, plan)
                for sim, (users, _) in zip(self.sims, assignment)]
    slots = tuple(np.stack(cls) for cls in zip(*per_seed))
    attack_slots = None
    if self.sims[0].attack is not None:
      attack_slots = np.stack([sim.attack_slots(np.asarray(bad, np.int64))
                               for sim, (_, bad) in zip(self.sims, assignment)])
    return slots, attack_slots, plan

  def pos_lengths(self, lengths: tuple[int, ...]) -> tuple[int, ...]:
    """Per-class bound on positives over every replica's clients."""
    return tuple(int(x) for x in np.max([sim.pos_lengths(lengths) for sim in self.sims], 0))

  def run_epoch(self, state: SimState) -> tuple[SimState, list[dict[str, float]]]:
    """One global epoch of every replica; returns the state and each replica's summary.

    A summary's `seconds` is the wall time of all replicas' epoch together.
    """
    epoch = int(np.min(state.epoch))
    if any([sim.refresh_data(epoch) for sim in self.sims]):
      self.device_data = stack([sim.device_data for sim in self.sims])
    keys = [sim.epoch_key(epoch) for sim in self.sims]
    rounds = [sim.epoch_rounds(epoch) for sim in self.sims]
    if len({len(r) for r in rounds}) != 1:
      raise ValueError("replicas disagree on the number of rounds per epoch")
    server, clients, attackers = state.server, state.clients, state.attackers
    t0 = time.perf_counter()
    round_metrics = []
    padded, real = 0, np.zeros(self.num_seeds, np.int64)
    for r, assignment in enumerate(zip(*rounds)):
      slots, attack_slots, plan = self.round_slots(list(assignment))
      key_data = np.stack([jax.random.key_data(jax.random.fold_in(k, r)) for k in keys])
      server, clients, attackers, out = self.round_step(
          server, clients, attackers, self.device_data, slots, attack_slots, key_data,
          lengths=plan.lengths, pos_lengths=self.pos_lengths(plan.lengths))
      padded += plan.padded_samples
      real += [int(sim.client_data.num_rows[users].sum())
               for sim, (users, _) in zip(self.sims, assignment)]
      round_metrics.append(out)
    end_keys = np.stack([jax.random.key_data(jax.random.fold_in(k, EPOCH_END)) for k in keys])
    params, aux, end_metrics = self._epoch_end(server.params, server.aux, end_keys)
    server = server._replace(params=params, aux=aux)
    jax.block_until_ready(server.params)
    seconds = time.perf_counter() - t0
    host, end_host = jax.device_get((round_metrics, end_metrics))
    summaries = [epoch_summary([take(m, s) for m in host], take(end_host, s), epoch=epoch,
                               seconds=seconds, real=int(real[s]), padded=padded)
                 for s in range(self.num_seeds)]
    new_epoch = jnp.full((self.num_seeds,), epoch + 1, jnp.int32)
    return SimState(server, clients, attackers, new_epoch), summaries

  def evaluate(self, state: SimState, **kwargs) -> list[dict[str, float]]:
    """Each replica's `Simulator.evaluate` (same keyword arguments)."""
    return [sim.evaluate(take(state, s), **kwargs) for s, sim in enumerate(self.sims)]


def run_replicas(config: SimConfig, dataset: ImplicitDataset, num_seeds: int, *,
                 workdir: str | Path | None = None,
                 eval_config: runner.EvalConfig = runner.EvalConfig(),
                 checkpoint_every: int = 1, log: Callable[[str], None] = print,
                 vmap_size: int | None = None) -> dict:
  """`runner.run` for `num_seeds` replicas; returns the summary dict.

  The workdir is one run's layout: `config.json` (the base config plus
  `num_seeds`), `metrics.jsonl` with one row per (epoch, replica) carrying a
  `seed` column, `checkpoint.msgpack` holding the stacked state (a rerun resumes
  from it), and `summary.json` with each replica's final row and their mean and
  standard deviation. `vmap_size` is `ReplicaSimulator`'s (it changes speed, not results).
  """
  sim = ReplicaSimulator(config, dataset, num_seeds, vmap_size)
  state = sim.init()
  rows: list[dict] = []
  wd = Path(workdir) if workdir is not None else None
  cfg = {**runner.config_dict(config, dataset.name, eval_config), "num_seeds": num_seeds}
  if wd is not None:
    state, rows = runner.resume_workdir(wd, cfg, sim, state, log)
    if (wd / "summary.json").exists() and int(np.min(state.epoch)) >= config.epochs:
      log(f"{wd}: already finished ({config.epochs} epochs); nothing to do")
      return json.loads((wd / "summary.json").read_text())
    io.atomic_write_json(wd / "config.json", cfg)
  targets = np.asarray(config.targets, np.int64)
  mostpop = metrics_lib.mostpop_metrics(dataset, ks=eval_config.ks)
  log(f"{dataset.summary()}")
  log(f"{num_seeds} replicas (seeds {sim.seeds[0]}..{sim.seeds[-1]}); plan: "
      f"{len(sim.plan.lengths)} length buckets, {sim.plan.num_slots} slots/round")
  start = int(np.min(state.epoch))
  for epoch in range(start, config.epochs):
    if epoch == start:
      log(f"epoch {epoch + 1}: compiling the round (once per run) ...")
    state, train_ms = sim.run_epoch(state)
    runner.check_finite(state, epoch + 1)
    new = [{"epoch": epoch + 1, "seed": seed,
            **{f"train/{k}": v for k, v in m.items() if k != "epoch"}}
           for seed, m in zip(sim.seeds, train_ms)]
    if (epoch + 1) % eval_config.every == 0 or epoch + 1 == config.epochs:
      t0 = time.perf_counter()
      evals = sim.evaluate(state, ks=eval_config.ks, targets=targets if len(targets) else None,
                           er_ks=eval_config.er_ks, batch_size=eval_config.batch_size)
      seconds = (time.perf_counter() - t0) / num_seeds
      for row, ev in zip(new, evals):
        row.update({f"test/{k}": v for k, v in ev.items()}, eval_seconds=seconds)
    rows += new
    for row in new:
      log(f"seed {row['seed']}: " + runner.epoch_line(row))
    if wd is not None:
      io.write_jsonl(wd / "metrics.jsonl", rows)
      if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == config.epochs:
        io.save_checkpoint(wd / io.CHECKPOINT_NAME, state)
  summary = replica_summary(rows, dataset.name, config.epochs, sim.seeds, mostpop)
  if wd is not None:
    io.atomic_write_json(wd / "summary.json", summary)
  return summary


def replica_summary(rows: list[dict], dataset_name: str, epochs: int, seeds: tuple[int, ...],
                    mostpop: dict) -> dict:
  """Each replica's last row, and the mean and standard deviation of its numbers."""
  final = [max((r for r in rows if r["seed"] == seed), key=lambda r: r["epoch"], default={})
           for seed in seeds]
  keys = [k for k in final[0] if k not in ("epoch", "seed")] if final and final[0] else []
  values = {k: np.asarray([f.get(k, np.nan) for f in final], np.float64) for k in keys}
  return {"dataset": dataset_name, "epochs": epochs, "seeds": list(seeds), "final": final,
          "mean": {k: float(np.mean(v)) for k, v in values.items()},
          "std": {k: float(np.std(v)) for k, v in values.items()}, "mostpop": mostpop}
