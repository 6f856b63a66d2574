"""The embedded default dataset: deterministic, power-law, with planted tastes.

Items belong to one of `num_clusters` taste clusters and have a Zipf popularity.
Each user has a home cluster; each interaction comes from the home cluster with
probability `affinity` (popularity-weighted within the cluster) and otherwise from
the whole catalogue by popularity. User activity is log-normal, clipped. A model
that learns tastes beats the popularity baseline, so learning is measurable.
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


def make_interactions(config: SyntheticConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns unique `(users, items)` pairs, deterministic in `seed`."""
  c = config
  if c.max_activity >= c.num_items:
    raise ValueError("max_activity must be below num_items")
  rng = np.random.default_rng(seed)
  pop = 1.0 / np.arange(1, c.num_items + 1) ** c.popularity_exponent
  pop = pop[rng.permutation(c.num_items)]
  cluster = rng.integers(0, c.num_clusters, c.num_items)
  home = rng.integers(0, c.num_clusters, c.num_users)
  activity = np.clip(rng.lognormal(np.log(c.mean_activity), c.activity_sigma, c.num_users),
                     c.min_activity, c.max_activity).astype(np.int64)
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


def load_synthetic(config: SyntheticConfig = SyntheticConfig(), *, seed: int = 0,
                   split_seed: int | None = None) -> ImplicitDataset:
  """The default dataset, split per SPEC §3."""
  users, items = make_interactions(config, seed)
  return split_random(users, items, config.num_users, config.num_items,
                      seed=seed if split_seed is None else split_seed, name="synthetic")
