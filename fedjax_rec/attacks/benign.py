"""What a full-knowledge attacker sees of a round: statistics of the benign uploads.

LIE and Fang's attacks assume the attacker knows the other clients' updates of the round
(the "full knowledge" threat model). The round computes these statistics from the benign
`Uploads` (what the server receives anyway: sparse item rows and network updates, never a
client's private state) and passes them to an attack that sets `Attack.needs_benign`.

Over sparse row uploads every statistic of an item row is taken over the benign clients
that uploaded that item in the round (`count[i]` of them); an item no benign client
uploaded has count 0 and zeros everywhere. The network's statistics are over the round's
benign clients. Only finite uploads count (`aggregators.validate` with no magnitude
bound): a client the aggregators would reject for a NaN or Inf is left out. The standard
deviation is the population one (divided by the count, 0 for a single uploader).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedjax_rec.aggregators.base import item_keys, leaf_client_mask
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PyTree, Uploads


class Moments(NamedTuple):
  """Per-coordinate statistics (arrays, or pytrees of arrays for the network)."""

  mean: PyTree
  std: PyTree
  min: PyTree
  max: PyTree


class BenignStats(NamedTuple):
  """Attributes:
    rows: `Moments` of the item rows, each `[num_items, d]`, over each item's uploaders.
    count: [num_items] int32 benign uploaders of each item.
    net: `Moments` of the network update over the benign clients (one client's shapes).
    num_benign: [] int32 benign clients of the round (finite uploads).
    num_attackers: [] int32 attackers taking part in the round.
    weight: [] float32 mean sample count the benign clients report.
  """

  rows: Moments
  count: Array
  net: Moments
  num_benign: Array
  num_attackers: Array
  weight: Array


def _row_moments(uploads: Uploads, num_items: int) -> tuple[Moments, Array]:
  items = item_keys(uploads, num_items)  # padding rows: the spare segment `num_items`
  segments = num_items + 1
  mask = uploads.row_mask[:, None]
  x = jnp.where(mask, uploads.row_grad, 0.0)
  count = jax.ops.segment_sum(uploads.row_mask.astype(jnp.int32), items, segments)
  n = jnp.maximum(count, 1)[:, None].astype(x.dtype)
  mean = jax.ops.segment_sum(x, items, segments) / n
  dev = jnp.where(mask, x - mean[items], 0.0)
  std = jnp.sqrt(jax.ops.segment_sum(jnp.square(dev), items, segments) / n)
  lo = jax.ops.segment_min(jnp.where(mask, x, jnp.inf), items, segments)
  hi = jax.ops.segment_max(jnp.where(mask, x, -jnp.inf), items, segments)
  seen = (count > 0)[:, None]
  cut = lambda a: jnp.where(seen, a, 0.0)[:num_items]
  return Moments(cut(mean), cut(std), cut(lo), cut(hi)), count[:num_items]


def _net_moments(net: PyTree, client_mask: Array) -> Moments:
  n = jnp.maximum(jnp.sum(client_mask), 1)

  def moments(leaf):
    mask = leaf_client_mask(client_mask, leaf)
    x = jnp.where(mask, leaf, 0.0)
    mean = jnp.sum(x, axis=0) / n.astype(leaf.dtype)
    std = jnp.sqrt(jnp.sum(jnp.where(mask, jnp.square(x - mean), 0.0), axis=0)
                   / n.astype(leaf.dtype))
    any_client = jnp.any(client_mask)
    lo = jnp.where(any_client, jnp.min(jnp.where(mask, leaf, jnp.inf), axis=0), 0.0)
    hi = jnp.where(any_client, jnp.max(jnp.where(mask, leaf, -jnp.inf), axis=0), 0.0)
    return mean, std, lo, hi

  parts = [jax.tree.map(lambda leaf, k=k: moments(leaf)[k], net) for k in range(4)]
  return Moments(*parts)


def benign_stats(uploads: Uploads, num_items: int, num_attackers: Array) -> BenignStats:
  """Statistics of the round's benign `uploads` (see the module docstring).

  Args:
    uploads: the benign clients' uploads of the round (no attacker slot).
    num_items: the catalogue size.
    num_attackers: [] the attackers taking part in the round.
  """
  uploads, _ = validate(uploads, max_abs=None)
  rows, count = _row_moments(uploads, num_items)
  num_benign = jnp.sum(uploads.client_mask).astype(jnp.int32)
  weight = jnp.sum(uploads.client_weight) / jnp.maximum(num_benign, 1)
  return BenignStats(rows=rows, count=count, net=_net_moments(uploads.net, uploads.client_mask),
                     num_benign=num_benign, num_attackers=jnp.asarray(num_attackers, jnp.int32),
                     weight=weight.astype(jnp.float32))


def every_item_upload(rows: Array, row_mask: Array, net: PyTree, weight: Array) -> ClientUpload:
  """An upload holding one row per item (`rows [num_items, d]`; `row_mask` the real ones)."""
  return ClientUpload(row_item=jnp.arange(rows.shape[0], dtype=jnp.int32),
                      row_grad=jnp.where(row_mask[:, None], rows, 0.0), row_mask=row_mask,
                      net=net, weight=jnp.asarray(weight, jnp.float32))
