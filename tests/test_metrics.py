"""Tests for fedjax_rec.metrics and fedjax_rec.geometry: hand-worked cases and NumPy oracles."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec import geometry, metrics
from fedjax_rec.data.dataset import ImplicitDataset, UserItems


def table_score_fn(params, user_ids):
  """Scores from a fixed [num_users, num_items] table; one object so jit caches hit."""
  return params[user_ids]


def _ui(lists):
  return UserItems.from_lists(lists)


# ---------------------------------------------------------------- ranking metrics


def test_ranking_metrics_hand_worked():
  scores = jnp.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                      [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], jnp.float32)
  exclude = _ui([[1], [5, 0]])
  test = _ui([[3, 5], [4]])
  # User 0: item 1 (0.8) masked -> order 0, 2, 3, 4, 5.
  #   top-2 = [0, 2]: no hit -> recall 0, precision 0, ndcg 0.
  #   top-3 = [0, 2, 3]: hit at rank 2 -> recall 1/2, precision 1/3,
  #   ndcg = (1/log2(4)) / (1 + 1/log2(3)) = 0.5 / 1.6309298 = 0.3065736.
  # User 1: items 5, 0 masked -> order 4, 3, 2, 1.
  #   top-2 = [4, 3]: hit at rank 0 -> recall 1, precision 1/2, ndcg 1/1 = 1.
  #   top-3: recall 1, precision 1/3, ndcg 1.
  # Means: recall@2 = 0.5, precision@2 = 0.25, ndcg@2 = 0.5;
  #        recall@3 = 0.75, precision@3 = 1/3, ndcg@3 = (0.3065736 + 1) / 2 = 0.6532868.
  out = metrics.ranking_metrics(table_score_fn, scores, exclude, test, ks=(2, 3))
  ndcg0_3 = 0.5 / (1 + 1 / math.log2(3))
  expected = {"recall@2": 0.5, "precision@2": 0.25, "ndcg@2": 0.5,
              "recall@3": 0.75, "precision@3": 1 / 3, "ndcg@3": (ndcg0_3 + 1) / 2}
  assert set(out) == set(expected)
  for name, value in expected.items():
    assert out[name] == pytest.approx(value, abs=1e-6), name
    assert isinstance(out[name], float)


def test_excluded_items_never_in_top_k():
  # Item 1 has by far the highest score but is excluded; it is also (artificially) the
  # test item, so any appearance in the top-K would give a hit.
  scores = jnp.array([[0.1, 99.0, 0.3, 0.2, 0.5, 0.4]], jnp.float32)
  exclude, test = _ui([[1]]), _ui([[1]])
  # K = 5 covers every unmasked item; K = 6 forces a -inf filler into the top-K.
  out = metrics.ranking_metrics(table_score_fn, scores, exclude, test, ks=(1, 5, 6))
  assert out["recall@1"] == out["recall@5"] == out["recall@6"] == 0.0
  top = metrics.recommend(table_score_fn, scores, exclude, k=6)
  np.testing.assert_array_equal(top, [[4, 5, 2, 3, 0, -1]])


def test_empty_test_users_are_skipped():
  scores = jnp.array([[0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
  exclude = _ui([[0], [3], [1]])
  test_with_empty = _ui([[1], [0], []])
  # User 0: top-1 = [1] hit -> recall 1. User 1: top-1 = [2], miss -> recall 0.
  # User 2 has no test item: the mean is over users 0 and 1 only -> 0.5 (not 1/3).
  out = metrics.ranking_metrics(table_score_fn, scores, exclude, test_with_empty, ks=(1,))
  assert out["recall@1"] == pytest.approx(0.5)
  out_sub = metrics.ranking_metrics(table_score_fn, scores, exclude, test_with_empty,
                                    ks=(1,), users=np.array([0, 2]))
  assert out_sub["recall@1"] == pytest.approx(1.0)
  out_none = metrics.ranking_metrics(table_score_fn, scores, exclude, test_with_empty,
                                     ks=(1,), users=np.array([2]))
  assert math.isnan(out_none["recall@1"])


def _random_problem(seed, num_users=50, num_items=40, ties=True):
  rng = np.random.default_rng(seed)
  if ties:  # Few distinct values so ties are frequent.
    scores = rng.integers(0, 6, size=(num_users, num_items)).astype(np.float32)
  else:
    scores = rng.normal(size=(num_users, num_items)).astype(np.float32)
  exclude, test = [], []
  for _ in range(num_users):
    perm = rng.permutation(num_items)
    n_ex, n_te = rng.integers(0, 9), rng.integers(0, 6)
    exclude.append(perm[:n_ex])
    test.append(perm[n_ex:n_ex + n_te])
  return scores, _ui(exclude), _ui(test)


def _ranking_reference(scores, exclude, test, ks, users):
  """Per-user NumPy loop: rank by (-score, id) over unmasked items."""
  sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "precision")}
  count = 0
  for u in users:
    t = set(test.row(u).tolist())
    if not t:
      continue
    count += 1
    ex = set(exclude.row(u).tolist())
    cand = np.array([i for i in range(scores.shape[1]) if i not in ex])
    order = cand[np.lexsort((cand, -scores[u, cand]))]
    for k in ks:
      top = order[:k]
      hits = [r for r, i in enumerate(top) if i in t]
      dcg = sum(1 / np.log2(r + 2) for r in hits)
      idcg = sum(1 / np.log2(r + 2) for r in range(min(len(t), k)))
      sums[f"recall@{k}"] += len(hits) / len(t)
      sums[f"precision@{k}"] += len(hits) / k
      sums[f"ndcg@{k}"] += dcg / idcg
  return {name: s / count for name, s in sums.items()}


@pytest.mark.parametrize("ties", [True, False])
def test_ranking_metrics_match_numpy_reference(ties):
  scores, exclude, test = _random_problem(0 if ties else 1, ties=ties)
  ks = (1, 5, 20, 40)
  users = np.arange(0, 50, 3)
  for sel in (None, users):
    ref = _ranking_reference(scores, exclude, test, ks, range(50) if sel is None else sel)
    out = metrics.ranking_metrics(table_score_fn, jnp.asarray(scores), exclude, test,
                                  ks=ks, batch_size=16, users=sel)
    for name, value in ref.items():
      assert out[name] == pytest.approx(value, abs=1e-6), name


def test_ranking_metrics_invariant_to_batch_size_and_user_order():
  scores, exclude, test = _random_problem(2)
  scores = jnp.asarray(scores)
  base = metrics.ranking_metrics(table_score_fn, scores, exclude, test, ks=(5, 10),
                                 batch_size=256)
  for batch_size in (1, 2, 7):
    out = metrics.ranking_metrics(table_score_fn, scores, exclude, test, ks=(5, 10),
                                  batch_size=batch_size)
    for name in base:
      assert out[name] == pytest.approx(base[name], abs=1e-6), (batch_size, name)
  # Same users in another order (different padding of the last batch): same means.
  perm = np.random.default_rng(3).permutation(50)
  out = metrics.ranking_metrics(table_score_fn, scores, exclude, test, ks=(5, 10),
                                batch_size=7, users=perm)
  for name in base:
    assert out[name] == pytest.approx(base[name], abs=1e-6), name


def test_top_k_ties_prefer_lower_ids():
  # `lax.top_k` is documented to put the lower index first among equal values.
  scores = np.random.default_rng(4).integers(0, 3, size=(8, 300)).astype(np.float32)
  _, ids = jax.lax.top_k(jnp.asarray(scores), 100)
  ref = np.argsort(-scores, axis=-1, kind="stable")[:, :100]
  np.testing.assert_array_equal(np.asarray(ids), ref)


# ---------------------------------------------------------------- exposure ratio


def test_exposure_ratio_hand_worked():
  scores = jnp.array([[0.0, 100., 0.9, 0.8, 0.7, 0.1],
                      [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
                      [0.1, 0.2, 0.9, 0.3, 0.4, 0.5]], jnp.float32)
  # User 0 interacted with 0 (train) and 1 (test, score 100): both masked. Unmasked
  #   order 2, 3, 4, 5 -> rank(4) = 2, rank(5) = 3. Were the test item 1 not masked,
  #   target 4 would fall to rank 3 and out of the top-3.
  # User 1 interacted with 4: not eligible for target 4. All scores tie, so for target 5
  #   the items 0, 1, 2, 3 (lower ids) rank ahead -> rank(5) = 4.
  # User 2 interacted with 2. Order 5, 4, 3, 1, 0 -> rank(5) = 0, rank(4) = 1.
  # Target 4: eligible users {0, 2}; in top-1: none; top-2: user 2; top-3: both.
  #   -> 0, 1/2, 1.
  # Target 5: eligible {0, 1, 2}; ranks 3, 4, 0 -> 1/3 at K = 1, 2, 3.
  # ER@1 = (0 + 1/3) / 2 = 1/6; ER@2 = (1/2 + 1/3) / 2 = 5/12; ER@3 = (1 + 1/3) / 2 = 2/3.
  interacted = _ui([[0, 1], [4], [2]])
  out = metrics.exposure_ratio(table_score_fn, scores, interacted, [4, 5], ks=(1, 2, 3))
  assert out["er@1"] == pytest.approx(1 / 6, abs=1e-6)
  assert out["er@2"] == pytest.approx(5 / 12, abs=1e-6)
  assert out["er@3"] == pytest.approx(2 / 3, abs=1e-6)
  # Only user 1 evaluated: target 4 has no eligible user and leaves the mean; target 5
  # (rank 4) is in the top-5 but not the top-3.
  out1 = metrics.exposure_ratio(table_score_fn, scores, interacted, [4, 5], ks=(3, 5),
                                users=np.array([1]))
  assert out1 == {"er@3": 0.0, "er@5": 1.0}


def test_exposure_ratio_tie_rule():
  # One user, no interactions, every score equal: rank(t) = t (lower ids ahead).
  # Targets 0, 2, 3 -> in top-1: {0}; in top-3: {0, 2} -> ER@1 = 1/3, ER@3 = 2/3.
  scores = jnp.ones((1, 4), jnp.float32)
  out = metrics.exposure_ratio(table_score_fn, scores, _ui([[]]), [0, 2, 3], ks=(1, 3))
  assert out["er@1"] == pytest.approx(1 / 3)
  assert out["er@3"] == pytest.approx(2 / 3)


def test_exposure_ratio_matches_top_k_reference():
  scores, exclude, test = _random_problem(5)
  interacted = exclude.union(test)
  targets = np.array([3, 17, 39])
  ks = (1, 5, 20)
  ref = {k: [] for k in ks}
  for t in targets:
    eligible = [u for u in range(50) if t not in set(interacted.row(u).tolist())]
    for k in ks:
      top = metrics.recommend(table_score_fn, jnp.asarray(scores), interacted, k,
                              users=np.array(eligible))
      ref[k].append(np.mean([t in row for row in top]))
  out = metrics.exposure_ratio(table_score_fn, jnp.asarray(scores), interacted, targets,
                               ks=ks, batch_size=8)
  for k in ks:
    assert out[f"er@{k}"] == pytest.approx(np.mean(ref[k]), abs=1e-6)


# ---------------------------------------------------------------- MostPop


def test_mostpop():
  dataset = ImplicitDataset(
      name="tiny", num_users=3, num_items=6,
      train=_ui([[0, 1], [1, 2], [1, 3]]), valid=_ui([[2], [], []]),
      test=_ui([[3], [0], [5]]))
  # Train-only popularity: [1, 3, 1, 1, 0, 0] (valid/test items are not counted).
  # u0 seen {0, 1, 2}: 3(1), 4(0), 5(0)           -> top-2 [3, 4]
  # u1 seen {1, 2}:    0(1), 3(1), 4(0), 5(0)     -> top-2 [0, 3] (tie: lower id)
  # u2 seen {1, 3}:    0(1), 2(1), 4(0), 5(0)     -> top-2 [0, 2]
  popularity = np.bincount(dataset.train.items, minlength=6)
  top = metrics.recommend(metrics.mostpop_score_fn(popularity), None, dataset.seen(), 2)
  np.testing.assert_array_equal(top, [[3, 4], [0, 3], [0, 2]])
  # Hits: u0 at rank 0, u1 at rank 0, u2's test item 5 at rank 3 (behind 0, 2, 4).
  # recall@1 = recall@3 = 2/3; recall@4 = 1;
  # ndcg@4 = (1 + 1 + 1/log2(5)) / 3 = 0.8102255.
  out = metrics.mostpop_metrics(dataset, ks=(1, 3, 4))
  assert out["recall@1"] == pytest.approx(2 / 3)
  assert out["recall@3"] == pytest.approx(2 / 3)
  assert out["recall@4"] == pytest.approx(1.0)
  assert out["ndcg@4"] == pytest.approx((2 + 1 / math.log2(5)) / 3, abs=1e-6)


# ---------------------------------------------------------------- geometry


def test_l_uni():
  rng = np.random.default_rng(0)
  v = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8))
  expected = np.linalg.norm(np.corrcoef(v, rowvar=False)) / 8
  assert float(geometry.l_uni(jnp.asarray(v, jnp.float32))) == pytest.approx(expected, 1e-4)
  # Independent columns: C ≈ I, ‖C‖_F ≈ sqrt(d) -> 1/sqrt(d).
  indep = rng.normal(size=(20000, 16)).astype(np.float32)
  assert float(geometry.l_uni(indep)) == pytest.approx(1 / 4, abs=0.01)
  # Identical columns: C = all ones, ‖C‖_F = d -> 1.
  same = np.repeat(rng.normal(size=(100, 1)), 5, axis=1).astype(np.float32)
  assert float(geometry.l_uni(same)) == pytest.approx(1.0, abs=1e-5)
  # A zero-variance column stays finite (its correlations are 0).
  const = np.concatenate([indep[:100, :3], np.ones((100, 1), np.float32)], axis=1)
  assert np.isfinite(float(geometry.l_uni(const)))


def test_singular_values():
  x = np.random.default_rng(1).normal(size=(30, 6)).astype(np.float32)
  s = np.asarray(geometry.singular_values(x))
  np.testing.assert_allclose(s, np.linalg.svd(x, compute_uv=False), rtol=1e-5)
  assert np.all(np.diff(s) <= 0)
  s_norm = np.asarray(geometry.singular_values(x, normalize=True))
  np.testing.assert_allclose(s_norm, s / s[0], rtol=1e-5)


def _unit(a):
  return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_alignment_and_uniformity():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(40, 5))
  y = rng.normal(size=(40, 5))
  xn, yn = _unit(x), _unit(y)
  for alpha in (1.0, 2.0):
    expected = np.mean(np.linalg.norm(xn - yn, axis=1) ** alpha)
    assert float(geometry.alignment(x, y, alpha)) == pytest.approx(expected, rel=1e-5)
  for t in (1.0, 2.0):
    pairs = [np.exp(-t * np.sum((xn[i] - xn[j]) ** 2))
             for i in range(40) for j in range(i + 1, 40)]
    assert float(geometry.uniformity(x, t)) == pytest.approx(np.log(np.mean(pairs)),
                                                             rel=1e-5)
  # Subsets: first rows without a key; a random subset with one.
  assert float(geometry.uniformity(x, max_points=10)) == pytest.approx(
      float(geometry.uniformity(x[:10])), rel=1e-6)
  sub = geometry.uniformity(x, max_points=10, key=jax.random.key(0))
  assert np.isfinite(float(sub))


def test_hot_item_dispersion():
  rng = np.random.default_rng(3)
  emb = rng.normal(size=(20, 4))
  hot = np.array([2, 5, 7, 11])
  z = _unit(emb[hot])
  cos_dist = [1 - z[i] @ z[j] for i in range(4) for j in range(i + 1, 4)]
  centroid = z.mean(axis=0)
  out = geometry.hot_item_dispersion(emb, hot)
  assert float(out["mean_cosine_distance"]) == pytest.approx(np.mean(cos_dist), rel=1e-5)
  assert float(out["mean_centroid_distance"]) == pytest.approx(
      np.mean(np.linalg.norm(z - centroid, axis=1)), rel=1e-5)
  # Identical hot embeddings are not dispersed at all.
  tight = geometry.hot_item_dispersion(np.tile(emb[:1], (20, 1)), hot)
  assert float(tight["mean_cosine_distance"]) == pytest.approx(0.0, abs=1e-6)
