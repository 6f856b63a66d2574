"""LIE, Fang and FedAttack against NumPy oracles on ragged benign uploads, the round's
benign statistics, and end-to-end rounds (robust aggregators, non-finite rejection)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec.attacks import ATTACKS, make_attack
from fedjax_rec.attacks import fang as fang_lib
from fedjax_rec.attacks.base import ALL_ITEMS, upload_rows
from fedjax_rec.attacks.benign import benign_stats
from fedjax_rec.attacks.fedattack import hard_samples
from fedjax_rec.attacks.lie import lie_z, lie_z_numpy
from fedjax_rec.models import ncf
from fedjax_rec.types import PublicParams, Uploads

NUM_ITEMS, DIM = 7, 3
# Ragged benign uploads: client -> {item: row}; client 3 uploads a NaN (rejected by every
# aggregator, so left out of the statistics), client 4 is a padded slot holding garbage.
RNG = np.random.default_rng(0)
CLIENT_ITEMS = [[0, 1, 2], [1, 2], [2, 4, 5], [0, 1], [3]]
REAL = [True, True, True, True, False]
ROWS = [{i: RNG.normal(size=DIM).astype(np.float32) for i in items} for items in CLIENT_ITEMS]
ROWS[3][1][0] = np.nan
NETS = RNG.normal(size=(5, 2, 2)).astype(np.float32)
WEIGHTS = np.array([3.0, 2.0, 5.0, 1.0, 9.0], np.float32)
GOOD = [0, 1, 2]  # real clients with finite uploads


def _uploads(pad_rows: int = 2) -> Uploads:
  row_client, row_item, row_grad, row_mask = [], [], [], []
  for c, rows in enumerate(ROWS):
    for i, g in rows.items():
      row_client.append(c), row_item.append(i), row_grad.append(g), row_mask.append(REAL[c])
    for _ in range(pad_rows):  # padding rows (garbage, masked)
      row_client.append(c), row_item.append(0), row_grad.append(np.full(DIM, 1e9, np.float32))
      row_mask.append(False)
  return Uploads(row_client=jnp.asarray(row_client, jnp.int32),
                 row_item=jnp.asarray(row_item, jnp.int32), row_grad=jnp.asarray(row_grad),
                 row_mask=jnp.asarray(row_mask), net={"w": jnp.asarray(NETS)},
                 client_weight=jnp.asarray(WEIGHTS), client_mask=jnp.asarray(REAL),
                 client_malicious=jnp.zeros(5, bool))


def _oracle_rows():
  """Per item: the stacked benign rows of the finite real clients (ragged)."""
  return {i: np.stack([ROWS[c][i] for c in GOOD if i in ROWS[c]])
          for i in range(NUM_ITEMS) if any(i in ROWS[c] for c in GOOD)}


@pytest.fixture(scope="module")
def stats():
  return jax.jit(benign_stats, static_argnums=1)(_uploads(), NUM_ITEMS, jnp.int32(2))


def _public():
  return PublicParams(item_emb=jnp.zeros((NUM_ITEMS, DIM)), net={"w": jnp.zeros((2, 2))})


def _one(name, stats, key=0, **kw):
  attack = make_attack(name, None, None, **kw)
  state = attack.init(jax.random.key(0), 2, _public())
  return jax.jit(attack.update)(_public(), (), state[0], jax.random.key(key), stats)[1]


def test_registered_and_all_items():
  assert {"fedattack", "lie", "fang"} <= set(ATTACKS)
  for name in ("lie", "fang"):
    attack = make_attack(name, None, None)
    assert attack.needs_benign and attack.num_rows == ALL_ITEMS
    assert upload_rows(attack, 1682) == 1682
  assert not make_attack("fedattack", ncf.NCFConfig(embed_dim=4), None).needs_benign
  assert upload_rows(None, 10) == 0


def test_benign_stats_against_numpy(stats):
  oracle = _oracle_rows()
  count = np.array([len(oracle.get(i, [])) for i in range(NUM_ITEMS)])
  np.testing.assert_array_equal(stats.count, count)
  for i in range(NUM_ITEMS):
    rows = oracle.get(i, np.zeros((1, DIM)))
    want = [rows.mean(0), rows.std(0), rows.min(0), rows.max(0)]
    for got, w in zip(stats.rows, want):
      np.testing.assert_allclose(got[i], w, rtol=1e-5, atol=1e-6)
  nets = NETS[GOOD]
  for got, w in zip(stats.net, [nets.mean(0), nets.std(0), nets.min(0), nets.max(0)]):
    np.testing.assert_allclose(got["w"], w, rtol=1e-5, atol=1e-6)
  assert int(stats.num_benign) == 3 and int(stats.num_attackers) == 2
  np.testing.assert_allclose(stats.weight, WEIGHTS[GOOD].mean())


@pytest.mark.parametrize("n, m", [(256, 3), (23, 3), (5, 1), (4, 3), (1, 1)])
def test_lie_z_rule(n, m):
  # s = floor(n/2 + 1) - m (at least 1); z = Φ⁻¹((n - s) / n): e.g. n=23, m=3: s = 9,
  # Φ⁻¹(14/23) = 0.2759.
  np.testing.assert_allclose(float(lie_z(n, m)), lie_z_numpy(n, m), rtol=1e-5, atol=1e-6)
  assert np.isfinite(float(lie_z(n, m))) and float(lie_z(n, m)) >= 0
  np.testing.assert_allclose(lie_z_numpy(23, 3), 0.27592, atol=1e-4)


@pytest.mark.parametrize("kw", [{}, {"z_counts": "item"}, {"z": 1.5}])
def test_lie_against_numpy(stats, kw):
  up = _one("lie", stats, **kw)
  oracle = _oracle_rows()
  n_round, m = len(GOOD) + 2, 2
  np.testing.assert_array_equal(up.row_item, np.arange(NUM_ITEMS))
  np.testing.assert_array_equal(up.row_mask, [i in oracle for i in range(NUM_ITEMS)])
  for i, rows in oracle.items():
    z = kw.get("z", lie_z_numpy(len(rows) + m if kw.get("z_counts") == "item" else n_round, m))
    np.testing.assert_allclose(up.row_grad[i], rows.mean(0) - z * rows.std(0), rtol=1e-5,
                               atol=1e-6)
  z = kw.get("z", lie_z_numpy(n_round, m))
  nets = NETS[GOOD]
  np.testing.assert_allclose(up.net["w"], nets.mean(0) - z * nets.std(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(up.weight, WEIGHTS[GOOD].mean())


def _np_fang(values: np.ndarray, r: np.ndarray) -> np.ndarray:
  """Fang's directed deviation of one coordinate block from the benign values [n, ...]."""
  s = np.sign(values.sum(0))
  extreme = np.where(s > 0, values.min(0), np.where(s < 0, values.max(0), 0.0))
  return np.where(s * extreme > 0, extreme / r, extreme * r)


