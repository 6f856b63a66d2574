"""The attacker interface: a malicious client has the shape of a benign one.

A benign client maps `(public, ctx, private state, key)` plus its local data to
`(private state', upload)`. An attacker does the same with no real data: its
"data" (targets, crafted users) is closed over by the builder, and it chooses the
rows it uploads. Attackers run vmapped in their own slots of the same jitted
round, and are shuffled into the epoch like benign clients.

An attack that crafts its upload from the round's benign uploads (LIE, Fang: full
knowledge of the other clients' updates) sets `needs_benign`; the round then passes it
`benign.BenignStats`, statistics of the benign *uploads* only (never a client's private
state), as a fifth argument. Other attacks never see them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PublicParams, PyTree

# `Attack.num_rows` of an attack that uploads one row per item of the catalogue.
ALL_ITEMS = -1


class Attack(NamedTuple):
  """Attributes:
    name: the attack's name.
    init: `(key, num_attackers, public) -> state`, every leaf `[num_attackers, ...]`.
    update: `(public, ctx, state, key) -> (state, ClientUpload)` for ONE attacker
      (the benign client's upload type); with `needs_benign`, `(public, ctx, state, key,
      benign) -> (state, ClientUpload)`.
    num_rows: the rows each attacker uploads (its `ClientUpload.row_item` length), when
      the attack fixes it (None: not stated; `ALL_ITEMS`: one per item of the
      catalogue); counted in the round's memory floor (`upload_rows`).
    needs_benign: whether `update` takes the round's `benign.BenignStats`.
    needs_distances: whether those statistics include the `benign.KrumView` (the
      benign clients' pairwise distances; with `needs_benign`).
  """

  name: str
  init: Callable[[Array, int, PublicParams], PyTree]
  update: Callable[..., tuple[PyTree, ClientUpload]]
  num_rows: int | None = None
  needs_benign: bool = False
  needs_distances: bool = False


def upload_rows(attack: Attack | None, num_items: int) -> int:
  """Rows one attacker of `attack` uploads on a catalogue of `num_items` (0: unknown)."""
  rows = getattr(attack, "num_rows", None)
  if rows == ALL_ITEMS:
    return int(num_items)
  return int(rows or 0)
