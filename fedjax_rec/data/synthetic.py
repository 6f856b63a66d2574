"""The embedded default dataset: deterministic, power-law, with planted tastes.

Items belong to one of `num_clusters` taste clusters and have a Zipf popularity.
Each user has a home cluster; each interaction comes from the home cluster with
probability `affinity` (popularity-weighted within the cluster) and otherwise from
the whole catalogue by popularity. User activity is log-normal, clipped. A model
that learns tastes beats the popularity baseline, so learning is measurable.

Two samplers draw each user's items without replacement from the same weights:
`make_interactions` (the default dataset) ranks a dense `[users, items]` Gumbel
table, and `draw_interactions` (large catalogues) draws items one at a time by
inverse CDF and redraws repeats, in chunks of users: memory O(interactions).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fedjax_rec.data.dataset import ImplicitDataset
from fedjax_rec.data.split import split_random


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  num_users: int = 1200
  num_items: int = 600
  num_clusters: int = 12
  affinity: float = 0.8
  popularity_exponent: float = 0.9
  mean_activity: float = 40.0
  activity_sigma: float = 0.8
  min_activity: int = 10
  max_activity: int = 300


def _model(c: SyntheticConfig, seed: int):
  """`(rng, item popularity, item cluster, user home cluster, user activity)`."""
  if c.max_activity >= c.num_items:
    raise ValueError("max_activity must be below num_items")
  rng = np.random.default_rng(seed)
  pop = 1.0 / np.arange(1, c.num_items + 1) ** c.popularity_exponent
  pop = pop[rng.permutation(c.num_items)]
  cluster = rng.integers(0, c.num_clusters, c.num_items)
  home = rng.integers(0, c.num_clusters, c.num_users)
  activity = np.clip(rng.lognormal(np.log(c.mean_activity), c.activity_sigma, c.num_users),
                     c.min_activity, c.max_activity).astype(np.int64)
  return rng, pop, cluster, home, activity


def make_interactions(config: SyntheticConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns unique `(users, items)` pairs, deterministic in `seed`."""
  c = config
  rng, pop, cluster, home, activity = _model(c, seed)
  # Per-user item weights: one [num_clusters, num_items] table, rows by home cluster.
  in_cluster = cluster[None, :] == np.arange(c.num_clusters)[:, None]
  w_cluster = pop[None, :] * in_cluster
  w_cluster /= w_cluster.sum(1, keepdims=True)
  weights = c.affinity * w_cluster + (1 - c.affinity) * (pop / pop.sum())[None, :]
  # Sample without replacement per user via Gumbel top-k on log weights.
  gumbel = rng.gumbel(size=(c.num_users, c.num_items))
  keys = np.log(weights[home]) + gumbel
  order = np.argsort(-keys, axis=1)
  mask = np.arange(c.num_items)[None, :] < activity[:, None]
  users = np.broadcast_to(np.arange(c.num_users)[:, None], order.shape)[mask]
  items = order[mask]
  return users.astype(np.int64), items.astype(np.int32)


_CHUNK_USERS = 1 << 16
_MAX_REDRAWS = 64


