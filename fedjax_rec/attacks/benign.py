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

An attack that also sets `Attack.needs_distances` (Fang's Krum attack) gets the whole
uploads' geometry as well (`KrumView`): the benign clients' pairwise squared distances,
each one's squared norm and its dot product with the sign of the benign mean.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedjax_rec.aggregators.base import (
    client_index, flatten_clients, item_keys, leaf_client_mask)
from fedjax_rec.aggregators.client_select import client_sq_dists
from fedjax_rec.aggregators.validate import validate
from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PyTree, Uploads


class Moments(NamedTuple):
  """Per-coordinate statistics (arrays, or pytrees of arrays for the network)."""

  mean: PyTree
  std: PyTree
  min: PyTree
  max: PyTree


class KrumView(NamedTuple):
  """The benign clients' whole uploads as points (item rows, then the network update).

  Attributes:
    dist: [C, C] squared distances between them (`inf` where either is not benign).
    sq_norm: [C] squared norms.
    sign_dot: [C] dot product with `s`, the sign of the benign mean (`BenignStats`'s
      row and network means; 0 on rows no benign client uploaded).
    num_signs: [] the nonzero coordinates of `s` (its squared norm).
    mask: [C] the benign clients with finite uploads.
  """

  dist: Array
  sq_norm: Array
  sign_dot: Array
  num_signs: Array
  mask: Array


class BenignStats(NamedTuple):
  """Attributes:
    rows: `Moments` of the item rows, each `[num_items, d]`, over each item's uploaders.
    count: [num_items] int32 benign uploaders of each item.
    net: `Moments` of the network update over the benign clients (one client's shapes).
    num_benign: [] int32 benign clients of the round (finite uploads).
    num_attackers: [] int32 attackers taking part in the round.
    weight: [] float32 mean sample count the benign clients report.
    krum: the `KrumView`, for an attack that sets `needs_distances` (else None).
  """

  rows: Moments
  count: Array
  net: Moments
  num_benign: Array
  num_attackers: Array
  weight: Array
  krum: KrumView | None = None


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


def _krum_view(uploads: Uploads, num_items: int, rows: Moments, net: Moments) -> KrumView:
  num_clients = uploads.client_mask.shape[0]
  mask = uploads.client_mask
  dist = jnp.where(mask[:, None] & mask[None, :], client_sq_dists(uploads, num_items), jnp.inf)
  sign_rows = jnp.concatenate([jnp.sign(rows.mean), jnp.zeros_like(rows.mean[:1])])
  x = jnp.where(uploads.row_mask[:, None], uploads.row_grad, 0.0)
  who = client_index(uploads)
  row_dot = jnp.sum(sign_rows[item_keys(uploads, num_items)] * x, axis=1)
  flat, _ = flatten_clients(uploads.net, num_clients)
  flat = jnp.where(mask[:, None], flat, 0.0)
  sign_net, _ = flatten_clients(jax.tree.map(lambda m: jnp.sign(m)[None], net.mean), 1)
  sign_dot = (jax.ops.segment_sum(row_dot, who, num_clients) + flat @ sign_net[0])
  sq_norm = (jax.ops.segment_sum(jnp.sum(jnp.square(x), axis=1), who, num_clients)
             + jnp.sum(jnp.square(flat), axis=1))
  num_signs = jnp.sum(sign_rows != 0) + jnp.sum(sign_net != 0)
  zero = lambda a: jnp.where(mask, a, 0.0)
  return KrumView(dist, zero(sq_norm), zero(sign_dot), num_signs.astype(jnp.float32), mask)


def benign_stats(uploads: Uploads, num_items: int, num_attackers: Array,
                 distances: bool = False) -> BenignStats:
  """Statistics of the round's benign `uploads` (see the module docstring).

  Args:
    uploads: the benign clients' uploads of the round (no attacker slot).
    num_items: the catalogue size.
    num_attackers: [] the attackers taking part in the round.
    distances: also the `KrumView` (static).
  """
  uploads, _ = validate(uploads, max_abs=None)
  rows, count = _row_moments(uploads, num_items)
  net = _net_moments(uploads.net, uploads.client_mask)
  num_benign = jnp.sum(uploads.client_mask).astype(jnp.int32)
  weight = jnp.sum(uploads.client_weight) / jnp.maximum(num_benign, 1)
  krum = _krum_view(uploads, num_items, rows, net) if distances else None
  return BenignStats(rows=rows, count=count, net=net, num_benign=num_benign,
                     num_attackers=jnp.asarray(num_attackers, jnp.int32),
                     weight=weight.astype(jnp.float32), krum=krum)


def every_item_upload(rows: Array, row_mask: Array, net: PyTree, weight: Array) -> ClientUpload:
  """An upload holding one row per item (`rows [num_items, d]`; `row_mask` the real ones)."""
  return ClientUpload(row_item=jnp.arange(rows.shape[0], dtype=jnp.int32),
                      row_grad=jnp.where(row_mask[:, None], rows, 0.0), row_mask=row_mask,
                      net=net, weight=jnp.asarray(weight, jnp.float32))
