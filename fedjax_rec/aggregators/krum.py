"""Krum per item row over its uploaders; MLP Krum over the round's clients.

docs/design.md. Reference: Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant
Gradient Descent" (NeurIPS 2017). Among the `n` uploads of a row, Krum picks the one with the
least score, the sum of squared L2 distances to its `n - f - 2` nearest other uploads. The
choice is mean-like and rescaled to the convention (see `base.py`).

* Fallback: where `n - f - 2 < 1` Krum is undefined; the row gets the plain mean over its
  uploaders (then rescaled: under ``"sum"`` that is the plain sum) and is counted in the
  metric `krum_fallback_rows`. The MLP falls back likewise (`krum_mlp_chosen` = -1).
* Ties: among equal scores the lowest client slot wins. Float scores of tied uploads can
  differ in the last bits (summation order), so scores within a relative 1e-5 of the
  minimum count as equal. Distances are exactly symmetric, so a mutual nearest pair ties
  exactly when k = 1 (each scores their distance): for such rows the output depends on the
  slot labels. Otherwise (no scores within the tolerance) the output is invariant to
  relabelling client slots.
* Score: the `n - f - 2` nearest of the `n - 1` others are all but the `f + 1` farthest.
  The distance of the (f + 1)-th farthest comes from `edge_key` (`order_stats.py`, no
  sort or `top_k`); the score sums the nearer ones plus the kept copies of that distance,
  so the dropped (possibly huge) ones never enter it. Item rows get distances from direct
  differences when narrow (d <= 16), else from the Gram identity `|a|^2 + |b|^2 - 2 a.b`
  (a matmul) on uploads centred at their mean (clamped at 0, then symmetrized). Keep
  `max_abs` set so they stay finite.
* Memory and work: rows are grouped by item into dense blocks of items with similar
  uploader counts (`item_blocks.py`), so a block's [B, w, w] distances cover about
  `n^2` pairs per item, never [num_items, C, C].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, check_non_negative_int, finish_rows,
    flatten_clients, rescale_mlp, rescale_rows, stateless)
from fedjax_rec.aggregators.item_blocks import (
    default_block_items, group_rows, map_item_blocks, reduce_slots)
from fedjax_rec.aggregators.order_stats import ABSENT, edge_key
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Aggregate, Array, Uploads

# Scores within this relative distance of the minimum count as tied (float32 summation
# order differs between rows, so exact equality is too fragile a tie test).
_TIE_RTOL = 1e-5
# Above the bits of every finite non-negative float32: `_MAX_BITS - bits` reverses order.
_MAX_BITS = np.uint32(0x7FFFFFFF)
# Uploads at most this wide get distances from direct differences (cheaper than a batch of
# tiny matmuls); wider ones (d = 32 rows, the MLP) from the Gram identity, a matmul.
_DIRECT_MAX_DIM = 16


def pairwise_sq_dists(x: Array, present: Array, n: Array) -> Array:
  """[B, w, w] squared L2 distances between the slots of each item, exactly symmetric.

  Args:
    x: [B, w, P] uploads, zero in absent slots; present: [B, w]; n: [B] present counts.
  """
  if x.shape[2] <= _DIRECT_MAX_DIM:
    # An unrolled sum of elementwise terms: XLA:CPU fuses it into one vectorized loop
    # (as a reduction it is handed to YNNPACK, many times slower for this pattern).
    xt = jnp.swapaxes(x, 1, 2)  # [B, P, w]
    terms = [jnp.square(xt[:, j, :, None] - xt[:, j, None, :]) for j in range(x.shape[2])]
    return functools.reduce(jnp.add, terms)
  mean = reduce_slots(x, "sum") / jnp.maximum(n, 1)[:, None].astype(x.dtype)
  # Centring first keeps the Gram identity accurate when uploads share a large offset.
  xc = jnp.where(present[:, :, None], x - mean[:, None, :], 0.0)
  sq = jnp.sum(jnp.square(xc), axis=-1)
  gram = jnp.einsum("bwp,bvp->bwv", xc, xc, precision=lax.Precision.HIGHEST)
  dist = jnp.maximum(sq[:, :, None] + sq[:, None, :] - 2.0 * gram, 0.0)
  return 0.5 * (dist + jnp.swapaxes(dist, 1, 2))


def krum_scores(dist: Array, present: Array, drop_rank, max_rank: int) -> Array:
  """[B, w] Krum scores from symmetric squared distances `dist` [B, w, w] (inf if absent).

  A slot's score sums its distances to the other present slots except the
  `drop_rank + 1` farthest (`drop_rank`: an int or an array broadcastable to [B, w],
  at most the static `max_rank`); `krum_block` drops `f + 1`, leaving `n - f - 2`.
  """
  width = dist.shape[1]
  others = present[:, :, None] & present[:, None, :] & ~jnp.eye(width, dtype=bool)
  # Keys of the distances in reverse order (the bits of non-negative floats order like
  # them; `abs` clears the sign of a -0.0), so the (f + 1)-th largest distance is the key
  # of rank f. `dist` and `others` are symmetric: reducing over axis 1 gives each slot's
  # row statistics, and is faster on CPU than reducing the minor axis.
  bits = lax.bitcast_convert_type(jnp.abs(dist), jnp.uint32)
  keys = jnp.where(others, _MAX_BITS - bits, ABSENT)
  edge = edge_key(keys, drop_rank, max_rank)[:, None, :]
  edge_dist = lax.bitcast_convert_type(_MAX_BITS - edge[:, 0], jnp.float32)
  # Sum the others strictly nearer than the edge, plus the copies of the edge distance
  # kept: the f + 1 farthest are dropped without subtracting (no cancellation).
  num_far = reduce_slots(keys <= edge, "sum")
  score = (reduce_slots(jnp.where(others & (keys > edge), dist, 0.0), "sum")
           + (num_far - (drop_rank + 1)).astype(dist.dtype) * edge_dist)
  return jnp.where(present, score, jnp.inf)


def krum_choice(score: Array) -> Array:
  """[B] slot of the least score; scores within `_TIE_RTOL` tie, the lowest slot wins."""
  best = jnp.min(score, axis=1, keepdims=True)
  tied = score <= best + _TIE_RTOL * jnp.abs(best)
  return jnp.argmax(tied, axis=1)  # the first (lowest) slot among the tied minima


def krum_block(x: Array, present: Array, num_byzantine: int) -> tuple[Array, Array]:
  """Krum over the present slots of each item of a block.

  Args:
    x: [B, w, P] candidate uploads of `B` items.
    present: [B, w] bool, which slots hold an upload.
    num_byzantine: `f`.

  Returns:
    `(mean_like [B, P], chosen [B])`: the chosen upload, or the mean of the present ones
    on fallback; `chosen` is the slot index, -1 on fallback (also when nothing is present).
  """
  n = jnp.sum(present, axis=1)
  x = jnp.where(present[:, :, None], x, 0.0)
  dist = pairwise_sq_dists(x, present, n)
  score = krum_scores(dist, present, num_byzantine, num_byzantine)
  chosen = krum_choice(score)
  pick = jnp.take_along_axis(x, chosen[:, None, None], axis=1)[:, 0]
  mean = reduce_slots(x, "sum") / jnp.maximum(n, 1)[:, None].astype(x.dtype)
  ok = n - num_byzantine - 2 >= 1
  return jnp.where(ok[:, None], pick, mean), jnp.where(ok, chosen, -1)


def row_krum(uploads: Uploads, row_grad: Array, num_items: int, num_byzantine: int,
             block_items: int | None = None) -> tuple[Array, Array, Array]:
  """Per-item Krum of validated uploads (`row_grad`: see `map_item_blocks`).

  Returns:
    `(mean_like [num_items, d], counts [num_items], fallback [num_items] bool)`.
  """
  groups = group_rows(uploads, num_items)
  dim = row_grad.shape[1]

  def items_per_block(width):
    return block_items or default_block_items(width, max(width, dim))

  def block_fn(x, present, n):
    del n
    return krum_block(x, present, num_byzantine)

  mean_like, chosen = map_item_blocks(block_fn, groups, row_grad, items_per_block)
  fallback = (groups.counts > 0) & (chosen < 0)
  return mean_like, groups.counts, fallback


def krum(num_items: int, num_byzantine: int = 1, convention: str = "sum",
         max_abs: float | None = 1e6, block_items: int | None = None) -> Aggregator:
  """Krum.

  Args:
    num_items: number of item rows (static).
    num_byzantine: `f`, assumed number of malicious uploaders per row (static, >= 0).
    convention: FedAvg convention the chosen upload is rescaled to.
    max_abs: validation magnitude bound; keep it set so squared distances stay finite.
    block_items: items per block of every tier (default: per tier, about 2^16 floats of
      a block's [B, w, w] distances; see `item_blocks.py`).

  Returns:
    An `Aggregator`; metrics `rejected`, `touched_rows`, `krum_fallback_rows` (touched rows
    with `n - f - 2 < 1`, aggregated by the mean), `krum_mlp_chosen` (slot of the chosen
    MLP upload, -1 on fallback), `krum_mlp_chosen_malicious` (1 if that slot is an
    attacker; the only read of `client_malicious`, for metrics).
  """
  check_convention(convention)
  num_byzantine = check_non_negative_int("num_byzantine", num_byzantine)
  if block_items is not None and block_items < 1:
    raise ValueError(f"block_items must be >= 1, got {block_items!r}.")

  def apply(uploads):
    raw_row_grad = uploads.row_grad
    uploads, num_rejected = validate(uploads, max_abs)
    mean_like, counts, fallback = row_krum(uploads, raw_row_grad, num_items, num_byzantine,
                                           block_items)
    item_grad, touched = finish_rows(rescale_rows(mean_like, counts, convention), counts)

    if jax.tree.leaves(uploads.net):
      flat, unflatten = flatten_clients(uploads.net)
      mlp_mean_like, mlp_chosen = krum_block(flat[None], uploads.client_mask[None],
                                             num_byzantine)
      mlp = rescale_mlp(unflatten(mlp_mean_like[0]), jnp.sum(uploads.client_mask), convention)
      mlp_chosen = mlp_chosen[0]
    else:  # no network (MF): nothing to choose
      mlp, mlp_chosen = uploads.net, jnp.int32(-1)

    metrics = base_metrics(num_rejected, touched)
    metrics["krum_fallback_rows"] = jnp.sum(fallback).astype(jnp.int32)
    metrics["krum_mlp_chosen"] = mlp_chosen.astype(jnp.int32)
    metrics["krum_mlp_chosen_malicious"] = (
        (mlp_chosen >= 0) & uploads.client_malicious[jnp.maximum(mlp_chosen, 0)]).astype(
            jnp.int32)
    aggregate = Aggregate(item_grad=item_grad, item_touched=touched, net=mlp)
    return aggregate, metrics

  return stateless(apply)
