"""Client-level distances and the Krum-based client selections (Multi-Krum, Bulyan).

Multi-Krum and Bulyan compare whole clients, as in their papers: client `c` is the dense
vector of every item row it uploaded (zero on the rows it did not upload) followed by its
flattened MLP gradient. Distances come from the Gram matrix:

    |x_a - x_b|^2 = |x_a|^2 + |x_b|^2 - 2 x_a.x_b,
    x_a.x_b = sum over the items both uploaded of g_ai.g_bi  +  mlp_a.mlp_b.

The row part of the [C, C] Gram matrix is, for sparse rounds, a scatter-add of each
item's [n, n] Gram of its uploaders, over the dense item blocks of `item_blocks.py`
(work about `sum_i n_i^2 d`, memory one block plus [C, C]); for dense rounds (row
capacity at least `DENSE_SHARE` of the client x item grid) a sum of matmuls over chunks
of items, each chunk's rows scattered into a bounded dense [C, chunk * d]. The MLP part
is a matmul of the clients' MLP gradients centred at their mean (distances do not change;
the centring keeps the identity accurate). Distances are clamped at 0 and symmetrized;
float32 with HIGHEST matmul precision. The row part is not centred, so two
near-identical clients with large rows get a distance accurate to about 1e-7 of their
squared norms, not better.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from fedjax_rec.aggregators.base import client_index, flatten_clients
from fedjax_rec.aggregators.item_blocks import (
    default_block_items, fold_item_blocks, group_rows)
from fedjax_rec.aggregators.krum import _TIE_RTOL, krum_scores
from fedjax_rec.types import Array, Uploads


# The row part is a dense matmul where the round's row capacity covers at least this
# share of the client x item grid: there the per-item Grams' scatter into [C, C] costs
# more than the dense product's extra flops (a dense round has few items per client it
# does not upload).
DENSE_SHARE = 0.35
# Floats of one dense [C, items, d] chunk (64 MiB: on ML-1M rounds of 256 clients two
# chunks measured faster than one of 128 MiB, BENCHMARKS.md).
_DENSE_CHUNK_FLOATS = 1 << 24


def client_sq_dists(uploads: Uploads, num_items: int, dense: bool | None = None) -> Array:
  """[C, C] squared L2 distances between the clients' whole uploads (validated uploads).

  Only accepted clients (`client_mask`) are meaningful; other entries are arbitrary.
  `dense` picks the row part's method (None: by `DENSE_SHARE`, a static choice): the
  per-item Grams of `item_blocks.py`, or dense chunks of items, each `[C, chunk * d]`,
  multiplied by its transpose.
  """
  num_clients = uploads.client_mask.shape[0]
  num_rows = uploads.row_grad.shape[0]
  if dense is None:
    dense = num_rows >= DENSE_SHARE * num_clients * num_items
  gram = (_dense_row_gram if dense else _item_row_gram)(uploads, num_items)
  flat, _ = flatten_clients(uploads.net, num_clients)
  mask = uploads.client_mask
  flat = jnp.where(mask[:, None], flat, 0.0)
  mean = jnp.sum(flat, axis=0) / jnp.maximum(jnp.sum(mask), 1).astype(flat.dtype)
  centred = jnp.where(mask[:, None], flat - mean, 0.0)
  gram = gram + jnp.matmul(centred, centred.T, precision=lax.Precision.HIGHEST)
  sq = jnp.diagonal(gram)
  dist = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
  return 0.5 * (dist + dist.T)


def _dense_row_gram(uploads: Uploads, num_items: int) -> Array:
  """[C, C] Gram of the clients' dense row vectors, built chunk by chunk of items."""
  num_clients = uploads.client_mask.shape[0]
  dim = uploads.row_grad.shape[1]
  chunk = max(1, min(num_items, _DENSE_CHUNK_FLOATS // max(num_clients * dim, 1)))
  clients = jnp.where(uploads.row_mask, uploads.row_client, num_clients)  # padding: dropped

  def add_chunk(gram, start):
    local = uploads.row_item - start
    who = jnp.where((local >= 0) & (local < chunk), clients, num_clients)
    x = jnp.zeros((num_clients, chunk, dim), uploads.row_grad.dtype).at[
        who, jnp.clip(local, 0, chunk - 1)].add(uploads.row_grad, mode="drop")
    x = x.reshape(num_clients, chunk * dim)
    return gram + jnp.matmul(x, x.T, precision=lax.Precision.HIGHEST), None

  starts = jnp.arange(0, num_items, chunk, dtype=jnp.int32)
  init = jnp.zeros((num_clients, num_clients), jnp.float32)
  if len(starts) == 1:
    return add_chunk(init, starts[0])[0]
  return lax.scan(add_chunk, init, starts)[0]


def _item_row_gram(uploads: Uploads, num_items: int) -> Array:
  """[C, C] Gram of the clients' rows as a scatter-add of each item's uploader Gram."""
  num_clients = uploads.client_mask.shape[0]
  groups = group_rows(uploads, num_items)
  clients = jnp.concatenate([client_index(uploads), jnp.full((1,), num_clients, jnp.int32)])
  dim = uploads.row_grad.shape[1]

  def block(gram, x, present, index):
    del present  # absent slots hold zeros and point at the spare client
    g = jnp.einsum("bwd,bvd->bwv", x, x, precision=lax.Precision.HIGHEST)
    who = clients[index]
    return gram.at[who[:, :, None], who[:, None, :]].add(g)

  init = jnp.zeros((num_clients + 1, num_clients + 1), jnp.float32)
  gram = fold_item_blocks(block, groups, uploads.row_grad,
                          lambda w: default_block_items(w, max(w, dim)), init)
  return gram[:num_clients, :num_clients]


def _total(dist: Array, present: Array) -> Array:
  """[C] each client's summed distance to all the present clients (the tie-break)."""
  return jnp.sum(jnp.where(present[None, :], dist, 0.0), axis=1)


def multi_krum_select(dist: Array, accepted: Array, num_byzantine: int,
                      num_selected: int | None) -> tuple[Array, Array]:
  """Multi-Krum: the `m` accepted clients of least Krum score.

  Scores sum each client's `n - f - 2` smallest distances to the other accepted clients.
  `m` is `num_selected` (at most `n`), default `n - f`. Equal scores are ordered by the
  summed distance to all accepted clients, then by slot (with `n - f - 2 = 1` a mutual
  nearest pair always ties, and a slot order alone would depend on labels). Where
  `n - f - 2 < 1` the scores are undefined and every accepted client is kept.

  Returns:
    `(selected [C] bool, fallback scalar bool)`.
  """
  n = jnp.sum(accepted)
  score = krum_scores(dist[None], accepted[None], num_byzantine, num_byzantine)[0]
  total = _total(dist, accepted)
  slot = jnp.arange(accepted.shape[0])
  ahead = lambda a: a[None, :] < a[:, None]
  same = lambda a: a[None, :] == a[:, None]
  before = ahead(score) | (same(score) & (ahead(total) | (same(total) & ahead(slot))))
  rank = jnp.sum(before & accepted[None, :], axis=1)
  m = n - num_byzantine if num_selected is None else jnp.minimum(num_selected, n)
  fallback = n - num_byzantine - 2 < 1
  selected = accepted & ((rank < m) | fallback)
  return selected, fallback


def bulyan_select(dist: Array, accepted: Array, num_byzantine: int) -> tuple[Array, Array]:
  """Bulyan's selection: `theta = n - 2f` clients picked one by one by Krum.

  Each step runs Krum over the clients not yet picked (`r` of them) and moves its choice
  to the selection; scores within Krum's tolerance tie and go to the least summed
  distance to the clients not yet picked, then to the lower slot. Krum's neighbour
  count `k = r - f - 2` is clamped at 1 (for `f = 1` the last step has `r = 2f + 1 = 3`).
  Bulyan needs `n >= 4f + 3`; below that every accepted client is selected
  (`fallback`), and with `f = 0` every client is selected anyway.

  Each client's distances are sorted once. A step keeps, per client, a pointer to its
  `k`-th nearest client not yet picked: a score is then one masked sum of the row's
  sorted prefix (summed afresh, never updated by subtraction, so one far attacker cannot
  cancel the small distances), and a pick clears one entry of each row and moves each
  pointer down past the picked or no longer counted entries (`_move_pointers`), about
  one place per step. A step costs one pass over `[C, C]`, not a selection per row.

  Returns:
    `(selected [C] bool, fallback scalar bool)`.
  """
  n = jnp.sum(accepted)
  fallback = n < 4 * num_byzantine + 3
  if num_byzantine == 0:
    return accepted, fallback
  num_clients = accepted.shape[0]
  slots = jnp.arange(num_clients)
  theta = n - 2 * num_byzantine
  others = accepted[:, None] & accepted[None, :] & (slots[:, None] != slots[None, :])
  order = jnp.argsort(jnp.where(others, dist, jnp.inf), axis=1)
  sorted_dist = jnp.take_along_axis(dist, order, axis=1)
  position = jnp.zeros_like(order).at[slots[:, None], order].set(slots[None, :])
  live = jnp.take_along_axis(others, order, axis=1)  # [c, j]: order[c, j] not yet picked
  neighbours = lambda r: jnp.maximum(r - num_byzantine - 2, 1)
  first = jnp.argmax(jnp.cumsum(live, axis=1) >= neighbours(n), axis=1)

  def step(t, state):
    selected, remaining, live, pointer = state
    kept = live & (slots[None, :] <= pointer[:, None])
    score = jnp.where(remaining, jnp.sum(jnp.where(kept, sorted_dist, 0.0), axis=1), jnp.inf)
    total = jnp.sum(jnp.where(live, sorted_dist, 0.0), axis=1)
    best = jnp.min(score)
    tied = score <= best + _TIE_RTOL * jnp.abs(best)
    choice = jnp.argmin(jnp.where(tied, total, jnp.inf))
    active = (t < theta) & ~fallback
    pick = (slots == choice) & active
    r = n - t
    at = position[:, choice]  # where the pick sits in each row
    counted = neighbours(r) - (at <= pointer)  # kept entries left once the pick leaves
    live = live.at[slots, at].set(live[slots, at] & ~active)
    pointer = _move_pointers(live, pointer, counted, neighbours(r - 1),
                             remaining & ~pick & active)
    return selected | pick, remaining & ~pick, live, pointer

  selected, _, _, _ = lax.fori_loop(0, max(num_clients - 2 * num_byzantine, 0), step,
                                    (jnp.zeros_like(accepted), accepted, live, first))
  return jnp.where(fallback, accepted, selected), fallback


def _move_pointers(live: Array, pointer: Array, counted: Array, want: Array,
                   rows: Array) -> Array:
  """Moves each row's pointer to its `want`-th live entry (`counted`: live entries at or
  below the pointer now). Down while more are counted or the pointer rests on a picked
  entry; up, past picked entries, while fewer are (only where `k` is clamped at 1 and
  the row lost its nearest). Rows outside `rows` stay."""
  slots = jnp.arange(pointer.shape[0])

  def moves(state):
    pointer, counted = state
    up = counted < want
    down = ~up & ((counted > want) | ~live[slots, pointer])
    return rows & up, rows & down

  def walk(state):
    pointer, counted = state
    up, down = moves(state)
    below, above = live[slots, pointer], live[slots, jnp.minimum(pointer + 1, len(slots) - 1)]
    return pointer + up - down, counted + (up & above) - (down & below)

  def unsettled(state):
    up, down = moves(state)
    return jnp.any(up | down)

  return lax.while_loop(unsettled, walk, (pointer, counted))[0]
