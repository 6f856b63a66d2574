"""The attacker interface: a malicious client has the shape of a benign one.

A benign client maps `(public, ctx, private state, key)` plus its local data to
`(private state', upload)`. An attacker does the same with no real data: its
"data" (targets, crafted users) is closed over by the builder, and it chooses the
rows it uploads. Attackers run vmapped in their own slots of the same jitted
round, and are shuffled into the epoch like benign clients.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PublicParams, PyTree


class Attack(NamedTuple):
  """Attributes:
    name: the attack's name.
    init: `(key, num_attackers, public) -> state`, every leaf `[num_attackers, ...]`.
    update: `(public, ctx, state, key) -> (state, ClientUpload)` for ONE attacker
      (the benign client's upload type).
    num_rows: the rows each attacker uploads (its `ClientUpload.row_item` length), when
      the attack fixes it (None: not stated); counted in the round's memory floor.
  """

  name: str
  init: Callable[[Array, int, PublicParams], PyTree]
  update: Callable[[PublicParams, PyTree, PyTree, Array], tuple[PyTree, ClientUpload]]
  num_rows: int | None = None
