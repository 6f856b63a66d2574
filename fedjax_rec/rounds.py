"""The jitted round of any `Task`: client phase, attackers, server phase, after-round step.

The client phase is the only code that touches the clients' private state; the server
phase and the task's `after_round` receive `Uploads` and the `ServerState`, nothing else.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec import server as server_lib
from fedjax_rec import sharding
from fedjax_rec.aggregators.base import ServerView
from fedjax_rec.attacks.base import Attack
from fedjax_rec.attacks.benign import benign_stats
from fedjax_rec.faults import inject_faults, parse_faults
from fedjax_rec.server import ServerState
from fedjax_rec.task import ClientUpload, Task
from fedjax_rec.types import Array, PyTree, Uploads


def per_client_keys(key: Array, ids: Array) -> Array:
  """One key per client, from its id: independent of slots, order and padding."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.maximum(ids, 0))


def _gather(tree: PyTree, idx: Array) -> PyTree:
  return jax.tree.map(lambda x: x[idx], tree)


def _scatter(tree: PyTree, idx: Array, new: PyTree) -> PyTree:
  return jax.tree.map(lambda s, x: s.at[idx].set(x, mode="drop"), tree, new)


def attack_phase(attack: Attack, public, ctx, attackers: PyTree, slots: Array, key: Array,
                 benign=None):
  """Runs the round's attacker slots (`slots [A]`, -1 empty) vmapped.

  `benign` (the round's `attacks.benign.BenignStats`) is passed to every slot of an
  attack with `needs_benign`, and must be None otherwise.

  Returns:
    `(attackers', [A] uploads, real [A])`.
  """
  real = slots >= 0
  num_attackers = jax.tree.leaves(attackers)[0].shape[0]
  state = _gather(attackers, jnp.where(real, slots, 0))
  keys = per_client_keys(key, slots)
  if benign is None:
    new_state, up = jax.vmap(attack.update, in_axes=(None, None, 0, 0))(public, ctx, state,
                                                                         keys)
  else:
    new_state, up = jax.vmap(attack.update, in_axes=(None, None, 0, 0, None))(
        public, ctx, state, keys, benign)
  attackers = _scatter(attackers, jnp.where(real, slots, num_attackers), new_state)
  return attackers, up, real


def make_client_phase(task: Task, num_users: int, mesh=None):
  """Builds `client_phase(public, ctx, private, client_data, slots, lengths, key,
  pos_lengths)`.

  `slots` holds each length class's `[capacity]` user ids (-1: empty slot) and
  `lengths` (static) their padded lengths. Every class gathers its users' data from the
  device-resident `client_data` (`task.gather`), then runs the one-user update vmapped
  over its slots. Returns `(private, parts, metrics)`: `parts` are each class's upload
  fields (see `uploads_from_parts`), `metrics` the clients' metrics averaged over the
  real slots.
  """
  vmapped = jax.vmap(task.client_update, in_axes=(None, None, 0, 0, 0))

  def client_phase(public, ctx, private: PyTree, client_data, slots, lengths, key,
                   pos_lengths=None):
    pos_lengths = lengths if pos_lengths is None else pos_lengths
    parts, client_metrics, reals = [], [], []
    slot_offset = 0
    for slot_user, length, pos_length in zip(slots, lengths, pos_lengths):
      real = slot_user >= 0
      real, data = sharding.constrain_clients(
          (real, task.gather(client_data, slot_user, length, pos_length)), mesh)
      mine = _gather(private, jnp.where(real, slot_user, 0))
      new, up, m = vmapped(public, ctx, mine, data, per_client_keys(key, slot_user))
      private = _scatter(private, jnp.where(real, slot_user, num_users), new)
      parts.append(_part(slot_offset, up, real, malicious=False))
      client_metrics.append(m)
      reals.append(real)
      slot_offset += slot_user.shape[0]
    return private, parts, _masked_means(client_metrics, reals)

  return client_phase


def _masked_means(per_class: list[dict], reals: list[Array]) -> dict[str, Array]:
  """Each metric's mean over the real slots of every class."""
  if not per_class or not per_class[0]:
    return {}
  real = jnp.concatenate(reals)
  out = {}
  for name in per_class[0]:
    x = jnp.concatenate([m[name] for m in per_class])
    out[f"loss/{name}"] = jnp.sum(jnp.where(real, x, 0.0)) / jnp.maximum(jnp.sum(real), 1)
  return out


