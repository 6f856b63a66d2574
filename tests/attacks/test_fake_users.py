"""Fake-user baselines (Random, Popular, Bandwagon) and PoisonFRS against plain oracles:
a fake user's upload is a benign client's (tests/reference.py) on its crafted profile,
PoisonFRS's rows are its formula in NumPy; profiles, validation, wiring and CLI errors."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec.attacks import ATTACKS, make_attack
from fedjax_rec.attacks import fake_users as fu
from fedjax_rec.models import ncf
from fedjax_rec.rounds import attack_phase
from fedjax_rec.server import ServerConfig
from fedjax_rec.tasks.ncf.client import LocalConfig, user_optimizer
from fedjax_rec.tasks.ncf.config import SimConfig
from fedjax_rec.tasks.ncf.methods import make_method
from fedjax_rec.tasks.ncf.task import attack_kwargs, benign_training
from tests import reference

REPO = Path(__file__).resolve().parents[2]
NUM_ITEMS = 40
TARGETS = np.array([3, 17])
MLP = ncf.NCFConfig(embed_dim=4, hidden=(6, 3), embed_init_std=0.1)
MF = ncf.NCFConfig(embed_dim=4, hidden=(), embed_init_std=0.1, interaction="dot")
FAKE = ("random_fake", "popular_fake", "bandwagon_fake")
# Training counts with ties (items 0 and 1, 5 and 6) and a popular target (17).
POP = np.zeros(NUM_ITEMS)
POP[[0, 1, 5, 6, 9, 17, 30]] = [9, 9, 7, 7, 5, 50, 4]


def _config(model=MLP, **kw):
  base = SimConfig(model=model, local=LocalConfig(user_optimizer="adam", user_lr=0.05,
                                                  lr=0.05),
                   server=ServerConfig(optimizer="sgd", lr=0.1), num_negatives=2,
                   resample_negatives=True)
  return dataclasses.replace(base, **kw)


def _benign(config):
  return benign_training(config, make_method("original", config.model))


def _public(model=MLP, seed=0):
  public = ncf.init_public(jax.random.key(seed), model, NUM_ITEMS)
  return public._replace(item_emb=0.5 * jax.random.normal(jax.random.key(seed + 1),
                                                          public.item_emb.shape))


def _fake(name, config=None, **kw):
  config = config or _config()
  kw = {"benign": _benign(config), "num_filler_items": 5, **kw}
  if name != "random_fake":
    kw.setdefault("popularity", POP)
  return make_attack(name, config.model, TARGETS, **kw)


# ---- pieces against NumPy --------------------------------------------------------------
def test_weighted_rows_match_numpy_on_ragged_inputs():
  rng = np.random.default_rng(0)
  for size, per in [(1, 1), (3, 4), (6, 2), (4, 0)]:
    profile = rng.choice(NUM_ITEMS, size, replace=False)
    negatives = rng.choice(np.setdiff1d(np.arange(NUM_ITEMS), profile)[:5], size * per)
    item, label, weight, mask = (np.asarray(x) for x in fu.weighted_rows(
        jnp.asarray(profile), jnp.asarray(negatives, jnp.int32)))
    assert item.shape == (size * (1 + per),)
    uniq, counts = np.unique(negatives, return_counts=True)
    real = np.flatnonzero(mask)
    np.testing.assert_array_equal(item[real], np.concatenate([np.sort(profile), uniq]))
    np.testing.assert_array_equal(label[real], [1] * size + [0] * len(uniq))
    np.testing.assert_array_equal(weight[real], np.concatenate([np.ones(size), counts]))
    assert np.all(weight[~mask] == 0) and mask[:size].all()


def test_negatives_avoid_the_profile():
  profile = jnp.asarray([0, 5, 39, 17])
  neg = np.asarray(fu.draw_negatives(jax.random.key(0), profile, NUM_ITEMS, 50))
  assert neg.shape == (200,) and not set(neg.tolist()) & {0, 5, 39, 17}
  assert neg.min() >= 0 and neg.max() < NUM_ITEMS and len(set(neg.tolist())) > 25


# ---- the fake user's upload is a benign client's -----------------------------------------
@pytest.mark.parametrize("model, resample, name", [(MLP, True, "random_fake"),
                                                   (MF, False, "bandwagon_fake")])
def test_fake_user_upload_equals_benign_reference(model, resample, name):
  config = _config(model=model, resample_negatives=resample)
  attack = _fake(name, config)
  public = _public(model)
  state = attack.init(jax.random.key(4), 3, public)
  keys = jax.random.split(jax.random.key(9), 3)
  new, ups = jax.jit(jax.vmap(attack.update, in_axes=(None, None, 0, 0)))(public, (), state,
                                                                          keys)
  tx = user_optimizer(config.local)
  for i in range(3):  # the oracle loops over fake users on purpose
    profile = np.asarray(state.profile[i])
    key_neg, _ = jax.random.split(keys[i])
    if not resample:
      key_neg = jax.random.wrap_key_data(state.key_neg[i])
    neg = np.asarray(fu.draw_negatives(key_neg, jnp.asarray(profile), NUM_ITEMS, 2))
    assert not set(neg.tolist()) & set(profile.tolist())
    opt = jax.tree.map(lambda x: x[i], state.private.opt_state)
    u, _, rows, mlp = reference.client_reference(
        model, public, state.private.user_emb[i], tx, opt, profile, neg,
        local_lr=config.local.lr)
    np.testing.assert_allclose(new.private.user_emb[i], u, rtol=1e-5, atol=1e-6)
    mask = np.asarray(ups.row_mask[i])
    got = {int(t): np.asarray(g) for t, g in zip(np.asarray(ups.row_item[i])[mask],
                                                 np.asarray(ups.row_grad[i])[mask])}
    assert sorted(got) == sorted(rows)
    for item in rows:
      np.testing.assert_allclose(got[item], rows[item], rtol=1e-4, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a)[i], b, rtol=1e-4,
                                                         atol=1e-6), ups.net, mlp)
    assert float(ups.weight[i]) == len(profile) * 3  # P positives + 2P negatives
  np.testing.assert_array_equal(new.profile, state.profile)
  assert ups.row_item.shape == (3, attack.num_rows) == (3, 7 * 3)


def test_fixed_negatives_repeat_and_resampled_ones_do_not():
  public = _public()
  for resample in (False, True):
    attack = _fake("random_fake", _config(resample_negatives=resample))
    one = jax.tree.map(lambda x: x[0], attack.init(jax.random.key(1), 2, public))
    _, a = attack.update(public, (), one, jax.random.key(2))
    _, b = attack.update(public, (), one, jax.random.key(3))
    same = np.array_equal(a.row_item, b.row_item) and np.array_equal(a.row_mask, b.row_mask)
    assert same != resample


# ---- profiles ------------------------------------------------------------------------
def test_profiles():
  public = _public()
  rand = np.asarray(_fake("random_fake").init(jax.random.key(0), 4, public).profile)
  pop = np.asarray(_fake("popular_fake").init(jax.random.key(0), 4, public).profile)
  band = np.asarray(_fake("bandwagon_fake", num_filler_items=25).init(
      jax.random.key(0), 4, public).profile)
  for profiles in (rand, pop, band):
    for row in profiles:
      assert row[:2].tolist() == TARGETS.tolist() and len(set(row.tolist())) == len(row)
  assert rand.shape == (4, 7) and len({tuple(r) for r in rand}) == 4
  # Popular: the 5 most popular non-targets, ties to the lower id (17 is a target).
  assert pop[:, 2:].tolist() == [[0, 1, 5, 6, 9]] * 4
  # Bandwagon: int(0.1 · 27) = 2 fillers from the top tenth (4 items: 0, 1, 5, 6).
  assert band.shape == (4, 27)
  for row in band:
    assert set(row[2:4].tolist()) <= {0, 1, 5, 6}
  assert len({tuple(r) for r in band}) == 4


def test_default_profile_size():
  attack = make_attack("random_fake", MLP, TARGETS, benign=_benign(_config()))
  assert attack.num_rows == 30 * 3


@pytest.mark.parametrize("name, kwargs, needle", [
    ("random_fake", {"num_filler_items": 0}, "num_filler_items must be an integer >= 1"),
    ("random_fake", {"num_filler_items": 38, "num_items": NUM_ITEMS}, "leaves no item"),
    ("random_fake", {"num_items": 10}, "out of range"),
    ("popular_fake", {"popularity": None}, "needs the training popularity"),
    ("popular_fake", {"popularity": POP[:10], "num_items": NUM_ITEMS}, "popularity has 10"),
    ("bandwagon_fake", {"popular_share": 0.0}, "popular_share"),
    ("bandwagon_fake", {"benign": None}, "benign local training"),
])
def test_fake_user_validation(name, kwargs, needle):
  with pytest.raises(ValueError, match=needle) as info:
    _fake(name, **kwargs)
  assert "\n" not in str(info.value)


def test_fake_user_init_checks_catalogue():
  with pytest.raises(ValueError, match="leaves no item"):
    _fake("random_fake", num_filler_items=38).init(jax.random.key(0), 2, _public())


# ---- PoisonFRS -------------------------------------------------------------------------
def _poisonfrs(**kw):
  return make_attack("poisonfrs", MLP, TARGETS, **{"popularity": POP, "num_filler_items": 6,
                                                   "num_popular": 3, **kw})


def test_poisonfrs_rows_equal_the_formula():
  attack = _poisonfrs(target_scale=2.5)
  public = _public()
  state = attack.init(jax.random.key(0), 3, public)
  keys = jax.random.split(jax.random.key(5), 3)
  new, ups = jax.jit(jax.vmap(attack.update, in_axes=(None, None, 0, 0)))(public, (), state,
                                                                          keys)
  v = np.asarray(public.item_emb, np.float64)
  popular = np.argsort(-np.where(np.isin(np.arange(NUM_ITEMS), TARGETS), -1, POP),
                       kind="stable")[:3]
  assert popular.tolist() == [0, 1, 5]
  want = v[TARGETS] - 2.5 * v[popular].mean(axis=0)
  norm = np.linalg.norm(want, axis=1).mean()
  for i in range(3):
    rows = np.asarray(ups.row_item[i])
    assert rows[:2].tolist() == TARGETS.tolist() and len(set(rows.tolist())) == 8
    assert not set(rows[2:].tolist()) & set(TARGETS.tolist())
    np.testing.assert_array_equal(rows[2:], np.asarray(state.filler_items[i]))
    g = np.asarray(ups.row_grad[i], np.float64)
    np.testing.assert_allclose(g[:2], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(g[2:], axis=1), norm, rtol=1e-5)
    assert bool(np.all(ups.row_mask[i])) and float(ups.weight[i]) == 8
  jax.tree.map(lambda x: np.testing.assert_array_equal(x, 0), ups.net)
  np.testing.assert_array_equal(new.filler_items, state.filler_items)
  # One uploader under FedAvg (server SGD lr 1) puts the targets onto 2.5 · the mean.
  moved = v[TARGETS] - np.asarray(ups.row_grad[0][:2])
  np.testing.assert_allclose(moved, np.broadcast_to(2.5 * v[popular].mean(0), (2, 4)),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, needle", [
    ({"popularity": None}, "needs the training popularity"),
    ({"num_popular": 0}, "num_popular"),
    ({"num_popular": 39}, "num_popular=39 exceeds"),
    ({"num_filler_items": 39}, "num_filler_items=39 exceeds"),
    ({"num_filler_items": -1}, "num_filler_items"),
    ({"target_scale": 0.0}, "target_scale"),
])
def test_poisonfrs_validation(kwargs, needle):
  with pytest.raises(ValueError, match=needle):
    _poisonfrs(**kwargs)


def test_poisonfrs_without_fillers():
  attack = _poisonfrs(num_filler_items=0)
  public = _public()
  one = jax.tree.map(lambda x: x[0], attack.init(jax.random.key(0), 2, public))
  _, up = attack.update(public, (), one, jax.random.key(1))
  assert up.row_item.tolist() == TARGETS.tolist() and attack.num_rows == 2


# ---- wiring ----------------------------------------------------------------------------
def test_task_lends_what_each_attack_takes():
  from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
  ds = load_synthetic(SyntheticConfig(num_users=30, num_items=NUM_ITEMS, max_activity=10))
  assert set(FAKE) | {"poisonfrs"} <= set(ATTACKS)
  for name in FAKE + ("poisonfrs",):
    kw = attack_kwargs(_config(attack=name, num_malicious=1, targets=(3,)), ds)
    assert ("benign" in kw) == (name in FAKE)
    assert ("popularity" in kw) == (name != "random_fake")
    if "popularity" in kw:
      np.testing.assert_array_equal(kw["popularity"], np.bincount(ds.train.items,
                                                                  minlength=NUM_ITEMS))
  kw = attack_kwargs(_config(attack="popular_fake", num_malicious=1, targets=(3,)), ds)
  assert kw["benign"].num_negatives == 2 and kw["num_items"] == NUM_ITEMS


@pytest.mark.parametrize("name", ["popular_fake", "poisonfrs"])
def test_attackers_run_in_the_round(name):
  attack = _fake(name) if name in FAKE else _poisonfrs()
  public = _public()
  state = attack.init(jax.random.key(0), 4, public)
  slots = jnp.asarray([2, -1, 0])
  new, ups, real = jax.jit(lambda s, k: attack_phase(attack, public, (), s, slots, k))(
      state, jax.random.key(3))
  assert real.tolist() == [True, False, True] and ups.row_item.shape == (3, attack.num_rows)
  np.testing.assert_array_equal(new.filler_items if name == "poisonfrs" else new.profile,
                                state.filler_items if name == "poisonfrs" else state.profile)
  assert np.all(np.isfinite(np.asarray(ups.row_grad)))


@pytest.mark.parametrize("args, needle", [
    (["--attack=random_fake", "--filler_items=0"],
     "error: --filler_items must be >= 1 for --attack=random_fake, got 0"),
    (["--attack=popular_fake", "--filler_items=100000"],
     "error: --attack=popular_fake --filler_items=100000: num_filler_items=100000"),
    (["--attack=poisonfrs", "--poisonfrs_scale=-1"],
     "error: --poisonfrs_scale must be a finite positive number, got -1"),
])
def test_bad_flags_are_one_line(args, needle):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  out = subprocess.run([sys.executable, "-m", "experiments.train", "--num_malicious=2",
                        "--epochs=1", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env=env)
  lines = [l for l in out.stderr.splitlines() if l.startswith("error: ")]
  assert out.returncode == 2, out.stderr
  assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr
  assert lines[0].startswith(needle), out.stderr
