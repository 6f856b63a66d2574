"""Pytrees shared by clients, aggregators and the server.

The split between what a client keeps and what it sends is the privacy boundary of
the simulator: `ClientStates` (private user embeddings and their optimizer state)
only ever flows through client code; server code receives `Uploads` and
`PublicParams`, never `ClientStates`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

Array = jax.Array
PyTree = Any


class PublicParams(NamedTuple):
  """Parameters the server owns and broadcasts.

  Attributes:
    item_emb: [num_items, d] item embedding table `V`.
    net: the interaction network `Θ` (a Flax params pytree): the NCF MLP, or the
      sequence encoder.
  """

  item_emb: Array
  net: PyTree


class ClientStates(NamedTuple):
  """Private per-user state, stacked over users. Never passed to server code.

  Attributes:
    user_emb: [num_users, d] private user embeddings.
    opt_state: optax state of the private optimizer, every leaf [num_users, ...].
  """

  user_emb: Array
  opt_state: PyTree


class Uploads(NamedTuple):
  """The public updates of one round, in sparse (row, value) form.

  Rows of every client are concatenated along one axis `M` (all length buckets of
  the round, then the malicious bucket). Each client uploads a given item at most
  once. Clients are the round's `C` slots; padded slots have `client_mask` False.

  Attributes:
    row_client: [M] int32 slot of the uploading client (0..C-1).
    row_item: [M] int32 item id of the row.
    row_grad: [M, d] the uploaded gradient of that item row.
    row_mask: [M] bool, True for real rows.
    net: gradient of `Θ`, every leaf [C, ...].
    client_weight: [C] float32 sample count of each client (0 for padding).
    client_mask: [C] bool, True for real clients.
    client_malicious: [C] bool, True for attacker slots (for metrics only; no
      aggregator may read it).
  """

  row_client: Array
  row_item: Array
  row_grad: Array
  row_mask: Array
  net: PyTree
  client_weight: Array
  client_mask: Array
  client_malicious: Array


class Aggregate(NamedTuple):
  """The aggregated public update of a round.

  Attributes:
    item_grad: [num_items, d] aggregated gradient of `V` (zero on untouched rows).
    item_touched: [num_items] bool, rows that received an update this round.
    net: aggregated gradient of `Θ`.
  """

  item_grad: Array
  item_touched: Array
  net: PyTree
