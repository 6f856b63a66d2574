"""PIECK-IPE and PIECK-UEA: mining, losses and uploads against NumPy oracles, attackers in
different phases vmapped together, the state across epochs and a checkpoint, the effect on a
tiny run, bad flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec import checkpoints
from fedjax_rec.attacks import make_attack
from fedjax_rec.attacks import pieck
from fedjax_rec.data.synthetic import load_synthetic
from fedjax_rec.models import ncf
from fedjax_rec.simulation import Simulator
from fedjax_rec.types import PublicParams
from tests import test_simulation as ts
from tests.attacks import tiny_runs

REPO = Path(__file__).resolve().parents[2]
MF = ncf.NCFConfig(embed_dim=5, hidden=(), embed_init_std=0.1, interaction="dot")
NCF = ncf.NCFConfig(embed_dim=4, hidden=(6,), embed_init_std=0.1)
NUM_ITEMS = 30
TARGETS = np.array([4, 21])


def _table(seed, scale=1.0):
  return scale * np.random.default_rng(seed).normal(size=(NUM_ITEMS, MF.embed_dim))


def _np_mine(old, new, targets, k):
  change = np.linalg.norm(np.asarray(new, np.float64) - old, axis=1)
  change[targets] = -np.inf
  return np.argsort(-change, kind="stable")[:k]


def _np_ipe_grad(rows, popular_rows, tau):
  """Hand-derived gradient of IPE's loss: per target, per mined item, one term."""
  s = len(popular_rows)
  w = np.arange(s, 0, -1) / np.arange(s, 0, -1).sum()
  grad = np.zeros_like(rows)
  for t, v in enumerate(rows):
    nv = np.linalg.norm(v)
    cos = [p @ v / (np.linalg.norm(p) * nv) for p in popular_rows]
    if np.mean(cos) > pieck.ALIGNED_COS:
      grad[t] = -v / nv
      continue
    c = [w[k] * cos[k] for k in range(s)]
    n_pos = sum(x > 0 for x in c)
    n_neg = s - n_pos
    for k, p in enumerate(popular_rows):
      share = 1.0 / (n_pos if c[k] > 0 else n_neg)
      dcos = p / (np.linalg.norm(p) * nv) - cos[k] * v / nv ** 2
      grad[t] -= tau * share * w[k] * dcos
  return grad / len(rows)


def _np_uea_grad_mf(rows, popular_rows):
  """MF: d/dv_t of mean_(k, t) BCE(p_k · v_t, 1) = -(1/(sT)) Σ_k (1 - σ(p_k · v_t)) p_k."""
  grad = np.zeros_like(rows)
  for t, v in enumerate(rows):
    for p in popular_rows:
      grad[t] -= (1 - 1 / (1 + np.exp(-(p @ v)))) * p
  return grad / (len(rows) * len(popular_rows))


def test_mining_is_top_k_of_row_change():
  old, new = _table(0), _table(1)
  for k in (1, 4, 7):
    got = pieck.mine_popular(jnp.asarray(old), jnp.asarray(new), jnp.asarray(TARGETS), k)
    np.testing.assert_array_equal(np.asarray(got), _np_mine(old, new, TARGETS, k))
  # A target that moved most is still excluded.
  new[TARGETS[0]] += 100.0
  got = pieck.mine_popular(jnp.asarray(old), jnp.asarray(new), jnp.asarray(TARGETS), 3)
  assert TARGETS[0] not in np.asarray(got).tolist()


@pytest.mark.parametrize("tau", [0.9, 0.2])
def test_ipe_gradient_matches_hand_derivation(tau):
  rng = np.random.default_rng(2)
  rows, popular = rng.normal(size=(3, 5)), rng.normal(size=(6, 5))
  got = jax.grad(pieck.ipe_loss)(jnp.asarray(rows, jnp.float32), jnp.asarray(popular, jnp.float32),
                                 tau)
  np.testing.assert_allclose(np.asarray(got), _np_ipe_grad(rows, popular, tau), rtol=2e-4,
                             atol=1e-5)
  # Aligned: the mined items all point along the target, so the target only grows.
  aligned = np.stack([rows[0] * (1 + 0.01 * j) for j in range(6)])
  got = jax.grad(pieck.ipe_loss)(jnp.asarray(rows[:1]), jnp.asarray(aligned), tau)
  np.testing.assert_allclose(np.asarray(got)[0], -rows[0] / np.linalg.norm(rows[0]), rtol=1e-5)


