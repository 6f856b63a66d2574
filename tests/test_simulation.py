"""The vmapped, bucketed round against the per-client reference loop."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from fedjax_rec.tasks.ncf.client import LocalConfig, user_optimizer
from fedjax_rec import scheduling
from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
from fedjax_rec.models.ncf import NCFConfig
from fedjax_rec.server import ServerConfig
from fedjax_rec.rounds import make_client_phase, uploads_from_parts
from fedjax_rec.simulation import Simulator
from fedjax_rec.tasks.ncf.config import SimConfig
from tests import reference

SMALL = SyntheticConfig(num_users=48, num_items=40, num_clusters=4, mean_activity=8,
                        min_activity=3, max_activity=20)


def small_config(**kw):
  base = SimConfig(model=NCFConfig(embed_dim=4, hidden=(6, 3), embed_init_std=0.1),
                   local=LocalConfig(user_optimizer="sgd", user_lr=0.05, lr=0.05),
                   server=ServerConfig(optimizer="sgd", lr=0.1), clients_per_round=16,
                   epochs=1, max_buckets=3)
  return dataclasses.replace(base, **kw)


@pytest.fixture(scope="module")
def dataset():
  return load_synthetic(SMALL, seed=3)


def _reference_round(sim, state, users, local_epochs=1):
  cfg = sim.config
  data = sim.data.client_data
  public = state.server.params
  tx = user_optimizer(cfg.local)
  new_u, row_ups, mlp_ups = {}, [], []
  del data
  for user in users:  # the oracle loops over clients on purpose
    # The raw samples, duplicate negatives included: the rows' weights must match.
    pos = sim.dataset.train.row(user)
    neg = sim.data.negatives.row(user)
    opt = jax.tree.map(lambda x: x[user], state.clients.opt_state)
    u, _, rows, mlp = reference.client_reference(
        cfg.model, public, state.clients.user_emb[user], tx, opt, pos, neg,
        local_epochs=local_epochs, local_lr=cfg.local.lr)
    new_u[int(user)] = np.asarray(u)
    row_ups.append(rows)
    mlp_ups.append(mlp)
  return new_u, row_ups, mlp_ups


def _uploads_by_client(uploads, slot_users):
  out = {}
  for r in np.flatnonzero(np.asarray(uploads.row_mask)):
    user = int(slot_users[int(uploads.row_client[r])])
    out.setdefault(user, {})[int(uploads.row_item[r])] = np.asarray(uploads.row_grad[r])
  return out


@pytest.mark.parametrize("local_epochs", [1, 2])
def test_round_equals_reference_loop(dataset, local_epochs):
  cfg = small_config(local=LocalConfig(user_optimizer="sgd", user_lr=0.05, lr=0.05,
                                       local_epochs=local_epochs))
  sim = Simulator(cfg, dataset)
  state = sim.init()
  users, _ = sim.epoch_rounds(0)[0]
  slots, plan = sim.round_slots(users)
  assert len(plan.lengths) > 1  # several buckets are exercised
  phase = jax.jit(make_client_phase(sim.task, dataset.num_users),
                  static_argnames=("lengths",))
  clients, parts, _ = phase(state.server.params, (), state.clients, sim.device_data, slots,
                         lengths=plan.lengths, key=jax.random.key(0))
  uploads = uploads_from_parts(parts)
  slot_users = np.concatenate(slots)
  ref_u, ref_rows, ref_mlp = _reference_round(sim, state, users, local_epochs)

  got = _uploads_by_client(uploads, slot_users)
  assert sorted(got) == sorted(int(u) for u in users)
  for user, rows in zip(users, ref_rows):
    assert sorted(got[int(user)]) == sorted(rows)
    for item, g in rows.items():
      np.testing.assert_allclose(got[int(user)][item], g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clients.user_emb[user], ref_u[int(user)], rtol=1e-5, atol=1e-6)
  slot_of = {int(u): i for i, u in enumerate(slot_users) if u >= 0}
  for user, m in zip(users, ref_mlp):
    got_mlp = jax.tree.map(lambda x: np.asarray(x[slot_of[int(user)]]), uploads.net)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 got_mlp, m)

  # The whole round: FedAvg-sum then server SGD equals the reference update.
  (server, _, _, _), _ = sim.apply_round(state.server, sim.init().clients, (), users)
  grad, touched, mlp = reference.fedavg_sum_reference(ref_rows, ref_mlp, dataset.num_items,
                                                      cfg.model.embed_dim)
  lr = cfg.server.lr
  np.testing.assert_allclose(server.params.item_emb,
                             np.asarray(state.server.params.item_emb) - lr * grad,
                             rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda new, old, g: np.testing.assert_allclose(new, np.asarray(old) - lr * g,
                                                              rtol=1e-5, atol=1e-6),
               server.params.net, state.server.params.net, mlp)
  untouched = ~touched
  np.testing.assert_array_equal(np.asarray(server.params.item_emb)[untouched],
                                np.asarray(state.server.params.item_emb)[untouched])


def _one_round(sim, state, users, plan=None):
  (server, clients, _, _), _ = sim.apply_round(state.server, state.clients, state.attackers,
                                               users, plan=plan)
  return server.params, clients.user_emb


MINIBATCH = {
    "adam-delta": LocalConfig(local_epochs=2, batch_size=4, optimizer="adam", lr=0.05,
                              user_optimizer="adam", user_lr=0.05, upload="delta"),
    "sgd-gradient": LocalConfig(local_epochs=2, batch_size=5, optimizer="sgd", lr=0.05,
                                user_optimizer="sgd", user_lr=0.05, upload="gradient"),
}


@pytest.mark.parametrize("name", sorted(MINIBATCH))
def test_minibatch_round_equals_reference_loop(dataset, name):
  """`L > 1` local epochs over `b < n` mini-batches, lazy Adam or SGD, delta or gradient."""
  local = MINIBATCH[name]
  cfg = small_config(local=local)
  sim = Simulator(cfg, dataset)
  state = sim.init()
  users, _ = sim.epoch_rounds(0)[0]
  assert sim.data.client_data.num_rows[users].max() > 3 * local.batch_size  # several batches
  slots, plan = sim.round_slots(users)
  phase = jax.jit(make_client_phase(sim.task, dataset.num_users),
                  static_argnames=("lengths",))
  key = jax.random.key(0)
  clients, parts, _ = phase(state.server.params, (), state.clients, sim.device_data, slots,
                         lengths=plan.lengths, key=key)
  uploads = uploads_from_parts(parts)
  slot_users = np.concatenate(slots)
  got = _uploads_by_client(uploads, slot_users)
  slot_of = {int(u): i for i, u in enumerate(slot_users) if u >= 0}
  data = sim.data.client_data
  tx = user_optimizer(local)
  # The oracle loops over clients on purpose: the longest three (several batches, every
  # bucket's padding) and the shortest three suffice and keep the test quick.
  by_length = users[np.argsort(data.num_rows[users], kind="stable")]
  for user in np.concatenate([by_length[:3], by_length[-3:]]):
    lo, hi = data.indptr[user], data.indptr[user + 1]
    opt = jax.tree.map(lambda x: x[user], state.clients.opt_state)
    u, _, rows, mlp = reference.client_reference_batched(
        cfg.model, state.server.params, state.clients.user_emb[user], tx, opt,
        data.item[lo:hi], data.label[lo:hi], data.weight[lo:hi], local,
        jax.random.fold_in(key, int(user)))
    np.testing.assert_allclose(clients.user_emb[user], u, rtol=1e-4, atol=1e-6)
    assert sorted(got[int(user)]) == sorted(rows)
    for item, g in rows.items():
      np.testing.assert_allclose(got[int(user)][item], g, rtol=1e-4, atol=1e-6)
    got_mlp = jax.tree.map(lambda x: np.asarray(x[slot_of[int(user)]]), uploads.net)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 got_mlp, mlp)


# MF (the dot interaction, no network) with BPR summed and L2, beside the NCF default.
MF_FIELDS = dict(model=NCFConfig(embed_dim=4, hidden=(), embed_init_std=0.1, interaction="dot"),
                 method_kwargs=(("l2_reg", 0.1), ("loss_reduction", "sum"), ("rec_loss", "bpr")))


@pytest.mark.parametrize("model", ["ncf", "mf"])
@pytest.mark.parametrize("local", [None] + sorted(MINIBATCH))
def test_invariant_to_padding_and_client_order(dataset, local, model):
  fields = MF_FIELDS if model == "mf" else {}
  sim = Simulator(small_config(**fields) if local is None
                  else small_config(local=MINIBATCH[local], **fields), dataset)
  users, _ = sim.epoch_rounds(0)[0]
  base_p, base_u = _one_round(sim, sim.init(), users)
  # Extra padding: one bucket, twice the longest client, with 4 spare slots.
  longest = int(sim.data.client_data.num_rows[users].max())
  wide = scheduling.BucketPlan((2 * longest,), (len(users) + 4,))
  wide_p, wide_u = _one_round(sim, sim.init(), users, plan=wide)
  # Another order of the same clients.
  rev_p, rev_u = _one_round(sim, sim.init(), users[::-1].copy())
  for p, u in ((wide_p, wide_u), (rev_p, rev_u)):
    np.testing.assert_allclose(p.item_emb, base_p.item_emb, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 p.net, base_p.net)
    np.testing.assert_allclose(u, base_u, rtol=1e-5, atol=1e-6)


def test_rounds_compile_once_and_cover_every_client(dataset):
  for assignment in ("stratified", "uniform"):
    sim = Simulator(small_config(round_assignment=assignment), dataset)
    state = sim.init()
    seen = np.concatenate([u for u, _ in sim.epoch_rounds(0)])
    assert sorted(seen.tolist()) == list(range(dataset.num_users))
    state, m = sim.run_epoch(state)
    state, m = sim.run_epoch(state)
    assert m["rounds"] == scheduling.num_rounds(dataset.num_users, 16)
    if assignment == "stratified":
      assert sim.round_step._cache_size() == 1
    assert np.isfinite(np.asarray(state.server.params.item_emb)).all()


def test_fresh_negatives_every_epoch_compile_the_round_once(dataset):
  # A fresh draw changes the clients' row counts; the plan is sized for every draw.
  sim = Simulator(small_config(resample_negatives=True, num_negatives=2), dataset)
  state = sim.init()
  rows = []
  for _ in range(3):
    state, _ = sim.run_epoch(state)
    rows.append(sim.data.num_rows.copy())
  assert any((a != b).any() for a, b in zip(rows, rows[1:]))  # the draws differ
  assert sim.round_step._cache_size() == 1  # pylint: disable=protected-access
  assert np.isfinite(np.asarray(state.server.params.item_emb)).all()


def test_stratified_plan_fits_every_round():
  rng = np.random.default_rng(0)
  lengths = np.minimum(rng.zipf(1.6, size=3001) * 5, 4000)
  plan = scheduling.stratified_plan(lengths, 256, max_buckets=6)
  assert len(plan.lengths) <= 6
  for epoch in range(3):
    rounds = scheduling.stratified_rounds(lengths, 256, np.random.default_rng(epoch))
    assert sorted(np.concatenate(rounds).tolist()) == list(range(len(lengths)))
    for r in rounds:
      assert plan.fits(np.sort(lengths[r])[::-1])


def test_uniform_plan_falls_back_to_exact_plan():
  lengths = np.array([1000] * 5 + [10] * 95)
  plan = scheduling.plan_buckets(lengths, 10, num_draws=4, seed=0)
  heavy = np.sort(lengths[:10])[::-1]  # five heavy clients in one chunk
  assert not plan.fits(heavy)  # four draws never saw such a chunk
  grid = scheduling.length_grid(1000)
  exact = scheduling.exact_plan(heavy, 10, grid)
  assert exact.fits(heavy)
  assert exact.padded_samples <= 5 * 1000 * 1.5 + 5 * 16


def test_learning_on_synthetic_data():
  ds = load_synthetic(SyntheticConfig(num_users=300, num_items=120, num_clusters=4,
                                      max_activity=80), seed=0)
  sim = Simulator(small_config(model=NCFConfig(embed_dim=8, hidden=(8,)), epochs=8,
                               server=ServerConfig(optimizer="adam", lr=0.01),
                               clients_per_round=64), ds)
  state = sim.init()
  state, _ = sim.run_epoch(state)
  first = sim.evaluate(state)["recall@20"]
  for _ in range(7):
    state, _ = sim.run_epoch(state)
  assert sim.evaluate(state)["recall@20"] > first + 0.02