def test_directed_deviation_formula():
  values = np.array([[1.0, -2.0, 3.0, -1.0, 0.0], [2.0, -1.0, -1.0, 2.0, 0.0],
                     [4.0, -3.0, 1.0, -4.0, 0.0]], np.float32)
  r = np.array([1.5, 1.2, 2.0, 1.1, 1.7], np.float32)
  got = fang_lib.directed_deviation(jnp.asarray(values.mean(0)), jnp.asarray(values.min(0)),
                                    jnp.asarray(values.max(0)), jnp.asarray(r))
  # By hand: column 0 moves up (sum 7), its minimum 1 has that sign: 1 / 1.5; column 1
  # down, maximum -1: -1 / 1.2; column 2 up (sum 3), minimum -1: -1 · 2; column 3 down
  # (sum -3), maximum 2: 2 · 1.1; column 4 does not move: 0.
  np.testing.assert_allclose(got, [1 / 1.5, -1 / 1.2, -2.0, 2.2, 0.0], rtol=1e-6)
  np.testing.assert_allclose(got, _np_fang(values, r), rtol=1e-6)


def test_fang_against_numpy(stats):
  up, other = _one("fang", stats, key=1, scale=3.0), _one("fang", stats, key=2, scale=3.0)
  oracle = _oracle_rows()
  np.testing.assert_array_equal(up.row_mask, [i in oracle for i in range(NUM_ITEMS)])
  for i, rows in oracle.items():
    got = np.asarray(up.row_grad[i])
    lo, hi = _np_fang(rows, np.full(DIM, 3.0)), _np_fang(rows, np.ones(DIM))
    assert np.all(got >= np.minimum(lo, hi) - 1e-6) and np.all(got <= np.maximum(lo, hi) + 1e-6)
    # the factor each coordinate drew, in [1, b]: the upload is the oracle at that factor
    r = np.where(np.abs(got) > np.abs(hi), got / np.where(hi == 0, 1, hi),
                 hi / np.where(got == 0, 1, got))
    r = np.where(hi == 0, 1.0, r)
    assert np.all((r >= 1 - 1e-5) & (r <= 3 + 1e-5))
    np.testing.assert_allclose(got, _np_fang(rows, r), rtol=1e-5, atol=1e-6)
  nets = NETS[GOOD]
  lo, hi = _np_fang(nets, np.full((2, 2), 3.0)), _np_fang(nets, np.ones((2, 2)))
  net = np.asarray(up.net["w"])
  assert np.all(net >= np.minimum(lo, hi) - 1e-6) and np.all(net <= np.maximum(lo, hi) + 1e-6)
  assert not np.allclose(up.row_grad, other.row_grad)  # each attacker draws its own factors


