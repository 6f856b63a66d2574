"""Ranking and robustness metrics: Recall/Precision/NDCG@K, ER@K (Eq. 2), MostPop.

Evaluation is model-agnostic. A `score_fn(params, user_ids[b]) -> scores[b, num_items]`
(pure and jittable) scores a batch of users; `params` is any pytree, e.g. the public
params together with the private user embeddings: evaluation is a simulator-side oracle,
not a server function.

`evaluate` computes the ranking metrics and ER@K together from one scoring of each user
batch (optionally of a fixed user sample, with standard errors); `ranking_metrics` and
`exposure_ratio` are the same pass asked for one family of metrics. Users are padded to
a multiple of `batch_size` (padded rows weigh 0, `eval_batches`); the masked sets travel
as per-batch `(row, item)` pair lists, padded to the largest batch's pair count rather
than to the longest user's list (many times the mean length on skewed data such as
ML-1M). One jitted function runs over all batches with `lax.map`, so it compiles once per
(score_fn, ks, batch_size, number of batches, padded widths).

Tie rule, everywhere: among equal scores the lower item id ranks first (this is the
documented behaviour of `jax.lax.top_k`, and ER@K counts ties the same way).

Embedding geometry lives in `fedjax_rec.geometry` and is re-exported here.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec.data.dataset import ImplicitDataset, UserItems
from fedjax_rec.eval_batches import (batch_users, batched, batched_pairs, cutoffs, er_means,
                                     ranking_means, select_users)
from fedjax_rec.geometry import (alignment, hot_item_dispersion, l_uni,  # noqa: F401
                                 singular_values, uniformity)

ScoreFn = Callable[[Any, jax.Array], jax.Array]

# Up to this many targets, ER@K counts the items ahead of each target instead of taking a
# second top-k.
_COUNT_RANK_TARGETS = 8
# `evaluate(precision=...)` -> `jax.default_matmul_precision` of its pass (None: as set).
_MATMUL_PRECISION = {"fp32": None, "tf32": "tensorfloat32", "bf16": "BF16_BF16_F32"}


# ------------------------------------------------------------------ traced helpers


def precision_scope(precision: str):
  """The matmul precision a pass is traced under ("fp32": JAX's default)."""
  level = _MATMUL_PRECISION[precision]
  return contextlib.nullcontext() if level is None else jax.default_matmul_precision(level)


def user_scores(score_fn: ScoreFn, params: Any, user_ids: jax.Array) -> jax.Array:
  """`score_fn`'s [b, N] scores, as floats."""
  scores = score_fn(params, user_ids)
  if not jnp.issubdtype(scores.dtype, jnp.floating):
    scores = scores.astype(jnp.float32)
  return scores


def _mask_pairs(scores: jax.Array, rows: jax.Array, items: jax.Array) -> jax.Array:
  """`scores [b, N]` with the `(rows[P], items[P])` pairs set to -inf (item -1: none)."""
  cols = jnp.where(items >= 0, items, scores.shape[1])      # out of range: dropped
  return scores.at[rows, cols].set(-jnp.inf, mode="drop")


def _touched_pairs(rows: jax.Array, items: jax.Array, targets: jax.Array,
                   batch_size: int) -> jax.Array:
  """[b, T]: whether each row's `(rows[P], items[P])` pairs hold each target."""
  hit = (items[:, None] == targets[None, :]).astype(jnp.int32)   # [P, T]
  return jnp.zeros((batch_size, targets.shape[0]), jnp.int32).at[rows].add(hit) > 0


def _ranking_from_top(top_vals: jax.Array, top_ids: jax.Array, t_ids: jax.Array,
                      t_mask: jax.Array, ks: tuple[int, ...]) -> jax.Array:
  """Per-user `[b, len(ks), 3]` (recall, ndcg, precision) from a top-`k` list.

  Args:
    top_vals: [b, k] masked scores of the top items, best first (k <= max(ks)).
    top_ids: [b, k] their item ids.
    t_ids: [b, L] test item ids.
    t_mask: [b, L] which of `t_ids` are real.
    ks: cut-offs K.
  """
  k_max = max(ks)
  hit = jnp.any((top_ids[:, :, None] == t_ids[:, None, :]) & t_mask[:, None, :], axis=-1)
  # Fewer than K unmasked items: the -inf fillers never count as hits.
  hit = (hit & (top_vals > -jnp.inf)).astype(jnp.float32)
  if hit.shape[1] < k_max:
    hit = jnp.pad(hit, ((0, 0), (0, k_max - hit.shape[1])))
  num_test = t_mask.sum(axis=-1)
  discount = 1.0 / jnp.log2(jnp.arange(k_max, dtype=jnp.float32) + 2.0)
  ideal_cum = jnp.concatenate([jnp.zeros(1), jnp.cumsum(discount)])  # [k_max + 1]
  per_k = []
  for k in ks:
    hits_k = hit[:, :k].sum(axis=-1)
    dcg = (hit[:, :k] * discount[:k]).sum(axis=-1)
    idcg = ideal_cum[jnp.minimum(num_test, k)]
    safe = jnp.maximum(num_test, 1)
    per_k.append(jnp.stack([hits_k / safe, dcg / jnp.where(idcg > 0, idcg, 1.0),
                            hits_k / k], axis=-1))
  return jnp.stack(per_k, axis=1)


@functools.partial(jax.jit, static_argnames=("score_fn", "ks", "er_ks", "precision"))
def _one_pass(score_fn: ScoreFn, params: Any, user_ids: jax.Array, valid: jax.Array,
              excl_rows: jax.Array, excl_items: jax.Array, test_ids: jax.Array,
              test_mask: jax.Array, inter_rows: jax.Array | None,
              inter_items: jax.Array | None, targets: jax.Array | None,
              ks: tuple[int, ...], er_ks: tuple[int, ...],
              precision: str) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
  """Ranking metrics and ER@K counts from one scoring of every batch.

  The pass is traced under `jax.default_matmul_precision(_MATMUL_PRECISION[precision])`
  (unchanged for "fp32").

  Returns:
    `(per_user [nb, b, len(ks), 3], hits [nb, T, len(er_ks)], eligible [nb, T])`: the
    per-user (recall, ndcg, precision) of `_ranking_per_user` and the per-batch counts
    of `_exposure_counts`; the last two are None without `targets`.
  """
  k_max = max(ks)

  def one_batch(batch):
    uids, ok, e_rows, e_items, t_ids, t_mask, i_rows, i_items = batch
    scores = user_scores(score_fn, params, uids)
    b, n = scores.shape
    top_vals, top_ids = jax.lax.top_k(_mask_pairs(scores, e_rows, e_items), min(k_max, n))
    per_user = _ranking_from_top(top_vals, top_ids, t_ids, t_mask, ks)
    if targets is None:
      return per_user, None, None
    # The target's rank among the non-interacted items, by `lax.top_k`'s order (ties:
    # lower id first).
    masked = _mask_pairs(scores, i_rows, i_items)
    if targets.shape[0] <= _COUNT_RANK_TARGETS:
      # Few targets: count the items ahead of each, one [b, T, N] comparison (about ten
      # times cheaper than a top-k for one target).
      st = masked[:, targets][:, :, None]                               # [b, T, 1]
      ids = jnp.arange(n)[None, None, :]
      ahead = (masked[:, None, :] > st) | ((masked[:, None, :] == st)
                                           & (ids < targets[None, :, None]))
      rank = ahead.sum(axis=-1)                                          # [b, T]
    else:
      # Many targets: the position in the top-max(er_ks); absent means rank >= er_max.
      er_max = min(max(er_ks), n)
      _, exposed = jax.lax.top_k(masked, er_max)
      match = exposed[:, :, None] == targets[None, None, :]              # [b, er_max, T]
      rank = jnp.where(match.any(axis=1), jnp.argmax(match, axis=1), er_max)
    eligible = ok[:, None] & ~_touched_pairs(i_rows, i_items, targets, b)  # [b, T]
    in_top = (rank[:, :, None] < jnp.asarray(er_ks)) & eligible[:, :, None]
    return per_user, in_top.sum(axis=0), eligible.sum(axis=0)

  with precision_scope(precision):
    return jax.lax.map(one_batch, (user_ids, valid, excl_rows, excl_items, test_ids,
                                   test_mask, inter_rows, inter_items))


# ------------------------------------------------------------------ public API


def ranking_metrics(score_fn: ScoreFn, params: Any, exclude: UserItems, test: UserItems,
                    ks: Sequence[int] = (20,), batch_size: int = 256,
                    users: np.ndarray | None = None) -> dict[str, float]:
  """Recall@K, NDCG@K and Precision@K with full ranking over all items (docs/design.md).

  For each evaluated user with a non-empty test set, the items in `exclude` are masked
  to -inf, the top-K is taken (equal scores: lower item id first) and
  Recall@K = |topK ∩ test| / |test|, Precision@K = |topK ∩ test| / K,
  NDCG@K = Σ_{hit at 0-based rank r < K} 1/log2(r+2) / Σ_{r < min(|test|, K)} 1/log2(r+2).
  Each is averaged over those users; users with empty test sets are skipped.

  Args:
    score_fn: pure, jittable `(params, user_ids[b]) -> scores[b, num_items]`. Hashed as a
      static jit argument: reuse the same function object to avoid recompiling.
    params: any pytree passed through to `score_fn`.
    exclude: items masked before ranking (train + validation: `dataset.seen()`).
    test: held-out items, over the same users as `exclude`.
    ks: cut-offs K.
    batch_size: users scored per step (bounds memory at ~batch_size x num_items).
    users: optional int array of user ids to evaluate (e.g. benign users); default all.

  Returns:
    `{"recall@K", "ndcg@K", "precision@K"}` as Python floats; NaN when no evaluated user
    has a test item.
  """
  return evaluate(score_fn, params, exclude, test, ks, batch_size=batch_size, users=users)


def exposure_ratio(score_fn: ScoreFn, params: Any, interacted: UserItems,
                   targets: np.ndarray | Sequence[int], ks: Sequence[int] = (5, 10, 20),
                   batch_size: int = 256, users: np.ndarray | None = None) -> dict[str, float]:
  """ER@K of Eq. 2 (CL4FedRec): exposure of the target items among non-interacting users.

  For each target t and each evaluated user who never interacted with t (t not in
  `interacted`), all of the user's interacted items are masked and t counts as exposed
  when fewer than K unmasked items rank ahead of it: items with a strictly higher score,
  or an equal score and a lower item id (the `lax.top_k` tie rule). ER@K is the exposed
  share of eligible users, averaged over targets; targets with no eligible user are
  left out of the mean (NaN if none is left).

  Args:
    score_fn: pure, jittable `(params, user_ids[b]) -> scores[b, num_items]`.
    params: any pytree passed through to `score_fn`.
    interacted: train + validation + test items per user (`dataset.interacted()`).
    targets: [T] target item ids.
    ks: cut-offs K (Eq. 2 uses K = 5).
    batch_size: users scored per step.
    users: optional int array of user ids (the benign users); default all.

  Returns:
    `{"er@K": float}` for each K.
  """
  nothing = UserItems(np.zeros(interacted.num_users + 1, np.int64), np.zeros(0, np.int32))
  out = evaluate(score_fn, params, interacted, nothing, (1,), interacted=interacted,
                 targets=np.asarray(targets, np.int32).reshape(-1), er_ks=ks,
                 batch_size=batch_size, users=users)
  return {name: value for name, value in out.items() if name.startswith("er@")}


def evaluate(score_fn: ScoreFn, params: Any, exclude: UserItems, test: UserItems,
             ks: Sequence[int] = (20,), *, interacted: UserItems | None = None,
             targets: np.ndarray | Sequence[int] | None = None,
             er_ks: Sequence[int] = (5, 10, 20), batch_size: int = 256,
             users: np.ndarray | None = None, num_users_sample: int | None = None,
             sample_seed: int = 0, precision: str = "fp32") -> dict[str, float]:
  """`ranking_metrics` and `exposure_ratio` together, scoring each user batch once.

  One jitted pass scores every batch of the selected users once. From each score
  matrix it takes the top-max(ks) with `exclude` masked (Recall/NDCG/Precision@K, as
  `ranking_metrics`) and, with `targets`, the top-max(er_ks) with `interacted` masked: a
  target's position in that list is its rank among the user's non-interacted items
  under the same tie rule (equal scores: lower item id first), so ER@K equals
  `exposure_ratio`'s without comparing every item with every target. Users with an
  empty test set weigh 0 in the ranking metrics but count for ER@K, as in those two
  functions.

  Args:
    score_fn: pure, jittable `(params, user_ids[b]) -> scores[b, num_items]`; a static
      jit argument (reuse the same object to avoid recompiling).
    params: any pytree passed through to `score_fn`.
    exclude: items masked for the ranking metrics (train + validation: `dataset.seen()`).
    test: held-out items, over the same users as `exclude`.
    ks: ranking cut-offs K.
    interacted: items masked for ER@K (train + validation + test:
      `dataset.interacted()`); default `exclude ∪ test`. Only used with `targets`.
    targets: [T] target item ids; None for no ER@K.
    er_ks: ER cut-offs K.
    batch_size: users scored per step (bounds memory at ~batch_size x num_items).
    users: optional int array of user ids to evaluate (e.g. benign users); default all.
    num_users_sample: evaluate only a fixed sample of this many of `users`, drawn
      without replacement by `np.random.default_rng(sample_seed)` and sorted (the same
      sample on every call), and add standard errors. Default None: all of `users`.
    sample_seed: seed of that sample.
    precision: matmul precision of the pass (`jax.default_matmul_precision`): "fp32"
      leaves it as set (by default full float32 on CPU, which `ranking_metrics` and
      `exposure_ratio` also use; recent NVIDIA GPUs may use TF32 by default), "tf32"
      is "tensorfloat32" and "bf16" the `BF16_BF16_F32` algorithm (bfloat16 operands,
      float32 accumulation). Faster on accelerators; on CPU it may change nothing.
      Lower precision perturbs scores, so top-K membership and ties can differ from
      "fp32". Each precision compiles once.

  Returns:
    `{"recall@K", "ndcg@K", "precision@K"}` over the evaluated users with test items
    (NaN if none), `"er@K"` for each K of `er_ks` with `targets` (over all evaluated
    users, as `exposure_ratio`), and with `num_users_sample` also `"<metric>_se"`
    beside each ranking metric: the standard error std(ddof=1) / sqrt(n) over the n
    sampled users with test items (NaN if n < 2).

  Raises:
    ValueError: an unknown `precision`, `batch_size` < 1, empty or non-positive
      cut-offs, `num_users_sample` < 1 or above the number of users, or `exclude`,
      `test` and `interacted` covering different numbers of users.
  """
  if precision not in _MATMUL_PRECISION:
    raise ValueError(f"precision must be one of {sorted(_MATMUL_PRECISION)}, "
                     f"got {precision!r}.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
  sizes = {"exclude": exclude.num_users, "test": test.num_users}
  if interacted is not None:
    sizes["interacted"] = interacted.num_users
  if len(set(sizes.values())) > 1:
    raise ValueError(f"exclude, test and interacted must cover the same users, got {sizes}.")
  ks = cutoffs(ks, "ks")
  users = select_users(test.num_users, users, num_users_sample, sample_seed)
  user_ids, valid, nb = batch_users(users, batch_size)
  excl_rows, excl_items = batched_pairs(exclude, users, nb, batch_size)
  test_ids, test_mask = batched(test, users, nb, batch_size)
  inter_rows = inter_items = target_ids = None
  if targets is not None:
    er_ks = cutoffs(er_ks, "er_ks")
    interacted = exclude.union(test) if interacted is None else interacted
    inter_rows, inter_items = batched_pairs(interacted, users, nb, batch_size)
    target_ids = jnp.asarray(np.asarray(targets, np.int32).reshape(-1))
  per_user, hits, eligible = _one_pass(
      score_fn, params, user_ids, valid, excl_rows, excl_items, test_ids, test_mask,
      inter_rows, inter_items, target_ids, ks, er_ks if targets is not None else (),
      precision)
  # Per-user weights: padded slots and users without test items leave the ranking means.
  ranked = test_mask.any(axis=-1)                               # [nb, b]
  out = ranking_means(np.asarray(per_user, np.float64)[ranked], ks,
                      with_se=num_users_sample is not None)
  if targets is not None:
    out.update(er_means(hits, eligible, er_ks))
  return out


@functools.partial(jax.jit, static_argnames=("score_fn", "k"))
def _top_k_ids(score_fn: ScoreFn, params: Any, user_ids: jax.Array, excl_rows: jax.Array,
               excl_items: jax.Array, k: int) -> jax.Array:
  def one_batch(batch):
    uids, rows, items = batch
    scores = _mask_pairs(user_scores(score_fn, params, uids), rows, items)
    vals, ids = jax.lax.top_k(scores, min(k, scores.shape[1]))
    return jnp.where(vals > -jnp.inf, ids, -1)

  return jax.lax.map(one_batch, (user_ids, excl_rows, excl_items))


def recommend(score_fn: ScoreFn, params: Any, exclude: UserItems, k: int,
              batch_size: int = 256, users: np.ndarray | None = None) -> np.ndarray:
  """Top-k item ids per user with `exclude` masked, as ranked by `ranking_metrics`.

  Returns:
    [num_selected_users, min(k, num_items)] int32 ids, best first (equal scores: lower
    id first); -1 where fewer unmasked items than k remain.
  """
  users = select_users(exclude.num_users, users)
  user_ids, valid, nb = batch_users(users, batch_size)
  excl_rows, excl_items = batched_pairs(exclude, users, nb, batch_size)
  ids = np.asarray(_top_k_ids(score_fn, params, user_ids, excl_rows, excl_items, int(k)))
  return ids[valid]


def mostpop_score_fn(popularity: np.ndarray) -> ScoreFn:
  """A `score_fn` that ignores params and scores every user by item popularity.

  Ties are broken by the ranking code: lower item id first, so top-K is deterministic.

  Args:
    popularity: [num_items] counts (use training data only, never test).

  Returns:
    `score_fn(params, user_ids[b]) -> float32[b, num_items]`.
  """
  pop = jnp.asarray(np.asarray(popularity, np.float32))

  def score_fn(params: Any, user_ids: jax.Array) -> jax.Array:
    del params
    return jnp.broadcast_to(pop[None, :], (user_ids.shape[0], pop.shape[0]))

  return score_fn


def mostpop_metrics(dataset: ImplicitDataset, ks: Sequence[int] = (20,),
                    batch_size: int = 256,
                    users: np.ndarray | None = None) -> dict[str, float]:
  """`ranking_metrics` of MostPop, with popularity counted on training data only."""
  popularity = np.bincount(dataset.train.items, minlength=dataset.num_items)
  return ranking_metrics(mostpop_score_fn(popularity), None, dataset.seen(), dataset.test,
                         ks=ks, batch_size=batch_size, users=users)
