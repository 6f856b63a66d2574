"""Target item selection for the attacks (and for ER@K).

`select_targets(popularity, mode, seed)` reads a one-line spec:

- `least_popular`: the single least popular item (ties: the lowest id).
- `least_popular:K`: the K least popular items (ties: lower ids first), in that order.
- `items:3,17,42`: an explicit list, kept in the given order (distinct, in range).
- `band:LO:HI:K`: K items sampled with `seed`, without replacement, among the items
  whose popularity percentile lies in `[LO, HI]` (0 <= LO <= HI <= 100); returned
  sorted. The percentile of an item is the share (in %) of the catalogue that is
  strictly less popular than it, so tied items share a percentile: the least
  popular items have 0, and `band:0:10:K` draws among the bottom tenth.

The threat models' three target choices are `least_popular` (the least popular item),
random unpopular items, `band:0:50:K` (K items drawn with the run's seed among the least
popular half: percentile <= 50, items tied at the boundary included), and a given set,
`items:...`. The flags record the spec
in the run's config as `target_choice` (beside the ids, `targets`) unless it is the
default `least_popular`.

The popularity counts come from the caller (docs/design.md: train + test interactions for
the `ahum-reference` preset, `dataset.item_popularity(include_test=True)`).
Malformed specs raise a one-line ValueError naming the offending token.
"""

from __future__ import annotations

import numpy as np


def _int_token(token: str, what: str, spec: str) -> int:
  try:
    return int(token.strip())
  except ValueError:
    raise ValueError(f"target spec {spec!r}: {what} {token!r} is not an integer") from None


def _float_token(token: str, what: str, spec: str) -> float:
  try:
    value = float(token.strip())
  except ValueError:
    raise ValueError(f"target spec {spec!r}: {what} {token!r} is not a number") from None
  if not np.isfinite(value):
    raise ValueError(f"target spec {spec!r}: {what} {token!r} is not finite")
  return value


def popularity_percentile(popularity: np.ndarray) -> np.ndarray:
  """[n] percent of the items strictly less popular than each item."""
  pop = np.asarray(popularity)
  sorted_pop = np.sort(pop)
  return 100.0 * np.searchsorted(sorted_pop, pop, side="left") / pop.size


def select_targets(popularity: np.ndarray, mode: str, seed: int = 0) -> np.ndarray:
  """Target item ids (int64 array) for the spec `mode`; see the module docstring."""
  pop = np.asarray(popularity)
  if pop.ndim != 1 or pop.size == 0:
    raise ValueError(f"popularity must be a non-empty 1-D array, got shape {pop.shape}")
  n = pop.size
  spec = str(mode).strip()
  head, sep, rest = spec.partition(":")
  head = head.strip()
  order = np.argsort(pop, kind="stable")  # least popular first, ties by id

  if head == "least_popular":
    if not sep:
      return order[:1].astype(np.int64)
    count = _int_token(rest, "count", spec)
    if not 1 <= count <= n:
      raise ValueError(f"target spec {spec!r}: count {rest.strip()!r} must be in [1, {n}]")
    return order[:count].astype(np.int64)

  if head == "items":
    tokens = rest.split(",") if rest.strip() else []
    if not tokens:
      raise ValueError(f"target spec {spec!r}: no item ids after 'items:'")
    ids = []
    for token in tokens:
      item = _int_token(token, "item id", spec)
      if not 0 <= item < n:
        raise ValueError(f"target spec {spec!r}: item id {token.strip()!r} is out of range "
                         f"[0, {n})")
      if item in ids:
        raise ValueError(f"target spec {spec!r}: item id {token.strip()!r} is repeated")
      ids.append(item)
    return np.asarray(ids, np.int64)

  if head == "band":
    parts = rest.split(":") if sep else []
    if len(parts) != 3:
      raise ValueError(f"target spec {spec!r}: expected band:LO:HI:K, got {len(parts)} "
                       f"field(s) after 'band'")
    lo = _float_token(parts[0], "LO", spec)
    hi = _float_token(parts[1], "HI", spec)
    count = _int_token(parts[2], "K", spec)
    if not 0 <= lo <= 100:
      raise ValueError(f"target spec {spec!r}: LO {parts[0].strip()!r} must be in [0, 100]")
    if not lo <= hi <= 100:
      raise ValueError(f"target spec {spec!r}: HI {parts[1].strip()!r} must be in "
                       f"[LO, 100]")
    if count < 1:
      raise ValueError(f"target spec {spec!r}: K {parts[2].strip()!r} must be >= 1")
    pct = popularity_percentile(pop)
    eligible = np.flatnonzero((pct >= lo) & (pct <= hi))
    if eligible.size < count:
      raise ValueError(f"target spec {spec!r}: K {parts[2].strip()!r} exceeds the "
                       f"{eligible.size} items in the percentile band [{lo:g}, {hi:g}]")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(eligible, size=count, replace=False)).astype(np.int64)

  raise ValueError(f"target spec {spec!r}: unknown mode {head!r}; expected least_popular, "
                   "least_popular:K, items:I,J,... or band:LO:HI:K")