def _part(slot_offset: int, up: ClientUpload, real: Array, malicious: bool) -> dict:
  cap, rows = up.row_item.shape
  return dict(
      row_client=jnp.repeat(jnp.arange(cap, dtype=jnp.int32) + slot_offset, rows),
      row_item=up.row_item.reshape(-1),
      row_grad=up.row_grad.reshape(cap * rows, -1),
      row_mask=(up.row_mask & real[:, None]).reshape(-1),
      net=up.net,
      client_weight=jnp.where(real, up.weight, 0.0),
      client_mask=real,
      client_malicious=real if malicious else jnp.zeros_like(real))


def uploads_from_parts(parts: list[dict]) -> Uploads:
  """Concatenates the classes' (and attackers') upload fields into one `Uploads`."""
  cat = lambda *xs: jnp.concatenate(xs, axis=0)
  return Uploads(**{k: jax.tree.map(cat, *[p[k] for p in parts]) for k in parts[0]})


def make_server_phase(server_config, aggregator):
  """Builds `server_phase(server, uploads) -> (server, metrics)`.

  Aggregation and the server step: it sees uploads, never client states.
  """

  def server_phase(server: ServerState, uploads: Uploads):
    if aggregator.needs_view:  # public parameters only, never a client's state
      view = ServerView(item_emb=server.params.item_emb, lr=server_config.lr)
      agg, agg_state, agg_metrics = aggregator.apply(uploads, server.agg_state, view)
    else:
      agg, agg_state, agg_metrics = aggregator.apply(uploads, server.agg_state)
    new = server_lib.apply_aggregate(server._replace(agg_state=agg_state), agg, server_config)
    out = dict(agg_metrics)
    out.update(server_lib.update_norms(server.params, new.params))
    out["num_clients"] = jnp.sum(uploads.client_mask)
    out["num_malicious"] = jnp.sum(uploads.client_malicious)
    return new, out

  return server_phase


def make_round_step(task: Task, server_config, aggregator, num_users: int,
                    attack: Attack | None = None, mesh=None, inject: str = "none"):
  """Builds the pure round function of `task`.

  Args:
    task: the recommender.
    server_config: the server optimizer (`server.ServerConfig`).
    aggregator: an `aggregators.Aggregator`.
    num_users: benign clients `U`.
    attack: the attack, or None.
    mesh: a client mesh (`sharding.make_mesh`), or None.
    inject: `faults` spec ("none", or "KIND:K": the first K benign slots' uploads are
      corrupted before the server phase; metric `injected_faults`).

  Returns:
    `round_step(server, private, attackers, client_data, slots, attack_slots,
    key_data, lengths, pos_lengths) -> (server, private, attackers, metrics)`.
    `slots` and `lengths` (static) are as in `make_client_phase`; `pos_lengths`
    (static) bound each class's positives; `attack_slots` is `[A]` attacker ids (-1
    for empty slots), or None without an attack; `key_data` is the raw `uint32` data
    of the round's key (plain arrays cross hosts).
  """
  client_phase = make_client_phase(task, num_users, mesh)
  server_phase = make_server_phase(server_config, aggregator)
  faults = parse_faults(inject)

  def round_step(server: ServerState, private: PyTree, attackers: PyTree, client_data,
                 slots, attack_slots, key_data, lengths, pos_lengths):
    ctx = task.context(server.aux)
    key_clients, key_attack, key_after = task.round_keys(jax.random.wrap_key_data(key_data))
    private, parts, client_m = client_phase(server.params, ctx, private, client_data, slots,
                                            lengths, key_clients, pos_lengths)
    if attack is not None and attack_slots is not None:
      benign = None
      if attack.needs_benign:  # the benign uploads only, never a client's state
        benign = benign_stats(uploads_from_parts(parts), server.params.item_emb.shape[0],
                              jnp.sum(attack_slots >= 0), distances=attack.needs_distances)
      attackers, up, real = attack_phase(attack, server.params, ctx, attackers, attack_slots,
                                         key_attack, benign)
      offset = sum(int(p["client_mask"].shape[0]) for p in parts)
      parts.append(_part(offset, up, real, malicious=True))
    uploads = uploads_from_parts(parts)
    if faults is not None:
      uploads, faulty = inject_faults(uploads, *faults)
    server, out = server_phase(server, uploads)
    if faults is not None:
      out["injected_faults"] = faulty
    if task.after_round is not None:
      server, after_m = task.after_round(server, uploads, key_after)
      out.update(after_m)
    out.update(client_m)
    return server, private, attackers, out

  return round_step
