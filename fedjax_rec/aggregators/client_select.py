"""Client-level distances and the Krum-based client selections (Multi-Krum, Bulyan).

Multi-Krum and Bulyan compare whole clients, as in their papers: client `c` is the dense
vector of every item row it uploaded (zero on the rows it did not upload) followed by its
flattened MLP gradient. Nothing of that size is built:

    |x_a - x_b|^2 = |x_a|^2 + |x_b|^2 - 2 x_a.x_b,
    x_a.x_b = sum over the items both uploaded of g_ai.g_bi  +  mlp_a.mlp_b,

and the row part of the [C, C] Gram matrix is a scatter-add of each item's [n, n] Gram
of its uploaders, over the dense item blocks of `item_blocks.py` (work about
`sum_i n_i^2 d`, memory one block plus [C, C]). The MLP part is a matmul of the clients'
MLP gradients centred at their mean (distances do not change; the centring keeps the
identity accurate). Distances are clamped at 0 and symmetrized; float32 with HIGHEST
matmul precision. The row part is not centred, so two near-identical clients with large
rows get a distance accurate to about 1e-7 of their squared norms, not better.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from fedjax_rec.aggregators.base import client_index, flatten_clients
from fedjax_rec.aggregators.item_blocks import (
    default_block_items, fold_item_blocks, group_rows)
from fedjax_rec.aggregators.krum import _TIE_RTOL, krum_scores
from fedjax_rec.types import Array, Uploads


def client_sq_dists(uploads: Uploads, num_items: int) -> Array:
  """[C, C] squared L2 distances between the clients' whole uploads (validated uploads).

  Only accepted clients (`client_mask`) are meaningful; other entries are arbitrary.
  """
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
  gram = gram[:num_clients, :num_clients]

  flat, _ = flatten_clients(uploads.net, num_clients)
  mask = uploads.client_mask
  flat = jnp.where(mask[:, None], flat, 0.0)
  mean = jnp.sum(flat, axis=0) / jnp.maximum(jnp.sum(mask), 1).astype(flat.dtype)
  centred = jnp.where(mask[:, None], flat - mean, 0.0)
  gram = gram + jnp.matmul(centred, centred.T, precision=lax.Precision.HIGHEST)
  sq = jnp.diagonal(gram)
  dist = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
  return 0.5 * (dist + dist.T)


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
  distance to the clients not yet picked, then to the lower slot. Krum's neighbour count `r - f - 2` is clamped at 1 (for `f = 1` the
  last step has `r = 2f + 1 = 3`). Bulyan needs `n >= 4f + 3`; below that every accepted
  client is selected (`fallback`), and with `f = 0` every client is selected anyway.

  Returns:
    `(selected [C] bool, fallback scalar bool)`.
  """
  n = jnp.sum(accepted)
  fallback = n < 4 * num_byzantine + 3
  if num_byzantine == 0:
    return accepted, fallback
  num_clients = accepted.shape[0]
  theta = n - 2 * num_byzantine

  def step(t, state):
    selected, remaining = state
    r = jnp.sum(remaining)
    drop = jnp.clip(jnp.minimum(num_byzantine + 1, r - 2) - 1, 0, num_byzantine)
    score = krum_scores(dist[None], remaining[None], drop, num_byzantine)[0]
    best = jnp.min(score)
    tied = score <= best + _TIE_RTOL * jnp.abs(best)
    choice = jnp.argmin(jnp.where(tied, _total(dist, remaining), jnp.inf))
    pick = jax.nn.one_hot(choice, num_clients, dtype=bool)
    active = (t < theta) & ~fallback
    return selected | (pick & active), remaining & ~(pick & active)

  selected, _ = lax.fori_loop(0, max(num_clients - 2 * num_byzantine, 0), step,
                              (jnp.zeros_like(accepted), accepted))
  return jnp.where(fallback, accepted, selected), fallback
