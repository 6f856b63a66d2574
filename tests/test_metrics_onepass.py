"""Tests for fedjax_rec.metrics.evaluate: one scoring pass for Recall/NDCG/Precision and ER@K.

Checked against the two-pass `ranking_metrics` + `exposure_ratio` and against a per-user
NumPy oracle that ranks by (-score, item id), on problems with many score ties.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec import metrics
from fedjax_rec.data.dataset import UserItems

RANKING = ("recall", "ndcg", "precision")


def table_score_fn(params, user_ids):
  """Scores from a fixed [num_users, num_items] table; one object so jit caches hit."""
  return params[user_ids]


def matmul_score_fn(params, user_ids):
  """Dot-product scores `U[user_ids] @ Vᵀ` of `params = (U, V)`: a float matmul."""
  user_emb, item_emb = params
  return user_emb[user_ids] @ item_emb.T


def _problem(seed, num_users=37, num_items=53):
  """Scores rounded to 1 decimal (many ties) and CSR sets, interacted ⊇ exclude ∪ test.

  Every 4th user has an empty test set. The last item is interacted by every user
  (in `exclude` for about half of them, else only in `interacted`), and some users have
  interacted items outside `exclude ∪ test`.

  Returns:
    `(scores [U, N] float32, exclude, test, interacted, targets)`; the targets include
    the item every user interacted with.
  """
  rng = np.random.default_rng(seed)
  scores = rng.random((num_users, num_items)).round(1).astype(np.float32)
  everyone = num_items - 1
  exclude, test, interacted = [], [], []
  for u in range(num_users):
    perm = rng.permutation(everyone)
    n_ex, n_te, n_extra = rng.integers(0, 10), rng.integers(1, 6), rng.integers(0, 4)
    if u % 4 == 0:
      n_te = 0
    ex = list(perm[:n_ex])
    te = list(perm[n_ex:n_ex + n_te])
    extra = list(perm[n_ex + n_te:n_ex + n_te + n_extra])
    if rng.random() < 0.5:
      ex.append(everyone)
    else:
      extra.append(everyone)
    exclude.append(ex)
    test.append(te)
    interacted.append(ex + te + extra)
  targets = np.concatenate([rng.choice(everyone, size=4, replace=False), [everyone]])
  return (scores, UserItems.from_lists(exclude), UserItems.from_lists(test),
          UserItems.from_lists(interacted), targets)


def _oracle(scores, exclude, test, interacted, targets, ks, er_ks, users):
  """Per-user loop: `(means, per_user)` of every metric; per_user only for ranking."""
  per_user = {f"{m}@{k}": [] for k in ks for m in RANKING}
  for u in users:
    t = set(test.row(u).tolist())
    if not t:
      continue
    ex = set(exclude.row(u).tolist())
    cand = np.array([i for i in range(scores.shape[1]) if i not in ex])
    order = cand[np.lexsort((cand, -scores[u, cand]))]
    for k in ks:
      hits = [r for r, i in enumerate(order[:k]) if i in t]
      idcg = sum(1 / np.log2(r + 2) for r in range(min(len(t), k)))
      per_user[f"recall@{k}"].append(len(hits) / len(t))
      per_user[f"ndcg@{k}"].append(sum(1 / np.log2(r + 2) for r in hits) / idcg)
      per_user[f"precision@{k}"].append(len(hits) / k)
  means = {name: np.mean(v) if v else np.nan for name, v in per_user.items()}
  exposed = {k: [] for k in er_ks}
  for t in targets:
    ranks = []
    for u in users:
      seen = set(interacted.row(u).tolist())
      if t in seen:
        continue
      cand = np.array([i for i in range(scores.shape[1]) if i not in seen])
      order = cand[np.lexsort((cand, -scores[u, cand]))]
      ranks.append(int(np.flatnonzero(order == t)[0]))
    if ranks:  # Targets with no eligible user leave the mean.
      for k in er_ks:
        exposed[k].append(np.mean(np.array(ranks) < k))
  for k in er_ks:
    means[f"er@{k}"] = np.mean(exposed[k]) if exposed[k] else np.nan
  return means, per_user


def _assert_close(out, expected, tol=1e-6):
  assert set(out) == set(expected)
  for name, value in expected.items():
    if np.isnan(value):
      assert np.isnan(out[name]), name
    else:
      assert out[name] == pytest.approx(value, abs=tol), name
    assert isinstance(out[name], float), name


CONFIGS = [  # (ks, er_ks, batch_size)
    ((20,), (5, 10, 20), 256),
    ((1, 5, 10), (1, 3, 5), 7),          # 7 does not divide 37 users.
    ((3, 53, 60), (2, 52, 70), 16),      # cut-offs at and beyond the catalogue.
    ((10,), (10,), 1),
    ((5,), (5, 20), 37),
]


@pytest.mark.parametrize("ks,er_ks,batch_size", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_evaluate_equals_two_passes(ks, er_ks, batch_size, seed):
  scores, exclude, test, interacted, targets = _problem(seed)
  scores = jnp.asarray(scores)
  subset = np.random.default_rng(seed).permutation(37)[:23]
  for users in (None, subset):
    expected = metrics.ranking_metrics(table_score_fn, scores, exclude, test, ks=ks,
                                       batch_size=batch_size, users=users)
    expected.update(metrics.exposure_ratio(table_score_fn, scores, interacted, targets,
                                           ks=er_ks, batch_size=batch_size, users=users))
    out = metrics.evaluate(table_score_fn, scores, exclude, test, ks=ks,
                           interacted=interacted, targets=targets, er_ks=er_ks,
                           batch_size=batch_size, users=users)
    _assert_close(out, expected)
    # Without targets: the ranking metrics alone, unchanged.
    alone = metrics.evaluate(table_score_fn, scores, exclude, test, ks=ks,
                             batch_size=batch_size, users=users)
    _assert_close(alone, {k: v for k, v in expected.items() if not k.startswith("er@")})


@pytest.mark.parametrize("ks,er_ks,batch_size", CONFIGS[:3])
def test_evaluate_matches_numpy_oracle(ks, er_ks, batch_size):
  scores, exclude, test, interacted, targets = _problem(2)
  users = np.arange(37)
  expected, _ = _oracle(scores, exclude, test, interacted, targets, ks, er_ks, users)
  out = metrics.evaluate(table_score_fn, jnp.asarray(scores), exclude, test, ks=ks,
                         interacted=interacted, targets=targets, er_ks=er_ks,
                         batch_size=batch_size)
  _assert_close(out, expected)


@pytest.mark.parametrize("num_targets", [1, 12])
def test_both_er_rank_paths_match_the_oracle(num_targets):
  # Up to 8 targets ER counts the items ahead of each; more take a second top-k.
  scores, exclude, test, interacted, _ = _problem(5)
  targets = np.random.default_rng(1).choice(scores.shape[1], num_targets, replace=False)
  expected, _ = _oracle(scores, exclude, test, interacted, targets, (5,), (1, 5, 10),
                        np.arange(37))
  out = metrics.evaluate(table_score_fn, jnp.asarray(scores), exclude, test, ks=(5,),
                         interacted=interacted, targets=targets, er_ks=(1, 5, 10),
                         batch_size=16)
  _assert_close(out, expected)


def test_evaluate_edge_targets():
  scores, exclude, test, interacted, targets = _problem(3)
  everyone = targets[-1]
  # Only the item every user interacted with: no eligible user, so NaN.
  out = metrics.evaluate(table_score_fn, jnp.asarray(scores), exclude, test,
                         interacted=interacted, targets=[everyone], er_ks=(5,))
  assert np.isnan(out["er@5"])
  # No interacted set given: it defaults to exclude ∪ test.
  union = exclude.union(test)
  expected, _ = _oracle(scores, exclude, test, union, targets, (5,), (1, 5), range(37))
  out = metrics.evaluate(table_score_fn, jnp.asarray(scores), exclude, test, ks=(5,),
                         targets=targets, er_ks=(1, 5), batch_size=8)
  _assert_close(out, expected)


# ---------------------------------------------------------------- sampled users


def test_sampling_is_deterministic_and_adds_standard_errors():
  scores, exclude, test, interacted, targets = _problem(4)
  scores = jnp.asarray(scores)
  kwargs = dict(ks=(5, 10), interacted=interacted, targets=targets, er_ks=(5,),
                batch_size=8)
  full = metrics.evaluate(table_score_fn, scores, exclude, test, **kwargs)
  assert not any(name.endswith("_se") for name in full)
  first = metrics.evaluate(table_score_fn, scores, exclude, test, num_users_sample=20,
                           sample_seed=5, **kwargs)
  second = metrics.evaluate(table_score_fn, scores, exclude, test, num_users_sample=20,
                            sample_seed=5, **kwargs)
  assert first == second
  ranking_names = [f"{m}@{k}" for k in (5, 10) for m in RANKING]
  assert set(first) == set(full) | {f"{name}_se" for name in ranking_names}
  # The documented sample: 20 users drawn by default_rng(seed) without replacement.
  sample = np.sort(np.random.default_rng(5).choice(37, size=20, replace=False))
  means, per_user = _oracle(np.asarray(scores), exclude, test, interacted, targets,
                            (5, 10), (5,), sample)
  for name, value in means.items():
    assert first[name] == pytest.approx(value, abs=1e-6), name
  for name in ranking_names:
    values = np.asarray(per_user[name])
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert first[f"{name}_se"] == pytest.approx(se, abs=1e-6), name
  # A sample of every user holds the exact metrics.
  everyone = metrics.evaluate(table_score_fn, scores, exclude, test, num_users_sample=37,
                              **kwargs)
  for name, value in full.items():
    assert everyone[name] == pytest.approx(value, abs=1e-12), name
  # Sampling from `users` draws among those users only.
  subset = np.arange(0, 37, 2)
  sub = metrics.evaluate(table_score_fn, scores, exclude, test, users=subset,
                         num_users_sample=len(subset), **kwargs)
  exact = metrics.evaluate(table_score_fn, scores, exclude, test, users=subset, **kwargs)
  for name, value in exact.items():
    assert sub[name] == pytest.approx(value, abs=1e-12), name


def test_sample_mean_within_standard_errors_of_full_metric():
  rng = np.random.default_rng(6)
  num_users, num_items, dim = 3000, 200, 8
  taste = rng.normal(size=(num_users, dim)).astype(np.float32)
  items = rng.normal(size=(num_items, dim)).astype(np.float32)
  # Test items follow the same tastes (plus noise), so the metrics are far from 0.
  noisy = taste @ items.T + rng.normal(scale=2.0, size=(num_users, num_items))
  order = np.argsort(-noisy, axis=1)
  exclude = UserItems.from_lists([row[:10] for row in order])
  test = UserItems.from_lists([row[10:10 + rng.integers(1, 8)] for row in order])
  params = (jnp.asarray(taste), jnp.asarray(items))
  full = metrics.evaluate(matmul_score_fn, params, exclude, test, ks=(10,))
  assert full["recall@10"] > 0.1
  sampled = metrics.evaluate(matmul_score_fn, params, exclude, test, ks=(10,),
                             num_users_sample=300, sample_seed=1)
  for name in full:
    assert 0 < sampled[f"{name}_se"] < 0.05, name
    assert abs(sampled[name] - full[name]) < 4 * sampled[f"{name}_se"], name


# ---------------------------------------------------------------- precision


def test_low_precision_stays_close_to_fp32():
  rng = np.random.default_rng(7)
  num_users, num_items = 300, 400
  params = (jnp.asarray(rng.normal(size=(num_users, 16)), jnp.float32),
            jnp.asarray(rng.normal(size=(num_items, 16)), jnp.float32))
  noisy = np.asarray(matmul_score_fn(params, jnp.arange(num_users)))
  noisy = noisy + rng.normal(scale=3.0, size=noisy.shape)
  order = np.argsort(-noisy, axis=1)
  exclude = UserItems.from_lists([row[:5] for row in order])
  test = UserItems.from_lists([row[5:5 + rng.integers(1, 8)] for row in order])
  targets = rng.choice(num_items, size=5, replace=False)
  kwargs = dict(ks=(10, 20), targets=targets, er_ks=(5, 20), batch_size=64)
  fp32 = metrics.evaluate(matmul_score_fn, params, exclude, test, **kwargs)
  assert fp32["recall@20"] > 0.05
  for precision in ("bf16", "tf32"):
    low = metrics.evaluate(matmul_score_fn, params, exclude, test, precision=precision,
                           **kwargs)
    assert set(low) == set(fp32)
    for name, value in fp32.items():
      # bfloat16 operands keep ~3 significant digits: a few near-ties may reorder.
      assert low[name] == pytest.approx(value, abs=0.02), (precision, name)


def test_precision_is_applied_and_compiled_once():
  seen = []

  def spy_score_fn(params, user_ids):
    seen.append(jax.config.jax_default_matmul_precision)
    return params[user_ids]

  scores, exclude, test, _, _ = _problem(8)
  scores = jnp.asarray(scores)
  ambient = jax.config.jax_default_matmul_precision  # "fp32" leaves it as set.
  for precision in ("fp32", "bf16", "tf32", "bf16", "fp32"):
    metrics.evaluate(spy_score_fn, scores, exclude, test, precision=precision)
  # Traced (so compiled) once per precision, under its matmul precision.
  assert seen == [ambient, "BF16_BF16_F32", "tensorfloat32"]


# ---------------------------------------------------------------- argument checks


def test_bad_arguments_raise():
  scores, exclude, test, interacted, targets = _problem(9)
  scores = jnp.asarray(scores)
  call = lambda **kw: metrics.evaluate(table_score_fn, scores, exclude, test, **kw)
  for precision in ("fp16", "FP32", "highest", ""):
    with pytest.raises(ValueError, match="precision"):
      call(precision=precision)
  with pytest.raises(ValueError, match="num_users_sample"):
    call(num_users_sample=0)
  with pytest.raises(ValueError, match="num_users_sample"):
    call(num_users_sample=38)
  with pytest.raises(ValueError, match="num_users_sample"):
    call(users=np.arange(5), num_users_sample=6)
  fewer = UserItems.from_lists([interacted.row(u) for u in range(36)])
  with pytest.raises(ValueError, match="same users"):
    call(interacted=fewer, targets=targets)
  with pytest.raises(ValueError, match="same users"):
    metrics.evaluate(table_score_fn, scores, fewer, test)
  with pytest.raises(ValueError, match="ks"):
    call(ks=())
  with pytest.raises(ValueError, match="er_ks"):
    call(targets=targets, er_ks=(0, 5))
  with pytest.raises(ValueError, match="batch_size"):
    call(batch_size=0)