def _state(attack, snapshots, popular, seen):
  return pieck.PIECKState(snapshot=jnp.asarray(np.stack(snapshots), jnp.float32),
                          popular=jnp.asarray(popular, jnp.int32),
                          seen=jnp.asarray(seen, jnp.int32))


@pytest.mark.parametrize("mining", ["once", "every"])
def test_ipe_uploads_of_attackers_in_different_phases(mining):
  """Three attackers vmapped: first participation, second (mines), third (keeps or re-mines)."""
  k = 4
  attack = make_attack("pieck_ipe", MF, TARGETS, mined_items=k, tau=0.9, mining=mining)
  snaps = [_table(10), _table(11), _table(12)]
  stored = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 2, 3, 5]])
  state = _state(attack, snaps, stored, [0, 1, 2])
  item_emb = _table(13)
  public = PublicParams(item_emb=jnp.asarray(item_emb, jnp.float32), net={})
  new, up = jax.jit(jax.vmap(attack.update, in_axes=(None, None, 0, 0)))(
      public, (), state, jax.random.split(jax.random.key(0), 3))
  assert up.row_item.tolist() == [TARGETS.tolist()] * 3
  assert up.row_mask.tolist() == [[False, False], [True, True], [True, True]]
  np.testing.assert_array_equal(np.asarray(up.row_grad[0]), 0.0)
  assert np.asarray(up.weight).tolist() == [0.0, 2.0, 2.0]
  mined1 = _np_mine(snaps[1], item_emb, TARGETS, k)
  mined2 = stored[2] if mining == "once" else _np_mine(snaps[2], item_emb, TARGETS, k)
  np.testing.assert_array_equal(np.asarray(new.popular[1]), mined1)
  np.testing.assert_array_equal(np.asarray(new.popular[2]), mined2)
  for a, mined in ((1, mined1), (2, mined2)):
    want = _np_ipe_grad(item_emb[TARGETS], item_emb[mined], 0.9)
    np.testing.assert_allclose(np.asarray(up.row_grad[a]), want, rtol=2e-4, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(new.seen), [1, 2, 3])
  np.testing.assert_allclose(np.asarray(new.snapshot), np.stack([item_emb] * 3), rtol=1e-6)


def test_uea_mf_upload_matches_closed_form():
  k = 5
  attack = make_attack("pieck_uea", MF, TARGETS, mined_items=k)
  snap, item_emb = _table(20, 0.5), _table(21, 0.5)
  state = jax.tree.map(lambda x: x[0], _state(attack, [snap], [[0] * k], [1]))
  public = PublicParams(item_emb=jnp.asarray(item_emb, jnp.float32), net={})
  _, up = jax.jit(attack.update)(public, (), state, jax.random.key(0))
  mined = _np_mine(snap, item_emb, TARGETS, k)
  want = _np_uea_grad_mf(item_emb[TARGETS], item_emb[mined])
  np.testing.assert_allclose(np.asarray(up.row_grad), want, rtol=1e-4, atol=1e-6)
  assert bool(jnp.all(up.row_mask)) and float(up.weight) == k * len(TARGETS)


