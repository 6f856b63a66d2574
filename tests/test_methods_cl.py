"""Contrastive methods (CL4FedRec Eqs. 3-13, SimGCL, UNION, PoC) against small oracles."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_rec import geometry, losses, methods, methods_cl, regularizers
from fedjax_rec import synthetic_users as syn
from fedjax_rec.client import LocalData
from fedjax_rec.models import ncf

CONFIG = ncf.NCFConfig(embed_dim=8, hidden=(8,))
NUM_ITEMS = 30
POPULARITY = (1000.0 / np.arange(1, NUM_ITEMS + 1) ** 1.2).astype(np.int64)
FAST_CL = dict(popularity=POPULARITY, num_synthetic_users=5, synthetic_items=4,
               synthetic_steps=5, num_hot=3, num_sparse=6, reg_steps=3, item_view_step=0.5)


def client(pos, neg, length):
  """One client's LocalData: its distinct items (sorted) as rows, padded to `length`.

  Positives have label 1 and weight 1; a negative drawn w times is one row of weight w.
  """
  items = sorted(set(pos) | set(neg))
  n = len(items)
  pad = lambda x, fill: np.asarray(list(x) + [fill] * (length - len(x)))
  return LocalData(
      item=jnp.asarray(pad(items, 0), jnp.int32),
      label=jnp.asarray(pad([float(i in pos) for i in items], 0.0), jnp.float32),
      weight=jnp.asarray(pad([1.0 if i in pos else float(neg.count(i)) for i in items], 0.0),
                         jnp.float32),
      mask=jnp.asarray(np.arange(length) < n))


@pytest.fixture(scope="module")
def public():
  return ncf.init_public(jax.random.key(0), CONFIG, NUM_ITEMS)


@pytest.fixture(scope="module")
def cl(public):
  """cl4fedrec, its context and its jitted per-client value-and-grad (compiled once)."""
  m = methods.make_method("cl4fedrec", CONFIG, **FAST_CL)
  ctx = m.context(jax.jit(m.init_aux)(jax.random.key(1), public))
  return m, ctx, jax.jit(jax.value_and_grad(m.loss_fn, argnums=(0, 1, 2)))


def rows_of(params, data, garbage=None):
  rows = params.item_emb[data.item] * 30.0  # larger than init, for visible terms
  if garbage is not None:
    rows = jnp.where(data.mask[:, None], rows, garbage)
  return rows


# ---- losses -------------------------------------------------------------------------------

def test_info_nce_known_value():
  # −log(e¹ / (e¹ + e⁰ + e^{ln 2})) = log(1 + 3/e) = log(2.103638) = 0.743670.
  got = losses.info_nce(jnp.asarray(1.0), jnp.asarray([0.0, math.log(2.0), 50.0]),
                        jnp.asarray([True, True, False]))
  np.testing.assert_allclose(got, 0.743670, atol=1e-5)


def test_user_contrastive_hand_case():
  # Cosines: sim(u', u'') = 1, sim(u, s1) = 0, sim(u, s2) = −1; τ = 0.5 gives logits
  # 2, 0, −2: −log(e² / (e² + 1 + e⁻²)) = log(1 + e⁻² + e⁻⁴) = log(1.153651) = 0.142932.
  u, u1, u2 = jnp.asarray([2.0, 0.0]), jnp.asarray([3.0, 0.0]), jnp.asarray([0.5, 0.0])
  s = jnp.asarray([[0.0, 5.0], [-1.0, 0.0]])
  np.testing.assert_allclose(losses.user_contrastive_loss(u, u1, u2, s, 0.5), 0.142932,
                             atol=1e-5)
  g_s = jax.grad(lambda s: losses.user_contrastive_loss(u, u1, u2, s, 0.5))(s)
  np.testing.assert_array_equal(g_s, 0.0)  # synthetic users are frozen


def test_view_noise_norm_and_sign():
  u = jax.random.normal(jax.random.key(1), (4, 16)).at[0, :3].set(0.0)
  eps = losses.sign_aligned_noise(jax.random.key(2), u, 0.1)
  np.testing.assert_allclose(jnp.linalg.norm(eps, axis=-1), 0.1, rtol=1e-5)
  np.testing.assert_array_equal(jnp.sign(eps), jnp.sign(u))


def test_item_contrastive_ignores_padding():
  v1, v2 = jax.random.normal(jax.random.key(3), (2, 4, 8))
  mask = jnp.asarray([True, True, True, False])
  ref = losses.item_contrastive_loss(v1[:3], v2[:3], mask[:3], 0.2)
  f = jax.value_and_grad(lambda a, b: losses.item_contrastive_loss(a, b, mask, 0.2), (0, 1))
  for garbage in (1e3, jnp.nan):
    val, g = jax.jit(f)(v1.at[3].set(garbage), v2.at[3].set(garbage))
    np.testing.assert_allclose(val, ref, rtol=1e-6)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in g)
  # Hand case, τ = 1, orthonormal views: each row −log(e¹ / (e¹ + 2 e⁰)) = log(1 + 2/e).
  eye = jnp.eye(3)
  np.testing.assert_allclose(losses.item_contrastive_loss(eye, eye, jnp.ones(3, bool), 1.0),
                             math.log(1 + 2 / math.e), atol=1e-6)


def test_masked_l_uni_matches_geometry_and_ignores_padding():
  x = jax.random.normal(jax.random.key(4), (10, 6))
  mask = jnp.arange(10) < 7
  ref = geometry.l_uni(x[:7])
  np.testing.assert_allclose(losses.masked_l_uni(x, mask), ref, rtol=1e-5)
  np.testing.assert_allclose(losses.masked_l_uni(x.at[7:].set(jnp.nan), mask), ref, rtol=1e-5)
  one = jnp.arange(10) < 1
  g = jax.jit(jax.grad(lambda x: losses.masked_l_uni(x, one)))(x.at[1:].set(jnp.nan))
  assert bool(jnp.all(jnp.isfinite(g)))


# ---- item views and positive rows -----------------------------------------------------------

def test_gradient_item_views_match_reference(public):
  data = client([1, 2], [5, 5, 6, 7, 8, 9, 10, 11], 9)  # 9 rows, none padded
  rows = rows_of(public, data)
  u1 = jax.random.normal(jax.random.key(5), (8,))
  u2 = jax.random.normal(jax.random.key(6), (8,))
  rec = lambda u, r, m, d: methods.rec_loss(CONFIG)(u, r, m, d, (), None)
  v1, v2 = methods_cl.gradient_item_views(jax.grad(rec, argnums=1), u1, u2, rows,
                                          public.mlp, data, 0.5)

  def reference_rec(u, r):  # unmasked: every row is real; item 5 counts twice
    bce = optax.sigmoid_binary_cross_entropy(
        ncf.logits(CONFIG, public.mlp, jnp.tile(u, (9, 1)), r), data.label)
    return jnp.sum(data.weight * bce) / jnp.sum(data.weight)

  for u, v in ((u1, v1), (u2, v2)):
    np.testing.assert_allclose(v, rows - 0.5 * jax.grad(reference_rec, 1)(u, rows),
                               rtol=1e-5, atol=1e-7)


def test_positive_rows():
  data = client([4, 2], [9, 9, 3, 3, 7, 7, 8, 8], 12)  # rows: items 2 3 4 7 8 9
  idx, mask = methods_cl.positive_rows(data)
  np.testing.assert_array_equal(idx, np.arange(12))
  np.testing.assert_array_equal(np.flatnonzero(mask), [0, 2])
  idx, mask = methods_cl.positive_rows(data, max_positive_share=0.25)  # 3 slots
  np.testing.assert_array_equal(idx[:2], [0, 2])
  np.testing.assert_array_equal(mask, [True, True, False])


def test_positive_share_bound_is_exact_when_positives_fit(public, cl):
  m, ctx, vg = cl
  half = methods.make_method("cl4fedrec", CONFIG, max_positive_share=0.5, **FAST_CL)
  data = client([2, 3], [8, 9, 10, 11, 12, 13, 14, 15], 15)
  args = (jnp.full((8,), 0.3), rows_of(public, data), public.mlp, data, ctx, jax.random.key(3))
  np.testing.assert_allclose(jax.jit(half.loss_fn)(*args), vg(*args)[0], rtol=1e-6)


def test_cl4fedrec_loss_is_eq10(public, cl):
  # L_rec + λ1 L_uc + λ2 L_ic, every piece rebuilt from the reference functions.
  m, ctx, vg = cl
  data = client([2, 3], [8, 9, 10, 11, 12, 13, 14, 15], 15)  # the vmap test's shapes
  rows, u = rows_of(public, data), jnp.full((8,), 0.3)
  key = jax.random.key(7)
  rec = lambda u, r, m, d: methods.rec_loss(CONFIG)(u, r, m, d, (), None)
  k1, k2, _, _ = jax.random.split(key, 4)
  u1 = u + losses.sign_aligned_noise(k1, u, 0.1)
  u2 = u + losses.sign_aligned_noise(k2, u, 0.1)
  v1, v2 = methods_cl.gradient_item_views(jax.grad(rec, argnums=1), u1, u2, rows,
                                          public.mlp, data, 0.5)
  pos = jnp.asarray([0, 1])  # items 2, 3 are the first rows
  want = (rec(u, rows, public.mlp, data)
          + 0.5 * losses.user_contrastive_loss(u, u1, u2, ctx, 0.2)
          + 0.5 * losses.item_contrastive_loss(v1[pos], v2[pos], jnp.ones(2, bool), 0.2))
  got, _ = vg(u, rows, public.mlp, data, ctx, key)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_cl4fedrec_padding_invariant(public, cl):
  m, ctx, vg = cl
  u, key = jnp.full((8,), 0.2), jax.random.key(9)
  short = client([2, 3], [8, 9, 10, 11, 12, 13, 14, 15], 15)
  long = client([2, 3], [8, 9, 10, 11, 12, 13, 14, 15], 20)
  ref, _ = vg(u, rows_of(public, short), public.mlp, short, ctx, key)
  got, (g_u, g_r, g_mlp) = vg(u, rows_of(public, long, jnp.nan), public.mlp, long, ctx, key)
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  assert bool(jnp.all(jnp.isfinite(g_u))) and bool(jnp.all(jnp.isfinite(g_r[:10])))


# ---- UNION and PoC ------------------------------------------------------------------------

def test_union_term_hand_case(public):
  # Two positives a, b: each is the other's positive; every negative sample is item n,
  # so all 15 negatives are n: loss_k = log(1 + 15 exp(a·n − a·b)), averaged over a, b.
  data = client([1, 2], [7] * 8, 10)  # rows: items 1, 2, 7 (weight 8)
  rows = rows_of(public, data, garbage=jnp.nan)
  a, b, n = rows[0], rows[1], rows[2]
  want = 0.5 * (math.log1p(15 * math.exp(a @ n - a @ b))
                + math.log1p(15 * math.exp(b @ n - b @ a)))
  got = jax.jit(methods_cl.union_term, static_argnums=3)(rows, data, jax.random.key(10), 15)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  one = client([1], [7, 8, 9, 10], 10)  # a single positive: nothing to contrast
  assert float(methods_cl.union_term(rows_of(public, one), one, jax.random.key(0), 15)) == 0


def test_union_loss_finite_with_padding(public):
  m = methods.make_method("union", CONFIG)
  data = client([1, 2, 3], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], 20)
  f = lambda r: m.loss_fn(jnp.full((8,), 0.1), r, public.mlp, data, (), jax.random.key(1))
  val, g = jax.jit(jax.value_and_grad(f))(rows_of(public, data, jnp.nan))
  assert np.isfinite(float(val)) and bool(jnp.all(jnp.isfinite(g[:15])))


def test_poc(public):
  data = client([1, 2, 3], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], 20)
  rows, u, key = rows_of(public, data), jnp.full((8,), 0.1), jax.random.key(2)
  base = methods.make_method("original", CONFIG).loss_fn(u, rows, public.mlp, data, (), key)
  zero = methods.make_method("poc", CONFIG, alpha=0.0).loss_fn(u, rows, public.mlp, data, (),
                                                                key)
  assert float(zero) == float(base)
  poc = methods.make_method("poc", CONFIG, alpha=2.0)
  got = poc.loss_fn(u, rows_of(public, data, jnp.nan), public.mlp, data, (), key)
  want = base + 2.0 * geometry.l_uni(rows[:15])
  np.testing.assert_allclose(got, want, rtol=1e-5)


# ---- server side ------------------------------------------------------------------------------

def test_popularity_regularizer_lowers_loss_and_touches_only_its_rows():
  emb = jax.random.normal(jax.random.key(3), (40, 8))
  hot = regularizers.hot_items(POPULARITY[:40] if len(POPULARITY) >= 40 else
                               np.arange(40)[::-1], 4)
  reg = regularizers.popularity_regularizer(hot, num_sparse=10, steps=15, lr=0.05, tau=0.2)
  out, _, metrics = jax.jit(reg.apply)(emb, reg.init(), jax.random.key(4))
  assert float(metrics["reg_loss_after"]) < float(metrics["reg_loss_before"])
  changed = np.any(np.asarray(out) != np.asarray(emb), axis=1)
  assert changed.sum() <= 14 and np.all(changed[hot])
  np.testing.assert_array_equal(np.asarray(out)[~changed], np.asarray(emb)[~changed])
  big = regularizers.popularity_regularizer(hot, num_sparse=1000, steps=1, lr=0.05, tau=0.2)
  out, _, _ = big.apply(emb, (), jax.random.key(5))  # V_sp capped at the 36 cold items
  assert np.all(np.any(np.asarray(out) != np.asarray(emb), axis=1))


def test_synthetic_items_follow_popularity_and_are_distinct():
  pop = 1.0 / np.arange(1, 51) ** 1.5
  log_w = jnp.asarray(syn.item_log_weights(pop, 50, "popularity"))
  items = np.asarray(syn.draw_items(jax.random.key(6), log_w, 4000, 5))
  assert all(len(set(r)) == 5 for r in items)
  counts = np.bincount(items.ravel(), minlength=50)
  assert counts[:5].sum() > 10 * counts[-5:].sum()
  uniform = np.asarray(syn.draw_items(jax.random.key(7), jnp.zeros(50), 4000, 5))
  u_counts = np.bincount(uniform.ravel(), minlength=50)  # 400 expected each
  assert u_counts.min() > 300 and u_counts.max() < 500
  neg = np.asarray(syn.draw_negatives(jax.random.key(8), jnp.asarray(items[:200]), 50, 40))
  assert neg.min() >= 0 and neg.max() < 50
  assert not any(set(n) & set(p) for n, p in zip(neg, items[:200]))


def test_synthetic_fit_lowers_rec_loss(public):
  log_w = jnp.asarray(syn.item_log_weights(POPULARITY, NUM_ITEMS, "popularity"))
  users = syn.init_synthetic_users(jax.random.key(9), CONFIG, public, log_w, 6, 4, 4)
  fit = jax.jit(lambda users: syn.fit(CONFIG, users, public, 20, optax.adam(0.05)))
  fitted, metrics = fit(users)
  assert float(metrics["synthetic_loss_after"]) < float(metrics["synthetic_loss_before"])
  np.testing.assert_array_equal(fitted.pos_items, users.pos_items)


def test_rcl4fedrec_epoch_end(public):
  m = methods.make_method("rcl4fedrec", CONFIG, **FAST_CL)
  aux = jax.jit(m.init_aux)(jax.random.key(10), public)
  assert m.context(aux).shape == (5, 8)
  params, aux2, metrics = jax.jit(m.epoch_end)(public, aux, jax.random.key(11))
  assert {"reg_loss_before", "synthetic_loss_after"} <= set(metrics)
  changed = np.any(np.asarray(params.item_emb) != np.asarray(public.item_emb), axis=1)
  assert 0 < changed.sum() <= 3 + 6
  jax.tree.map(np.testing.assert_array_equal, params.mlp, public.mlp)
  assert not np.array_equal(aux2.synthetic.emb, aux.synthetic.emb)


# ---- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs,param", [
    ("cl4fedrec", dict(lambda1=-0.1), "lambda1"),
    ("cl4fedrec", dict(lambda2=-0.1), "lambda2"),
    ("cl4fedrec", dict(num_synthetic_users=0), "num_synthetic_users"),
    ("cl4fedrec", dict(tau=0.0), "tau"),
    ("cl4fedrec", dict(eta=-1.0), "eta"),
    ("cl4fedrec", dict(synthetic_sampling="zipf"), "synthetic_sampling"),
    ("cl4fedrec", dict(item_view="dropout"), "item_view"),
    ("cl4fedrec", dict(synthetic_items=NUM_ITEMS), "synthetic_items"),
    ("cl4fedrec", dict(popularity=None), "popularity"),
    ("rcl4fedrec", dict(num_hot=0), "num_hot"),
    ("rcl4fedrec", dict(reg_lr=0.0), "reg_lr"),
    ("simgcl", dict(lambda2=-1.0), "lambda2"),
    ("simgcl", dict(tau=-0.2), "tau"),
    ("simgcl", dict(eta=-0.1), "eta"),
    ("union", dict(union_weight=-1.0), "union_weight"),
    ("poc", dict(alpha=-1.0), "alpha"),
    ("simgcl", dict(max_positive_share=0.0), "max_positive_share"),
])
def test_validation(name, kwargs, param):
  base = dict(FAST_CL) if "cl4fedrec" in name else {}
  base.update(kwargs)
  with pytest.raises(ValueError, match=param):
    methods.make_method(name, CONFIG, **base)


def test_user_cl_off_needs_no_synthetic_users(public):
  m = methods.make_method("cl4fedrec", CONFIG, use_user_cl=False, num_synthetic_users=0,
                          popularity=None)
  assert m.context(m.init_aux(jax.random.key(0), public)) == ()


# ---- vmap over clients equals the per-client loop ------------------------------------------

@pytest.mark.parametrize("name,kwargs", [
    ("cl4fedrec", None),
    ("rcl4fedrec", dict(FAST_CL, item_view="simgcl", synthetic_sampling="uniform")),
    ("simgcl", dict(max_positive_share=0.5)),
    ("union", {}),
    ("poc", dict(alpha=0.5)),
])
def test_vmap_equals_loop(public, cl, name, kwargs):
  if kwargs is None:
    m, ctx, single = cl
  else:
    m = methods.make_method(name, CONFIG, **kwargs)
    ctx = m.context(jax.jit(m.init_aux)(jax.random.key(1), public))
    single = jax.jit(jax.value_and_grad(m.loss_fn, argnums=(0, 1, 2)))
  clients = [client([1], [4, 5, 6, 7], 15), client([2, 3], [8, 9, 10, 11, 12, 13, 14, 15], 15),
             client([1, 3, 5], list(range(10, 22)), 15)]
  data = jax.tree.map(lambda *x: jnp.stack(x), *clients)
  rows = jnp.stack([rows_of(public, c) for c in clients])
  u = jax.random.normal(jax.random.key(2), (3, 8)) * 0.3
  keys = jax.random.split(jax.random.key(3), 3)
  vg = jax.value_and_grad(m.loss_fn, argnums=(0, 1, 2))
  got = jax.jit(jax.vmap(vg, in_axes=(0, 0, None, 0, None, 0)))(u, rows, public.mlp, data,
                                                                 ctx, keys)
  for i, c in enumerate(clients):
    want = single(u[i], rows[i], public.mlp, c, ctx, keys[i])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=2e-5, atol=1e-7),
                 got, want)
    assert np.isfinite(float(want[0]))
