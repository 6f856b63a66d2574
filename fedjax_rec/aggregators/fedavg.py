"""FedAvg over sparse uploads: per item row over its uploaders, MLP over the clients.

docs/design.md. The three conventions are described in `base.py`. Reference: McMahan et al.,
"Communication-Efficient Learning of Deep Networks from Decentralized Data" (2017); the
``"sum"`` convention is what the public A-hum / PSMU attack code does (`x[idx] += g`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec.aggregators.base import (
    Aggregator, base_metrics, check_convention, client_index, finish_rows, item_keys,
    leaf_client_mask, stateless, uploader_counts)
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.types import Aggregate, Array, PyTree, Uploads


def _safe_div(num: Array, den: Array) -> Array:
  """num / den where den > 0, else 0 (den broadcast against num)."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def fedavg_rows(uploads: Uploads, num_items: int, convention: str) -> tuple[Array, Array]:
  """Aggregates item rows of (already validated) uploads by the convention.

  Returns:
    `(item_grad [num_items, d], counts [num_items])`, counts = accepted uploaders per row.
  """
  keys = item_keys(uploads, num_items)
  counts = uploader_counts(uploads, num_items)
  grad = jnp.where(uploads.row_mask[:, None], uploads.row_grad, 0.0)
  if convention == "weighted":
    weight = jnp.where(uploads.row_mask, uploads.client_weight[client_index(uploads)], 0.0)
    num = jax.ops.segment_sum(grad * weight[:, None], keys, num_segments=num_items + 1)
    den = jax.ops.segment_sum(weight, keys, num_segments=num_items + 1)
    return _safe_div(num[:num_items], den[:num_items, None]), counts
  total = jax.ops.segment_sum(grad, keys, num_segments=num_items + 1)[:num_items]
  if convention == "mean":
    return _safe_div(total, counts[:, None].astype(total.dtype)), counts
  return total, counts


def fedavg_mlp(uploads: Uploads, convention: str) -> PyTree:
  """Aggregates the MLP gradient over the accepted clients by the convention."""
  mask = uploads.client_mask
  if convention == "weighted":
    weight = jnp.where(mask, uploads.client_weight, 0.0)
  else:
    weight = mask.astype(jnp.float32)
  if convention == "sum":
    den = jnp.ones(())
  else:
    den = jnp.sum(weight)

  def leaf_fn(x):
    masked = jnp.where(leaf_client_mask(mask, x), x, 0.0)
    # A weighted sum over the client axis as one dot ([C] . [C, ...]): XLA's CPU column
    # reduction `sum(w * x, axis=0)` is several times slower and grew faster than the
    # clients (README "Scaling out"). HIGHEST keeps float32 products on accelerators.
    total = jnp.tensordot(weight.astype(x.dtype), masked, axes=(0, 0),
                          precision=jax.lax.Precision.HIGHEST)
    return _safe_div(total, den)

  return jax.tree.map(leaf_fn, uploads.net)


def fedavg_aggregate(uploads: Uploads, num_items: int, convention: str) -> Aggregate:
  """FedAvg of validated uploads (used by FedAvg, NormBound and HiCS)."""
  item_grad, counts = fedavg_rows(uploads, num_items, convention)
  item_grad, touched = finish_rows(item_grad, counts)
  return Aggregate(item_grad=item_grad, item_touched=touched,
                   net=fedavg_mlp(uploads, convention))


def fedavg(num_items: int, convention: str = "sum",
           max_abs: float | None = None) -> Aggregator:
  """Plain FedAvg.

  Args:
    num_items: number of item rows (static).
    convention: ``"sum"``, ``"mean"`` or ``"weighted"`` (see `base.py`).
    max_abs: optional magnitude bound for validation; non-finite uploads are rejected
      regardless ("FedAvg without validation" still drops NaN/Inf clients).

  Returns:
    An `Aggregator`; metrics `rejected`, `touched_rows`.
  """
  check_convention(convention)

  def apply(uploads):
    uploads, num_rejected = validate(uploads, max_abs)
    aggregate = fedavg_aggregate(uploads, num_items, convention)
    return aggregate, base_metrics(num_rejected, aggregate.item_touched)

  return stateless(apply)
