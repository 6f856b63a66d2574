"""Slow, obvious oracles for the sequential simulator (loops over clients on purpose)."""

from __future__ import annotations

import functools


import jax
import numpy as np

from fedjax_rec.tasks.sequential.client import sample_negatives
from fedjax_rec.tasks.sequential.objective import ClientInputs, make_objective


def make_dense_client_grads(config, encoder, compiler_options=None):
  """Builds a jitted `(public, window, mask, key) -> (item_grad [n, d], enc grads, u, neg,
  neg_mask)` for ONE client, w.r.t. the WHOLE item table.

  Same key protocol as `client.make_client_update` (negatives, then the objective), but
  the full table is indexed by item id: the deduplicated row buffer, its inverse
  indices and the sparse upload are all bypassed.
  """
  objective = make_objective(config, encoder)

  @functools.partial(jax.jit, compiler_options=compiler_options)
  def grads(public, window, mask, key):
    key_neg, key_obj = jax.random.split(key)
    n = public.item_emb.shape[0]
    neg, neg_mask = sample_negatives(key_neg, window, mask, n, max(config.num_negatives, 1))
    inputs = ClientInputs(in_idx=window[:-1], tgt_idx=window[1:], pos_mask=mask[:-1],
                          neg_idx=neg, neg_mask=neg_mask, seq_idx=window[1:],
                          seq_mask=mask[1:])
    (g_items, g_enc), aux = jax.grad(objective, argnums=(0, 1), has_aux=True)(
        public.item_emb, public.net, inputs, key_obj)
    return g_items, g_enc, aux["u"], neg, neg_mask

  return grads


def touched_items(window, mask, neg, neg_mask) -> np.ndarray:
  """Sorted ids of the rows one client uploads: its real window items and negatives."""
  return np.union1d(np.asarray(window)[np.asarray(mask)], np.asarray(neg)[np.asarray(neg_mask)])


def weighted_round(dense_grads, public, windows, masks, keys, lr):
  """One server SGD step of weighted FedAvg from per-client dense gradients.

  Per item row: `Σ_u n_u g_u / Σ_u n_u` over the clients that touched the row; the
  encoder: the same over all clients.

  Returns:
    `(item_emb, encoder params)` as NumPy.
  """
  n, d = public.item_emb.shape
  num, den = np.zeros((n, d)), np.zeros(n)
  enc_num = jax.tree.map(lambda x: np.zeros(x.shape), public.net)
  total = 0.0
  for window, mask, key in zip(windows, masks, keys):  # the oracle loops over clients
    g_items, g_enc, _, neg, neg_mask = dense_grads(public, window, mask, key)
    touched = touched_items(window, mask, neg, neg_mask)
    w = float(np.sum(np.asarray(mask)[:-1]))
    num[touched] += w * np.asarray(g_items)[touched]
    den[touched] += w
    enc_num = jax.tree.map(lambda a, g, w=w: a + w * np.asarray(g), enc_num, g_enc)
    total += w
  item_grad = np.where(den[:, None] > 0, num / np.maximum(den, 1e-12)[:, None], 0.0)
  mlp = jax.tree.map(lambda p, a: np.asarray(p) - lr * a / total, public.net, enc_num)
  return np.asarray(public.item_emb) - lr * item_grad, mlp