@pytest.mark.parametrize("name, kw, bad", [
    ("lie", {"z": 0.0}, "z"), ("lie", {"z_counts": "client"}, "z_counts"),
    ("fang", {"scale": 1.0}, "scale"), ("fang", {"scale": float("inf")}, "scale"),
    ("fedattack", {"num_positives": 0}, "num_positives"),
    ("fedattack", {"num_negatives": 1.5}, "num_negatives")])
def test_kwarg_validation(name, kw, bad):
  with pytest.raises(ValueError, match=bad):
    make_attack(name, ncf.NCFConfig(embed_dim=4), None, **kw)


# ---- FedAttack -------------------------------------------------------------------------
MF = ncf.NCFConfig(embed_dim=DIM, hidden=(), interaction="dot", embed_init_std=0.5)


@pytest.mark.parametrize("num_pos, num_neg", [(1, 1), (2, 2)])
def test_fedattack_against_numpy(num_pos, num_neg):
  attack = make_attack("fedattack", MF, None, num_positives=num_pos, num_negatives=num_neg)
  item_emb = jax.random.normal(jax.random.key(3), (NUM_ITEMS, DIM))
  public = PublicParams(item_emb=item_emb, net={})
  users = attack.init(jax.random.key(4), 2, public)
  state, up = jax.jit(attack.update)(public, (), users[1], jax.random.key(5))
  np.testing.assert_array_equal(state, users[1])
  u, v = np.asarray(users[1], np.float64), np.asarray(item_emb, np.float64)
  scores = v @ u
  order = np.argsort(scores, kind="stable")
  pos = order[:num_pos]
  neg = [i for i in np.argsort(-scores, kind="stable") if i not in pos][:num_pos * num_neg]
  np.testing.assert_array_equal(up.row_item, np.concatenate([pos, neg]))
  labels = np.r_[np.ones(num_pos), np.zeros(num_pos * num_neg)]
  p = 1 / (1 + np.exp(-scores[up.row_item]))
  # d/dv mean_s BCE(u · v_s, y_s) = (σ(u · v) - y) u / S
  want = (p - labels)[:, None] * u[None, :] / labels.size
  np.testing.assert_allclose(up.row_grad, want, rtol=1e-4, atol=1e-7)
  assert up.row_mask.all() and float(up.weight) == labels.size


