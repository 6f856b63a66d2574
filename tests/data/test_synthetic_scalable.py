"""The O(interactions) synthetic sampler: same model as the dense one, memory of its output."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fedjax_rec.data.synthetic import (SyntheticConfig, draw_interactions, load_synthetic,
                                       make_interactions)


def test_same_activity_distinct_pairs_sorted_by_user():
  config = SyntheticConfig()
  users, items = draw_interactions(config, seed=3)
  dense_users, _ = make_interactions(config, seed=3)
  # Both samplers draw popularity, clusters, homes and activity from the same stream first.
  np.testing.assert_array_equal(np.bincount(users, minlength=config.num_users),
                                np.bincount(dense_users, minlength=config.num_users))
  assert users.dtype == np.int64 and items.dtype == np.int32
  assert np.all(np.diff(users) >= 0)
  assert items.min() >= 0 and items.max() < config.num_items
  keys = users * config.num_items + items
  assert len(np.unique(keys)) == len(keys)


def test_deterministic_in_seed():
  config = SyntheticConfig(num_users=300, num_items=400)
  a, b, c = (draw_interactions(config, seed=s) for s in (1, 1, 2))
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[1], c[1])


def test_item_frequencies_match_the_dense_sampler():
  # 20,000 users x 5 of 40 items: a heavy draw without replacement, where a sampler
  # that ignored the redraw rule would be far off. Same popularity, clusters and homes.
  config = SyntheticConfig(num_users=20000, num_items=40, num_clusters=4, affinity=0.8,
                           mean_activity=5, min_activity=5, max_activity=5)
  _, dense = make_interactions(config, seed=0)
  _, drawn = draw_interactions(config, seed=0)
  a = np.bincount(dense, minlength=config.num_items).astype(float)
  b = np.bincount(drawn, minlength=config.num_items).astype(float)
  z = np.abs(a - b) / np.sqrt(np.maximum(a + b, 1.0))
  assert z.max() < 5.0, (a, b)


def test_memory_is_proportional_to_interactions():
  # A dense [users, items] table would take 40,000 x 400,000 x 8 bytes = 128 GB.
  config = SyntheticConfig(num_users=40000, num_items=400000, num_clusters=200,
                           mean_activity=20, min_activity=5, max_activity=500)
  tracemalloc.start()
  try:
    users, items = draw_interactions(config, seed=0)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  nnz = len(users)
  assert 0.8 * 20 * config.num_users < nnz < 1.6 * 20 * config.num_users
  assert users.nbytes + items.nbytes == 12 * nnz
  # Per-item tables (CDFs, permutation) plus a bounded multiple of the interactions.
  assert peak < 64 * config.num_items + 150 * nnz, peak


def test_load_synthetic_scalable_split():
  config = SyntheticConfig(num_users=2000, num_items=5000, num_clusters=20, mean_activity=20,
                           min_activity=5, max_activity=200)
  ds = load_synthetic(config, seed=0, scalable=True)
  assert (ds.num_users, ds.num_items) == (2000, 5000)
  assert ds.train.num_users == ds.test.num_users == 2000
  assert np.all(ds.test.lengths >= 1)  # min_activity 5: floor(0.2 * 5) = 1 test item
  assert np.all(ds.train.lengths + ds.valid.lengths + ds.test.lengths >= 5)


def test_activity_beyond_a_closed_cluster_is_refused():
  config = SyntheticConfig(num_users=50, num_items=100, num_clusters=10, affinity=1.0,
                           mean_activity=30, min_activity=30, max_activity=30)
  with pytest.raises(ValueError, match="affinity=1"):
    draw_interactions(config, seed=0)
