"""PipAttack: popularity levels, its losses' gradients and its upload against hand-written
NumPy versions, its state across rounds, its effect on a tiny run, bad settings and flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec.attacks import TAKES_TRAINING_DATA, make_attack
from fedjax_rec.attacks import pipattack as pip
from fedjax_rec.models import ncf
from fedjax_rec.types import PublicParams
from tests.attacks import tiny_runs

REPO = Path(__file__).resolve().parents[2]
MF = ncf.NCFConfig(embed_dim=4, hidden=(), embed_init_std=0.1, interaction="dot")
NCF = ncf.NCFConfig(embed_dim=4, hidden=(5,), embed_init_std=0.1)
NUM_ITEMS = 12
TARGETS = np.array([2, 9])
# Ragged training lists of 5 users (CSR); counts: item 0: 4, 1: 3, 3: 2, ...
TRAIN = [[0, 1, 3], [0, 1, 5, 7], [0, 3], [0, 1, 4, 6, 8], [10]]


def _csr(lists):
  indptr = np.cumsum([0] + [len(x) for x in lists])
  return indptr, np.concatenate([np.asarray(x) for x in lists]).astype(np.int32)


def _attack(config=MF, **kw):
  kw = {"train_csr": _csr(TRAIN), "num_items": NUM_ITEMS, **kw}
  return make_attack("pipattack", config, TARGETS, **kw)


def _np_levels(counts, num_levels):
  """Plain loop: walk the items from least to most popular (ties by id)."""
  n = len(counts)
  order = sorted(range(n), key=lambda i: (counts[i], i))
  levels = [0] * n
  for j, item in enumerate(order):
    levels[item] = j * num_levels // n
  return np.asarray(levels)


def test_popularity_levels():
  counts = np.bincount(_csr(TRAIN)[1], minlength=NUM_ITEMS)
  for num_levels in (2, 3, 5, NUM_ITEMS):
    got = pip.popularity_levels(counts, num_levels)
    np.testing.assert_array_equal(got, _np_levels(counts.tolist(), num_levels))
  levels = pip.popularity_levels(counts, 3)
  assert levels[0] == 2 and levels[1] == 2 and levels[2] == 0  # most popular: 0, 1
  assert np.bincount(levels).tolist() == [4, 4, 4]


def _np_clf(params):
  return {k: np.asarray(v, np.float64) for k, v in params.items()}


def _np_loss_grad(rows, user, clf, received, alpha, gamma):
  """MF: `(L, dL/drows, dL/du)` of L_exp + α L_pop + γ L_dis, one target at a time."""
  t_count = len(rows)
  loss, g_rows, g_user = 0.0, np.zeros_like(rows), np.zeros_like(user)
  for t, v in enumerate(rows):
    s = user @ v
    sig = 1 / (1 + np.exp(-s))
    loss += -np.log(sig) / t_count
    g_rows[t] += -(1 - sig) * user / t_count
    g_user += -(1 - sig) * v / t_count
    pre = v @ clf["w1"] + clf["b1"]
    h = np.maximum(pre, 0)
    z = h @ clf["w2"] + clf["b2"]
    p = np.exp(z - z.max())
    p /= p.sum()
    top = len(z) - 1
    loss += alpha * -np.log(p[top]) / t_count
    dz = p.copy()
    dz[top] -= 1
    g_rows[t] += alpha * (clf["w1"] @ ((pre > 0) * (clf["w2"] @ dz))) / t_count
    loss += gamma * np.sum((v - received[t]) ** 2) / t_count
    g_rows[t] += gamma * 2 * (v - received[t]) / t_count
  return loss, g_rows, g_user


def test_attack_loss_and_gradient_match_hand_derivation():
  rng = np.random.default_rng(0)
  clf = pip.init_classifier(jax.random.key(0), 4, 6, 3)
  rows, received, user = rng.normal(size=(2, 4)), rng.normal(size=(2, 4)), rng.normal(size=4)
  args = dict(net={}, classifier=clf, received=jnp.asarray(received, jnp.float32),
              pop_weight=0.7, dist_weight=1.3)
  f = lambda r, u: pip.attack_loss(MF, r, u, **args)
  got = f(jnp.asarray(rows, jnp.float32), jnp.asarray(user, jnp.float32))
  g_rows, g_user = jax.grad(f, argnums=(0, 1))(jnp.asarray(rows, jnp.float32),
                                              jnp.asarray(user, jnp.float32))
  want, w_rows, w_user = _np_loss_grad(rows, user, _np_clf(clf), received, 0.7, 1.3)
  assert float(got) == pytest.approx(want, rel=1e-5)
  np.testing.assert_allclose(np.asarray(g_rows), w_rows, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(g_user), w_user, rtol=1e-4, atol=1e-6)


def test_classifier_loss_matches_numpy():
  rng = np.random.default_rng(1)
  clf = pip.init_classifier(jax.random.key(1), 4, 6, 3)
  item_emb = rng.normal(size=(NUM_ITEMS, 4))
  levels = rng.integers(0, 3, NUM_ITEMS)
  c = _np_clf(clf)
  want = 0.0
  for v, level in zip(item_emb, levels):
    z = np.maximum(v @ c["w1"] + c["b1"], 0) @ c["w2"] + c["b2"]
    want += (np.log(np.sum(np.exp(z))) - z[level]) / NUM_ITEMS
  got = pip.classifier_loss(clf, jnp.asarray(item_emb, jnp.float32), jnp.asarray(levels))
  assert float(got) == pytest.approx(want, rel=1e-5)


def _public(seed=0):
  item_emb = 0.5 * jax.random.normal(jax.random.key(seed), (NUM_ITEMS, MF.embed_dim))
  return PublicParams(item_emb=item_emb, net={})


def test_upload_is_the_summed_gradient_of_the_local_steps():
  """Three attackers vmapped (own users and classifiers); each against a NumPy loop."""
  steps, lr, user_lr = 4, 0.05, 0.2
  attack = _attack(local_steps=steps, lr=lr, user_lr=user_lr, pop_weight=0.5, dist_weight=2.0)
  public = _public()
  state = attack.init(jax.random.key(3), 3, public)
  new, up = jax.jit(jax.vmap(attack.update, in_axes=(None, None, 0, 0)))(
      public, (), state, jax.random.split(jax.random.key(4), 3))
  assert up.row_item.tolist() == [TARGETS.tolist()] * 3 and bool(jnp.all(up.row_mask))
  received = np.asarray(public.item_emb, np.float64)[TARGETS]
  for a in range(3):
    clf = _np_clf(jax.tree.map(lambda x: x[a], new.classifier))  # trained this round
    rows, user = received.copy(), np.asarray(state.user_emb[a], np.float64)
    total = np.zeros_like(rows)
    for _ in range(steps):
      _, g_rows, g_user = _np_loss_grad(rows, user, clf, received, 0.5, 2.0)
      rows, user, total = rows - lr * g_rows, user - user_lr * g_user, total + g_rows
    np.testing.assert_allclose(np.asarray(up.row_grad[a]), total, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new.user_emb[a]), user, rtol=2e-4, atol=1e-6)
  # The classifiers and users persist and keep moving: a second round starts from them.
  new2, _ = jax.vmap(attack.update, in_axes=(None, None, 0, 0))(
      public, (), new, jax.random.split(jax.random.key(5), 3))
  assert not np.allclose(np.asarray(new2.user_emb), np.asarray(new.user_emb))
  # Two rounds of the default 20 classifier steps each on one Adam state.
  assert np.asarray(new2.classifier_opt[0].count).tolist() == [40, 40, 40]


def test_classifier_learns_the_known_levels():
  """Popular items planted along one direction: the trained classifier finds them."""
  attack = _attack(classifier_steps=300, classifier_lr=0.05)
  rng = np.random.default_rng(2)
  counts = np.bincount(_csr(TRAIN)[1], minlength=NUM_ITEMS)
  levels = pip.popularity_levels(counts, 3)
  item_emb = 0.1 * rng.normal(size=(NUM_ITEMS, 4)) + np.eye(4)[levels]
  public = PublicParams(item_emb=jnp.asarray(item_emb, jnp.float32), net={})
  state = jax.tree.map(lambda x: x[0], attack.init(jax.random.key(0), 1, public))
  new, _ = jax.jit(attack.update)(public, (), state, jax.random.key(1))
  pred = np.argmax(np.asarray(pip.classifier_logits(new.classifier, public.item_emb)), axis=1)
  np.testing.assert_array_equal(pred, levels)


def _mlp_forward(mlp, u, v):
  p = mlp["params"]
  x = jax.nn.relu(jnp.concatenate([u, v], axis=-1) @ p["hidden_0"]["kernel"]
                  + p["hidden_0"]["bias"])
  return (x @ p["out"]["kernel"] + p["out"]["bias"])[..., 0]


def test_ncf_upload_against_a_plain_loop():
  steps, lr = 3, 0.1
  attack = _attack(NCF, local_steps=steps, lr=lr, user_lr=lr)
  public = ncf.init_public(jax.random.key(0), NCF, NUM_ITEMS)
  state = jax.tree.map(lambda x: x[0], attack.init(jax.random.key(1), 1, public))
  new, up = jax.jit(attack.update)(public, (), state, jax.random.key(2))
  received = public.item_emb[jnp.asarray(TARGETS)]

  def loss(rows, user, mlp):  # one target at a time
    total = 0.0
    for t in range(len(TARGETS)):
      z = pip.classifier_logits(new.classifier, rows[t])
      total += (jax.nn.softplus(-_mlp_forward(mlp, user, rows[t]))
                + (jax.nn.logsumexp(z) - z[-1])
                + jnp.sum((rows[t] - received[t]) ** 2)) / len(TARGETS)
    return total

  rows, user = received, state.user_emb
  total_rows, total_mlp = jnp.zeros_like(rows), jax.tree.map(jnp.zeros_like, public.net)
  for _ in range(steps):
    g_rows, g_user, g_mlp = jax.grad(loss, argnums=(0, 1, 2))(rows, user, public.net)
    rows, user = rows - lr * g_rows, user - lr * g_user
    total_rows = total_rows + g_rows
    total_mlp = jax.tree.map(jnp.add, total_mlp, g_mlp)
  np.testing.assert_allclose(np.asarray(up.row_grad), np.asarray(total_rows), rtol=1e-4,
                             atol=1e-6)
  for got, want in zip(jax.tree.leaves(up.net), jax.tree.leaves(total_mlp)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


def test_takes_training_data():
  assert "pipattack" in TAKES_TRAINING_DATA


@pytest.mark.parametrize("kwargs, needle", [
    ({"num_levels": 1}, "num_levels must be an integer >= 2"),
    ({"num_levels": NUM_ITEMS + 1}, "num_levels=13 exceeds the 12 items"),
    ({"pop_weight": -1.0}, "pop_weight must be a finite number >= 0"),
    ({"dist_weight": float("nan")}, "dist_weight must be a finite number >= 0"),
    ({"local_steps": 0}, "local_steps must be an integer >= 1"),
    ({"lr": 0.0}, "lr must be a finite positive number"),
    ({"classifier_hidden": 0}, "classifier_hidden"),
    ({"train_csr": None}, "train_csr"),
    ({"num_items": 5}, "out of range"),
])
def test_bad_settings(kwargs, needle):
  with pytest.raises(ValueError, match=needle):
    _attack(**kwargs)


def test_init_checks_the_catalogue():
  attack = _attack()
  bad = PublicParams(item_emb=jnp.zeros((NUM_ITEMS + 1, 4)), net={})
  with pytest.raises(ValueError, match="built for num_items=12 but V has 13 rows"):
    attack.init(jax.random.key(0), 2, bad)


def test_raises_target_exposure_on_a_tiny_run():
  none, attacked = tiny_runs.exposure("none"), tiny_runs.exposure("pipattack")
  assert attacked > none + 0.3, (none, attacked)


@pytest.mark.parametrize("args,needle", [
    (["--pop_levels=1"], "error: --pop_levels must be >= 2, got 1"),
    (["--dist_weight=-2"], "error: --dist_weight must be a finite number >= 0"),
    (["--mined_items=3"], "error: --mined_items does not apply to --attack=pipattack"),
    (["--pop_levels=100000"], "error: --attack=pipattack --pop_levels=100000: "
                              "num_levels=100000 exceeds")])
def test_bad_flags_are_one_line(args, needle):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  out = subprocess.run([sys.executable, "-m", "experiments.train", "--attack=pipattack",
                        "--num_malicious=2", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env=env)
  assert out.returncode == 2, out.stderr
  assert needle in out.stderr, out.stderr
  assert "Traceback" not in out.stderr
  assert len([line for line in out.stderr.splitlines() if line.startswith("error:")]) == 1