def draw_interactions(config: SyntheticConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Unique `(users, items)` pairs with memory O(interactions), deterministic in `seed`.

  The same model as `make_interactions` (and the same distribution of each
  user's item set), not the same draws. Each draw picks the home cluster with
  probability `affinity`, then an item by popularity within the cluster (else
  within the catalogue) by inverse CDF. A user's first `activity` distinct
  items are kept: repeats are redrawn, which is sampling without replacement
  proportional to the weights, as Gumbel top-k is.

  Returns:
    `(users [nnz] int64, items [nnz] int32)`, sorted by user.
  """
  c = config
  rng, pop, cluster, home, activity = _model(c, seed)
  size = np.bincount(cluster, minlength=c.num_clusters)
  if c.affinity >= 1 and np.any(activity > size[home]):
    raise ValueError("affinity=1 needs every user's activity within its home cluster")
  # Inverse CDFs: the catalogue's, and each cluster's as a slice of one array
  # holding the items grouped by cluster.
  by_cluster = np.argsort(cluster, kind="stable")
  cdf_cluster = np.cumsum(pop[by_cluster])
  head = np.cumsum(size) - size
  tail = np.maximum(head + size - 1, 0)
  low = np.where(head > 0, cdf_cluster[np.maximum(head - 1, 0)], 0.0)
  cdf_all = np.cumsum(pop)

  def draw(user: np.ndarray) -> np.ndarray:
    h = home[user]
    u = rng.random(len(user))
    in_home = (rng.random(len(user)) < c.affinity) & (size[h] > 0)
    target = low[h] + u * (cdf_cluster[tail[h]] - low[h])
    pos = np.clip(np.searchsorted(cdf_cluster, target, "right"), head[h], tail[h])
    wide = np.minimum(np.searchsorted(cdf_all, u * cdf_all[-1], "right"), c.num_items - 1)
    return np.where(in_home, by_cluster[pos], wide)

  out_users, out_items = [], []
  for start in range(0, c.num_users, _CHUNK_USERS):
    users = np.arange(start, min(start + _CHUNK_USERS, c.num_users), dtype=np.int64)
    keys = np.zeros(0, np.int64)  # user * num_items + item, sorted and distinct
    short = activity[users]
    for attempt in range(_MAX_REDRAWS):
      pending = np.flatnonzero(short)
      if not len(pending):
        break
      # Oversampling (doubling per attempt) ends the tail of users whose home
      # cluster runs dry; keeping each user's first distinct draws keeps it exact.
      who = np.repeat(users[pending], short[pending] << min(attempt, 6))
      new = who * c.num_items + draw(who)
      new, drawn_at = np.unique(new, return_index=True)
      at = np.searchsorted(keys, new)
      fresh = keys[np.minimum(at, len(keys) - 1)] != new if len(keys) else at == 0
      new, drawn_at, at = new[fresh], drawn_at[fresh], at[fresh]
      order = np.argsort(drawn_at, kind="stable")
      owner = new[order] // c.num_items - start
      rank = _rank_within(owner)
      take = np.zeros(len(new), bool)
      take[order] = rank < short[owner]
      keys = np.insert(keys, at[take], new[take])
      short = short - np.bincount(new[take] // c.num_items - start, minlength=len(users))
    else:
      raise ValueError("could not draw distinct items: activity too close to the catalogue")
    out_users.append(keys // c.num_items)
    out_items.append((keys % c.num_items).astype(np.int32))
  return np.concatenate(out_users), np.concatenate(out_items)


def _rank_within(group: np.ndarray) -> np.ndarray:
  """Each element's rank among the earlier elements of its group (stable)."""
  order = np.argsort(group, kind="stable")
  sorted_group = group[order]
  starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
  run_start = np.repeat(starts, np.diff(np.r_[starts, len(group)]))
  rank = np.empty(len(group), np.int64)
  rank[order] = np.arange(len(group)) - run_start
  return rank


def load_synthetic(config: SyntheticConfig = SyntheticConfig(), *, seed: int = 0,
                   split_seed: int | None = None, scalable: bool = False) -> ImplicitDataset:
  """The synthetic dataset, split per docs/design.md.

  Args:
    config: the generator's settings.
    seed: generator seed (and split seed unless `split_seed`).
    split_seed: seeds the split.
    scalable: draw with `draw_interactions` (memory O(interactions), for large
      catalogues) instead of the dense `make_interactions` of the default set.
  """
  sample = draw_interactions if scalable else make_interactions
  users, items = sample(config, seed)
  return split_random(users, items, config.num_users, config.num_items,
                      seed=seed if split_seed is None else split_seed, name="synthetic")
