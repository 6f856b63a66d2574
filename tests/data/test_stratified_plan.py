"""`stratified_plan` over runs of equal slot lengths equals the programme over every slot."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fedjax_rec import scheduling


def plan_over_every_slot(lengths, clients_per_round, max_buckets, multiple):
  """The O(max_buckets · slots²) programme: cuts allowed between any two slots."""
  lengths = np.sort(np.asarray(lengths, np.int64))[::-1]
  r = scheduling.num_rounds(len(lengths), clients_per_round)
  need = -(-np.maximum(lengths[::r], 1) // multiple) * multiple
  slots = len(need)
  k_max = max(1, min(max_buckets, slots))
  cost = np.full((k_max + 1, slots + 1), np.inf)
  cut = np.zeros((k_max + 1, slots + 1), np.int64)
  cost[0, 0] = 0.0
  idx = np.arange(slots)
  for k in range(1, k_max + 1):
    for j in range(1, slots + 1):
      cand = cost[k - 1, :j] + (j - idx[:j]) * need[:j]
      cut[k, j] = int(np.argmin(cand))
      cost[k, j] = cand[cut[k, j]]
  k = int(np.argmin(cost[1:, slots])) + 1
  bounds = [slots]
  while k > 0:
    bounds.append(cut[k, bounds[-1]])
    k -= 1
  bounds = bounds[::-1]
  return (tuple(int(need[a]) for a in bounds[:-1]),
          tuple(int(b - a) for a, b in zip(bounds[:-1], bounds[1:])))


@pytest.mark.parametrize("case", range(60))
def test_equals_the_programme_over_every_slot(case):
  rng = np.random.default_rng(case)
  n = int(rng.integers(1, 1500))
  b = int(rng.integers(1, n + 5))
  lengths = rng.integers(0, int(rng.integers(1, 300)), n)
  max_buckets, multiple = int(rng.integers(1, 14)), int(rng.choice([1, 4, 8]))
  plan = scheduling.stratified_plan(lengths, b, max_buckets=max_buckets, multiple=multiple)
  assert (plan.lengths, plan.capacities) == plan_over_every_slot(lengths, b, max_buckets,
                                                                 multiple)


def test_large_rounds_plan_fast():
  rng = np.random.default_rng(0)
  lengths = np.clip(rng.lognormal(np.log(70), 0.8, 300_000), 25, 1500).astype(np.int64)
  t0 = time.perf_counter()
  plan = scheduling.stratified_plan(lengths, 65536, max_buckets=12)
  assert time.perf_counter() - t0 < 5.0  # every-slot programme: minutes
  assert plan.num_slots <= 65536 and len(plan.lengths) <= 12
