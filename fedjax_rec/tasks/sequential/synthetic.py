"""The built-in sequential dataset: Markov walks inside taste clusters.

Items have a Zipf popularity and belong to one of `num_clusters` clusters; every
item has `num_successors` fixed successors drawn from its own cluster. A user has
a home cluster and a log-normal sequence length. Each step, with probability
`follow_prob`, the next item is a random successor of the current one; otherwise
(or when that successor was already consumed) it is drawn by popularity from the
home cluster (probability `affinity`) or from the whole catalogue, among the items
the user has not consumed. The next item is thus predictable from the last one,
which a sequential model can learn and MostPop cannot.

Deterministic in the seed. The loop runs over time steps, vectorised over users.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd


@dataclasses.dataclass(frozen=True)
class SeqSyntheticConfig:
  num_users: int = 1000
  num_items: int = 500
  num_clusters: int = 10
  num_successors: int = 3
  follow_prob: float = 0.6
  affinity: float = 0.8
  popularity_exponent: float = 0.8
  mean_length: float = 25.0
  length_sigma: float = 0.6
  min_length: int = 5
  max_length: int = 80

  def __post_init__(self):
    if not self.min_length <= self.max_length < self.num_items:
      raise ValueError("need min_length <= max_length < num_items, got "
                       f"{self.min_length}, {self.max_length}, {self.num_items}")
    if self.num_items < self.num_clusters * (self.num_successors + 1):
      raise ValueError("every cluster needs more items than num_successors")


def _successors(cluster: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
  """[num_items, k] distinct successors of each item, from its own cluster."""
  n = len(cluster)
  same = cluster[:, None] == cluster[None, :]
  np.fill_diagonal(same, False)
  keys = np.where(same, rng.random((n, n)), -1.0)
  return np.argsort(-keys, axis=1)[:, :k]


def make_sequences(config: SeqSyntheticConfig, seed: int) -> pd.DataFrame:
  """Columns `user`, `item`, `timestamp` (the step index), one row per interaction."""
  c = config
  rng = np.random.default_rng(seed)
  # Every cluster gets at least num_successors + 1 items, the rest at random.
  cluster = np.concatenate([np.repeat(np.arange(c.num_clusters), c.num_successors + 1),
                            rng.integers(0, c.num_clusters,
                                         c.num_items - c.num_clusters * (c.num_successors + 1))])
  cluster = cluster[rng.permutation(c.num_items)]
  pop = 1.0 / np.arange(1, c.num_items + 1) ** c.popularity_exponent
  pop = pop[rng.permutation(c.num_items)]
  succ = _successors(cluster, c.num_successors, rng)
  in_cluster = cluster[None, :] == np.arange(c.num_clusters)[:, None]
  w_home = pop[None, :] * in_cluster
  w_home /= w_home.sum(1, keepdims=True)
  log_w = np.log(c.affinity * w_home + (1 - c.affinity) * (pop / pop.sum())[None, :])
  home = rng.integers(0, c.num_clusters, c.num_users)
  length = np.clip(rng.lognormal(np.log(c.mean_length), c.length_sigma, c.num_users),
                   c.min_length, c.max_length).astype(np.int64)
  users = np.arange(c.num_users)
  seen = np.zeros((c.num_users, c.num_items), bool)
  current = np.zeros(c.num_users, np.int64)
  out_user, out_item, out_step = [], [], []
  for step in range(c.max_length):
    active = length > step
    cand = succ[current, rng.integers(0, c.num_successors, c.num_users)]
    follow = (step > 0) & (rng.random(c.num_users) < c.follow_prob) & ~seen[users, cand]
    scores = np.where(seen, -np.inf, log_w[home] + rng.gumbel(size=seen.shape))
    item = np.where(follow, cand, np.argmax(scores, axis=1))
    seen[users[active], item[active]] = True
    current = np.where(active, item, current)
    out_user.append(users[active])
    out_item.append(item[active])
    out_step.append(np.full(int(active.sum()), step))
  return pd.DataFrame({"user": np.concatenate(out_user), "item": np.concatenate(out_item),
                       "timestamp": np.concatenate(out_step).astype(np.int64)})
