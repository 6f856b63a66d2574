"""The sequential simulator: same protocol, round and API as `fedjax_rec.simulation`.

A global epoch shuffles benign clients and attackers together and cuts them into
rounds of `B` (docs/design.md). A round is one jit: the one-user update
(`sequential.client`) vmapped over `B` slots gathered on device from the padded
`[U, L + 1]` windows, the attackers in their own slots, the configured aggregator and
`server.apply_aggregate` (via `simulation.make_server_phase`), then the FORTRESS
defense when enabled. Every window has the same length, so the plan is one bucket.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec import metrics as metrics_lib
from fedjax_rec import server as server_lib
from fedjax_rec.aggregators import make_aggregator
from fedjax_rec.data.clients import BucketPlan, shuffle_rounds
from fedjax_rec.models.encoders import init_public, last_hidden, lookup, make_encoder
from fedjax_rec.sequential import data as seq_data
from fedjax_rec.sequential import regularizers
from fedjax_rec.sequential.attacks import make_seq_attack
from fedjax_rec.sequential.client import SeqClientData, make_client_update
from fedjax_rec.sequential.config import SeqConfig
from fedjax_rec.server import ServerState
from fedjax_rec.rounds import (_attack_phase, _part, make_server_phase, per_client_keys,
                               uploads_from_parts)
from fedjax_rec.types import Array, PyTree


class SeqSimState(NamedTuple):
  """The whole state (a checkpoint is this pytree).

  Attributes:
    server: the server's state; `aux` holds the defense statistics (or `()`).
    clients: [U, d] each client's latest user representation (private, never uploaded).
    attackers: attacker state (`()` without an attack).
    epoch: global epochs completed.
  """

  server: ServerState
  clients: Array
  attackers: PyTree
  epoch: Array


def _masked_mean(x: Array, mask: Array) -> Array:
  return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def encode_items(encoder, max_len: int, public, ids: Array) -> Array:
  """User representations `[M, d]` of `M` sequences of item ids `[M, k]` (`k <= L`)."""
  num, k = ids.shape
  full = jnp.zeros((num, max_len), jnp.int32).at[:, max_len - k:].set(ids)
  mask = jnp.broadcast_to(jnp.arange(max_len) >= max_len - k, full.shape)
  x = lookup(public.item_emb, public.mlp["mask_token"], full, mask)
  return last_hidden(encoder.apply(public.mlp, x, mask, None))


def make_round_step(config: SeqConfig, aggregator, num_users: int, attack=None,
                    targets: np.ndarray | None = None):
  """Builds `round_step(server, clients, attackers, windows, slot_users, attack_slots, key)`.

  Args:
    config: the run's configuration.
    aggregator: an `Aggregator`.
    num_users: benign clients `U`.
    attack: an `Attack` or None.
    targets: target ids, for the defense's diagnostics only.

  Returns:
    A pure function returning `(server, clients, attackers, metrics)`; `windows` is
    `SeqClientData` with leaves `[U, L + 1]`, `slot_users [B]` (-1: empty slot),
    `attack_slots [A]` or None.
  """
  encoder = make_encoder(config.encoder)
  vmapped = jax.vmap(make_client_update(config.objective, encoder), in_axes=(None, 0, 0))
  server_phase = make_server_phase(config, aggregator)
  # Probes are encoder inputs: at most L items.
  defense = dataclasses.replace(config.defense,
                                probe_len=min(config.defense.probe_len, config.encoder.max_len))

  def round_step(server: ServerState, clients: Array, attackers: PyTree,
                 windows: SeqClientData, slot_users: Array, attack_slots, key: Array):
    key_clients, key_attack, key_defense = jax.random.split(key, 3)
    real = slot_users >= 0
    idx = jnp.where(real, slot_users, 0)
    data = SeqClientData(windows.window[idx], windows.mask[idx] & real[:, None])
    keys = per_client_keys(key_clients, slot_users)
    u, up, client_m = vmapped(server.params, data, keys)
    clients = clients.at[jnp.where(real, slot_users, num_users)].set(u, mode="drop")
    parts = [_part(0, up.row_item, up.row_grad, up.row_mask, up.mlp, up.weight, real,
                   malicious=False)]
    if attack is not None and attack_slots is not None:
      attackers, aup, areal = _attack_phase(attack, server.params, (), attackers, attack_slots,
                                            key_attack)
      parts.append(_part(slot_users.shape[0], aup.row_item, aup.row_grad, aup.row_mask,
                         aup.mlp, aup.weight, areal, malicious=True))
    uploads = uploads_from_parts(parts)
    server, out = server_phase(server, uploads)
    if defense.enabled:
      item_emb, aux, dm, flagged = regularizers.apply_defense(
          defense, server.params.item_emb, server.aux, uploads,
          functools.partial(encode_items, encoder, config.encoder.max_len, server.params),
          key_defense)
      server = server._replace(params=server.params._replace(item_emb=item_emb), aux=aux)
      out.update(dm)
      if targets is not None and len(targets):
        out["defense/targets_flagged"] = jnp.mean(flagged[jnp.asarray(targets)])
    out.update({f"loss/{k}": _masked_mean(v, real) for k, v in client_m.items()})
    return server, clients, attackers, out

  return round_step


class SeqSimulator:
  """Host-side driver with the API of `simulation.Simulator`."""

  def __init__(self, config: SeqConfig, dataset: seq_data.SeqDataset, *,
               compiler_options: dict[str, Any] | None = None):
    """Args:
      config: the run's configuration.
      dataset: a sequentially split dataset with `max_len == config.encoder.max_len`.
      compiler_options: XLA options of the round's jit (e.g. tests lower
        `xla_backend_optimization_level` to compile faster); None for the defaults.
    """
    if dataset.max_len != config.encoder.max_len:
      raise ValueError(f"dataset max_len {dataset.max_len} != encoder max_len "
                       f"{config.encoder.max_len}")
    self.config = config
    self.dataset = dataset
    self.encoder = make_encoder(config.encoder)
    self.aggregator = make_aggregator(config.aggregator, dataset.num_items, config.convention,
                                      **dict(config.aggregator_kwargs))
    self.attack = None
    if config.attack != "none" and config.num_malicious > 0:
      self.attack = make_seq_attack(config.attack, self.encoder, config.encoder.max_len,
                                    np.asarray(config.targets), dataset.num_items,
                                    **dict(config.attack_kwargs))
    window, mask = seq_data.train_windows(dataset)
    self.windows = SeqClientData(jnp.asarray(window), jnp.asarray(mask))
    self.num_samples = int(mask[:, :-1].sum())
    hist, hist_mask = seq_data.eval_histories(dataset)
    self._history = (jnp.asarray(hist), jnp.asarray(hist_mask))
    self.plan = BucketPlan(lengths=(dataset.max_len + 1,),
                           capacities=(config.clients_per_round,))
    targets = np.asarray(config.targets, np.int32)
    self.round_step = jax.jit(
        make_round_step(config, self.aggregator, dataset.num_users, self.attack, targets),
        donate_argnums=(1, 2), compiler_options=compiler_options)
    self._eval_cache: dict[str, Any] = {}

  def place(self, state: SeqSimState) -> SeqSimState:
    """Puts a restored state where the round expects it (one device: as is)."""
    return state

  @property
  def _num_attackers(self) -> int:
    return self.config.num_malicious if self.attack is not None else 0

  def init(self) -> SeqSimState:
    """The initial state, from `config.seed` alone."""
    key_pub, key_attack = jax.random.split(jax.random.key(self.config.seed))
    params = init_public(key_pub, self.config.encoder, self.dataset.num_items)
    aux = regularizers.init_state(self.dataset.num_items) if self.config.defense.enabled else ()
    server = server_lib.init_server(params, self.config.server, self.aggregator.init(), aux)
    clients = jnp.zeros((self.dataset.num_users, self.config.encoder.embed_dim), jnp.float32)
    attackers = (self.attack.init(key_attack, self.config.num_malicious, params)
                 if self.attack is not None else ())
    return SeqSimState(server, clients, attackers, jnp.asarray(0, jnp.int32))

  def epoch_rounds(self, epoch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`(benign ids, attacker ids)` of every round: Algorithm 1's shuffle and cut."""
    rng = np.random.default_rng([self.config.seed, 104729, epoch])
    n = self.dataset.num_users
    chunks = shuffle_rounds(n + self._num_attackers, self.config.clients_per_round, rng)
    return [(c[c < n], c[c >= n] - n) for c in chunks]

  def _slots(self, ids: np.ndarray, size: int) -> np.ndarray:
    out = np.full(size, -1, np.int32)
    out[:len(ids)] = ids
    return out

  def run_epoch(self, state: SeqSimState) -> tuple[SeqSimState, dict[str, float]]:
    """One global epoch: every client (and attacker) once."""
    epoch = int(state.epoch)
    key_epoch = jax.random.fold_in(jax.random.key(self.config.seed), epoch)
    server, clients, attackers = state.server, state.clients, state.attackers
    t0 = time.perf_counter()
    round_metrics = []
    for r, (users, bad) in enumerate(self.epoch_rounds(epoch)):
      attack_slots = self._slots(bad, self._num_attackers) if self.attack is not None else None
      server, clients, attackers, out = self.round_step(
          server, clients, attackers, self.windows,
          self._slots(users, self.config.clients_per_round), attack_slots,
          jax.random.fold_in(key_epoch, r))
      round_metrics.append(out)
    jax.block_until_ready(server.params)
    seconds = time.perf_counter() - t0
    host = jax.device_get(round_metrics)
    summary = {k: float(np.mean([m[k] for m in host])) for k in host[0]} if host else {}
    summary.update(epoch=epoch + 1, seconds=seconds, rounds=len(host))
    return SeqSimState(server, clients, attackers, jnp.asarray(epoch + 1, jnp.int32)), summary

  # ---- evaluation ---------------------------------------------------------
  def score_fn(self):
    """`(params, user_ids) -> [b, num_items]`, params `(public, hist_ids, hist_mask)`."""
    if "score" not in self._eval_cache:
      encoder = self.encoder

      def score(params, user_ids):
        public, hist, hist_mask = params
        ids, mask = hist[user_ids], hist_mask[user_ids]
        x = lookup(public.item_emb, public.mlp["mask_token"], ids, mask)
        u = last_hidden(encoder.apply(public.mlp, x, mask, None))
        return u @ public.item_emb.T

      self._eval_cache["score"] = score
    return self._eval_cache["score"]

  def evaluate(self, state: SeqSimState, ks=(10,), targets=None, er_ks=(5,),
               batch_size: int = 256) -> dict[str, float]:
    """HR@K / NDCG@K of the next (test) item, full ranking with the history masked;
    ER@K of `targets` (docs/design.md). `recall@K` equals `hr@K` (one test item per user)."""
    params = (state.server.params,) + self._history
    if "seen" not in self._eval_cache:
      self._eval_cache["seen"] = self.dataset.seen()
    m = metrics_lib.ranking_metrics(self.score_fn(), params, self._eval_cache["seen"],
                                    self.dataset.test, ks=ks, batch_size=batch_size)
    out = {}
    for k in ks:
      out[f"hr@{k}"] = m[f"recall@{k}"]
      out[f"ndcg@{k}"] = m[f"ndcg@{k}"]
      out[f"recall@{k}"] = m[f"recall@{k}"]
    out.update(metrics_lib.target_exposure(self._eval_cache, self.dataset, self.score_fn(),
                                           params, targets, er_ks, batch_size))
    return out
