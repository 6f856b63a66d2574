"""Slow, obvious oracles: one client at a time, no padding, no vmap, NumPy sums."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_rec.models import ncf


@functools.partial(jax.jit, static_argnums=0)
def bce_grads(model_cfg, u, rows, mlp, sample_row, labels):
  """Gradients (u, rows, mlp) of the mean BCE over the samples `rows[sample_row]`.

  Jitted so that an oracle's many small steps compile once per shape; run eagerly, every
  operation of every step compiled on its own (about 1000 compilations per test).
  """

  def loss(u, rows, mlp):
    v = rows[sample_row]
    logits = ncf.logits(model_cfg, mlp, jnp.broadcast_to(u, v.shape), v)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))

  return jax.grad(loss, argnums=(0, 1, 2))(u, rows, mlp)


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
  mlp = public.net
  acc_rows = np.zeros(rows.shape, np.float64)
  acc_mlp = jax.tree.map(lambda x: np.zeros(x.shape, np.float64), mlp)
  for _ in range(local_epochs):
    g_u, g_rows, g_mlp = bce_grads(model_cfg, u, rows, mlp, sample_row, labels)
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


def client_reference_batched(model_cfg, public, u, user_tx, opt_state, item, label, weight,
                             local, key):
  """One client's mini-batch local training on its unpadded rows, one batch at a time.

  `item`, `label`, `weight` are the client's distinct rows in the simulator's order;
  a row of weight w stands for w samples, expanded here into samples. The batches come
  from `client.batch_layout` with the client's key (the shuffle is shared; everything
  after it is re-derived). The local rows' Adam is written out per row (lazy: a row's
  moments move only when the row is in the batch).

  Returns:
    (new_u, new_opt_state, {item: uploaded row}, uploaded MLP).
  """
  from fedjax_rec.tasks.ncf.client import batch_layout
  n = len(item)
  rows = np.asarray(public.item_emb)[item].astype(np.float64)
  received_rows = rows.copy()
  mlp = public.net
  mlp_tx = optax.adam(local.lr) if local.optimizer == "adam" else optax.sgd(local.lr)
  mlp_opt = mlp_tx.init(mlp)
  mu, nu, count = np.zeros_like(rows), np.zeros_like(rows), 0
  acc_rows = np.zeros_like(rows)
  acc_mlp = jax.tree.map(lambda x: np.zeros(x.shape, np.float64), mlp)
  for key_epoch in jax.random.split(key, local.local_epochs):
    key_perm, _ = jax.random.split(key_epoch)
    layout = np.asarray(batch_layout(key_perm, jnp.ones(n, bool), local.batch_size))
    for batch in layout:
      batch = [int(i) for i in batch if i < n]
      if not batch:
        continue
      samples = np.repeat(np.arange(len(batch)), weight[batch].astype(int))
      g_u, g_rows, g_mlp = bce_grads(model_cfg, u, jnp.asarray(rows[batch], jnp.float32), mlp,
                                     samples, label[batch][samples])
      g_rows = np.asarray(g_rows, np.float64)
      upd, opt_state = user_tx.update(g_u, opt_state, u)
      u = optax.apply_updates(u, upd)
      if local.optimizer == "adam":
        count += 1
        for j, r in enumerate(batch):
          mu[r] = 0.9 * mu[r] + 0.1 * g_rows[j]
          nu[r] = 0.999 * nu[r] + 0.001 * g_rows[j] ** 2
          rows[r] -= local.lr * (mu[r] / (1 - 0.9 ** count)) / (
              np.sqrt(nu[r] / (1 - 0.999 ** count)) + 1e-8)
      else:
        for j, r in enumerate(batch):
          rows[r] -= local.lr * g_rows[j]
      for j, r in enumerate(batch):
        acc_rows[r] += g_rows[j]
      upd, mlp_opt = mlp_tx.update(g_mlp, mlp_opt, mlp)
      mlp = optax.apply_updates(mlp, upd)
      acc_mlp = jax.tree.map(lambda a, g: a + np.asarray(g), acc_mlp, g_mlp)
  if local.upload == "delta":
    acc_rows = received_rows - rows
    acc_mlp = jax.tree.map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b), public.net,
                           mlp)
  return u, opt_state, {int(t): acc_rows[i] for i, t in enumerate(item)}, acc_mlp



def mf_reference(public, u, user_lr, pos, neg, rec_loss="bce", loss_reduction="mean",
                 l2_reg=0.0):
  """One MF client's full-batch step (user SGD), with hand-written float64 gradients.

  The samples are the raw positives and negatives (duplicates kept): BCE over each, or
  BPR over every (positive, negative) pair weighted 1/|pos|; L2 counts the user once and
  the item row of every sample; "mean" divides by the samples (BCE) or pairs (BPR).

  Returns:
    (new_u, {item: gradient row}).
  """
  sig = lambda x: 1.0 / (1.0 + np.exp(-x))
  table = np.asarray(public.item_emb, np.float64)
  u = np.asarray(u, np.float64)
  g_u = np.zeros_like(u)
  g_v = {int(i): np.zeros_like(u) for i in np.concatenate([pos, neg])}
  if rec_loss == "bce":
    for item, label in [(i, 1.0) for i in pos] + [(i, 0.0) for i in neg]:
      d = sig(u @ table[item]) - label
      g_u += d * table[item]
      g_v[int(item)] += d * u
    count = len(pos) + len(neg)
  else:
    for p in pos:
      for n in neg:
        d = sig(u @ table[n] - u @ table[p]) / len(pos)
        g_u += d * (table[n] - table[p])
        g_v[int(n)] += d * u
        g_v[int(p)] -= d * u
    count = len(neg)
  g_u += l2_reg * u
  for item in np.concatenate([pos, neg]):
    g_v[int(item)] += l2_reg * table[item]
  scale = 1.0 if loss_reduction == "sum" else 1.0 / count
  return u - user_lr * scale * g_u, {i: scale * g for i, g in g_v.items()}
