"""Two clusters or one? A gap-statistic test on 1-D client scores (the UNION filter).

Reference: Tibshirani, Walther and Hastie, "Estimating the number of clusters in a data
set via the gap statistic" (2001), with k in {1, 2} as in the UNION authors' public code.
For `n` scores, `W_1` is their sum of squares about the mean and `W_2` the least within-
cluster sum of squares of a split into two clusters. In 1-D an optimal 2-means split is a
threshold, so `W_2` is exact: every score is tried as the threshold (an [n, n] masked
pass, no sort). With `Gap_k = E*[log W_k] - log W_k` over uniform reference data, two
clusters are chosen when `Gap_1 < Gap_2 - s_2`, i.e.

    log(W_1 / W_2) > E*[log W_1] - E*[log W_2] + s_2,   s_2 = sd*(log W_2) sqrt(1 + 1/B).

The test is invariant to shifting and scaling the scores, so the reference is `n` uniform
draws on [0, 1] (the authors min-max normalize their scores to that interval first). Its
moments come from `B = 500` seeded draws per `n`, computed once per slot count in NumPy
(`gap_reference`) and indexed by the round's `n` inside jit. Fewer than 4 scores never
split (a test on 2 or 3 points is meaningless), nor do scores that are all equal.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from fedjax_rec.types import Array

MIN_SCORES = 4
_DRAWS = 500


def _least_w2(sorted_x: np.ndarray) -> np.ndarray:
  """Least two-cluster within sum of squares of each row of sorted samples [B, n]."""
  n = sorted_x.shape[1]
  s1 = np.cumsum(sorted_x, axis=1)
  s2 = np.cumsum(sorted_x ** 2, axis=1)
  k = np.arange(1, n)
  left = s2[:, :-1] - s1[:, :-1] ** 2 / k
  right = (s2[:, -1:] - s2[:, :-1]) - (s1[:, -1:] - s1[:, :-1]) ** 2 / (n - k)
  return np.min(left + right, axis=1)


@functools.lru_cache(maxsize=None)
def gap_reference(num_slots: int) -> tuple[np.ndarray, np.ndarray]:
  """`(E*[log W_1] - E*[log W_2], s_2)` for `n = 0..num_slots` (inf below `MIN_SCORES`)."""
  rng = np.random.default_rng(0)
  diff = np.full(num_slots + 1, np.inf)
  s2 = np.full(num_slots + 1, np.inf)
  for n in range(MIN_SCORES, num_slots + 1):
    x = np.sort(rng.uniform(size=(_DRAWS, n)), axis=1)
    log_w1 = np.log(np.sum((x - x.mean(axis=1, keepdims=True)) ** 2, axis=1))
    log_w2 = np.log(_least_w2(x))
    diff[n] = log_w1.mean() - log_w2.mean()
    s2[n] = log_w2.std() * np.sqrt(1.0 + 1.0 / _DRAWS)
  return diff.astype(np.float32), s2.astype(np.float32)


def gap_split(scores: Array, scored: Array) -> tuple[Array, Array, Array]:
  """Splits the `scored` [C] entries of `scores` [C] in two when the gap test says so.

  Returns:
    `(split, high, threshold)`: `split` a scalar bool; `high` [C] the scored entries above
    the threshold (the upper cluster; meaningful when `split`); `threshold` the largest
    score of the lower cluster.
  """
  num_slots = scores.shape[0]
  diff, s2 = (jnp.asarray(a) for a in gap_reference(num_slots))
  n = jnp.sum(scored)
  x = jnp.where(scored, scores, 0.0)
  x = jnp.where(scored, x - jnp.sum(x) / jnp.maximum(n, 1), 0.0)  # centred: less cancellation
  w1 = jnp.sum(x * x)
  left = scored[None, :] & (x[None, :] <= x[:, None])  # row a: the threshold x_a
  right = scored[None, :] & ~left

  def within(mask):
    count = jnp.sum(mask, axis=1)
    total = jnp.sum(jnp.where(mask, x[None, :], 0.0), axis=1)
    sq = jnp.sum(jnp.where(mask, (x * x)[None, :], 0.0), axis=1)
    return jnp.maximum(sq - total * total / jnp.maximum(count, 1), 0.0), count

  w_left, _ = within(left)
  w_right, n_right = within(right)
  w2_each = jnp.where(scored & (n_right > 0), w_left + w_right, jnp.inf)
  best = jnp.argmin(w2_each)
  w2 = w2_each[best]
  bound = diff[jnp.minimum(n, num_slots)] + s2[jnp.minimum(n, num_slots)]
  split = (n >= MIN_SCORES) & (w1 > 0) & jnp.isfinite(w2) & (w1 > w2 * jnp.exp(bound))
  threshold = x[best]
  high = scored & (x > threshold)
  return split, high, scores[best]
