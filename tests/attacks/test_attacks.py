"""A-hum, A-ra and PSMU against plain references, plus target selection and end-to-end runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec.attacks import ATTACKS, make_attack, select_targets
from fedjax_rec.attacks import a_hum as a_hum_lib
from fedjax_rec.attacks.targets import popularity_percentile
from fedjax_rec.models import ncf

CFG = ncf.NCFConfig(embed_dim=8, hidden=(8, 8))
NUM_ITEMS = 40
TARGETS = np.array([3, 17])
SMALL_PSMU = dict(num_filler_items=6, num_alternatives=4)
ATTACK_CASES = [("a_hum", {}), ("a_ra", {}), ("psmu", SMALL_PSMU)]
NAMES = [name for name, _ in ATTACK_CASES]


@pytest.fixture(scope="module")
def public():
  return ncf.init_public(jax.random.key(0), CFG, NUM_ITEMS)


class _Compiled:
  """An attack with its jitted single and vmapped updates, shared across tests."""

  def __init__(self, name, kwargs):
    self.attack = make_attack(name, CFG, TARGETS, **kwargs)
    self.update = jax.jit(self.attack.update)
    self.vmapped = jax.jit(jax.vmap(self.attack.update, in_axes=(None, None, 0, 0)))

  def one(self, public, key=1, slot=0):
    state = self.attack.init(jax.random.key(100), 3, public)
    return self.update(public, (), jax.tree.map(lambda x: x[slot], state), jax.random.key(key))


_COMPILED: dict[str, _Compiled] = {}


def compiled(name: str) -> _Compiled:
  if name not in _COMPILED:
    _COMPILED[name] = _Compiled(name, dict(ATTACK_CASES)[name])
  return _COMPILED[name]


def _np_alternatives(item_emb, targets, k):
  v = np.asarray(item_emb, np.float64)
  unit = v / np.linalg.norm(v, axis=1, keepdims=True)
  sims = unit[targets] @ unit.T
  sims[:, targets] = -np.inf
  return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in sims]


def _mlp_forward(mlp, u, v):
  """A plain NCF forward (ReLU hidden layers, linear output) from the params dict."""
  p = mlp["params"]
  x = jnp.concatenate([u, v], axis=-1)
  names = sorted(n for n in p if n.startswith("hidden_"))
  for name in names:
    x = jax.nn.relu(x @ p[name]["kernel"] + p[name]["bias"])
  return (x @ p["out"]["kernel"] + p["out"]["bias"])[..., 0]


def _mean_target_logit(public, targets, key, n=200):
  users = 0.01 * jax.random.normal(key, (n, CFG.embed_dim))
  return float(jnp.mean(a_hum_lib.pair_logits(CFG, public.net, users,
                                               public.item_emb[jnp.asarray(targets)])))


# ---- registry and validation -------------------------------------------------------
def test_registered():
  assert {"a_hum", "a_ra", "psmu"} <= set(ATTACKS)


@pytest.mark.parametrize("name, kwargs, bad", [
    ("a_hum", {"num_users": 0}, "num_users"),
    ("a_hum", {"hard_steps": 0}, "hard_steps"),
    ("a_hum", {"hard_lr": -1.0}, "hard_lr"),
    ("a_hum", {"user_std": 0.0}, "user_std"),
    ("a_ra", {"num_users": 2.5}, "num_users"),
    ("psmu", {"num_alternatives": 0}, "num_alternatives"),
    ("psmu", {"num_filler_items": -1}, "num_filler_items"),
    ("psmu", {"user_lr": 0}, "user_lr"),
    ("psmu", {"local_steps": 0}, "local_steps"),
    ("psmu", {"num_negatives": -2}, "num_negatives"),
    ("psmu", {"num_items": 10}, "17"),  # target 17 out of a 10-item catalogue
])
def test_kwarg_validation(name, kwargs, bad):
  with pytest.raises(ValueError, match=bad):
    make_attack(name, CFG, TARGETS, **kwargs)


def test_bad_targets():
  with pytest.raises(ValueError, match="distinct"):
    make_attack("a_hum", CFG, np.array([3, 3]))
  with pytest.raises(ValueError, match="non-empty"):
    make_attack("psmu", CFG, np.array([], np.int64))


def test_init_checks_catalogue(public):
  with pytest.raises(ValueError, match="out of range"):
    make_attack("a_hum", CFG, np.array([NUM_ITEMS])).init(jax.random.key(0), 2, public)
  with pytest.raises(ValueError, match="num_filler_items"):
    make_attack("psmu", CFG, TARGETS, num_filler_items=NUM_ITEMS).init(
        jax.random.key(0), 2, public)
  with pytest.raises(ValueError, match="num_items=50"):
    make_attack("psmu", CFG, TARGETS, num_items=50).init(jax.random.key(0), 2, public)
  state = make_attack("psmu", CFG, TARGETS, num_items=NUM_ITEMS).init(
      jax.random.key(0), 2, public)
  assert state.filler_items.shape == (2, 30)


# ---- uploads -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a_hum", "a_ra"])
def test_ahum_rows_are_targets(public, name):
  c = compiled(name)
  state = c.attack.init(jax.random.key(0), 4, public)
  assert state.shape == (4,)
  _, up = c.one(public)
  np.testing.assert_array_equal(up.row_item, TARGETS)
  assert up.row_mask.dtype == jnp.bool_ and bool(jnp.all(up.row_mask))
  assert up.row_grad.shape == (len(TARGETS), CFG.embed_dim)
  assert jax.tree.structure(up.net) == jax.tree.structure(public.net)
  assert float(up.weight) == 10 * len(TARGETS)
  assert np.all(np.isfinite(up.row_grad)) and float(jnp.abs(up.row_grad).sum()) > 0


def test_psmu_rows_are_targets_and_cosine_alternatives(public):
  # Targets 3 and 17 nearly parallel: they share alternatives, which must be merged.
  v = np.array(jax.random.normal(jax.random.key(5), (NUM_ITEMS, CFG.embed_dim)))
  v[17] = v[3] + 1e-3 * v[17]
  pub = public._replace(item_emb=jnp.asarray(v, jnp.float32))
  k = SMALL_PSMU["num_alternatives"]
  c = compiled("psmu")
  attack = c.attack
  state = attack.init(jax.random.key(7), 3, pub)
  assert state.user_emb.shape == (3, CFG.embed_dim) and state.filler_items.shape == (3, 6)
  for row in np.asarray(state.filler_items):
    assert len(set(row.tolist())) == 6 and not set(row.tolist()) & set(TARGETS.tolist())
    assert row.min() >= 0 and row.max() < NUM_ITEMS
  one = jax.tree.map(lambda x: x[1], state)
  new, up = c.update(pub, (), one, jax.random.key(3))
  np.testing.assert_array_equal(new.filler_items, one.filler_items)
  assert not np.allclose(new.user_emb, one.user_emb)  # it trained its embedding

  alts = _np_alternatives(v, TARGETS, k)
  expected = set(TARGETS.tolist()).union(*alts)
  rows = np.asarray(up.row_item)[np.asarray(up.row_mask)]
  assert len(rows) == len(set(rows.tolist())), "an item is uploaded twice"
  assert set(rows.tolist()) == expected
  assert len(rows) < len(TARGETS) * (1 + k)  # duplicates were merged
  assert up.row_item.shape == (len(TARGETS) * (1 + k),)
  assert np.all(np.asarray(up.row_grad)[~np.asarray(up.row_mask)] == 0)

  # The uploaded rows equal the dense gradient of the poisoning loss at the trained user.
  u = new.user_emb
  alt_lists = [jnp.asarray(sorted(s)) for s in alts]

  def loss(item_emb, mlp):
    t = _mlp_forward(mlp, jnp.broadcast_to(u, (len(TARGETS), 8)), item_emb[TARGETS])
    a = jnp.concatenate([_mlp_forward(mlp, jnp.broadcast_to(u, (k, 8)), item_emb[ids])
                         for ids in alt_lists])
    return (jnp.mean(jax.nn.softplus(-t)) + jnp.mean(jax.nn.softplus(a)))

  g_v, g_mlp = jax.jit(jax.grad(loss, argnums=(0, 1)))(pub.item_emb, pub.net)
  dense = np.zeros((NUM_ITEMS, CFG.embed_dim), np.float32)
  np.add.at(dense, rows, np.asarray(up.row_grad)[np.asarray(up.row_mask)])
  np.testing.assert_allclose(dense, g_v, atol=1e-6, rtol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4),
               up.net, g_mlp)
  assert float(up.weight) == len(TARGETS) * (1 + k)


# ---- semantics ---------------------------------------------------------------------
_HARD = jax.jit(lambda mlp, rows, users, lr: a_hum_lib.hard_users(CFG, mlp, rows, users, 30, lr))


@pytest.mark.parametrize("lr", [0.001, 0.5])
def test_hard_users_lower_target_scores(public, lr):
  rows = public.item_emb[jnp.asarray(TARGETS)]
  users = a_hum_lib.draw_users(jax.random.key(4), 10, CFG.embed_dim, 0.01)
  hard = _HARD(public.net, rows, users, lr)
  before = jax.nn.sigmoid(a_hum_lib.pair_logits(CFG, public.net, users, rows))
  after = jax.nn.sigmoid(a_hum_lib.pair_logits(CFG, public.net, hard, rows))
  assert float(after.mean()) < float(before.mean())


@pytest.mark.parametrize("name", NAMES)
def test_poison_direction_raises_targets(public, name):
  c = compiled(name)
  state = c.attack.init(jax.random.key(0), 1, public)
  one = jax.tree.map(lambda x: x[0], state)
  update = c.update
  probe = jax.random.key(99)
  before = _mean_target_logit(public, TARGETS, probe)
  pub, lr = public, 0.5
  for step in range(5):
    one, up = update(pub, (), one, jax.random.key(step))
    v = pub.item_emb.at[up.row_item].add(-lr * jnp.where(up.row_mask[:, None], up.row_grad, 0))
    mlp = jax.tree.map(lambda p, g: p - lr * g, pub.net, up.net)
    pub = pub._replace(item_emb=v, net=mlp)
  assert _mean_target_logit(pub, TARGETS, probe) > before + 1e-3


def test_ahum_matches_plain_reference(public):
  # A public item table of realistic scale so the hard-user steps matter.
  pub = public._replace(item_emb=0.5 * jax.random.normal(jax.random.key(8),
                                                         public.item_emb.shape))
  key = jax.random.key(21)
  num_users, steps, lr = 10, 30, 0.001  # the defaults
  _, up = compiled("a_hum").one(pub, key=21)

  # Plain reference: the public PyTorch loop, one user at a time, sigmoid + BCELoss.
  t = len(TARGETS)
  rows = pub.item_emb[TARGETS]

  def probs(u, rows, mlp):
    return jax.nn.sigmoid(_mlp_forward(mlp, jnp.tile(u[None], (t, 1)), rows))

  def bce_loss(p, label):
    return -jnp.mean(label * jnp.log(p) + (1 - label) * jnp.log(1 - p))

  step_grad = jax.jit(jax.grad(lambda u, rows, mlp: bce_loss(probs(u, rows, mlp), 0.0)))
  key_users, _ = jax.random.split(key)
  users = 0.01 * jax.random.normal(key_users, (num_users, CFG.embed_dim))
  hard = []
  for i in range(num_users):
    u = users[i]
    for _ in range(steps):
      u = u - lr * step_grad(u, rows, pub.net)
    hard.append(u)

  def total_loss(rows, mlp):
    return sum((1 / num_users) * bce_loss(probs(u, rows, mlp), 1.0) for u in hard)

  g_rows, g_mlp = jax.grad(total_loss, argnums=(0, 1))(rows, pub.net)
  np.testing.assert_allclose(up.row_grad, g_rows, atol=1e-5, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
               up.net, g_mlp)
  # The hard steps changed the answer (the reference is not trivially A-ra's).
  _, up_ra = compiled("a_ra").one(pub, key=21)
  assert not np.allclose(up_ra.row_grad, g_rows, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_equals_loop(public, name):
  c = compiled(name)
  state = c.attack.init(jax.random.key(2), 3, public)
  keys = jax.random.split(jax.random.key(3), 3)
  v_state, v_up = c.vmapped(public, (), state, keys)
  update = c.update
  for i in range(3):
    s_i, up_i = update(public, (), jax.tree.map(lambda x: x[i], state), keys[i])
    check = lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7)
    jax.tree.map(check, v_state, s_i)
    jax.tree.map(check, v_up, up_i)


# ---- select_targets ------------------------------------------------------------------
POP = np.array([5, 1, 3, 1, 9, 3])


def test_select_least_popular():
  np.testing.assert_array_equal(select_targets(POP, "least_popular", 0), [1])
  np.testing.assert_array_equal(select_targets(POP, "least_popular:3", 0), [1, 3, 2])


def test_select_items():
  np.testing.assert_array_equal(select_targets(POP, "items:4,0, 2", 0), [4, 0, 2])


def test_select_band():
  pop = np.arange(100)[::-1]  # item i has percentile 99 - i
  np.testing.assert_allclose(popularity_percentile(pop), 99 - np.arange(100))
  got = select_targets(pop, "band:0:9:5", seed=3)
  assert len(got) == 5 and len(set(got.tolist())) == 5 and set(got) <= set(range(90, 100))
  np.testing.assert_array_equal(got, select_targets(pop, "band:0:9:5", seed=3))
  top = select_targets(pop, "band:90:100:10", seed=0)
  np.testing.assert_array_equal(top, np.arange(10))
  # Ties share a percentile: all zero-count items are at percentile 0.
  tied = np.array([0, 0, 0, 0, 7, 8, 9, 10])
  assert set(select_targets(tied, "band:0:0:4", seed=1).tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("spec, token", [
    ("items:1,x", "'x'"),
    ("items:1,7", "'7'"),
    ("items:2,2", "'2'"),
    ("items:", "items"),
    ("least_popular:0", "'0'"),
    ("least_popular:abc", "'abc'"),
    ("band:a:10:2", "'a'"),
    ("band:0:10", "band"),
    ("band:20:10:1", "'10'"),
    ("band:0:10:50", "'50'"),
    ("popular:3", "'popular'"),
])
def test_select_errors(spec, token):
  with pytest.raises(ValueError, match=token) as info:
    select_targets(POP if not spec.startswith("band") else np.arange(100), spec, 0)
  assert "\n" not in str(info.value)


# ---- end to end ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
  from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
  from fedjax_rec.tasks.ncf.config import SimConfig
  ds = load_synthetic(SyntheticConfig(num_users=200, num_items=100, max_activity=60))
  target = tuple(int(t) for t in select_targets(ds.item_popularity(include_test=True),
                                                "least_popular", 0))

  def config(**kw):
    return SimConfig(model=ncf.NCFConfig(embed_dim=8, hidden=(8,)), clients_per_round=64,
                     epochs=1, max_buckets=2, targets=target, **kw)

  return ds, target, config


def _run_epoch(ds, config):
  from fedjax_rec.simulation import Simulator
  sim = Simulator(config, ds)
  return sim.run_epoch(sim.init())


@pytest.fixture(scope="module")
def benign_epoch(tiny):
  ds, _, config = tiny
  return _run_epoch(ds, config())


@pytest.mark.parametrize("name", ["a_hum", "psmu"])
def test_end_to_end_attack(tiny, benign_epoch, name):
  ds, target, config = tiny
  state, summary = _run_epoch(ds, config(attack=name, num_malicious=3))
  assert summary["num_malicious"] > 0
  base = benign_epoch[0].server.params.item_emb[target[0]]
  assert not np.allclose(state.server.params.item_emb[target[0]], base)
  assert np.all(np.isfinite(state.server.params.item_emb))


def test_no_attackers_is_benign(tiny, benign_epoch):
  ds, _, config = tiny
  state, summary = _run_epoch(ds, config(attack="a_hum", num_malicious=0))
  base = benign_epoch[0]
  assert summary["num_malicious"] == 0
  np.testing.assert_array_equal(state.server.params.item_emb, base.server.params.item_emb)
  np.testing.assert_array_equal(state.clients.user_emb, base.clients.user_emb)
  jax.tree.map(np.testing.assert_array_equal, state.server.params.net, base.server.params.net)
