"""Rejection of malformed uploads (docs/design.md: every aggregator rejects non-finite uploads).

A client is rejected *entirely* (all its rows and its MLP gradient) when any value it
uploads is non-finite or, with `max_abs` set, larger than `max_abs` in absolute value, or
when its `client_weight` is non-finite or negative. Rejected clients and padding are zeroed
with `jnp.where` (never `x * mask`: `NaN * 0` is `NaN`), so nothing can leak into sums.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec.aggregators.base import client_index, leaf_client_mask
from fedjax_rec.types import Array, Uploads


def _bad(x: Array, max_abs: float | None) -> Array:
  bad = ~jnp.isfinite(x)
  if max_abs is not None:
    bad = bad | (jnp.abs(x) > max_abs)
  return bad


def validate(uploads: Uploads, max_abs: float | None = 1e6) -> tuple[Uploads, Array]:
  """Rejects clients with non-finite or out-of-range values anywhere in their upload.

  Only real rows (`row_mask`) of real clients (`client_mask`) are inspected; padding may
  hold anything and is zeroed as well.

  Args:
    uploads: the round's uploads.
    max_abs: magnitude bound; `None` rejects only non-finite values.

  Returns:
    `(uploads', num_rejected)`: `uploads'` has `client_mask` and `row_mask` False for
    rejected clients (and `row_mask` False for rows of any masked client), and zeros in
    every masked row, MLP slot and weight; `num_rejected` is an int32 count of real
    clients rejected.
  """
  num_clients = uploads.client_mask.shape[0]
  clients = client_index(uploads)

  row_bad = jnp.any(_bad(uploads.row_grad, max_abs), axis=-1) & uploads.row_mask
  bad_rows_per_client = jax.ops.segment_sum(
      row_bad.astype(jnp.int32), clients, num_segments=num_clients)
  client_bad = bad_rows_per_client > 0
  for leaf in jax.tree.leaves(uploads.net):
    leaf_bad = _bad(leaf, max_abs).reshape(num_clients, -1)
    client_bad = client_bad | jnp.any(leaf_bad, axis=-1)
  weight = uploads.client_weight
  client_bad = client_bad | ~jnp.isfinite(weight) | (weight < 0)

  num_rejected = jnp.sum(uploads.client_mask & client_bad).astype(jnp.int32)
  return keep_clients(uploads, ~client_bad), num_rejected


def keep_clients(uploads: Uploads, keep: Array) -> Uploads:
  """`uploads` restricted to the clients of `keep` [C]: the others' `client_mask` and
  `row_mask` False, and zeros in their rows, MLP slots and weights."""
  client_mask = uploads.client_mask & keep
  row_mask = uploads.row_mask & client_mask[client_index(uploads)]
  mlp = jax.tree.map(
      lambda x: jnp.where(leaf_client_mask(client_mask, x), x, jnp.zeros_like(x)),
      uploads.net)
  return uploads._replace(
      row_grad=jnp.where(row_mask[:, None], uploads.row_grad, 0.0),
      row_mask=row_mask,
      net=mlp,
      client_weight=jnp.where(client_mask, uploads.client_weight, 0.0),
      client_mask=client_mask,
  )
