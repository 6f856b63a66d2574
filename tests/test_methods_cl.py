"""Contrastive methods (CL4FedRec Eqs. 3-13, SimGCL, UNION, PoC) against small oracles."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_rec import geometry, losses
from fedjax_rec.tasks.ncf import methods, methods_cl, regularizers
from fedjax_rec.tasks.ncf import synthetic_users as syn
from fedjax_rec.tasks.ncf.client import LocalData
from fedjax_rec.models import ncf

CONFIG = ncf.NCFConfig(embed_dim=8, hidden=(8,))
NUM_ITEMS = 30
POPULARITY = (1000.0 / np.arange(1, NUM_ITEMS + 1) ** 1.2).astype(np.int64)
# Tiny graphs: LLVM's optimisations cost far more compile time than they save here.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
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
      item=pad(items, 0).astype(np.int32),
      label=pad([float(i in pos) for i in items], 0.0).astype(np.float32),
      weight=pad([1.0 if i in pos else float(neg.count(i)) for i in items],
                 0.0).astype(np.float32),
      mask=np.arange(length) < n)


@pytest.fixture(scope="module")
def public():
  return ncf.init_public(jax.random.key(0), CONFIG, NUM_ITEMS)


@pytest.fixture(scope="module")
def cl(public):
  """cl4fedrec, its context, its jitted per-client value-and-grad (compiled once), aux."""
  m = methods.make_method("cl4fedrec", CONFIG, **FAST_CL)
  aux = jit(m.init_aux)(jax.random.key(1), public)
  return m, m.context(aux), jit(jax.value_and_grad(m.loss_fn, argnums=(0, 1, 2))), aux


def rows_of(params, data, garbage=None):
  """NumPy rows (host-side: eager jnp ops compile one by one and are slow)."""
  rows = np.asarray(params.item_emb)[data.item] * 30.0  # larger than init: visible terms
  if garbage is not None:
    rows = np.where(data.mask[:, None], rows, np.float32(garbage))
  return rows.astype(np.float32)


def normal(seed, shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ---- losses -------------------------------------------------------------------------------

def test_info_nce_known_value():
  # −log(e¹ / (e¹ + e⁰ + e^{ln 2})) = log(1 + 3/e) = log(2.103638) = 0.743670.
  got = jit(losses.info_nce)(np.float32(1.0), np.asarray([0.0, math.log(2.0), 50.0]),
                                 np.asarray([True, True, False]))
  np.testing.assert_allclose(got, 0.743670, atol=1e-5)


def test_user_contrastive_hand_case():
  # Cosines: sim(u', u'') = 1, sim(u, s1) = 0, sim(u, s2) = −1; τ = 0.5 gives logits
  # 2, 0, −2: −log(e² / (e² + 1 + e⁻²)) = log(1 + e⁻² + e⁻⁴) = log(1.153651) = 0.142932.
  u, u1, u2 = np.asarray([2.0, 0.0]), np.asarray([3.0, 0.0]), np.asarray([0.5, 0.0])
  s = np.asarray([[0.0, 5.0], [-1.0, 0.0]])
  f = jit(jax.value_and_grad(
      lambda s: losses.user_contrastive_loss(u, u1, u2, s, 0.5)))
  val, g_s = f(s)
  np.testing.assert_allclose(val, 0.142932, atol=1e-5)
  np.testing.assert_array_equal(g_s, 0.0)  # synthetic users are frozen


def test_view_noise_norm_and_sign():
  u = normal(1, (4, 16))
  u[0, :3] = 0.0
  eps = np.asarray(jit(losses.sign_aligned_noise, static_argnums=2)(
      jax.random.key(2), u, 0.1))
  np.testing.assert_allclose(np.linalg.norm(eps, axis=-1), 0.1, rtol=1e-5)
  np.testing.assert_array_equal(np.sign(eps), np.sign(u))
  v1, v2 = jit(losses.two_views, static_argnums=2)(jax.random.key(3), u, 0.1)
  for v in (v1, v2):
    np.testing.assert_allclose(np.linalg.norm(v - u, axis=-1), 0.1, rtol=1e-4)
  assert np.all(np.abs(v1 - v2).max(axis=-1) > 1e-3)  # independent draws


def test_item_contrastive_ignores_padding():
  v1, v2 = normal(3, (2, 4, 8))
  real = np.asarray([True, True, True, False])
  f = jit(jax.value_and_grad(losses.item_contrastive_loss, (0, 1)), static_argnums=3)
  ref, _ = f(v1, v2, np.ones(4, bool), 0.2)  # the same loss with a real 4th row ...
  ref3, _ = f(v1[:3], v2[:3], real[:3], 0.2)  # ... and without it
  assert abs(float(ref) - float(ref3)) > 1e-4
  for garbage in (1e3, np.nan):
    a, b = v1.copy(), v2.copy()
    a[3], b[3] = garbage, garbage
    val, g = f(a, b, real, 0.2)
    np.testing.assert_allclose(val, ref3, rtol=1e-6)
    assert all(np.all(np.isfinite(x)) for x in g)
  # Hand case, τ = 1, orthonormal views: each row −log(e¹ / (e¹ + 2 e⁰)) = log(1 + 2/e).
  eye = np.eye(3, dtype=np.float32)
  np.testing.assert_allclose(f(eye, eye, np.ones(3, bool), 1.0)[0], math.log(1 + 2 / math.e),
                             atol=1e-6)


def test_masked_l_uni_matches_geometry_and_ignores_padding():
  x = normal(4, (10, 6))
  ref = jit(geometry.l_uni)(x[:7])
  f = jit(jax.value_and_grad(losses.masked_l_uni))
  np.testing.assert_allclose(f(x, np.arange(10) < 7)[0], ref, rtol=1e-5)
  x[7:] = np.nan
  np.testing.assert_allclose(f(x, np.arange(10) < 7)[0], ref, rtol=1e-5)
  val, g = f(x, np.arange(10) < 1)  # one real row: zero correlations, finite gradient
  assert float(val) == 0.0 and np.all(np.isfinite(g))


# ---- item views and positive rows -----------------------------------------------------------

def test_gradient_item_views_match_reference(public):
  data = client([1, 2], [5, 5, 6, 7, 8, 9, 10, 11], 9)  # 9 rows, none padded
  rows, (u1, u2) = rows_of(public, data), normal(5, (2, 8))
  views = jit(lambda *a: methods_cl.gradient_item_views(CONFIG, *a, 0.5))
  v1, v2 = views(u1, u2, rows, public.net, data)

  def reference_rec(u, r):  # unmasked: every row is real; item 5 counts twice
    bce = optax.sigmoid_binary_cross_entropy(
        ncf.logits(CONFIG, public.net, jnp.tile(u, (9, 1)), r), data.label)
    return jnp.sum(data.weight * bce) / jnp.sum(data.weight)

  ref_grad = jit(jax.grad(reference_rec, 1))
  for u, v in ((u1, v1), (u2, v2)):
    np.testing.assert_allclose(v, rows - 0.5 * ref_grad(u, rows), rtol=1e-5, atol=1e-7)
  # Views of a subset of the rows cost those rows alone, and are the same rows' views.
  take = lambda x: jnp.asarray(x)[jnp.array([0, 3, 4])]
  w1, w2 = jit(lambda *a: methods_cl.gradient_item_views(CONFIG, *a, 0.5, take))(
      u1, u2, rows, public.net, data)
  np.testing.assert_allclose(w1, take(v1), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(w2, take(v2), rtol=1e-6, atol=1e-7)


def test_positive_rows():
  data = client([4, 2], [9, 9, 3, 3, 7, 7, 8, 8], 12)  # rows: items 2 3 4 7 8 9
  ids = np.arange(12) * 10
  take, mask = methods_cl.positive_rows(data)
  np.testing.assert_array_equal(take(ids), ids)
  np.testing.assert_array_equal(np.flatnonzero(mask), [0, 2])

  @functools.partial(jit, static_argnums=1)
  def gathered(data, share):
    take, mask = methods_cl.positive_rows(data, share)
    return take(ids), mask

  got, mask = gathered(data, 0.25)  # 3 slots
  np.testing.assert_array_equal(got[:2], [0, 20])
  np.testing.assert_array_equal(mask, [True, True, False])


def test_cl4fedrec_loss_is_eq10(public, cl):
  # L_rec + λ1 L_uc + λ2 L_ic, every piece rebuilt from the reference functions.
  m, ctx, vg, _ = cl
  data = client([2, 3], [8, 9, 10, 11, 12, 13, 14, 15], 15)  # the vmap test's shapes
  rows, u = rows_of(public, data), np.full(8, 0.3, np.float32)
  key = jax.random.key(7)
  rec = lambda u, r, d: methods.rec_loss(CONFIG)(u, r, public.net, d, (), None)

  @jit
  def reference(u, rows, data, ctx, key):
    u1, u2 = losses.two_views(jax.random.split(key)[0], u, 0.1)
    g1, g2 = jax.grad(rec, 1)(u1, rows, data), jax.grad(rec, 1)(u2, rows, data)
    pos = jnp.asarray([0, 1])  # items 2, 3 are the first rows
    return (rec(u, rows, data) + 0.5 * losses.user_contrastive_loss(u, u1, u2, ctx, 0.2)
            + 0.5 * losses.item_contrastive_loss((rows - 0.5 * g1)[pos],
                                                 (rows - 0.5 * g2)[pos], jnp.ones(2, bool),
                                                 0.2))

  got, _ = vg(u, rows, public.net, data, ctx, key)
  np.testing.assert_allclose(got, reference(u, rows, data, ctx, key), rtol=1e-6)


def test_cl4fedrec_summed_loss_is_eq10_as_written(public, cl):
  # loss_reduction="sum": Eq. 1 summed over the samples (weights count), Eq. 9 over the
  # positives, the views' gradient that of the summed L_rec; padding changes nothing.
  m = methods.make_method("cl4fedrec", CONFIG, **FAST_CL, loss_reduction="sum")
  aux = jit(m.init_aux)(jax.random.key(1), public)
  ctx, vg = m.context(aux), jit(jax.value_and_grad(m.loss_fn, argnums=(0, 1, 2)))
  data = client([2, 3], [8, 9, 9, 11, 12, 13, 14, 15], 15)  # item 9 twice: weight 2
  rows, u, key = rows_of(public, data), np.full(8, 0.3, np.float32), jax.random.key(7)

  def rec(u, r, d):  # no mask needed beyond the padded rows' zero weight
    bce = optax.sigmoid_binary_cross_entropy(
        ncf.logits(CONFIG, public.net, jnp.tile(u, (r.shape[0], 1)), r), d.label)
    return jnp.sum(jnp.where(d.mask, d.weight, 0.0) * jnp.where(d.mask, bce, 0.0))

  @jit
  def reference(u, rows, data, ctx, key):
    u1, u2 = losses.two_views(jax.random.split(key)[0], u, 0.1)
    g1, g2 = jax.grad(rec, 1)(u1, rows, data), jax.grad(rec, 1)(u2, rows, data)
    v1, v2 = (rows - 0.5 * g1)[:2], (rows - 0.5 * g2)[:2]  # items 2, 3 lead
    sim = losses.normalize(v1) @ losses.normalize(v2).T / 0.2
    l_ic = jnp.sum(jax.nn.logsumexp(sim, axis=-1) - jnp.diagonal(sim))
    return (rec(u, rows, data) + 0.5 * losses.user_contrastive_loss(u, u1, u2, ctx, 0.2)
            + 0.5 * l_ic)

  got, _ = vg(u, rows, public.net, data, ctx, key)
  want = reference(u, rows, data, ctx, key)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  _, mean_ctx, mean_vg, _ = cl  # the same method with the default mean
  mean, _ = mean_vg(u, rows, public.net, data, mean_ctx, key)
  assert float(got) > 3 * float(mean)  # the sum, not the mean: 9 samples' worth
  long = client([2, 3], [8, 9, 9, 11, 12, 13, 14, 15], 20)
  padded, _ = vg(u, rows_of(public, long, garbage=np.nan), public.net, long, ctx, key)
  np.testing.assert_allclose(padded, got, rtol=1e-5)
  with pytest.raises(ValueError, match="loss_reduction must be 'mean' or 'sum'"):
    methods.make_method("simgcl", CONFIG, loss_reduction="total")


def test_item_contrastive_sum_is_mean_times_rows():
  v1, v2 = normal(5, (2, 5, 8))
  mask = np.asarray([True, True, True, False, True])
  mean = losses.item_contrastive_loss(v1, v2, mask, 0.2)
  total = losses.item_contrastive_loss(v1, v2, mask, 0.2, "sum")
  np.testing.assert_allclose(total, 4 * mean, rtol=1e-6)


def test_cl4fedrec_padding_invariant(public, cl):
  m, ctx, vg, _ = cl
  u, key = np.full(8, 0.2, np.float32), jax.random.key(9)
  short = client([2, 3], [8, 9, 10, 11, 12, 13, 14, 15], 15)
  long = client([2, 3], [8, 9, 10, 11, 12, 13, 14, 15], 20)
  ref, _ = vg(u, rows_of(public, short), public.net, short, ctx, key)
  got, (g_u, g_r, _) = vg(u, rows_of(public, long, np.nan), public.net, long, ctx, key)
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  assert np.all(np.isfinite(g_u)) and np.all(np.isfinite(g_r[:10]))


# ---- UNION and PoC ------------------------------------------------------------------------

def test_union_term_hand_case(public):
  # Two positives a, b: each is the other's positive; every negative sample is item n,
  # so all 15 negatives are n: loss_k = log(1 + 15 exp(a·n − a·b)), averaged over a, b.
  data = client([1, 2], [7] * 8, 10)  # rows: items 1, 2, 7 (weight 8)
  rows = rows_of(public, data, garbage=np.nan).astype(np.float64)
  a, b, n = rows[0], rows[1], rows[2]
  want = 0.5 * (math.log1p(15 * math.exp(a @ n - a @ b))
                + math.log1p(15 * math.exp(b @ n - b @ a)))
  term = jit(methods_cl.union_term, static_argnums=3)
  np.testing.assert_allclose(term(rows_of(public, data, np.nan), data, jax.random.key(10), 15),
                             want, rtol=1e-5)
  one = client([1], [7, 8, 9, 10], 10)  # a single positive: nothing to contrast
  assert float(term(rows_of(public, one), one, jax.random.key(0), 15)) == 0


def test_union_term_over_the_positives_prefix_equals_the_general_layout(public):
  # The simulator's layout puts the positives first and bounds them (`pos_mask`, P = 4
  # of 20 rows); the term then gathers P anchors, not L, with the same draws per row.
  data = client([1, 2, 3], [5, 6, 7, 8, 9, 10, 11, 11, 12, 13, 14, 15, 16], 20)
  prefix = data._replace(pos_mask=data.label[:4] > 0.5)
  rows = rows_of(public, data, np.nan)
  term = jit(jax.value_and_grad(methods_cl.union_term), static_argnums=3)
  for seed in range(3):
    key = jax.random.key(seed)
    want, g_want = term(rows, data, key, 15)
    got, g_got = term(rows, prefix, key, 15)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(g_got, g_want, rtol=1e-5, atol=1e-7)
    assert float(want) > 0
  assert methods.make_method("union", CONFIG).positive_term


def test_union_loss_finite_with_padding(public):
  m = methods.make_method("union", CONFIG)
  data = client([1, 2, 3], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], 20)
  f = lambda r: m.loss_fn(np.full(8, 0.1, np.float32), r, public.net, data, (),
                         jax.random.key(1))
  val, g = jit(jax.value_and_grad(f))(rows_of(public, data, np.nan))
  assert np.isfinite(float(val)) and np.all(np.isfinite(g[:15]))


def test_poc(public):
  data = client([1, 2, 3], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], 20)
  rows, u, key = rows_of(public, data), np.full(8, 0.1, np.float32), jax.random.key(2)
  loss = lambda name, **kw: jit(methods.make_method(name, CONFIG, **kw).loss_fn)
  base = loss("original")(u, rows, public.net, data, (), key)
  assert float(loss("poc", alpha=0.0)(u, rows, public.net, data, (), key)) == float(base)
  got = loss("poc", alpha=2.0)(u, rows_of(public, data, np.nan), public.net, data, (), key)
  want = base + 2.0 * jit(geometry.l_uni)(rows[:15])
  np.testing.assert_allclose(got, want, rtol=1e-5)


# ---- server side ------------------------------------------------------------------------------

def test_popularity_regularizer_lowers_loss_and_touches_only_its_rows():
  emb = normal(3, (40, 8))
  hot = regularizers.hot_items(np.arange(40)[::-1], 4)  # items 0-3
  np.testing.assert_array_equal(hot, [0, 1, 2, 3])
  reg = regularizers.popularity_regularizer(hot, num_sparse=10, steps=15, lr=0.05, tau=0.2)
  out, _, metrics = jit(reg.apply)(emb, reg.init(), jax.random.key(4))
  assert float(metrics["reg_loss_after"]) < float(metrics["reg_loss_before"])
  changed = np.any(np.asarray(out) != np.asarray(emb), axis=1)
  assert changed.sum() <= 14 and np.all(changed[hot])
  np.testing.assert_array_equal(np.asarray(out)[~changed], np.asarray(emb)[~changed])
  big = regularizers.popularity_regularizer(hot, num_sparse=1000, steps=1, lr=0.05, tau=0.2)
  out, _, _ = jit(big.apply)(emb, (), jax.random.key(5))  # V_sp capped at the 36 cold items
  assert np.all(np.any(np.asarray(out) != np.asarray(emb), axis=1))


def test_synthetic_items_follow_popularity_and_are_distinct():
  pop = 1.0 / np.arange(1, 51) ** 1.5
  draw = jit(syn.draw_items, static_argnums=(2, 3))
  items = np.asarray(draw(jax.random.key(6), syn.item_log_weights(pop, 50, "popularity"),
                          4000, 5))
  assert all(len(set(r)) == 5 for r in items)
  counts = np.bincount(items.ravel(), minlength=50)
  assert counts[:5].sum() > 10 * counts[-5:].sum()
  uniform = np.asarray(draw(jax.random.key(7), syn.item_log_weights(None, 50, "uniform"),
                            4000, 5))
  u_counts = np.bincount(uniform.ravel(), minlength=50)  # 400 expected each
  assert u_counts.min() > 300 and u_counts.max() < 500
  neg = np.asarray(jit(syn.draw_negatives, static_argnums=(2, 3))(
      jax.random.key(8), items[:200], 50, 40))
  assert neg.min() >= 0 and neg.max() < 50
  assert not any(set(n) & set(p) for n, p in zip(neg, items[:200]))


def test_rcl4fedrec_epoch_end(public, cl):
  m = methods.make_method("rcl4fedrec", CONFIG, **FAST_CL)
  aux = cl[3]  # the same server state as cl4fedrec's (the regularizer is stateless)
  assert m.context(aux).shape == (5, 8)
  params, aux2, metrics = jit(m.epoch_end)(public, aux, jax.random.key(11))
  assert float(metrics["reg_loss_after"]) < float(metrics["reg_loss_before"])
  # Eq. 4's fit lowers the synthetic users' L_rec; their items stay fixed.
  assert float(metrics["synthetic_loss_after"]) < float(metrics["synthetic_loss_before"])
  np.testing.assert_array_equal(aux2.synthetic.pos_items, aux.synthetic.pos_items)
  changed = np.any(np.asarray(params.item_emb) != np.asarray(public.item_emb), axis=1)
  assert 0 < changed.sum() <= 3 + 6
  jax.tree.map(np.testing.assert_array_equal, params.net, public.net)
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
  # Also the Table 5 ablation: SimGCL-style item views inside CL4FedRec.
  m = methods.make_method("cl4fedrec", CONFIG, use_user_cl=False, num_synthetic_users=0,
                          popularity=None, item_view="simgcl")
  ctx = m.context(jit(m.init_aux)(jax.random.key(0), public))
  assert ctx == ()
  data = client([1, 2, 3], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], 20)
  loss = jit(m.loss_fn)(np.full(8, 0.1, np.float32), rows_of(public, data, np.nan),
                            public.net, data, ctx, jax.random.key(1))
  assert np.isfinite(float(loss))


# ---- vmap over clients equals the per-client loop ------------------------------------------

@pytest.mark.parametrize("name,kwargs", [
    ("cl4fedrec", None),
    ("cl4fedrec", dict(FAST_CL, max_positive_share=0.5)),
    ("simgcl", dict(max_positive_share=0.5)),
    ("union", {}),
    ("poc", dict(alpha=0.5)),
])
def test_vmap_equals_loop(public, cl, name, kwargs):
  # The per-client loop is the exact `cl` loss; with `max_positive_share=0.5` (every
  # client has at most 3 positives among 15 rows) the bound must change nothing.
  _, ctx, single, _ = cl
  if kwargs is None:
    m = cl[0]
  else:
    m = methods.make_method(name, CONFIG, **kwargs)
    if name != "cl4fedrec":
      ctx = m.context(m.init_aux(None, public))
      single = jit(jax.value_and_grad(m.loss_fn, argnums=(0, 1, 2)))
  clients = [client([1], [4, 5, 6, 7], 15), client([2, 3], [8, 9, 10, 11, 12, 13, 14, 15], 15),
             client([1, 3, 5], list(range(10, 22)), 15)]
  data = jax.tree.map(lambda *x: np.stack(x), *clients)
  rows = np.stack([rows_of(public, c) for c in clients])
  u = normal(2, (3, 8)) * 0.3
  keys = jax.random.split(jax.random.key(3), 3)
  vg = jax.value_and_grad(m.loss_fn, argnums=(0, 1, 2))
  got = jit(jax.vmap(vg, in_axes=(0, 0, None, 0, None, 0)))(u, rows, public.net, data,
                                                                 ctx, keys)
  for i, c in enumerate(clients):
    want = single(u[i], rows[i], public.net, c, ctx, keys[i])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=2e-5, atol=1e-7),
                 got, want)
    assert np.isfinite(float(want[0]))
