"""Static bounds on positives for the length classes, the heavy classes cut by them.

For methods with a term over a client's positive rows (`methods_cl.positive_rows`),
a length class also pads its clients' positives to a bound. The term costs `P²` per
client, so under fresh negatives the longest class, which holds every heavy user (on
the ML-1M pre-split 54 slots, with 190 to 1852 positives), paid the heaviest user's
`P²` in every slot: 18 times the real work. And a bound taken of each epoch's draw
moved with the draw (a class's heaviest fitting user changes), so the round compiled
again in about one epoch of three.

Each class gets a `Cut`: its clients, ordered by positives, fill parts of fixed sizes,
each with a static bound on positives; most classes have one part, the heavy ones up
to `MAX_PARTS`. The round holds the same clients in the same class, so results change
only in float order. Sizes and bounds are chosen once per run, before the first round,
from simulated rounds of the epoch-0 draw (`choose_cuts`), with `MARGIN` slack; a
resumed run chooses the same. A round whose clients exceed a part's bound runs that
part at the draw's bound of the class instead (`arrange`): always correct, at the
price of one more compilation of the round.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fedjax_rec import scheduling

# Simulated epochs per run (`choose_cuts`), the slack on each part's bound, the most
# parts per class, and the least share of the round's cost a part must save.
NUM_DEALS = 64
MARGIN = 1.25
MAX_PARTS = 4
MIN_SAVING = 0.02


class Cut(NamedTuple):
  """A class's parts, heaviest first: slot counts and bounds on positives."""

  capacities: tuple[int, ...]
  bounds: tuple[int, ...]


def cut_ranks(positives: np.ndarray, class_bound: int, ceiling: int, grain: int,
              overhead: float, max_parts: int = MAX_PARTS) -> Cut:
  """The cheapest cut of a class's slots, from its positives in simulated rounds.

  Args:
    positives: [rounds, capacity] each round's positives in the class, descending
      (0 for an empty slot).
    class_bound: the most positives of any client that fits the class (the top
      part's least bound).
    ceiling: no bound exceeds it (the class's row length, the most positives).
    grain: bounds are rounded up to multiples of it.
    overhead: the cost of a part, in units of `positives²` (a part is one more
      vmapped block to run and compile).
    max_parts: most parts.

  Returns:
    The cut minimising `Σ capacity · bound²` plus `overhead` per part (fewest parts
    among equals).
  """
  cap = positives.shape[1]
  seen = positives.max(axis=0).astype(np.float64) * MARGIN  # rank k's most, with slack
  need = np.minimum(ceiling, np.ceil(seen / grain) * grain).astype(np.int64)
  need[0] = min(ceiling, max(need[0], class_bound))
  need = np.minimum.accumulate(need)  # non-increasing: a part's first rank bounds it
  edges = scheduling.cheapest_segments(np.arange(cap + 1), need.astype(np.float64) ** 2,
                                      max_parts, overhead)
  return Cut(tuple(b - a for a, b in zip(edges[:-1], edges[1:])),
             tuple(int(need[a]) for a in edges[:-1]))


def choose_cuts(num_rows: np.ndarray, num_positives: np.ndarray, plan: scheduling.BucketPlan,
                class_bounds: tuple[int, ...], clients_per_round: int, round_assignment: str,
                grain: int, seed: int) -> dict[tuple[int, int, int], Cut]:
  """Each class's cut, keyed by `(index, length, capacity)` in `plan`.

  The classes are filled as the driver fills them (`scheduling.fill_slots`) in
  `NUM_DEALS` simulated epochs of rounds; each part's bound is the most positives
  seen at its first rank, with `MARGIN` slack. A part must save `MIN_SAVING` of the
  round's padded `Σ positives²`, so only the classes that dominate it have several.
  """
  rng = np.random.default_rng([seed, 6151])
  per_class = [[] for _ in plan.lengths]
  for _ in range(NUM_DEALS):
    if round_assignment == "stratified":
      rounds = scheduling.stratified_rounds(num_rows, clients_per_round, rng)
    else:
      rounds = scheduling.shuffle_rounds(len(num_rows), clients_per_round, rng)
    for users in rounds:
      if not plan.fits(np.sort(num_rows[users])[::-1]):
        continue
      for c, slot_user in enumerate(scheduling.fill_slots(num_rows, users, plan)):
        per_class[c].append(np.sort(_positives(slot_user, num_positives))[::-1])
  overhead = MIN_SAVING * sum(c * float(b) ** 2 for c, b in zip(plan.capacities, class_bounds))
  most = -(-int(num_positives.max()) // grain) * grain
  return {(c, length, cap): cut_ranks(np.stack(per_class[c]), class_bounds[c],
                                      min(length, most), grain, overhead)
          for c, (length, cap) in enumerate(zip(plan.lengths, plan.capacities))
          if per_class[c]}


def _positives(slot_user: np.ndarray, num_positives: np.ndarray) -> np.ndarray:
  return np.where(slot_user >= 0, num_positives[np.maximum(slot_user, 0)], 0)


def arrange(slots: tuple[np.ndarray, ...], lengths: tuple[int, ...],
            class_bounds: tuple[int, ...], cuts: dict, num_positives: np.ndarray):
  """A round's classes with their static bounds: `(slots, lengths, pos_lengths)`.

  A class of several parts has its clients ordered by positives (descending; stable,
  so ties keep their slots' order) and dealt to its parts. A part whose clients
  exceed its bound takes the class's bound of this draw (`class_bounds`), as does a
  class without a cut.
  """
  out_slots, out_lengths, out_bounds = [], [], []
  for c, (slot_user, length, bound) in enumerate(zip(slots, lengths, class_bounds)):
    cut = cuts.get((c, length, len(slot_user)))
    if cut is None:
      out_slots.append(slot_user)
      out_lengths.append(length)
      out_bounds.append(bound)
      continue
    pos = _positives(slot_user, num_positives)
    if len(cut.capacities) > 1:
      order = np.argsort(-pos, kind="stable")
      slot_user, pos = slot_user[order], pos[order]
    start = 0
    for cap, part_bound in zip(cut.capacities, cut.bounds):
      if pos[start:start + cap].max() > part_bound:
        part_bound = bound
      out_slots.append(slot_user[start:start + cap])
      out_lengths.append(length)
      out_bounds.append(int(part_bound))
      start += cap
  return tuple(out_slots), tuple(out_lengths), tuple(out_bounds)
