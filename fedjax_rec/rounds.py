"""The jitted round: client phase (vmapped local updates), attackers, server phase.

The client phase is the only code that touches `ClientStates`; the server phase
receives `Uploads` and the `ServerState`, nothing else.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec import server as server_lib
from fedjax_rec import sharding
from fedjax_rec.attacks import Attack
from fedjax_rec.client import LocalData, make_client_update
from fedjax_rec.config import SimConfig
from fedjax_rec.data import clients as clients_lib
from fedjax_rec.faults import inject_faults, parse_faults
from fedjax_rec.methods import Method
from fedjax_rec.server import ServerState
from fedjax_rec.types import Array, ClientStates, PyTree, Uploads


def per_client_keys(key: Array, ids: Array) -> Array:
  """One key per client, from its id: independent of slots, order and padding."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.maximum(ids, 0))


def _attack_phase(attack: Attack, public, ctx, attackers: PyTree, slots: Array, key: Array):
  """Runs the round's attacker slots (`slots [A]`, -1 empty) vmapped."""
  real = slots >= 0
  num_attackers = jax.tree.leaves(attackers)[0].shape[0]
  state = jax.tree.map(lambda x: x[jnp.where(real, slots, 0)], attackers)
  keys = per_client_keys(key, slots)
  new_state, up = jax.vmap(attack.update, in_axes=(None, None, 0, 0))(public, ctx, state, keys)
  scatter_idx = jnp.where(real, slots, num_attackers)
  attackers = jax.tree.map(lambda s, x: s.at[scatter_idx].set(x, mode="drop"),
                           attackers, new_state)
  return attackers, up, real


def make_client_phase(config: SimConfig, method: Method, num_users: int, mesh=None):
  """Builds `client_phase(public, ctx, clients, data, slots, lengths, key)`.

  `slots` holds each length class's `[capacity]` user ids (-1: empty slot) and
  `lengths` (static) their padded lengths. Every class gathers its users' rows
  from the device-resident `data`, then runs the one-user update vmapped over
  its slots. Returns `(clients, parts)`, `parts` being each class's sparse
  upload fields (see `uploads_from_parts`).
  """
  client_update = make_client_update(method.loss_fn, config.local)
  vmapped = jax.vmap(client_update, in_axes=(None, None, 0, 0, 0, 0))

  def client_phase(public, ctx, clients: ClientStates, client_data, slots, lengths, key,
                   pos_lengths=None):
    pos_lengths = lengths if pos_lengths is None else pos_lengths
    parts = []
    slot_offset = 0
    for slot_user, length, pos_length in zip(slots, lengths, pos_lengths):
      real, item, label, weight, mask, pos_mask = sharding.constrain_clients(
          clients_lib.gather_local(client_data, slot_user, length, pos_length), mesh)
      data = LocalData(item, label, weight, mask, pos_mask)
      gather_idx = jnp.where(real, slot_user, 0)
      scatter_idx = jnp.where(real, slot_user, num_users)  # out of range: dropped
      cap = slot_user.shape[0]
      u = clients.user_emb[gather_idx]
      opt = jax.tree.map(lambda x: x[gather_idx], clients.opt_state)
      keys = per_client_keys(key, slot_user)
      new_u, new_opt, up = vmapped(public, ctx, u, opt, data, keys)
      clients = ClientStates(
          clients.user_emb.at[scatter_idx].set(new_u, mode="drop"),
          jax.tree.map(lambda s, x: s.at[scatter_idx].set(x, mode="drop"),
                       clients.opt_state, new_opt))
      parts.append(_part(slot_offset, data.item, up.row_grad, data.mask,
                         up.mlp, up.weight, real, malicious=False))
      slot_offset += cap
    return clients, parts

  return client_phase


def _part(slot_offset, row_item, row_grad, row_mask, mlp, weight, real, malicious):
  cap, rows = row_item.shape
  return dict(
      row_client=jnp.repeat(jnp.arange(cap, dtype=jnp.int32) + slot_offset, rows),
      row_item=row_item.reshape(-1),
      row_grad=row_grad.reshape(cap * rows, -1),
      row_mask=(row_mask & real[:, None]).reshape(-1),
      mlp=mlp,
      client_weight=jnp.where(real, weight, 0.0),
      client_mask=real,
      client_malicious=real if malicious else jnp.zeros_like(real))


def uploads_from_parts(parts: list[dict]) -> Uploads:
  """Concatenates the buckets' (and attackers') upload fields into one `Uploads`."""
  cat = lambda *xs: jnp.concatenate(xs, axis=0)
  return Uploads(**{k: jax.tree.map(cat, *[p[k] for p in parts]) for k in parts[0]})


def make_server_phase(config: SimConfig, aggregator):
  """Builds `server_phase(server, uploads) -> (server, metrics)`.

  Aggregation and the server step: it sees uploads, never client states.
  """

  def server_phase(server: ServerState, uploads: Uploads):
    agg, agg_state, agg_metrics = aggregator.apply(uploads, server.agg_state)
    new = server_lib.apply_aggregate(server._replace(agg_state=agg_state), agg, config.server)
    out = dict(agg_metrics)
    out.update(server_lib.update_norms(server.params, new.params))
    out["num_clients"] = jnp.sum(uploads.client_mask)
    out["num_malicious"] = jnp.sum(uploads.client_malicious)
    return new, out

  return server_phase


def make_round_step(config: SimConfig, method: Method, aggregator, num_users: int,
                    attack: Attack | None = None, mesh=None):
  """Builds the pure round function.

  Returns:
    `round_step(server, clients, attackers, client_data, slots, attack_slots,
    key_data, lengths, pos_lengths) -> (server, clients, attackers, metrics)`.
    `slots` and `lengths` (static) are as in `make_client_phase`; `pos_lengths`
    (static) bound each class's positives (they lead each client's rows); `attack_slots` is `[A]`
    attacker ids (-1 for empty slots), or None without an attack; `key_data` is
    the raw `uint32` data of the round's key (plain arrays cross hosts). With
    `config.inject_faults` set, the first K benign slots' uploads are corrupted before
    the server phase (`faults.py`; metric `injected_faults`).
  """
  client_phase = make_client_phase(config, method, num_users, mesh)
  server_phase = make_server_phase(config, aggregator)
  faults = parse_faults(config.inject_faults)

  def round_step(server: ServerState, clients: ClientStates, attackers: PyTree, client_data,
                 slots, attack_slots, key_data, lengths, pos_lengths):
    ctx = method.context(server.aux)
    key_clients, key_attack = jax.random.split(jax.random.wrap_key_data(key_data))
    clients, parts = client_phase(server.params, ctx, clients, client_data, slots, lengths,
                                  key_clients, pos_lengths)
    if attack is not None and attack_slots is not None:
      attackers, up, real = _attack_phase(attack, server.params, ctx, attackers,
                                          attack_slots, key_attack)
      offset = sum(int(p["client_mask"].shape[0]) for p in parts)
      parts.append(_part(offset, up.row_item, up.row_grad, up.row_mask, up.mlp, up.weight,
                         real, malicious=True))
    uploads = uploads_from_parts(parts)
    if faults is not None:
      uploads, faulty = inject_faults(uploads, *faults)
    server, out = server_phase(server, uploads)
    if faults is not None:
      out["injected_faults"] = faulty
    return server, clients, attackers, out

  return round_step
