"""Dense item blocks and sort-free order statistics, and a round wide enough for many tiers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec import aggregators as agg_lib
from fedjax_rec.aggregators import item_blocks, order_stats
from fedjax_rec.types import Uploads

from . import reference
from .uploads_gen import random_uploads


def test_float_keys_order_and_round_trip():
  values = np.array([-np.inf, -1e6, -1.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, 1e6, np.inf],
                    np.float32)
  keys = np.asarray(order_stats.float_keys(jnp.asarray(values)))
  assert np.all(np.diff(keys.astype(np.int64)) > 0)
  back = np.asarray(order_stats.key_floats(jnp.asarray(keys)))
  np.testing.assert_array_equal(back.view(np.uint32), values.view(np.uint32))
  assert np.all(keys < order_stats.ABSENT)


@pytest.mark.parametrize("size", [5, 32, 48, 64, 80, 100])
@pytest.mark.parametrize("kind", ["sum", "min"])
def test_reduce_slots(size, kind):
  x = np.random.default_rng(size).integers(-50, 50, (3, size, 4)).astype(np.int32)
  got = item_blocks.reduce_slots(jnp.asarray(x), kind)
  np.testing.assert_array_equal(np.asarray(got), getattr(np, kind)(x, axis=1))


@pytest.mark.parametrize("width", [7, 48, 96])
def test_kth_and_edge_key_match_sort(width):
  rng = np.random.default_rng(width)
  num_items, dim, max_rank = 6, 5, 3
  values = rng.integers(-3, 4, (num_items, width, dim)).astype(np.float32)  # many ties
  n = rng.integers(1, width + 1, num_items)
  present = np.arange(width)[None, :] < n[:, None]
  keys = jnp.where(jnp.asarray(present)[:, :, None], order_stats.float_keys(values),
                   order_stats.ABSENT)
  for rank_fn in (lambda m: 0, lambda m: m - 1, lambda m: (m - 1) // 2,
                  lambda m: min(max_rank, m - 1)):
    rank = np.array([rank_fn(m) for m in n])
    want = np.stack([np.sort(values[i, :n[i]], axis=0)[rank[i]] for i in range(num_items)])
    got = order_stats.key_floats(order_stats.kth_key(keys, jnp.asarray(rank)[:, None]))
    np.testing.assert_array_equal(np.asarray(got), want)
    if np.all(rank <= max_rank):
      got = order_stats.edge_key(keys, jnp.asarray(rank)[:, None], max_rank)
      np.testing.assert_array_equal(np.asarray(order_stats.key_floats(got)), want)


@pytest.mark.parametrize("num_clients", [3, 9, 16, 100, 256, 260])
def test_tier_widths(num_clients):
  widths = item_blocks.tier_widths(num_clients)
  assert widths[-1] >= num_clients
  assert all(4 * a <= 3 * b for a, b in zip(widths, widths[1:]))
  assert all(w <= 32 or w % 16 == 0 for w in widths)


def test_group_rows_matches_per_item_lists():
  uploads = random_uploads(0)
  num_items = 13
  groups = item_blocks.group_rows(agg_lib.validate(uploads, 1e6)[0], num_items)
  rows = reference.per_item(uploads, reference.accepted_clients(uploads, 1e6)[0], num_items)
  row_client = np.asarray(uploads.row_client)
  assert int(groups.start[-1]) == sum(len(clients) for clients, _ in rows.values())
  for item, (clients, _) in rows.items():
    n, start = int(groups.counts[item]), int(groups.start[item])
    assert n == len(clients)
    assert row_client[np.asarray(groups.rows[start:start + n])].tolist() == clients


def wide_round(seed, *, int_values):
  """100 client slots (some padded, one rejected), item counts spanning every tier."""
  rng = np.random.default_rng(seed)
  num_clients, dim = 100, 3
  counts = [0, 1, 2, 3, 7, 9, 17, 33, 47, 50, 64, 70, 94]
  client_mask = np.ones(num_clients, bool)
  client_mask[rng.choice(num_clients, 4, replace=False)] = False
  values = lambda *shape: (rng.integers(-2, 3, shape) if int_values
                           else rng.normal(size=shape)).astype(np.float32)
  rows = [(c, item) for item, k in enumerate(counts)
          for c in rng.choice(num_clients, k, replace=False)]
  row_grad = values(len(rows), dim)
  row_grad[rng.integers(len(rows)), 1] = np.nan  # rejects that row's client
  pad = np.full((5, dim), np.nan, np.float32)
  perm = rng.permutation(len(rows) + len(pad))
  cat = lambda real, fake: np.concatenate([np.asarray(real), fake])[perm]
  mlp = {"w": values(num_clients, 2, 3), "wide": values(num_clients, 70)}
  for leaf in mlp.values():
    leaf[~client_mask] = np.nan
  return Uploads(
      row_client=jnp.asarray(cat([r[0] for r in rows], rng.integers(0, 9, 5)), jnp.int32),
      row_item=jnp.asarray(cat([r[1] for r in rows], rng.integers(0, 9, 5)), jnp.int32),
      row_grad=jnp.asarray(np.concatenate([row_grad, pad])[perm]),
      row_mask=jnp.asarray(cat(np.ones(len(rows), bool), np.zeros(5, bool))),
      net={k: jnp.asarray(v) for k, v in mlp.items()},
      client_weight=jnp.asarray(np.where(client_mask, 1.0, 0.0), jnp.float32),
      client_mask=jnp.asarray(client_mask),
      client_malicious=jnp.zeros((num_clients,), bool),
  ), len(counts)


@pytest.mark.parametrize("name,kw", [
    ("median", {}),
    ("trimmed_mean", {"num_trim": 2}),
    ("krum", {"num_byzantine": 1}),
])
def test_wide_round_matches_oracle(name, kw):
  """Many tiers, chunked slot reductions, the Gram path of Krum (a 76-wide MLP)."""
  full_kw = {**agg_lib.DEFAULTS[name], **kw}
  apply = None
  for seed in range(2):
    uploads, num_items = wide_round(seed, int_values=seed == 1)
    if apply is None:
      apply = jax.jit(agg_lib.make_aggregator(name, num_items, "sum", **full_kw).apply)
    aggregate, _, metrics = apply(uploads, ())
    item_grad, touched, mlp_leaves, extra = reference.oracle(
        name, uploads, num_items, "sum", **full_kw)
    np.testing.assert_array_equal(np.asarray(aggregate.item_touched), touched)
    np.testing.assert_allclose(np.asarray(aggregate.item_grad), item_grad, rtol=1e-5,
                               atol=1e-4)
    for got, want in zip(jax.tree.leaves(aggregate.net), mlp_leaves, strict=True):
      np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)
    for key, want in extra.items():
      np.testing.assert_allclose(np.asarray(metrics[key]), want, err_msg=key)
