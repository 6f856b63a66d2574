"""The local update of ONE sequential client; the simulation vmaps it over a round.

The client draws its negatives, gathers the rows of `V` it touches (its window's
items and its negatives, deduplicated into a fixed-size buffer), takes one
full-batch gradient step of the objective (as the core's default local update),
and uploads the gradients of those rows (sparse: `[R, d]` with their ids) and of
the encoder. Its user representation (the encoder output at its last position)
stays on the client: it is returned for the client-side state, never uploaded.

With `loss = "full_softmax"` every item is scored, so every row is touched: the
buffer is the whole table (dense rows, still in the sparse upload format).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedjax_rec.models.encoders import Encoder
from fedjax_rec.tasks.sequential.objective import ClientInputs, ObjectiveConfig, make_objective
from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PublicParams


class SeqClientData(NamedTuple):
  """One client's training window, left-padded (`data.train_windows`).

  Attributes:
    window: [L + 1] int32 item ids; inputs `window[:-1]`, targets `window[1:]`.
    mask: [L + 1] bool real positions (all False for an empty slot).
  """

  window: Array
  mask: Array


def sample_negatives(key: Array, window: Array, mask: Array, num_items: int,
                     num_negatives: int) -> tuple[Array, Array]:
  """`[L, K]` uniform item ids and their usable mask.

  A draw that hits one of the user's window items is masked out (not redrawn), and
  so is every negative of a padded position. Drawn fresh every round.
  """
  length = window.shape[0] - 1
  neg = jax.random.randint(key, (length, num_negatives), 0, num_items, jnp.int32)
  own = jnp.where(mask, window, -1)
  hit = jnp.any(neg[..., None] == own[None, None, :], axis=-1)
  return neg, mask[:-1, None] & ~hit


def touched_rows(item_emb: Array, window: Array, mask: Array, neg: Array, neg_mask: Array,
                 full: bool):
  """The client's rows and the indices of its window and negatives into them.

  Returns:
    `(row_item [R], row_mask [R], rows [R, d], window_idx [L + 1], neg_idx [L, K])`.
    Padded positions and masked negatives point at a filler row (zeros, masked).
  """
  num_items = item_emb.shape[0]
  if full:
    row_item = jnp.arange(num_items, dtype=jnp.int32)
    return row_item, jnp.ones(num_items, bool), item_emb, window, neg
  ids = jnp.concatenate([jnp.where(mask, window, num_items),
                         jnp.where(neg_mask, neg, num_items).reshape(-1)])
  uniq, inverse = jnp.unique(ids, size=ids.shape[0], fill_value=num_items,
                             return_inverse=True)
  inverse = inverse.reshape(-1)
  row_mask = uniq < num_items
  rows = item_emb.at[uniq].get(mode="fill", fill_value=0.0)
  window_idx = inverse[:window.shape[0]]
  neg_idx = inverse[window.shape[0]:].reshape(neg.shape)
  return jnp.where(row_mask, uniq, 0).astype(jnp.int32), row_mask, rows, window_idx, neg_idx


def make_client_update(config: ObjectiveConfig, encoder: Encoder):
  """Builds `client_update(public, data, key) -> (u [d], ClientUpload, metrics)` for one user."""
  objective = make_objective(config, encoder)
  grad_fn = jax.grad(objective, argnums=(0, 1), has_aux=True)
  full = config.loss == "full_softmax"

  def client_update(public: PublicParams, data: SeqClientData, key: Array):
    key_neg, key_obj = jax.random.split(key)
    num_items = public.item_emb.shape[0]
    neg, neg_mask = sample_negatives(key_neg, data.window, data.mask, num_items,
                                     max(config.num_negatives, 1))
    neg_mask = neg_mask & (config.num_negatives > 0)
    row_item, row_mask, rows, window_idx, neg_idx = touched_rows(
        public.item_emb, data.window, data.mask, neg, neg_mask, full)
    inputs = ClientInputs(in_idx=window_idx[:-1], tgt_idx=window_idx[1:],
                          pos_mask=data.mask[:-1], neg_idx=neg_idx, neg_mask=neg_mask,
                          seq_idx=window_idx[1:], seq_mask=data.mask[1:])
    (g_rows, g_enc), aux = grad_fn(rows, public.net, inputs, key_obj)
    upload = ClientUpload(row_item=row_item, row_grad=jnp.where(row_mask[:, None], g_rows, 0.0),
                       row_mask=row_mask, net=g_enc,
                       weight=jnp.sum(inputs.pos_mask).astype(jnp.float32))
    metrics = {k: v for k, v in aux.items() if k != "u"}
    return aux["u"], upload, metrics

  return client_update
