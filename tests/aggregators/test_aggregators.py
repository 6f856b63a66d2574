"""Aggregators against NumPy oracles on ragged per-item lists, plus invariances."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec import aggregators as agg_lib
from fedjax_rec.types import Uploads

from . import reference
from .uploads_gen import NUM_ITEMS, dense_round, permute_clients, random_uploads

CONVENTIONS = ("sum", "mean", "weighted")

# (name, hyper-parameters); chosen so that clipping, trimming and Krum fallbacks all occur
# on the random rounds (rows have 1..~8 uploaders). CORE runs under every convention;
# VARIANTS (other f, several Krum blocks with a partial last one, other HiCS levels) under
# "sum" only, to bound compile time.
CORE = [
    ("fedavg", {}),
    ("norm_bound", {"clip_norm": 1.5}),
    ("norm_bound", {"clip_quantile": 0.5}),  # adaptive bound
    ("median", {}),
    ("trimmed_mean", {"num_trim": 1}),
    ("krum", {"num_byzantine": 1}),
    ("hics", {"client_clip": 3.0, "row_clip": 1.0, "min_uploaders": 2}),
    ("multi_krum", {"num_byzantine": 1}),
    ("bulyan", {"num_byzantine": 1}),
    ("union_filter", {}),  # no ServerView: a zero table (tests/aggregators/test_client_rules.py)
]
VARIANTS = [
    ("trimmed_mean", {"num_trim": 2}),
    ("norm_bound", {"clip_quantile": 0.9}),
    ("norm_bound", {"clip_quantile": 1.0}),  # the largest norm: nothing is clipped
    ("krum", {"num_byzantine": 0, "block_items": 4}),  # several blocks, the last partial
    ("krum", {"num_byzantine": 3, "block_items": 5}),
    ("hics", {"client_clip": 100.0, "row_clip": 100.0, "min_uploaders": 3}),
    ("multi_krum", {"num_byzantine": 0, "num_selected": 3}),
    ("bulyan", {"num_byzantine": 0}),
]
CONFIGS = CORE + VARIANTS


def _config_id(config):
  name, kw = config
  return name + "".join(f"-{k}={v}" for k, v in sorted(kw.items()))


@functools.lru_cache(maxsize=None)
def _jitted(name, convention, kw_items):
  """One jitted apply per configuration, reused across tests (compile once)."""
  agg = agg_lib.make_aggregator(name, NUM_ITEMS, convention, **dict(kw_items))
  state = agg.init()
  apply = jax.jit(agg.apply)
  return lambda uploads: apply(uploads, state)


def run(name, convention, kw, uploads):
  full_kw = {**agg_lib.DEFAULTS[name], **kw}  # one compile per distinct configuration
  aggregate, _, metrics = _jitted(name, convention, tuple(sorted(full_kw.items())))(uploads)
  return aggregate, {k: np.asarray(v) for k, v in metrics.items()}


def oracle(name, convention, kw, uploads):
  full_kw = {**agg_lib.DEFAULTS[name], **kw}
  return reference.oracle(name, uploads, NUM_ITEMS, convention, **full_kw)


def assert_matches_oracle(name, convention, kw, uploads):
  aggregate, metrics = run(name, convention, kw, uploads)
  want = oracle(name, convention, kw, uploads)
  reference.assert_matches(aggregate, metrics, want)
  assert metrics["touched_rows"] == want[1].sum()
  return aggregate, metrics


def test_generator_covers_edge_cases():
  """The random rounds hold single-uploader rows, crowded rows and padding."""
  counts = []
  for seed in range(4):
    u = random_uploads(seed)
    accepted, _ = reference.accepted_clients(u, None)
    rows = reference.per_item(u, accepted, NUM_ITEMS)
    counts += [len(cs) for cs, _ in rows.values()]
    assert not np.all(np.asarray(u.client_mask))
    assert not np.all(np.asarray(u.row_mask))
  assert 1 in counts and 0 in counts and max(counts) >= 6


@pytest.mark.parametrize("config,convention",
                         [(c, conv) for c in CORE for conv in CONVENTIONS]
                         + [(c, "sum") for c in VARIANTS],
                         ids=lambda x: _config_id(x) if isinstance(x, tuple) else x)
def test_matches_oracle(config, convention):
  name, kw = config
  for seed in range(4):
    uploads = random_uploads(seed, int_values=seed >= 2)
    assert_matches_oracle(name, convention, kw, uploads)


def test_fallback_metrics_fire():
  """f larger than many rows allow: the fallback branches are really exercised."""
  uploads = random_uploads(0)
  _, m = run("trimmed_mean", "sum", {"num_trim": 2}, uploads)
  assert m["fallback_rows"] > 0
  _, m = run("krum", "sum", {"num_byzantine": 3, "block_items": 5}, uploads)
  assert m["krum_fallback_rows"] > 0
  _, m = run("norm_bound", "sum", {"clip_norm": 1.5}, uploads)
  assert 0 < m["clipped_share"] < 1


def test_all_padding_round():
  uploads = random_uploads(0)
  uploads = uploads._replace(client_mask=jnp.zeros_like(uploads.client_mask))
  for name, kw in CONFIGS:
    aggregate, metrics = run(name, "sum", kw, uploads)
    assert not np.any(np.asarray(aggregate.item_touched))
    assert np.all(np.asarray(aggregate.item_grad) == 0)
    for leaf in jax.tree.leaves(aggregate.net):
      assert np.all(np.asarray(leaf) == 0)
    assert metrics["rejected"] == 0


@pytest.mark.parametrize("name,kw", [
    ("median", {}),
    ("trimmed_mean", {"num_trim": 1}),
    ("krum", {"num_byzantine": 1}),
    ("krum", {"num_byzantine": 0, "block_items": 4}),
    ("fedavg", {}),
])
def test_client_permutation_invariance(name, kw):
  for seed in range(3):
    uploads = random_uploads(seed)  # continuous values
    permuted, perm = permute_clients(uploads, seed + 100)
    # Krum with k = n - f - 2 = 1 scores each upload by its nearest neighbour, so a mutual
    # nearest pair always ties exactly and the lowest slot wins: such rows legitimately
    # depend on slot labels. Continuous values make every other tie improbable.
    accepted, _ = reference.accepted_clients(uploads, 1e6)
    counts = np.array([len(cs) for cs, _ in
                       reference.per_item(uploads, accepted, NUM_ITEMS).values()])
    f = kw.get("num_byzantine", -10)
    rows = counts != f + 3
    for convention in ("sum", "mean"):
      a, ma = run(name, convention, kw, uploads)
      b, mb = run(name, convention, kw, permuted)
      np.testing.assert_array_equal(np.asarray(a.item_touched), np.asarray(b.item_touched))
      np.testing.assert_allclose(np.asarray(a.item_grad)[rows], np.asarray(b.item_grad)[rows],
                                 atol=1e-5)
      if len(accepted) == f + 3:
        continue
      for x, y in zip(jax.tree.leaves(a.net), jax.tree.leaves(b.net)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)
      if name == "krum" and ma["krum_mlp_chosen"] >= 0:
        assert mb["krum_mlp_chosen"] == perm[ma["krum_mlp_chosen"]]


def test_krum_ties_pick_lowest_slot():
  # 1-D uploads -1, -1, 1, 1 with f = 0 (k = n - f - 2 = 2 nearest others): every upload
  # has score 0 + 4 = 4, so the lowest slot wins. Relabelled as 1, -1, -1, 1 -> slot 0 (1).
  apply = jax.jit(agg_lib.krum(3, num_byzantine=0, convention="mean").apply)
  for values, want in (([-1, -1, 1, 1], -1.0), ([1, -1, -1, 1], 1.0)):
    u = dense_round(np.asarray(values)[:, None])
    aggregate, _, metrics = apply(u, ())
    assert float(aggregate.item_grad[0, 0]) == want
    assert int(metrics["krum_mlp_chosen"]) == 0
    assert float(aggregate.net["w"][0]) == want


def test_krum_identical_uploads_and_outlier():
  # Three identical honest uploads and one attacker: Krum returns the honest value, and
  # for "sum" scales it by n = 4.
  values = [[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [50.0, -50.0]]
  u = dense_round(values)._replace(client_malicious=jnp.asarray([False] * 3 + [True]))
  aggregate, _, metrics = jax.jit(agg_lib.krum(2, num_byzantine=1).apply)(u, ())
  np.testing.assert_allclose(np.asarray(aggregate.item_grad[0]), [4.0, 8.0])
  assert int(metrics["krum_mlp_chosen"]) == 0
  assert int(metrics["krum_mlp_chosen_malicious"]) == 0
  assert np.asarray(aggregate.item_touched).tolist() == [True, False]


def test_median_even_count_and_ties():
  u = dense_round([[1.0], [1.0], [4.0], [10.0]])
  aggregate, _, _ = jax.jit(agg_lib.median(1, convention="mean").apply)(u, ())
  assert float(aggregate.item_grad[0, 0]) == 2.5  # (1 + 4) / 2
  aggregate, _, _ = jax.jit(agg_lib.trimmed_mean(1, num_trim=1, convention="sum").apply)(u, ())
  assert float(aggregate.item_grad[0, 0]) == 10.0  # mean(1, 4) * n = 2.5 * 4


BAD_KINDS = ("nan_row", "inf_row", "huge_row", "nan_mlp", "huge_mlp", "nan_weight")


def _poison(uploads, client, kind):
  row_client = np.asarray(uploads.row_client)
  row_mask = np.asarray(uploads.row_mask)
  if kind.endswith("_row"):
    m = np.flatnonzero(row_mask & (row_client == client))[0]
    value = {"nan_row": np.nan, "inf_row": -np.inf, "huge_row": 1e30}[kind]
    return uploads._replace(row_grad=uploads.row_grad.at[m, 1].set(value))
  if kind == "nan_weight":
    return uploads._replace(client_weight=uploads.client_weight.at[client].set(np.nan))
  value = np.nan if kind == "nan_mlp" else 1e30
  mlp = dict(uploads.net)
  mlp["w"] = mlp["w"].at[client, 1, 2].set(value)
  return uploads._replace(net=mlp)


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_client_rejected_everywhere(kind):
  uploads = random_uploads(1)
  row_client = np.asarray(uploads.row_client)[np.asarray(uploads.row_mask)]
  real = np.flatnonzero(np.asarray(uploads.client_mask))
  client = next(c for c in real if np.any(row_client == c))
  poisoned = _poison(uploads, client, kind)
  without = uploads._replace(client_mask=uploads.client_mask.at[client].set(False))
  for name, kw in CORE:
    kw = {**kw, "max_abs": 1e6}
    a, ma = run(name, "weighted", kw, poisoned)
    b, mb = run(name, "weighted", kw, without)
    assert ma["rejected"] == mb["rejected"] + 1, (name, kind)
    assert np.all(np.isfinite(np.asarray(a.item_grad)))
    np.testing.assert_array_equal(np.asarray(a.item_touched), np.asarray(b.item_touched))
    np.testing.assert_allclose(np.asarray(a.item_grad), np.asarray(b.item_grad), atol=1e-6)
    for x, y in zip(jax.tree.leaves(a.net), jax.tree.leaves(b.net)):
      assert np.all(np.isfinite(np.asarray(x)))
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)
    assert_matches_oracle(name, "weighted", kw, poisoned)


def test_fedavg_without_bound_keeps_large_but_rejects_nan():
  uploads = random_uploads(1)
  real = np.flatnonzero(np.asarray(uploads.client_mask))
  row_client = np.asarray(uploads.row_client)[np.asarray(uploads.row_mask)]
  client = next(c for c in real if np.any(row_client == c))
  _, m = run("fedavg", "sum", {}, _poison(uploads, client, "huge_row"))
  assert m["rejected"] == 0
  _, m = run("fedavg", "sum", {}, _poison(uploads, client, "nan_row"))
  assert m["rejected"] == 1


def test_hics_sparsification_and_clipping():
  # Item 0: clients 0, 1 upload [3, 4] and [0, 1]; item 1: client 2 alone; item 2: nobody.
  # MLP zero. Client clip 2.5: client 0's norm 5 -> scaled by 0.5 -> [1.5, 2]; client 1
  # (norm 1) kept. Sum: [1.5, 3], norm 3.354 > row clip 1 -> [0.447, 0.894]. Item 1 has one
  # uploader < m = 2 -> zero, untouched, counted as sparsified.
  u = Uploads(
      row_client=jnp.asarray([0, 1, 2, 0], jnp.int32),
      row_item=jnp.asarray([0, 0, 1, 2], jnp.int32),
      row_grad=jnp.asarray([[3.0, 4.0], [0.0, 1.0], [7.0, 7.0], [9.0, 9.0]]),
      row_mask=jnp.asarray([True, True, True, False]),
      net={"w": jnp.zeros((3, 2))},
      client_weight=jnp.ones((3,)),
      client_mask=jnp.ones((3,), bool),
      client_malicious=jnp.zeros((3,), bool),
  )
  agg = agg_lib.hics(3, client_clip=2.5, row_clip=1.0, min_uploaders=2, convention="sum")
  aggregate, _, metrics = jax.jit(agg.apply)(u, ())
  want = np.array([1.5, 3.0]) / np.linalg.norm([1.5, 3.0])
  np.testing.assert_allclose(np.asarray(aggregate.item_grad[0]), want, rtol=1e-6)
  assert np.all(np.asarray(aggregate.item_grad[1:]) == 0)
  assert np.asarray(aggregate.item_touched).tolist() == [True, False, False]
  assert int(metrics["sparsified_rows"]) == 1
  np.testing.assert_allclose(metrics["clipped_share"], 2 / 3)  # clients 0 and 2 clipped
  np.testing.assert_allclose(metrics["row_clipped_share"], 1.0)
  # Loose clips and m = 1: plain FedAvg.
  loose = agg_lib.hics(3, client_clip=1e3, row_clip=1e3, min_uploaders=1, convention="sum")
  aggregate, _, metrics = jax.jit(loose.apply)(u, ())
  np.testing.assert_allclose(np.asarray(aggregate.item_grad), [[3, 5], [7, 7], [0, 0]])
  assert int(metrics["sparsified_rows"]) == 0


def _three_rows() -> Uploads:
  """Two clients, real rows of norms 5, 1 and 0 (one padded row), MLP norms 3 and 1."""
  return Uploads(
      row_client=jnp.asarray([0, 1, 1, 0], jnp.int32),
      row_item=jnp.asarray([0, 0, 1, 1], jnp.int32),
      row_grad=jnp.asarray([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0], [100.0, 0.0]]),
      row_mask=jnp.asarray([True, True, True, False]),
      net={"w": jnp.asarray([[0.0, 3.0], [0.0, 1.0]])},
      client_weight=jnp.ones((2,)),
      client_mask=jnp.ones((2,), bool),
      client_malicious=jnp.zeros((2,), bool),
  )


def test_norm_bound_clipped_share():
  # Row norms 5, 1, 0 (clip 2): one of three real rows clipped; [3,4] -> [1.2, 1.6].
  u = _three_rows()
  aggregate, _, metrics = jax.jit(agg_lib.norm_bound(2, clip_norm=2.0).apply)(u, ())
  np.testing.assert_allclose(np.asarray(aggregate.item_grad), [[1.2, 2.6], [0.0, 0.0]])
  assert np.asarray(aggregate.item_touched).tolist() == [True, True]
  np.testing.assert_allclose(metrics["clipped_share"], 1 / 3)
  np.testing.assert_allclose(metrics["mlp_clipped_share"], 1 / 2)
  np.testing.assert_allclose(np.asarray(aggregate.net["w"]), [0.0, 3.0])


@pytest.mark.parametrize("name", agg_lib.AGGREGATORS)
def test_default_hyper_parameters_run_under_jit(name):
  uploads = random_uploads(3)
  assert_matches_oracle(name, "mean", {}, uploads)


def test_norm_bound_adaptive_median():
  # Row norms 5, 1, 0 -> median bound 1: [3, 4] -> [0.6, 0.8]. MLP norms 3, 1 -> bound 2.
  u = _three_rows()
  aggregate, _, metrics = jax.jit(agg_lib.norm_bound(2, clip_quantile=0.5).apply)(u, ())
  np.testing.assert_allclose(np.asarray(aggregate.item_grad), [[0.6, 1.8], [0.0, 0.0]],
                             rtol=1e-6)
  np.testing.assert_allclose(np.asarray(aggregate.net["w"]), [0.0, 3.0], rtol=1e-6)
  np.testing.assert_allclose(metrics["row_bound"], 1.0)
  np.testing.assert_allclose(metrics["mlp_bound"], 2.0)
  np.testing.assert_allclose(metrics["clipped_share"], 1 / 3)
  np.testing.assert_allclose(metrics["mlp_clipped_share"], 1 / 2)
  # A rejected client (NaN) leaves the bound to the others: rows 1, 0 -> 0.5; MLP 1.
  bad = u._replace(net={"w": jnp.asarray([[jnp.nan, 3.0], [0.0, 1.0]])})
  _, _, metrics = jax.jit(agg_lib.norm_bound(2, clip_quantile=0.5).apply)(bad, ())
  np.testing.assert_allclose(metrics["row_bound"], 0.5)
  np.testing.assert_allclose(metrics["mlp_bound"], 1.0)
  assert metrics["rejected"] == 1


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5])
def test_norm_bound_rejects_bad_quantile(q):
  with pytest.raises(ValueError, match="clip_quantile"):
    agg_lib.norm_bound(2, clip_quantile=q)
  with pytest.raises(ValueError, match="clip_norm"):
    agg_lib.norm_bound(2, clip_norm=0.0)
