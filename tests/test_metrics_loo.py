"""Leave-one-out metrics against a NumPy oracle on ragged per-user lists."""

from __future__ import annotations

import numpy as np
import pytest

from fedjax_rec import metrics, metrics_loo
from fedjax_rec.data.dataset import UserItems

NUM_USERS, NUM_ITEMS = 37, 60


def _score_fn(params, user_ids):
  return params[user_ids]


def _ranked_before(scores, item, other):
  """Whether `other` ranks before `item` (higher score; ties: lower id first)."""
  return scores[other] > scores[item] or (scores[other] == scores[item] and other < item)


def _oracle(scores, exclude, test, candidates, k):
  """Per-user loops: (hr, ndcg) over all non-excluded items, and over the candidates."""
  all_hr, all_ndcg, s_hr, s_ndcg = [], [], [], []
  for u in range(len(test)):
    if not len(test[u]):
      continue
    t = int(test[u][0])
    pool = [i for i in range(NUM_ITEMS) if i not in set(exclude[u]) and i != t]
    for out_hr, out_ndcg, items in ((all_hr, all_ndcg, pool), (s_hr, s_ndcg, candidates[u])):
      rank = sum(_ranked_before(scores[u], t, int(i)) for i in items)
      out_hr.append(float(rank < k))
      out_ndcg.append(1.0 / np.log2(rank + 2) if rank < k else 0.0)
  return tuple(float(np.mean(x)) for x in (all_hr, all_ndcg, s_hr, s_ndcg))


@pytest.fixture(scope="module")
def case():
  rng = np.random.default_rng(5)
  # Coarse scores: many ties, so the tie rule is exercised.
  scores = rng.integers(0, 7, size=(NUM_USERS, NUM_ITEMS)).astype(np.float32)
  exclude, test, candidates = [], [], []
  for u in range(NUM_USERS):
    items = rng.permutation(NUM_ITEMS)
    n_ex = int(rng.integers(0, 25))
    exclude.append(items[:n_ex])
    has_test = u % 5 != 3  # some users have no test item
    test.append(items[n_ex:n_ex + 1] if has_test else items[:0])
    n_neg = int(rng.integers(0, 30)) if has_test else 0  # ragged, some empty
    candidates.append(np.sort(items[n_ex + 1:n_ex + 1 + n_neg]))
  return scores, exclude, test, candidates


@pytest.mark.parametrize("k", [1, 3, 10])
def test_loo_metrics_match_the_oracle(case, k):
  scores, exclude, test, candidates = case
  excl, tst, cand = (UserItems.from_lists(x) for x in (exclude, test, candidates))
  all_hr, all_ndcg, s_hr, s_ndcg = _oracle(scores, exclude, test, candidates, k)
  full = metrics_loo.hit_rate_names(
      metrics.evaluate(_score_fn, scores, excl, tst, (k,), batch_size=8))
  sampled = metrics_loo.sampled_metrics(_score_fn, scores, tst, cand, (k,), batch_size=8)
  np.testing.assert_allclose([full[f"hr@{k}"], full[f"ndcg@{k}"]], [all_hr, all_ndcg],
                             rtol=1e-6)
  assert full[f"recall@{k}"] == full[f"hr@{k}"] and f"precision@{k}" not in full
  np.testing.assert_allclose([sampled[f"sampled_hr@{k}"], sampled[f"sampled_ndcg@{k}"]],
                             [s_hr, s_ndcg], rtol=1e-6)


def test_sampled_metrics_on_a_user_sample_match_the_oracle(case):
  scores, exclude, test, candidates = case
  tst, cand = UserItems.from_lists(test), UserItems.from_lists(candidates)
  out = metrics_loo.sampled_metrics(_score_fn, scores, tst, cand, (5,), num_users_sample=20,
                                    sample_seed=3, batch_size=6)
  users = np.sort(np.random.default_rng(3).choice(NUM_USERS, 20, replace=False))
  keep = lambda xs: [xs[u] if u in set(users) else xs[u][:0] for u in range(NUM_USERS)]
  _, _, s_hr, s_ndcg = _oracle(scores, exclude, keep(test), candidates, 5)
  np.testing.assert_allclose([out["sampled_hr@5"], out["sampled_ndcg@5"]], [s_hr, s_ndcg],
                             rtol=1e-6)
  assert np.isfinite(out["sampled_hr@5_se"])


def test_sampled_metrics_refuse_several_test_items():
  two = UserItems.from_lists([[1, 2], [3]])
  with pytest.raises(ValueError, match="at most one test item"):
    metrics_loo.sampled_metrics(_score_fn, np.zeros((2, 5), np.float32), two,
                                UserItems.from_lists([[0], [0]]))
