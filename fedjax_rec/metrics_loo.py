"""Leave-one-out metrics: HR@K and NDCG@K of each user's one test item.

Two rankings of the same test item are reported. Over all items (`metrics.evaluate`,
the user's train and validation items masked) they are `hr@K` (= `recall@K` with one
test item) and `ndcg@K`; `hit_rate_names` renames that pass's output. Against the test
item and its user's fixed sampled negatives (`ImplicitDataset.eval_negatives`, 99 per
user, `data.loo`) they are `sampled_hr@K` and `sampled_ndcg@K` (`sampled_metrics`).

With the test item at 0-based rank `r` among its candidates, HR@K = [r < K] and NDCG@K =
[r < K] / log2(r + 2), averaged over the users with a test item. Tie rule, as in
`metrics`: among equal scores the lower item id ranks first.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec import metrics as metrics_lib
from fedjax_rec.data.dataset import ImplicitDataset, UserItems
from fedjax_rec.eval_batches import batch_users, batched, cutoffs, ranking_means, select_users


def hit_rate_names(out: dict[str, float]) -> dict[str, float]:
  """`metrics.evaluate`'s output for one test item per user: `hr@K` beside `recall@K`
  (the same number), and no precision (a fixed 1/K multiple of it)."""
  renamed = {}
  for name, value in out.items():
    if name.startswith("precision@"):
      continue
    if name.startswith("recall@"):
      renamed["hr@" + name.removeprefix("recall@")] = value
    renamed[name] = value
  return renamed


def candidate_ranks(test_score: jax.Array, test_id: jax.Array, cand_score: jax.Array,
               cand_id: jax.Array, cand_mask: jax.Array) -> jax.Array:
  """[b] 0-based rank of each test item among its candidates: the real candidates with a
  higher score, or an equal score and a lower item id."""
  ahead = (cand_score > test_score[:, None]) | ((cand_score == test_score[:, None])
                                                & (cand_id < test_id[:, None]))
  return jnp.sum(ahead & cand_mask, axis=-1)


def rank_metrics(rank: jax.Array, ks: tuple[int, ...]) -> jax.Array:
  """[b, len(ks), 2] (HR@K, NDCG@K) of 0-based ranks `rank [b]`."""
  gain = 1.0 / jnp.log2(rank.astype(jnp.float32) + 2.0)
  return jnp.stack([jnp.stack([(rank < k).astype(jnp.float32),
                               jnp.where(rank < k, gain, 0.0)], axis=-1) for k in ks], axis=1)


@functools.partial(jax.jit, static_argnames=("score_fn", "ks", "precision"))
def _sampled_pass(score_fn, params: Any, user_ids: jax.Array, test_ids: jax.Array,
                  cand_ids: jax.Array, cand_mask: jax.Array, ks: tuple[int, ...],
                  precision: str) -> jax.Array:
  """[nb, b, len(ks), 2] per-user (HR@K, NDCG@K) over the test item and its candidates."""

  def one_batch(batch):
    uids, t, c, cm = batch
    scores = metrics_lib.user_scores(score_fn, params, uids)
    t = jnp.maximum(t, 0)
    test_score = jnp.take_along_axis(scores, t[:, None], axis=1)[:, 0]
    cand_score = jnp.take_along_axis(scores, jnp.maximum(c, 0), axis=1)
    return rank_metrics(candidate_ranks(test_score, t, cand_score, c, cm), ks)

  with metrics_lib.precision_scope(precision):
    return jax.lax.map(one_batch, (user_ids, test_ids, cand_ids, cand_mask))


def sampled_metrics(score_fn: metrics_lib.ScoreFn, params: Any, test: UserItems,
                    negatives: UserItems, ks: Sequence[int] = (10,), *,
                    batch_size: int = 256, users: np.ndarray | None = None,
                    num_users_sample: int | None = None, sample_seed: int = 0,
                    precision: str = "fp32") -> dict[str, float]:
  """`sampled_hr@K` and `sampled_ndcg@K`: each test item ranked among its negatives.

  Args:
    score_fn: pure, jittable `(params, user_ids[b]) -> scores[b, num_items]` (a static
      jit argument, as in `metrics.evaluate`).
    params: passed through to `score_fn`.
    test: each user's test item (at most one; users without one are skipped).
    negatives: each user's candidates (`ImplicitDataset.eval_negatives`; ragged).
    ks: cut-offs K.
    batch_size: users scored per step.
    users: user ids to evaluate (default all); `num_users_sample` and `sample_seed`
      pick the same fixed sample as `metrics.evaluate` does, and add `<metric>_se`.
    precision: matmul precision of scoring, as in `metrics.evaluate`.

  Returns:
    `{"sampled_hr@K", "sampled_ndcg@K"}` (NaN when no evaluated user has a test item).

  Raises:
    ValueError: a user with several test items, or `test` and `negatives` covering
      different users.
  """
  if test.num_users != negatives.num_users:
    raise ValueError(f"test and negatives must cover the same users, got {test.num_users} "
                     f"and {negatives.num_users}.")
  if np.any(test.lengths > 1):
    raise ValueError("sampled metrics need at most one test item per user.")
  ks = cutoffs(ks, "ks")
  users = select_users(test.num_users, users, num_users_sample, sample_seed)
  user_ids, _, nb = batch_users(users, batch_size)
  test_ids, test_mask = batched(test, users, nb, batch_size)
  cand_ids, cand_mask = batched(negatives, users, nb, batch_size)
  per_user = _sampled_pass(score_fn, params, user_ids, test_ids[..., 0], cand_ids, cand_mask,
                           ks, precision)
  per_user = np.asarray(per_user, np.float64)[test_mask[..., 0]]
  return ranking_means(per_user, ks, with_se=num_users_sample is not None,
                       names=("sampled_hr", "sampled_ndcg"))


def mostpop_sampled(dataset: ImplicitDataset, ks: Sequence[int] = (10,)) -> dict[str, float]:
  """`sampled_metrics` of MostPop (popularity counted on training data only)."""
  popularity = np.bincount(dataset.train.items, minlength=dataset.num_items)
  return sampled_metrics(metrics_lib.mostpop_score_fn(popularity), None, dataset.test,
                         dataset.eval_negatives, ks)
