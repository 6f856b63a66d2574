"""Round scheduling: which clients train in which round, and in which padded slots.

Algorithm 1 shuffles clients, so every chunk holds a few very heavy users. Padding a
chunk to its longest user wastes most of the compute; instead each round is cut into a
few length classes with a fixed number of slots each, a `BucketPlan`. A round's shapes
depend only on the plan, so a run compiles once. Task-agnostic: it sees only each
client's length (`TaskData.num_rows`).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class BucketPlan:
  """Length classes of a round, longest first.

  Attributes:
    lengths: padded sample length of each class (descending).
    capacities: client slots of each class; they sum to the round's slots.
  """

  lengths: tuple[int, ...]
  capacities: tuple[int, ...]

  @property
  def padded_samples(self) -> int:
    return int(sum(l * c for l, c in zip(self.lengths, self.capacities)))

  @property
  def num_slots(self) -> int:
    return int(sum(self.capacities))

  def fits(self, sorted_lengths: np.ndarray) -> bool:
    """Whether clients with these lengths (descending) fit the slots in order."""
    slot_len = np.repeat(np.asarray(self.lengths), self.capacities)[:len(sorted_lengths)]
    return len(sorted_lengths) <= self.num_slots and bool(np.all(sorted_lengths <= slot_len))


def length_grid(max_length: int, growth: float = 1.5, min_length: int = 8,
                multiple: int = 8) -> np.ndarray:
  """Ascending class lengths: `min_length · growth^j` rounded up to `multiple`."""
  if growth <= 1:
    raise ValueError(f"bucket growth must be > 1, got {growth}")
  grid = [min_length]
  while grid[-1] < max_length:
    nxt = int(np.ceil(grid[-1] * growth / multiple) * multiple)
    grid.append(max(nxt, grid[-1] + multiple))
  return np.asarray(grid, np.int64)


def exact_plan(lengths: np.ndarray, num_slots: int, grid: np.ndarray) -> BucketPlan:
  """The cheapest plan on `grid` that fits exactly these client lengths."""
  cls = np.searchsorted(grid, lengths)  # smallest class that fits
  counts = np.bincount(cls, minlength=len(grid))[::-1]
  caps = counts.copy()
  caps[-1] += num_slots - len(lengths)
  keep = caps > 0
  return BucketPlan(tuple(int(x) for x in grid[::-1][keep]),
                    tuple(int(x) for x in caps[keep]))


def plan_buckets(lengths: np.ndarray, num_slots: int, *, growth: float = 1.5,
                 num_draws: int = 512, seed: int = 0) -> BucketPlan:
  """A fixed plan that fits (almost) every uniformly random chunk of clients.

  For Algorithm 1's plain shuffle-and-cut. For each class boundary, the cumulative
  slot count at or above it is the most clients above that boundary seen in
  `num_draws` random chunks. Chunks that do not fit (rare) are given an
  `exact_plan` of their own at run time (one more compilation each).

  Args:
    lengths: [num_clients] sample counts of all clients.
    num_slots: clients per round.
    growth: ratio between consecutive class lengths.
    num_draws: random chunks used to size the classes.
    seed: seeds the draws.

  Returns:
    The plan.
  """
  lengths = np.asarray(lengths, np.int64)
  grid = length_grid(int(max(lengths.max(initial=1), 1)), growth)
  num_slots = min(num_slots, len(lengths))
  rng = np.random.default_rng(seed)
  cls = np.searchsorted(grid, lengths)
  need = np.zeros(len(grid), np.int64)  # clients needing class >= j, max over draws
  for _ in range(num_draws):
    chunk = rng.choice(len(lengths), size=num_slots, replace=False)
    counts = np.bincount(cls[chunk], minlength=len(grid))
    need = np.maximum(need, np.cumsum(counts[::-1])[::-1])
  return _plan_from_need(grid, need, num_slots)


def _plan_from_need(grid: np.ndarray, need: np.ndarray, num_slots: int) -> BucketPlan:
  need = need.copy()
  need[0] = num_slots
  caps = need - np.append(need[1:], 0)
  keep = caps > 0
  return BucketPlan(tuple(int(x) for x in grid[keep][::-1]),
                    tuple(int(x) for x in caps[keep][::-1]))


def num_rounds(num_clients: int, clients_per_round: int) -> int:
  return -(-num_clients // clients_per_round)


def shuffle_rounds(num_clients: int, clients_per_round: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
  """Algorithm 1, line 4: shuffle all clients, cut into consecutive chunks."""
  perm = rng.permutation(num_clients)
  return [perm[i:i + clients_per_round] for i in range(0, num_clients, clients_per_round)]


def stratified_rounds(lengths: np.ndarray, clients_per_round: int,
                      rng: np.random.Generator) -> list[np.ndarray]:
  """Every client once, in rounds with near-identical length profiles.

  Clients are ordered by length (ties broken at random) and cut into blocks of
  `R` (the number of rounds); each block deals one client to every round, in a
  random order. Each round is still a random set of co-participants and every
  client trains once per epoch, but every round holds at most `ceil(m / R)` of
  the `m` longest clients, so `stratified_plan` fits every round exactly.
  """
  lengths = np.asarray(lengths, np.int64)
  n = len(lengths)
  r = num_rounds(n, clients_per_round)
  order = np.lexsort((rng.random(n), -lengths))
  padded = np.full(r * num_rounds(n, r), -1, np.int64)
  padded[:n] = order
  blocks = padded.reshape(-1, r)
  deal = np.argsort(rng.random(blocks.shape), axis=1)
  dealt = np.take_along_axis(blocks, deal, axis=1)  # [num_blocks, R]
  return [col[col >= 0] for col in dealt.T]


def stratified_plan(lengths: np.ndarray, clients_per_round: int, *,
                    max_buckets: int = 8, multiple: int = 8) -> BucketPlan:
  """The cheapest plan with at most `max_buckets` classes for `stratified_rounds`.

  Slot `p` of every round holds one client of block `p`, at most as long as the
  block's longest client, so the slot lengths are known exactly. Cutting these
  (descending) slot lengths into contiguous classes that minimise the padded
  total is a small dynamic programme. A cheapest plan with the fewest classes
  only cuts where the slot length changes (a cut inside a run of equal lengths
  can move to the run's start at no cost), so the programme runs over those
  runs: O(max_buckets · runs²) with runs <= max_length / multiple, whatever the
  round size.
  """
  lengths = np.sort(np.asarray(lengths, np.int64))[::-1]
  n = len(lengths)
  r = num_rounds(n, clients_per_round)
  need = -(-np.maximum(lengths[::r], 1) // multiple) * multiple  # [slots] descending
  slots = len(need)
  starts = np.flatnonzero(np.r_[True, need[1:] != need[:-1]])  # [runs]
  edge = np.append(starts, slots)  # run j covers slots edge[j]:edge[j + 1]
  bounds = cheapest_segments(edge, need[starts], max_buckets)
  return BucketPlan(tuple(int(need[a]) for a in bounds[:-1]),
                    tuple(int(b - a) for a, b in zip(bounds[:-1], bounds[1:])))


def cheapest_segments(edge: np.ndarray, weight: np.ndarray, max_parts: int,
                      overhead: float = 0.0) -> list[int]:
  """Cuts runs of slots into at most `max_parts` contiguous segments at least cost.

  Run `j` covers slots `edge[j]:edge[j + 1]`; a segment starting at run `a` costs
  `weight[a]` per slot it covers, plus `overhead`. Returns the segments' slot edges
  (`[0, ..., edge[-1]]`); among equally cheap cuts, the fewest segments. A small
  dynamic programme, O(max_parts · runs²).
  """
  runs = len(edge) - 1
  k_max = max(1, min(max_parts, runs))
  weight = np.asarray(weight, np.float64)
  # cost[k, j]: least cost of the first j runs in k segments; cut[k, j]: the last start.
  cost = np.full((k_max + 1, runs + 1), np.inf)
  cut = np.zeros((k_max + 1, runs + 1), np.int64)
  cost[0, 0] = 0.0
  for k in range(1, k_max + 1):
    for j in range(1, runs + 1):
      cand = cost[k - 1, :j] + (edge[j] - edge[:j]) * weight[:j] + overhead
      cut[k, j] = int(np.argmin(cand))
      cost[k, j] = cand[cut[k, j]]
  k = int(np.argmin(cost[1:, runs])) + 1
  bounds = [runs]
  while k > 0:
    bounds.append(int(cut[k, bounds[-1]]))
    k -= 1
  return [int(edge[j]) for j in bounds[::-1]]


def fill_slots(num_rows: np.ndarray, users: np.ndarray, plan: BucketPlan) -> tuple[np.ndarray, ...]:
  """Each class's `[capacity]` user ids (longest users first; -1 for empty slots)."""
  users = np.asarray(users, np.int64)
  users = users[np.argsort(-num_rows[users], kind="stable")]
  out, start = [], 0
  for cap in plan.capacities:
    slot_user = np.full(cap, -1, np.int32)
    chosen = users[start:start + cap]
    slot_user[:len(chosen)] = chosen
    start += cap
    out.append(slot_user)
  if start < len(users):
    raise ValueError(f"{len(users)} clients do not fit a plan of {plan.num_slots} slots")
  return tuple(out)


def merge_plans(plans: list[BucketPlan]) -> BucketPlan:
  """The plan whose every slot is as long as that slot in each of `plans`.

  Clients that fit any one of the plans fit the merge, so rounds of several
  independent runs share its shapes.

  Raises:
    ValueError: the plans have different slot counts.
  """
  if len({p.num_slots for p in plans}) != 1:
    raise ValueError(f"plans of {sorted({p.num_slots for p in plans})} slots cannot merge")
  slot_len = np.max([np.repeat(p.lengths, p.capacities) for p in plans], axis=0)
  starts = np.flatnonzero(np.diff(slot_len, prepend=-1))
  caps = np.diff(np.append(starts, len(slot_len)))
  return BucketPlan(tuple(int(x) for x in slot_len[starts]), tuple(int(c) for c in caps))
