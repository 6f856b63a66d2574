"""The sequential task: SASRec/GRU4Rec over each client's recent items (FORTRESS).

`build_task(config, dataset)` bundles the one-client update (`client`), the FORTRESS
server defense (`regularizers`, as the task's `after_round`) and the encoder's scorer
into a `Task`. Every client's data is its padded `[L + 1]` window, so a round has one
length class of `B` slots; clients are dealt into rounds by Algorithm 1's shuffle and
cut. A client's private state is its latest user representation, never uploaded.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec.models.encoders import init_public, last_hidden, lookup, make_encoder
from fedjax_rec.scheduling import BucketPlan
from fedjax_rec.task import Task, TaskBundle, TaskData
from fedjax_rec.tasks.sequential import data as seq_data
from fedjax_rec.tasks.sequential import regularizers
from fedjax_rec.tasks.sequential.attacks import make_seq_attack
from fedjax_rec.tasks.sequential.client import SeqClientData, make_client_update
from fedjax_rec.types import Array


@dataclasses.dataclass
class SeqData(TaskData):
  """The sequential task's host side.

  Attributes:
    windows: every client's training window (`SeqClientData`, leaves `[U, L + 1]`).
    encoder: the model's encoder (`models.encoders.Encoder`).
  """

  windows: SeqClientData | None = None
  encoder: object = None


def encode_items(encoder, max_len: int, public, ids: Array) -> Array:
  """User representations `[M, d]` of `M` sequences of item ids `[M, k]` (`k <= L`)."""
  num, k = ids.shape
  full = jnp.zeros((num, max_len), jnp.int32).at[:, max_len - k:].set(ids)
  mask = jnp.broadcast_to(jnp.arange(max_len) >= max_len - k, full.shape)
  x = lookup(public.item_emb, public.net["mask_token"], full, mask)
  return last_hidden(encoder.apply(public.net, x, mask, None))


def make_task(config, encoder, num_users: int, num_items: int, history) -> Task:
  """The sequential `Task` of `config` (pure functions; `history` are the evaluation
  inputs `(ids [U, L], mask [U, L])`)."""
  local_update = make_client_update(config.objective, encoder)
  # Probes are encoder inputs: at most L items.
  defense = dataclasses.replace(config.defense,
                                probe_len=min(config.defense.probe_len, config.encoder.max_len))
  targets = jnp.asarray(np.asarray(config.targets, np.int32))

  def init(key):
    key_pub, key_attack = jax.random.split(key)
    params = init_public(key_pub, config.encoder, num_items)
    aux = regularizers.init_state(num_items) if defense.enabled else ()
    clients = jnp.zeros((num_users, config.encoder.embed_dim), jnp.float32)
    return params, clients, aux, key_attack

  def gather(windows: SeqClientData, slot_user, length, pos_length):
    del length, pos_length  # one class: the whole window
    real = slot_user >= 0
    idx = jnp.where(real, slot_user, 0)
    return SeqClientData(windows.window[idx], windows.mask[idx] & real[:, None])

  def client_update(public, ctx, private, data: SeqClientData, key):
    del ctx, private  # the representation is recomputed from the window every round
    return local_update(public, data, key)

  def after_round(server, uploads, key):
    item_emb, aux, out, flagged = regularizers.apply_defense(
        defense, server.params.item_emb, server.aux, uploads,
        functools.partial(encode_items, encoder, config.encoder.max_len, server.params), key)
    server = server._replace(params=server.params._replace(item_emb=item_emb), aux=aux)
    if targets.size:
      out["defense/targets_flagged"] = jnp.mean(flagged[targets])
    return server, out

  def score(params, user_ids):
    public, hist, hist_mask = params
    ids, mask = hist[user_ids], hist_mask[user_ids]
    x = lookup(public.item_emb, public.net["mask_token"], ids, mask)
    u = last_hidden(encoder.apply(public.net, x, mask, None))
    return u @ public.item_emb.T

  return Task(name=f"sequential/{config.method}", init=init, context=lambda aux: (),
              gather=gather, client_update=client_update,
              round_keys=lambda key: tuple(jax.random.split(key, 3)),
              after_round=after_round if defense.enabled else None,
              epoch_end=lambda params, aux, key: (params, aux, {}),
              eval_params=lambda public, private: (public,) + history, score=score)


def build_task(config, dataset: seq_data.SeqDataset) -> TaskBundle:
  """The sequential task of `config` on `dataset` (its `max_len` must be the encoder's)."""
  if dataset.max_len != config.encoder.max_len:
    raise ValueError(f"dataset max_len {dataset.max_len} != encoder max_len "
                     f"{config.encoder.max_len}")
  encoder = make_encoder(config.encoder)
  attack = None
  if config.attack != "none" and config.num_malicious > 0:
    attack = make_seq_attack(config.attack, encoder, config.encoder.max_len,
                             np.asarray(config.targets), dataset.num_items,
                             **dict(config.attack_kwargs))
  window, mask = seq_data.train_windows(dataset)
  windows = SeqClientData(jnp.asarray(window), jnp.asarray(mask))
  hist, hist_mask = seq_data.eval_histories(dataset)
  task = make_task(config, encoder, dataset.num_users, dataset.num_items,
                   (jnp.asarray(hist), jnp.asarray(hist_mask)))
  # Every window is padded to L + 1: one length class, and every client fits it.
  num_rows = np.full(dataset.num_users, dataset.max_len + 1, np.int64)
  data = SeqData(device_data=windows, num_rows=num_rows,
                 plan=BucketPlan(lengths=(dataset.max_len + 1,),
                                 capacities=(config.clients_per_round,)),
                 round_assignment="uniform", dataset=dataset, hit_rate=True,
                 windows=windows, encoder=encoder)
  return TaskBundle(task, data, attack)
