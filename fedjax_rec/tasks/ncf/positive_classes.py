"""Length classes cut by positives, for methods with a term quadratic in them.

A length class pads every client to its longest rows and to its most positives. The
contrastive item term (`methods_cl.positive_rows`) costs `P²` per client, so under
fresh negatives the longest class, which holds every heavy user (on the ML-1M
pre-split 54 slots, with 190 to 1852 positives), pays the heaviest user's `P²` in
every slot: 18 times the real work.

Within such a class a round's clients are ordered by positives and cut into parts of
fixed sizes, each with its own static bound on positives (`Cut`). The round holds the
same clients in the same class, so results change only in float order. The sizes and
bounds are chosen once per run, before the first round, from simulated rounds of the
epoch-0 draw (`choose_cuts`); a resumed run chooses the same. A round whose clients
exceed a part's bound runs that part at the class's bound instead (`arrange`): always
correct, at the price of one more compilation of the round.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fedjax_rec import scheduling

# Simulated epochs per run (`choose_cuts`), the slack on each part's bound, the most
# parts per class, and the least share of the round's cost a part must save.
NUM_DEALS = 8
MARGIN = 1.1
MAX_PARTS = 4
MIN_SAVING = 0.02


class Cut(NamedTuple):
  """A class's parts, heaviest first: slot counts and bounds on positives."""

  capacities: tuple[int, ...]
  bounds: tuple[int, ...]


def cut_ranks(positives: np.ndarray, class_bound: int, grain: int, overhead: float,
              max_parts: int = MAX_PARTS) -> Cut | None:
  """The cheapest cut of a class's slots, from its positives in simulated rounds.

  Args:
    positives: [rounds, capacity] each round's positives in the class, descending
      (0 for an empty slot).
    class_bound: the class's bound on positives (a part can never need more).
    grain: bounds are rounded up to multiples of it.
    overhead: the cost of a part, in units of `positives²` (a part is one more
      vmapped block to run and compile).
    max_parts: most parts.

  Returns:
    The cut minimising `Σ capacity · bound²` plus `overhead` per part, or None when a
    single part is as cheap.
  """
  cap = positives.shape[1]
  seen = positives.max(axis=0).astype(np.float64) * MARGIN  # rank k's most, with slack
  need = np.minimum(class_bound, np.ceil(seen / grain) * grain).astype(np.int64)
  need[0] = class_bound
  need = np.minimum.accumulate(need)  # non-increasing: a part's first rank bounds it
  parts = max(1, min(max_parts, cap))
  # cost[k, j]: cheapest cover of ranks [0, j) by k parts; cut[k, j]: its last start.
  cost = np.full((parts + 1, cap + 1), np.inf)
  cut = np.zeros((parts + 1, cap + 1), np.int64)
  cost[0, 0] = 0.0
  starts = np.arange(cap)
  for k in range(1, parts + 1):
    for j in range(1, cap + 1):
      cand = cost[k - 1, :j] + (j - starts[:j]) * need[:j].astype(np.float64) ** 2 + overhead
      cut[k, j] = int(np.argmin(cand))
      cost[k, j] = cand[cut[k, j]]
  k = int(np.argmin(cost[1:, cap])) + 1
  if k == 1:
    return None
  edges = [cap]
  while k > 0:
    edges.append(int(cut[k, edges[-1]]))
    k -= 1
  edges = edges[::-1]
  return Cut(tuple(b - a for a, b in zip(edges[:-1], edges[1:])),
             tuple(int(need[a]) for a in edges[:-1]))


def choose_cuts(num_rows: np.ndarray, num_positives: np.ndarray, plan: scheduling.BucketPlan,
                class_bounds: tuple[int, ...], clients_per_round: int, round_assignment: str,
                grain: int, seed: int) -> dict[tuple[int, int, int], Cut]:
  """Each class's cut worth making, keyed by `(index, length, capacity)` in `plan`.

  The classes are filled as the driver fills them (`scheduling.fill_slots`) in
  `NUM_DEALS` simulated epochs of rounds; each part's bound is the most positives
  seen at its first rank, with `MARGIN` slack. A part must save `MIN_SAVING` of the
  round's padded `Σ positives²`, so only the classes that dominate it are cut.
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
  cuts = {}
  for c, (length, cap) in enumerate(zip(plan.lengths, plan.capacities)):
    if cap < 2 or not per_class[c]:
      continue
    cut = cut_ranks(np.stack(per_class[c]), class_bounds[c], grain, overhead)
    if cut is not None:
      cuts[(c, length, cap)] = cut
  return cuts


def _positives(slot_user: np.ndarray, num_positives: np.ndarray) -> np.ndarray:
  return np.where(slot_user >= 0, num_positives[np.maximum(slot_user, 0)], 0)


def arrange(slots: tuple[np.ndarray, ...], lengths: tuple[int, ...],
            class_bounds: tuple[int, ...], cuts: dict, num_positives: np.ndarray):
  """A round's classes with the cut ones split: `(slots, lengths, pos_lengths)`.

  A cut class's clients are ordered by positives (descending; stable, so ties keep
  their slots' order) and dealt to its parts; a part whose clients exceed its bound
  takes the class's bound.
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
    order = np.argsort(-pos, kind="stable")
    slot_user, pos = slot_user[order], pos[order]
    start = 0
    for cap, part_bound in zip(cut.capacities, cut.bounds):
      part_bound = min(part_bound, bound)
      if pos[start] > part_bound:
        part_bound = bound
      out_slots.append(slot_user[start:start + cap])
      out_lengths.append(length)
      out_bounds.append(int(part_bound))
      start += cap
  return tuple(out_slots), tuple(out_lengths), tuple(out_bounds)
