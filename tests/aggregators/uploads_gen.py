"""Random sparse `Uploads` for aggregator tests (NumPy RNG, host-side only)."""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from fedjax_rec.types import Uploads

NUM_ITEMS = 13
NUM_CLIENTS = 9
DIM = 3
MAX_ITEMS_PER_CLIENT = 8
NUM_PAD_ROWS = 4
NUM_ROWS = NUM_CLIENTS * MAX_ITEMS_PER_CLIENT + NUM_PAD_ROWS  # static M for jit caching


def random_uploads(seed, *, int_values=False, p_real=0.8, num_items=NUM_ITEMS,
                   num_clients=NUM_CLIENTS, dim=DIM):
  """Random uploads with ragged per-item uploader lists.

  Items are drawn with Zipf-like popularity, so some rows get many uploaders and some a
  single one. Padded client slots still upload rows marked real (they must be ignored
  because of `client_mask`), padding rows hold garbage (NaN included) and random ids, and
  rows are shuffled. With `int_values`, values are small integers (ties, exact sums).
  """
  rng = np.random.default_rng(seed)
  popularity = 1.0 / np.arange(1, num_items + 1)
  popularity = rng.permutation(popularity / popularity.sum())

  def values(shape):
    if int_values:
      return rng.integers(-2, 3, size=shape).astype(np.float32)
    return rng.normal(size=shape).astype(np.float32)

  client_mask = rng.random(num_clients) < p_real
  client_mask[rng.integers(num_clients)] = False  # at least one padded slot
  rows = []
  for c in range(num_clients):
    k = int(rng.integers(0, MAX_ITEMS_PER_CLIENT + 1))
    for item in rng.choice(num_items, size=k, replace=False, p=popularity):
      rows.append((c, int(item), values(dim), True))
  num_rows = num_clients * MAX_ITEMS_PER_CLIENT + NUM_PAD_ROWS
  while len(rows) < num_rows:
    garbage = rng.normal(size=dim).astype(np.float32) * 1e3
    garbage[rng.integers(dim)] = np.nan
    rows.append((int(rng.integers(num_clients)), int(rng.integers(num_items)), garbage,
                 False))
  rows = [rows[i] for i in rng.permutation(len(rows))]

  mlp = {"b": values((num_clients, 4)), "w": values((num_clients, 2, 3))}
  for leaf in mlp.values():  # padded slots hold garbage too
    leaf[~client_mask] = np.nan
  weight = np.where(client_mask, rng.integers(1, 10, num_clients), 0).astype(np.float32)
  return Uploads(
      row_client=jnp.asarray([r[0] for r in rows], jnp.int32),
      row_item=jnp.asarray([r[1] for r in rows], jnp.int32),
      row_grad=jnp.asarray(np.stack([r[2] for r in rows])),
      row_mask=jnp.asarray([r[3] for r in rows]),
      net={k: jnp.asarray(v) for k, v in mlp.items()},
      client_weight=jnp.asarray(weight),
      client_mask=jnp.asarray(client_mask),
      client_malicious=jnp.asarray(rng.random(num_clients) < 0.3),
  )


def permute_clients(uploads, seed):
  """Relabels client slots by a random permutation and shuffles rows; same round."""
  rng = np.random.default_rng(seed)
  num_clients = uploads.client_mask.shape[0]
  perm = rng.permutation(num_clients)  # old slot c -> new slot perm[c]
  inv = np.argsort(perm)
  row_order = rng.permutation(uploads.row_mask.shape[0])
  take_rows = lambda x: jnp.asarray(np.asarray(x)[row_order])
  return Uploads(
      row_client=jnp.asarray(perm[np.asarray(uploads.row_client)][row_order]),
      row_item=take_rows(uploads.row_item),
      row_grad=take_rows(uploads.row_grad),
      row_mask=take_rows(uploads.row_mask),
      net={k: jnp.asarray(np.asarray(v)[inv]) for k, v in uploads.net.items()},
      client_weight=jnp.asarray(np.asarray(uploads.client_weight)[inv]),
      client_mask=jnp.asarray(np.asarray(uploads.client_mask)[inv]),
      client_malicious=jnp.asarray(np.asarray(uploads.client_malicious)[inv]),
  ), perm


def dense_round(values, item=0):
  """A round where client slot c uploads values[c] for `item` and as its MLP."""
  values = np.asarray(values, np.float32)
  n, dim = values.shape
  return Uploads(
      row_client=jnp.arange(n, dtype=jnp.int32),
      row_item=jnp.full((n,), item, jnp.int32),
      row_grad=jnp.asarray(values),
      row_mask=jnp.ones((n,), bool),
      net={"w": jnp.asarray(values)},
      client_weight=jnp.ones((n,), jnp.float32),
      client_mask=jnp.ones((n,), bool),
      client_malicious=jnp.zeros((n,), bool),
  )