def _mlp_forward(mlp, u, v):
  p = mlp["params"]
  x = jnp.concatenate([u, v], axis=-1)
  x = jax.nn.relu(x @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"])
  return (x @ p["out"]["kernel"] + p["out"]["bias"])[..., 0]


def test_uea_ncf_uploads_target_rows_and_mlp():
  k = 3
  attack = make_attack("pieck_uea", NCF, TARGETS, mined_items=k)
  public = ncf.init_public(jax.random.key(0), NCF, NUM_ITEMS)
  snap = np.asarray(public.item_emb) + np.random.default_rng(3).normal(size=(NUM_ITEMS, 4))
  state = jax.tree.map(lambda x: x[0], _state(attack, [snap], [[0] * k], [1]))
  _, up = jax.jit(attack.update)(public, (), state, jax.random.key(0))
  mined = _np_mine(snap, np.asarray(public.item_emb), TARGETS, k)
  users = public.item_emb[jnp.asarray(mined)]

  def loss(rows, mlp):  # a plain loop over (mined item, target) pairs
    terms = [jax.nn.softplus(-_mlp_forward(mlp, users[i], rows[t]))
             for i in range(k) for t in range(len(TARGETS))]
    return sum(terms) / len(terms)

  g_rows, g_mlp = jax.grad(loss, argnums=(0, 1))(public.item_emb[jnp.asarray(TARGETS)],
                                                public.net)
  np.testing.assert_allclose(np.asarray(up.row_grad), np.asarray(g_rows), rtol=1e-4, atol=1e-6)
  for got, want in zip(jax.tree.leaves(up.net), jax.tree.leaves(g_mlp)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


def test_ipe_uploads_zero_network_gradient():
  attack = make_attack("pieck_ipe", NCF, TARGETS, mined_items=3)
  public = ncf.init_public(jax.random.key(0), NCF, NUM_ITEMS)
  state = jax.tree.map(lambda x: x[0], attack.init(jax.random.key(0), 1, public))
  state = state._replace(seen=jnp.asarray(1, jnp.int32))
  _, up = attack.update(public, (), state, jax.random.key(0))
  assert all(float(jnp.abs(x).sum()) == 0 for x in jax.tree.leaves(up.net))
  assert float(jnp.abs(up.row_grad).sum()) > 0


@pytest.mark.parametrize("kwargs, needle", [
    ({"mined_items": 0}, "mined_items must be an integer >= 1"),
    ({"tau": 0.0}, "tau must be a finite positive number"),
    ({"mining": "twice"}, "mining must be one of"),
    ({"num_items": NUM_ITEMS, "mined_items": NUM_ITEMS - 1}, "mined_items=29 exceeds the 28"),
    ({"num_items": 10}, "out of range"),
])
def test_bad_settings(kwargs, needle):
  with pytest.raises(ValueError, match=needle):
    make_attack("pieck_ipe", MF, TARGETS, **kwargs)


# ---- state across epochs and a checkpoint --------------------------------------------
@pytest.fixture(scope="module")
def two_epochs():
  ds = load_synthetic(ts.SMALL, seed=3)
  cfg = ts.small_config(attack="pieck_uea", num_malicious=3, targets=(7,),
                        attack_kwargs=(("mined_items", 4),))
  sim = Simulator(cfg, ds)
  host = lambda s: jax.tree.map(np.asarray, s)  # a round donates the state's buffers
  s1, _ = sim.run_epoch(sim.init())
  s1 = host(s1)
  s2, _ = sim.run_epoch(sim.place(s1))
  return sim, s1, host(s2)


def test_state_holds_what_the_next_epoch_needs(two_epochs):
  _, s1, s2 = two_epochs
  np.testing.assert_array_equal(np.asarray(s1.attackers.seen), [1, 1, 1])
  np.testing.assert_array_equal(np.asarray(s2.attackers.seen), [2, 2, 2])
  for a in range(3):  # epoch 2 mined from the change between the two received tables
    want = _np_mine(np.asarray(s1.attackers.snapshot[a]), np.asarray(s2.attackers.snapshot[a]),
                    np.array([7]), 4)
    np.testing.assert_array_equal(np.asarray(s2.attackers.popular[a]), want)
  # Epoch 1's snapshot is a received table: the first round's is the initial one.
  assert not np.allclose(np.asarray(s1.attackers.snapshot), 0.0)


def test_checkpointed_state_resumes_exactly(two_epochs, tmp_path):
  sim, s1, s2 = two_epochs
  path = tmp_path / "ckpt.msgpack"
  checkpoints.save_checkpoint(path, s1)
  restored = sim.place(checkpoints.load_checkpoint(path, sim.init()))
  for a, b in zip(jax.tree.leaves(restored.attackers), jax.tree.leaves(s1.attackers)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  resumed, _ = sim.run_epoch(restored)
  for a, b in zip(jax.tree.leaves(resumed.attackers), jax.tree.leaves(s2.attackers)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_raises_target_exposure_on_a_tiny_run():
  none, attacked = tiny_runs.exposure("none"), tiny_runs.exposure("pieck_uea")
  assert attacked > none + 0.3, (none, attacked)


# ---- flags ---------------------------------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["--attack=pieck_ipe", "--mined_items=0"], "error: --mined_items must be >= 1, got 0"),
    (["--attack=pieck_ipe", "--ipe_tau=-1"], "error: --ipe_tau must be a finite positive"),
    (["--attack=pieck_uea", "--ipe_tau=0.5"], "error: --ipe_tau does not apply to "
                                              "--attack=pieck_uea"),
    (["--attack=pieck_uea", "--mined_items=100000"],
     "error: --attack=pieck_uea --mined_items=100000: mined_items=100000 exceeds")])
def test_bad_flags_are_one_line(args, needle):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  out = subprocess.run([sys.executable, "-m", "experiments.train", "--num_malicious=2", *args],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
  assert out.returncode == 2, out.stderr
  assert needle in out.stderr, out.stderr
  assert "Traceback" not in out.stderr
  errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, out.stderr