def test_fedattack_catalogue_check():
  attack = make_attack("fedattack", MF, None, num_positives=2, num_negatives=3)
  with pytest.raises(ValueError, match="exceeds the 7 items"):
    attack.init(jax.random.key(0), 2, _public())


def test_hard_samples_disjoint_under_ties():
  pos, neg = hard_samples(jnp.zeros(5), 2, 1)
  assert not set(np.asarray(pos).tolist()) & set(np.asarray(neg).tolist())


# ---- end to end --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
  from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
  from fedjax_rec.tasks.ncf.config import SimConfig
  ds = load_synthetic(SyntheticConfig(num_users=120, num_items=60, max_activity=40))

  def config(**kw):
    return SimConfig(model=ncf.NCFConfig(embed_dim=8, hidden=(8,)), clients_per_round=48,
                     epochs=1, max_buckets=2, targets=(0,), **kw)

  return ds, config


def _run_epoch(ds, config):
  from fedjax_rec.simulation import Simulator
  sim = Simulator(config, ds)
  return sim.run_epoch(sim.init())


@pytest.mark.parametrize("name, aggregator", [("lie", "fedavg"), ("fang", "median"),
                                              ("fedattack", "krum"), ("fang", "fedavg")])
def test_end_to_end(tiny, name, aggregator):
  ds, config = tiny
  benign, _ = _run_epoch(ds, config(aggregator=aggregator))
  state, summary = _run_epoch(ds, config(attack=name, num_malicious=3, aggregator=aggregator))
  assert summary["num_malicious"] > 0 and summary["rejected"] == 0
  assert np.all(np.isfinite(state.server.params.item_emb))
  assert not np.allclose(state.server.params.item_emb, benign.server.params.item_emb)


@pytest.mark.parametrize("name, aggregator", [("lie", "median"), ("fang", "fedavg")])
def test_non_finite_uploads_still_rejected(tiny, name, aggregator):
  # Two benign clients of every round upload NaN: the aggregator rejects exactly them (the
  # attackers' statistics leave them out, so the crafted uploads stay finite).
  ds, config = tiny
  state, summary = _run_epoch(ds, config(attack=name, num_malicious=3, aggregator=aggregator,
                                         inject_faults="nan:2"))
  assert summary["injected_faults"] == 2 and summary["rejected"] == 2
  assert np.all(np.isfinite(state.server.params.item_emb))


def test_stats_leave_out_non_finite_benign(stats):
  assert np.all(np.isfinite(stats.rows.mean)) and np.all(np.isfinite(stats.net.mean["w"]))


@pytest.mark.parametrize("args, needle", [
    (["--attack=lie", "--fang_scale=3"], "error: --fang_scale does not apply to --attack=lie"),
    (["--attack=fang", "--fang_scale=0.5"], "error: --fang_scale must be a finite number > 1"),
    (["--attack=lie", "--lie_z=-1"], "error: --lie_z must be a finite positive number"),
    (["--attack=fedattack", "--hard_positives=1000"],
     "error: --attack=fedattack --hard_positives=1000: its 2000 rows per attacker exceed")])
def test_bad_flags_are_one_line(args, needle):
  repo = Path(__file__).resolve().parents[2]
  out = subprocess.run([sys.executable, "-m", "experiments.train", "--num_malicious=2", *args],
                       cwd=repo, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(repo)))
  assert out.returncode != 0
  assert needle in out.stderr and "Traceback" not in out.stderr


def test_replicas_run_a_full_knowledge_attack(tiny):
  # Seeds as a leading axis: the benign statistics are taken inside each replica's round.
  from fedjax_rec.simulation import Simulator  # pylint: disable=import-outside-toplevel
  ds, config = tiny
  sim = Simulator(config(attack="lie", num_malicious=3), ds, num_seeds=2)
  state, summaries = sim.run_epoch(sim.init())
  assert [s["num_malicious"] > 0 for s in summaries] == [True, True]
  assert np.all(np.isfinite(state.server.params.item_emb))
