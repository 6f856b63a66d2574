"""FedRecAttack: its pieces and its update against NumPy oracles, the upload's bounds, its
effect on a tiny run, its flags, and the peer comparison's target NDCG."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec.attacks import fedrecattack as fra
from fedjax_rec.attacks import make_attack, select_targets
from fedjax_rec.data.dataset import UserItems
from fedjax_rec.data.synthetic import load_synthetic
from fedjax_rec.models import ncf
from fedjax_rec.runner import EvalConfig, run
from fedjax_rec.tasks.ncf.presets import get_preset
from fedjax_rec.types import PublicParams
from tests import test_simulation as ts

REPO = Path(__file__).resolve().parents[2]
MF = ncf.NCFConfig(embed_dim=3, hidden=(), embed_init_std=0.1, interaction="dot")
NUM_ITEMS = 14
# 5 users' training items (CSR).
TRAIN = [[0, 1, 2, 3], [2, 4, 5], [1, 6, 7, 8, 9], [3, 10], [0, 5, 11, 12]]


def _csr(lists):
  indptr = np.cumsum([0] + [len(x) for x in lists])
  return indptr, np.concatenate([np.asarray(x) for x in lists]).astype(np.int32)


def _attack(targets=(13,), **kw):
  kw = {"train_csr": _csr(TRAIN), "num_items": NUM_ITEMS, "num_rows": 5, "known_share": 0.5,
        **kw}
  return make_attack("fedrecattack", MF, np.asarray(targets), **kw)


def _public(seed=0, scale=0.5):
  item_emb = scale * jax.random.normal(jax.random.key(seed), (NUM_ITEMS, MF.embed_dim))
  return PublicParams(item_emb=item_emb, net={})


def test_known_interactions_take_ceil_share_of_each_user_once():
  indptr, items = _csr(TRAIN)
  known = fra.known_interactions(indptr, items, 0.5, NUM_ITEMS)
  again = fra.known_interactions(indptr, items, 0.5, NUM_ITEMS)
  np.testing.assert_array_equal(known.pair_item, again.pair_item)
  for s, own in enumerate(TRAIN):
    mine = known.pair_item[known.pair_user == s]
    assert mine.size == math.ceil(0.5 * len(own))
    assert set(mine) <= set(own)
    row = known.user_items[s]
    assert sorted(row[row < NUM_ITEMS]) == sorted(mine)


def test_surrogate_gradient_matches_numpy():
  rng = np.random.default_rng(0)
  users, items = rng.normal(size=(3, 4)), rng.normal(size=(6, 4))
  pu, pi, pn = np.array([0, 0, 1, 2]), np.array([1, 2, 3, 4]), np.array([5, 0, 0, 1])
  mask = np.array([True, True, False, True])
  got = jax.grad(fra.surrogate_loss)(jnp.asarray(users), jnp.asarray(items), pu, pi, pn, mask)
  want = np.zeros_like(users)
  for u, p, n, m in zip(pu, pi, pn, mask):
    if m:
      d = users[u] @ (items[p] - items[n])
      want[u] -= (1 - 1 / (1 + np.exp(-d))) * (items[p] - items[n])
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def _oracle_gradient(users, item_emb, user_items, targets):
  """The promotion gradient w.r.t. V, one (user, target) triple at a time."""
  grad = np.zeros_like(item_emb)
  for s in range(users.shape[0]):
    known = set(user_items[s][user_items[s] < item_emb.shape[0]].tolist())
    scores = users[s] @ item_emb.T
    order = [i for i in np.lexsort((np.arange(len(scores)), -scores))
             if i not in known and i not in targets]
    top = order[:fra.TOP_K]
    for t in targets:
      if t in known:
        continue
      neg = top.pop()
      l = users[s] @ item_emb[neg] - users[s] @ item_emb[t]
      dl = 1.0 if l >= 0 else math.exp(l)
      grad[neg] += dl * users[s]
      grad[t] -= dl * users[s]
  return grad


def test_promotion_gradient_matches_numpy():
  rng = np.random.default_rng(1)
  users, item_emb = rng.normal(size=(5, 3)), rng.normal(size=(NUM_ITEMS, 3))
  user_items = np.array([[0, 1, 14], [2, 12, 14], [3, 14, 14], [12, 13, 5], [6, 7, 14]])
  targets = np.array([12, 13])
  ok, neg = fra.promotion_triples(jnp.asarray(users), jnp.asarray(item_emb),
                                  jnp.asarray(user_items), jnp.asarray(targets))
  got = jax.grad(fra.promotion_loss)(jnp.asarray(item_emb), jnp.asarray(users),
                                     jnp.asarray(targets), ok, neg)
  want = _oracle_gradient(users, item_emb, user_items, targets.tolist())
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_row_selection_and_clipping():
  grad = np.zeros((NUM_ITEMS, 3), np.float32)
  grad[[2, 5, 9]] = [[3.0, 0, 0], [0, 2.0, 0], [0, 0, 0.5]]
  grad[13] = [9.0, 9.0, 9.0]  # the target: always first, never drawn again
  targets = jnp.asarray([13])
  top = fra.select_rows(jax.random.key(0), jnp.asarray(grad), targets, 3, "top")
  assert top.tolist() == [13, 2, 5]
  for k in range(5):  # norms 3, 2, 0.5 against noise of norm ~1e-3: always these three
    drawn = fra.select_rows(jax.random.key(k), jnp.asarray(grad), targets, 4, "sample")
    assert drawn[0] == 13 and sorted(drawn[1:].tolist()) == [2, 5, 9]
  rows = np.array([[3.0, 4.0], [0.3, 0.4]], np.float32)
  np.testing.assert_allclose(np.asarray(fra.clip_rows(jnp.asarray(rows), 1.0)),
                             [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)


def test_update_against_oracle_and_bounds():
  attack = _attack(num_rows=5, clip=0.05, row_selection="top")
  public = _public()
  state = attack.init(jax.random.key(1), 2, public)
  one = jax.tree.map(lambda x: x[0], state)
  new, up = jax.jit(attack.update)(public, (), one, jax.random.key(2))
  assert up.row_item.shape == (5,) and bool(jnp.all(up.row_mask))
  assert up.row_item[0] == 13 and len(set(up.row_item.tolist())) == 5
  norms = np.linalg.norm(np.asarray(up.row_grad), axis=1)
  assert np.all(norms <= 0.05 * (1 + 1e-6))
  # The oracle from the surrogate the attacker trained: gradient, top rows, clipping.
  user_items = fra.known_interactions(*_csr(TRAIN), 0.5, NUM_ITEMS).user_items
  grad = _oracle_gradient(np.asarray(new.users), np.asarray(public.item_emb), user_items,
                          [13])
  norm = np.linalg.norm(grad, axis=1)
  norm[13] = -1
  order = np.lexsort((np.arange(NUM_ITEMS), -norm))
  assert set(up.row_item[1:].tolist()) == set(order[:4].tolist())
  want = grad[np.asarray(up.row_item)]
  want *= np.minimum(1.0, 0.05 / np.maximum(np.linalg.norm(want, axis=1, keepdims=True), 1e-30))
  np.testing.assert_allclose(np.asarray(up.row_grad), want, atol=3e-3)
  # The rows are kept from the first round on.
  _, up2 = jax.jit(attack.update)(_public(seed=5), (), new, jax.random.key(3))
  assert up2.row_item.tolist() == up.row_item.tolist()


def test_uploads_at_most_kappa_rows_within_clip():
  attack = _attack(targets=(12, 13), num_rows=7, clip=1.0)
  public = _public(scale=3.0)
  state = attack.init(jax.random.key(0), 3, public)
  _, ups = jax.vmap(attack.update, in_axes=(None, None, 0, 0))(
      public, (), state, jax.random.split(jax.random.key(4), 3))
  assert ups.row_item.shape == (3, 7)
  assert np.all(np.linalg.norm(np.asarray(ups.row_grad), axis=-1) <= 1.0 + 1e-6)
  for rows in np.asarray(ups.row_item):
    assert rows[:2].tolist() == [12, 13] and len(set(rows.tolist())) == 7


def test_refuses_bad_settings():
  with pytest.raises(ValueError, match="matrix factorisation"):
    make_attack("fedrecattack", ncf.NCFConfig(), np.asarray([1]), train_csr=_csr(TRAIN))
  with pytest.raises(ValueError, match="known_share"):
    _attack(known_share=0.0)
  with pytest.raises(ValueError, match="num_rows=1 is below"):
    _attack(targets=(12, 13), num_rows=1)
  with pytest.raises(ValueError, match="train_csr"):
    make_attack("fedrecattack", MF, np.asarray([1]))


def test_attack_raises_target_exposure_on_a_tiny_run():
  ds = load_synthetic(ts.SMALL, seed=3)
  targets = tuple(int(t) for t in select_targets(ds.item_popularity(include_test=True),
                                                 "least_popular", 0))
  base = get_preset("fedrecattack")
  cfg = dataclasses.replace(base, epochs=2, clients_per_round=16, targets=targets,
                            model=dataclasses.replace(base.model, embed_dim=8),
                            server=dataclasses.replace(base.server, lr=0.1))
  er = {}
  for attack, num in (("none", 0), ("fedrecattack", 3)):
    c = dataclasses.replace(cfg, attack=attack, num_malicious=num,
                            attack_kwargs=(("num_rows", 5),) if num else ())
    out = run(c, ds, eval_config=EvalConfig(ks=(10,), er_ks=(5,)), log=lambda line: None)
    er[attack] = out["final"]["test/er@5"]
  assert er["fedrecattack"] > er["none"] + 0.1, er


@pytest.mark.parametrize("args,needle", [
    (["--known_share=0"], "error: --known_share must be in (0, 1]"),
    (["--attack_rows=100000"], "error: --attack=fedrecattack --attack_rows=100000: "
                               "num_rows=100000 exceeds")])
def test_bad_flags_are_one_line(args, needle):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  out = subprocess.run([sys.executable, "-m", "experiments.train", "--model=mf",
                        "--attack=fedrecattack", "--num_malicious=2", *args], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env=env)
  assert out.returncode != 0
  assert needle in out.stderr and "Traceback" not in out.stderr


def test_peer_target_ndcg_and_target_draw():
  from experiments import reproduce_peer  # pylint: disable=import-outside-toplevel
  assert reproduce_peer.target_item(1682, 0) == 894  # the public log's draw, on our ids
  users = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  items = np.array([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 0.5]])
  interacted = UserItems(np.array([0, 1, 2, 2]), np.array([0, 2], np.int32))
  l3 = 1 / np.log2(3)
  # user 0 (item 0 masked) ranks 1, 2: target 2 second; user 1 holds it; user 2 ranks
  # 0, 3 (a tie, the lower id first): no target.
  got = reproduce_peer.target_ndcg(users, items, interacted, [2], k=2)
  assert got == pytest.approx(l3 / 2)
  got = reproduce_peer.target_ndcg(users, items, interacted, [2, 3], k=2)
  # user 0: 2 second of two targets; user 1 (only 3 eligible) ranks 3, 4; user 2: 3 second.
  want = np.mean([l3 / (1 + l3), 1.0, l3 / (1 + l3)])
  assert got == pytest.approx(want)


def test_peer_run_writes_table_and_resumes(tmp_path):
  from experiments import reproduce_peer  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  folder = tmp_path / "ml-100k"
  folder.mkdir()
  (folder / "u.data").write_text("".join(
      f"{u}\t{i}\t5\t{1000 + t}\n" for u in range(1, 41)
      for t, i in enumerate(rng.choice(np.arange(1, 71), 12, replace=False))))
  lines = []
  table = reproduce_peer.run_fedrecattack(tmp_path / "wd", str(folder), 1, 1, log=lines.append)
  assert table.epoch.tolist() == [0, 1]
  assert table.loc[1, "er@5 (published)"] == "0.3869" and table.loc[1, "er@5 (ours)"] != ""
  text = (tmp_path / "wd" / "peer_fedrecattack.md").read_text()
  assert "rdz98/FedRecAttack" in text and "| 1 |" in text
  assert any("compiling" in line for line in lines)
  lines.clear()  # a rerun reads the finished point back
  reproduce_peer.run_fedrecattack(tmp_path / "wd", str(folder), 1, 1, log=lines.append)
  assert not any("compiling" in line for line in lines)
