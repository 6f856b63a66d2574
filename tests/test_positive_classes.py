"""Length classes cut by positives: the cut, the layout, and a run's invariance to them."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
from fedjax_rec.simulation import Simulator
from fedjax_rec.tasks.ncf import positive_classes
from tests.test_simulation import small_config


def _oracle_cost(positives, class_bound, ceiling, grain, overhead, max_parts):
  """Cheapest cost over every cut into at most `max_parts` contiguous parts."""
  cap = positives.shape[1]
  need = np.minimum(ceiling, np.ceil(positives.max(0) * positive_classes.MARGIN / grain)
                    * grain)
  need[0] = min(ceiling, max(need[0], class_bound))
  need = np.minimum.accumulate(need)
  best = np.inf
  for k in range(max_parts):
    for inner in itertools.combinations(range(1, cap), k):
      edges = (0,) + inner + (cap,)
      best = min(best, sum((b - a) * need[a] ** 2 + overhead
                           for a, b in zip(edges[:-1], edges[1:])))
  return best


@pytest.mark.parametrize("seed", range(6))
def test_cut_is_the_cheapest(seed):
  rng = np.random.default_rng(seed)
  cap = int(rng.integers(2, 9))
  positives = -np.sort(-rng.zipf(1.5, size=(5, cap)).clip(max=400), axis=1)
  bound = int(positives.max())
  ceiling = int(rng.choice([bound + 40, 10_000]))
  overhead = float(rng.choice([0.0, 100.0, 5000.0]))
  cut = positive_classes.cut_ranks(positives, bound, ceiling, 4, overhead, max_parts=3)
  want = _oracle_cost(positives, bound, ceiling, 4, overhead, 3)
  assert sum(cut.capacities) == cap and 1 <= len(cut.capacities) <= 3
  assert list(cut.bounds) == sorted(cut.bounds, reverse=True)
  # Every rank is bounded by the most seen there (with slack), never past the ceiling.
  slots = np.repeat(cut.bounds, cut.capacities)
  assert (slots >= positives.max(0)).all() and slots[0] >= bound and slots.max() <= ceiling
  got = sum(c * b ** 2 + overhead for c, b in zip(*cut))
  assert got == pytest.approx(want)


def test_arrange_keeps_the_clients_and_bounds_every_part():
  num_positives = np.array([50, 3, 9, 40, 2, 7, 30, 1])
  slots = (np.array([0, 1, 2, 3, -1], np.int32), np.array([4, 5, 6, 7], np.int32))
  cuts = {(0, 100, 5): positive_classes.Cut((1, 4), (56, 16))}
  out, lengths, bounds = positive_classes.arrange(slots, (100, 20), (56, 48), cuts,
                                                  num_positives)
  # User 3 (40 positives) overflows the second part's 16: it runs at the class's 56.
  assert lengths == (100, 100, 20) and bounds == (56, 56, 48)
  assert out[0].tolist() == [0] and out[1].tolist() == [3, 2, 1, -1]
  assert out[2].tolist() == [4, 5, 6, 7]  # an uncut class is left as it is
  light = np.array([0, 1, 2, 4, -1], np.int32)
  out, _, bounds = positive_classes.arrange((light, slots[1]), (100, 20), (56, 48), cuts,
                                            num_positives)
  assert bounds == (56, 16, 48) and out[1].tolist() == [2, 1, 4, -1]
  # A one-part cut keeps the slots' order and its static bound, or the draw's on overflow.
  for static, want in ((40, 40), (16, 48)):
    one = {(1, 20, 4): positive_classes.Cut((4,), (static,))}
    out, _, bounds = positive_classes.arrange(slots, (100, 20), (56, 48), one, num_positives)
    assert out[1].tolist() == [4, 5, 6, 7] and bounds == (56, want)


HEAVY = SyntheticConfig(num_users=160, num_items=300, num_clusters=4, mean_activity=10,
                        min_activity=3, max_activity=150)


def test_a_cut_run_equals_the_uncut_run_and_compiles_once():
  dataset = load_synthetic(HEAVY, seed=1)
  config = small_config(method="cl4fedrec", resample_negatives=True, num_negatives=2,
                        clients_per_round=40, max_buckets=2,
                        method_kwargs=(("num_synthetic_users", 4),
                                       ("synthetic_steps", 2)))
  cut, uncut = Simulator(config, dataset), Simulator(config, dataset)
  assert cut.data.cuts, "the heavy-tailed data should have a class worth cutting"
  uncut.data.cuts = {}
  states = [sim.init() for sim in (cut, uncut)]
  for _ in range(2):
    states = [sim.run_epoch(state)[0] for sim, state in zip((cut, uncut), states)]
  for a, b in zip(jax.tree.leaves(states[0].server.params), jax.tree.leaves(states[1].server.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6)
  np.testing.assert_allclose(np.asarray(states[0].clients.user_emb),
                             np.asarray(states[1].clients.user_emb), rtol=2e-4, atol=2e-6)
  assert cut.round_step._cache_size() == 1  # pylint: disable=protected-access


def test_methods_without_a_positive_term_are_not_cut():
  dataset = load_synthetic(HEAVY, seed=1)
  sim = Simulator(small_config(resample_negatives=True, num_negatives=2,
                               clients_per_round=40, max_buckets=2), dataset)
  assert sim.config.method == "original" and sim.data.cuts == {}
  # Their bound on positives is unused: it stays the lengths, whatever the draw.
  for epoch in range(3):
    sim.refresh_data(epoch)
    assert sim.data.pos_lengths(sim.plan.lengths) == sim.plan.lengths
