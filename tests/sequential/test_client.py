"""The vmapped client update and the jitted round against per-client dense oracles."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec.models.encoders import init_public, make_encoder
from fedjax_rec.tasks.sequential.client import SeqClientData, make_client_update
from fedjax_rec.tasks.sequential.data import train_windows
from fedjax_rec.simulation import Simulator
from tests.sequential import reference
from tests.sequential.conftest import FAST_COMPILE, replace_objective, tiny_config

TOL = dict(rtol=2e-4, atol=2e-6)


def _clients(dataset, num=10):
  """Windows of `num` clients, shortest first, plus one empty slot (all padding)."""
  window, mask = train_windows(dataset)
  order = np.argsort(mask.sum(1), kind="stable")[:num]
  window = np.concatenate([window[order], np.zeros_like(window[:1])])
  mask = np.concatenate([mask[order], np.zeros_like(mask[:1])])
  assert (~mask).any(axis=1).sum() >= num // 2  # padding is exercised
  return jnp.asarray(window), jnp.asarray(mask)


@pytest.mark.parametrize("encoder,method,dropout,loss", [
    ("sasrec", "cl_temporal", 0.0, "bce"), ("gru4rec", "fedseq", 0.2, "full_softmax")])
def test_vmapped_client_updates_equal_the_dense_per_client_loop(tiny_dataset, encoder, method,
                                                                 dropout, loss):
  # Two negatives per position (duplicates get merged). SASRec with every client term
  # on (the terms are encoder-agnostic) and one block (blocks are identical; causality
  # is in test_models); GRU4Rec with dropout on (per-client keys under vmap) and the
  # full softmax (every row touched).
  cfg = replace_objective(tiny_config(method, encoder), num_negatives=2, loss=loss)
  cfg = dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, dropout=dropout,
                                                             num_blocks=1))
  enc = make_encoder(cfg.encoder)
  public = init_public(jax.random.key(0), cfg.encoder, tiny_dataset.num_items)
  window, mask = _clients(tiny_dataset)
  keys = jax.random.split(jax.random.key(5), window.shape[0])
  update = jax.jit(jax.vmap(make_client_update(cfg.objective, enc), in_axes=(None, 0, 0)),
                   compiler_options=FAST_COMPILE)
  u, up, terms = update(public, SeqClientData(window, mask), keys)
  assert set(terms) == ({"rec", "seq_cl", "user_cl", "item_cl", "temporal"}
                        if method == "cl_temporal" else {"rec"})
  # Padding holds item 0; filling it with another id must change nothing at all.
  u_b, up_b, _ = update(public, SeqClientData(jnp.where(mask, window, 7), mask), keys)
  np.testing.assert_array_equal(np.asarray(up_b.row_grad), np.asarray(up.row_grad))
  np.testing.assert_array_equal(np.asarray(u_b), np.asarray(u))

  dense = reference.make_dense_client_grads(cfg.objective, enc, FAST_COMPILE)
  n = tiny_dataset.num_items
  for c in range(window.shape[0]):  # the oracle loops over clients
    g_items, g_enc, u_ref, neg, neg_mask = dense(public, window[c], mask[c], keys[c])
    touched = (np.arange(n) if loss == "full_softmax"
               else reference.touched_items(window[c], mask[c], neg, neg_mask))
    rows = np.asarray(up.row_item[c])[np.asarray(up.row_mask[c])]
    assert len(set(rows.tolist())) == len(rows) and sorted(rows.tolist()) == touched.tolist()
    order = np.argsort(rows)
    np.testing.assert_allclose(np.asarray(up.row_grad[c])[np.asarray(up.row_mask[c])][order],
                               np.asarray(g_items)[touched], **TOL)
    # Rows the client never touched, padding's item 0 included, get exactly nothing.
    assert np.all(np.asarray(g_items)[np.setdiff1d(np.arange(n), touched)] == 0)
    if not np.asarray(mask[c]).any():  # an empty slot uploads zeros
      assert not np.asarray(up.row_grad[c]).any()
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a[c]), np.asarray(b), **TOL),
                 up.net, g_enc)
    np.testing.assert_allclose(np.asarray(u[c]), np.asarray(u_ref), **TOL)
    assert float(up.weight[c]) == float(np.asarray(mask[c])[:-1].sum())


def test_round_equals_weighted_fedavg_of_the_dense_loop(tiny_dataset):
  # The client objective is checked above; here the round's gather, scatter and
  # weighted aggregation (SGD server step) against a loop over clients.
  cfg = tiny_config("fedseq", "sasrec")
  sim = Simulator(cfg, tiny_dataset, compiler_options=FAST_COMPILE)
  state = sim.init()
  users, _ = sim.epoch_rounds(0)[0]
  key = jax.random.key(11)
  public = jax.tree.map(jnp.copy, state.server.params)
  (server, clients, _, out), _ = sim.apply_round(state.server, state.clients, state.attackers,
                                                 users, key=key)
  key_clients = jax.random.split(key, 3)[0]
  keys = [jax.random.fold_in(key_clients, int(u)) for u in users]
  item_emb, mlp = reference.weighted_round(
      reference.make_dense_client_grads(cfg.objective, sim.data.encoder, FAST_COMPILE), public,
      sim.data.windows.window[users], sim.data.windows.mask[users], keys, cfg.server.lr)
  np.testing.assert_allclose(np.asarray(server.params.item_emb), item_emb, **TOL)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), b, **TOL),
               server.params.net, mlp)
  assert int(out["num_clients"]) == len(users) and np.isfinite(float(out["loss/rec"]))
  # The private representations of this round's clients (with at least one training
  # pair) were updated, the others not.
  changed = np.flatnonzero(np.abs(np.asarray(clients)).sum(1) > 0)
  trained = users[np.asarray(sim.data.windows.mask[users])[:, :-1].any(1)]
  assert sorted(changed.tolist()) == sorted(trained.tolist())
