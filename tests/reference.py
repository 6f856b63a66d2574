"""Slow, obvious oracles: one client at a time, no padding, no vmap, NumPy sums."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_rec.models import ncf


def client_reference(model_cfg, public, u, user_tx, opt_state, pos, neg, local_epochs=1,
                     local_lr=0.0):
  """One client's full-batch local training on its unpadded samples.

  Returns:
    (new_u, new_opt_state, {item: summed gradient row}, summed MLP gradient).
  """
  items = np.concatenate([pos, neg]).astype(np.int32)
  labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.float32)
  touched = np.unique(items)
  rows = public.item_emb[touched]
  row_of = {int(t): i for i, t in enumerate(touched)}
  sample_row = np.array([row_of[int(i)] for i in items], np.int32)
  mlp = public.mlp

  def loss(u, rows, mlp):
    v = rows[sample_row]
    logits = ncf.logits(model_cfg, mlp, jnp.broadcast_to(u, v.shape), v)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))

  acc_rows = np.zeros(rows.shape, np.float64)
  acc_mlp = jax.tree.map(lambda x: np.zeros(x.shape, np.float64), mlp)
  for _ in range(local_epochs):
    g_u, g_rows, g_mlp = jax.grad(loss, argnums=(0, 1, 2))(u, rows, mlp)
    upd, opt_state = user_tx.update(g_u, opt_state, u)
    u = optax.apply_updates(u, upd)
    rows = rows - local_lr * g_rows
    mlp = jax.tree.map(lambda p, g: p - local_lr * g, mlp, g_mlp)
    acc_rows += np.asarray(g_rows)
    acc_mlp = jax.tree.map(lambda a, g: a + np.asarray(g), acc_mlp, g_mlp)
  return u, opt_state, {int(t): acc_rows[i] for i, t in enumerate(touched)}, acc_mlp


def fedavg_sum_reference(row_uploads, mlp_uploads, num_items, dim):
  """Per-item sums over uploaders (NumPy), MLP sum over clients."""
  grad = np.zeros((num_items, dim))
  touched = np.zeros(num_items, bool)
  for rows in row_uploads:
    for item, g in rows.items():
      grad[item] += g
      touched[item] = True
  mlp = jax.tree.map(lambda *xs: np.sum(np.stack(xs), axis=0), *mlp_uploads)
  return grad, touched, mlp
