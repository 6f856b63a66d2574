"""Krum per item row over its uploaders; MLP Krum over the round's clients.

SPEC §7. Reference: Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant
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
* Score: the `n - f - 2` nearest of the `n - 1` others are all but the `f + 1` farthest,
  found by a static `top_k` (a per-row sort of [num_items, C, C] costs ~40x more on CPU)
  and masked out of the row sum. Distances use the Gram identity `|a|^2 + |b|^2 - 2 a.b`
  on uploads centred at their mean (clamped at 0); keep `max_abs` set so they stay finite.
* Memory: a dense [num_items, C, C] distance tensor is never built. Rows are sorted by item
  once; `lax.map` walks blocks of `block_items` items, slices that block's rows (at most
  `block_items * C`, since (item, client) is a unique key), scatters them into a dense
  [block, C, d] buffer with a presence mask and runs Krum there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, check_non_negative_int, finish_rows,
    flatten_clients, rescale_mlp, rescale_rows, stateless)
from fedjax_rec.aggregators.item_blocks import (
    default_block_items, group_rows, map_item_blocks)
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Aggregate, Array, Uploads

# Scores within this relative distance of the minimum count as tied (float32 summation
# order differs between rows, so exact equality is too fragile a tie test).
_TIE_RTOL = 1e-5


def krum_select(x: Array, present: Array, num_byzantine: int) -> tuple[Array, Array]:
  """Krum over the present rows of `x`.

  Args:
    x: [C, P] candidate uploads.
    present: [C] bool, which slots hold an upload.
    num_byzantine: `f`.

  Returns:
    `(mean_like [P], chosen)`: the chosen upload, or the mean of the present ones on
    fallback; `chosen` is the slot index, -1 on fallback (also when nothing is present).
  """
  num_slots = x.shape[0]
  n = jnp.sum(present)
  mean = jnp.sum(jnp.where(present[:, None], x, 0.0), axis=0) / jnp.maximum(n, 1)
  # Centring first keeps the Gram identity accurate when uploads share a large offset.
  xc = jnp.where(present[:, None], x - mean, 0.0)
  sq = jnp.sum(jnp.square(xc), axis=-1)
  gram = jnp.matmul(xc, xc.T, precision=lax.Precision.HIGHEST)
  dist = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
  dist = 0.5 * (dist + dist.T)  # exactly symmetric: mutual nearest pairs tie exactly
  others = present[:, None] & present[None, :] & ~jnp.eye(num_slots, dtype=bool)
  # Drop each row's f + 1 farthest others (masked, not subtracted: no cancellation).
  num_far = min(num_byzantine + 1, num_slots)
  _, far_idx = lax.top_k(jnp.where(others, dist, -jnp.inf), num_far)
  far = jnp.zeros((num_slots, num_slots), bool).at[
      jnp.arange(num_slots)[:, None], far_idx].set(True)
  score = jnp.sum(jnp.where(others & ~far, dist, 0.0), axis=-1)
  score = jnp.where(present, score, jnp.inf)
  best = jnp.min(score)
  tied = score <= best + _TIE_RTOL * jnp.abs(best)
  chosen = jnp.argmax(tied)  # the first (lowest) slot among the tied minima
  ok = n - num_byzantine - 2 >= 1
  return jnp.where(ok, x[chosen], mean), jnp.where(ok, chosen, -1)


def row_krum(uploads: Uploads, num_items: int, num_byzantine: int,
             block_items: int | None = None) -> tuple[Array, Array, Array]:
  """Per-item Krum of validated uploads.

  Returns:
    `(mean_like [num_items, d], counts [num_items], fallback [num_items] bool)`.
  """
  groups = group_rows(uploads, num_items)
  dim = uploads.row_grad.shape[1]

  def items_per_block(width):
    return block_items or default_block_items(width, max(width, dim))

  def block_fn(x, present, n):
    del n
    return jax.vmap(krum_select, in_axes=(0, 0, None))(x, present, num_byzantine)

  mean_like, chosen = map_item_blocks(block_fn, groups, uploads.row_grad, items_per_block)
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
    block_items: items per `lax.map` block (default: about 2^20 floats of distances).

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
    uploads, num_rejected = validate(uploads, max_abs)
    mean_like, counts, fallback = row_krum(uploads, num_items, num_byzantine, block_items)
    item_grad, touched = finish_rows(rescale_rows(mean_like, counts, convention), counts)

    flat, unflatten = flatten_clients(uploads.mlp)
    mlp_mean_like, mlp_chosen = krum_select(flat, uploads.client_mask, num_byzantine)
    mlp = rescale_mlp(unflatten(mlp_mean_like), jnp.sum(uploads.client_mask), convention)

    metrics = base_metrics(num_rejected, touched)
    metrics["krum_fallback_rows"] = jnp.sum(fallback).astype(jnp.int32)
    metrics["krum_mlp_chosen"] = mlp_chosen.astype(jnp.int32)
    metrics["krum_mlp_chosen_malicious"] = (
        (mlp_chosen >= 0) & uploads.client_malicious[jnp.maximum(mlp_chosen, 0)]).astype(
            jnp.int32)
    aggregate = Aggregate(item_grad=item_grad, item_touched=touched, mlp=mlp)
    return aggregate, metrics

  return stateless(apply)
