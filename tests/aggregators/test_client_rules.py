"""Multi-Krum, Bulyan and the UNION filter: oracles with a model view, invariances, and
the detection metrics."""

from __future__ import annotations

import functools
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec import aggregators as agg_lib
from fedjax_rec.aggregators import client_select
from fedjax_rec.aggregators.client_select import client_sq_dists
from fedjax_rec.aggregators.detection import detection_metrics, pooled_rates
from fedjax_rec.aggregators.union_filter import uniformity_shift
from fedjax_rec.simulation import epoch_summary
from fedjax_rec.types import Uploads

from . import reference, reference_clients
from .uploads_gen import DIM, NUM_ITEMS, permute_clients, random_uploads

WIDE = 12  # client slots of the rounds here: Bulyan (f = 1) needs n >= 7 accepted


@functools.lru_cache(maxsize=None)
def _jitted(name, convention, kw_items, num_items=NUM_ITEMS):
  agg = agg_lib.make_aggregator(name, num_items, convention, **dict(kw_items))
  return jax.jit(agg.apply)


def run(name, convention, uploads, view=None, num_items=NUM_ITEMS, **kw):
  full = tuple(sorted({**agg_lib.DEFAULTS[name], **kw}.items()))
  apply = _jitted(name, convention, full, num_items)
  args = (uploads, ()) if view is None else (uploads, (), agg_lib.ServerView(*view))
  aggregate, _, metrics = apply(*args)
  return aggregate, {k: np.asarray(v) for k, v in metrics.items()}


def check(name, convention, uploads, view=None, **kw):
  aggregate, metrics = run(name, convention, uploads, view, **kw)
  full = {**agg_lib.DEFAULTS[name], **kw}
  oview = None if view is None else (np.asarray(view[0]), view[1])
  reference.assert_matches(aggregate, metrics, reference_clients.oracle(
      name, uploads, NUM_ITEMS, convention, view=oview, **full))
  return metrics


def _view(seed, lr=0.5, d=3):
  return jax.random.normal(jax.random.key(seed), (NUM_ITEMS, d)), lr


@pytest.mark.parametrize("convention", ["sum", "mean", "weighted"])
def test_wide_rounds_match_oracle(convention):
  """Rounds of 12 slots: Bulyan selects (no fallback) and Multi-Krum drops clients."""
  fallbacks = []
  for seed in range(3):
    u = random_uploads(seed, num_clients=WIDE, p_real=0.95)
    m = check("bulyan", convention, u, num_byzantine=1)
    fallbacks.append(int(m["bulyan_fallback"]))
    check("multi_krum", convention, u, num_byzantine=2)
    check("multi_krum", convention, u, num_byzantine=1, num_selected=4)
  assert 0 in fallbacks


@pytest.mark.parametrize("dense", [False, True])
def test_client_distances_over_several_tiers(dense):
  """Both row methods, the per-item Grams and the dense chunks (several of them)."""
  u = random_uploads(5, num_clients=40, p_real=0.9)
  accepted, _ = reference.accepted_clients(u, 1e6)
  cleaned, _ = agg_lib.validate(u)
  with mock.patch.object(client_select, "_DENSE_CHUNK_FLOATS", 40 * DIM * 7):
    dist = np.asarray(jax.jit(client_sq_dists, static_argnums=(1, 2))(cleaned, NUM_ITEMS,
                                                                      dense))
  vecs = reference_clients.dense_clients(u, accepted, NUM_ITEMS)
  for a in accepted:
    for b in accepted:
      want = np.sum((vecs[a] - vecs[b]) ** 2)
      np.testing.assert_allclose(dist[a, b], want, rtol=1e-4, atol=1e-4)


def test_union_scores_and_filter_match_oracle():
  for seed in range(3):
    u = random_uploads(seed, num_clients=WIDE, p_real=0.95)
    table, lr = _view(seed)
    cleaned, _ = agg_lib.validate(u)
    shift, scored = uniformity_shift(cleaned, agg_lib.ServerView(table, lr), NUM_ITEMS, None,
                                     4, 6)
    accepted, _ = reference.accepted_clients(u, 1e6)
    want = reference_clients.union_scores(u, accepted, NUM_ITEMS, np.asarray(table, np.float64),
                                          lr, 4, 6)
    assert sorted(want) == np.flatnonzero(np.asarray(scored)).tolist()
    for c, value in want.items():
      np.testing.assert_allclose(float(shift[c]), value, rtol=1e-3, atol=1e-6)
    for convention in ("sum", "weighted"):
      check("union_filter", convention, u, (table, lr), max_rows=4, ref_items=6)


def _outlier_round(num_clients=12, attacker=7, scale=50.0, seed=0):
  """Every client uploads items 0..4 near a common value; the attacker far from it."""
  rng = np.random.default_rng(seed)
  items = 5
  grad = 0.1 + 0.01 * rng.normal(size=(num_clients, items, 3)).astype(np.float32)
  mlp = 0.1 + 0.01 * rng.normal(size=(num_clients, 4)).astype(np.float32)
  grad[attacker] = scale * rng.normal(size=(items, 3))
  mlp[attacker] = scale
  malicious = np.zeros(num_clients, bool)
  malicious[attacker] = True
  return Uploads(
      row_client=jnp.repeat(jnp.arange(num_clients, dtype=jnp.int32), items),
      row_item=jnp.tile(jnp.arange(items, dtype=jnp.int32), num_clients),
      row_grad=jnp.asarray(grad.reshape(-1, 3)),
      row_mask=jnp.ones((num_clients * items,), bool),
      net={"w": jnp.asarray(mlp)},
      client_weight=jnp.ones((num_clients,), jnp.float32),
      client_mask=jnp.ones((num_clients,), bool),
      client_malicious=jnp.asarray(malicious))


@pytest.mark.parametrize("name", ["multi_krum", "bulyan", "union_filter"])
def test_obvious_attacker_is_rejected(name):
  u = _outlier_round()
  view = _view(1, lr=1.0) if name == "union_filter" else None
  aggregate, m = run(name, "mean", u, view)
  assert m["detect_tpr"] == 1.0 and m["detect_flagged_malicious"] == 1
  assert m["detect_fpr"] <= 2 / 11  # Multi-Krum drops f = 1, Bulyan 2f = 2 clients
  assert np.all(np.abs(np.asarray(aggregate.item_grad[:5])) < 1.0)


@pytest.mark.parametrize("name,kw", [("multi_krum", {}), ("bulyan", {}),
                                     ("union_filter", {"max_rows": 4, "ref_items": 6})])
def test_client_order_invariance(name, kw):
  for seed in range(2):
    u = random_uploads(seed, num_clients=WIDE, p_real=0.95)
    permuted, perm = permute_clients(u, seed + 7)
    view = _view(seed) if name == "union_filter" else None
    a, ma = run(name, "mean", u, view, **kw)
    b, mb = run(name, "mean", permuted, view, **kw)
    np.testing.assert_array_equal(np.asarray(a.item_touched), np.asarray(b.item_touched))
    np.testing.assert_allclose(np.asarray(a.item_grad), np.asarray(b.item_grad), atol=1e-5)
    for x, y in zip(jax.tree.leaves(a.net), jax.tree.leaves(b.net)):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)
    for key in ("detect_tpr", "detect_fpr"):
      np.testing.assert_allclose(ma[key], mb[key])


def test_multi_krum_keeping_everyone_is_fedavg():
  u = random_uploads(2, num_clients=WIDE, p_real=0.95)
  for convention in ("sum", "mean", "weighted"):
    a, m = run("multi_krum", convention, u, num_byzantine=0, num_selected=WIDE)
    b, _ = run("fedavg", convention, u)
    np.testing.assert_allclose(np.asarray(a.item_grad), np.asarray(b.item_grad), atol=1e-5)
    assert m["multi_krum_dropped"] == 0 and m["detect_fpr"] == 0


def test_detection_metric_definition():
  real = jnp.asarray([True, True, True, True, True, False])
  malicious = jnp.asarray([True, True, False, False, False, True])  # slot 5 is padding
  u = Uploads(row_client=jnp.zeros((1,), jnp.int32), row_item=jnp.zeros((1,), jnp.int32),
              row_grad=jnp.zeros((1, 2)), row_mask=jnp.zeros((1,), bool), net={},
              client_weight=jnp.ones((6,)), client_mask=real, client_malicious=malicious)
  flagged = jnp.asarray([True, False, True, False, False, True])
  m = jax.device_get(detection_metrics(flagged, u))
  assert m["detect_flagged_malicious"] == 1 and m["detect_flagged_benign"] == 1
  assert m["detect_tpr"] == 0.5 and np.isclose(m["detect_fpr"], 1 / 3)
  none = jax.device_get(detection_metrics(flagged, u._replace(
      client_malicious=jnp.zeros((6,), bool))))
  assert none["detect_tpr"] == 0.0 and np.isclose(none["detect_fpr"], 2 / 5)
  only = jax.device_get(detection_metrics(flagged, u._replace(client_malicious=real)))
  assert only["detect_fpr"] == 0.0 and only["detect_tpr"] == 0.4


def test_epoch_rates_are_pooled_over_rounds():
  # Two rounds: one with 2 attackers (1 caught) among 10 clients, one without attackers.
  rounds = [dict(detect_tpr=0.5, detect_fpr=0.125, detect_flagged_malicious=1,
                 detect_flagged_benign=1, num_malicious=2, num_clients=10),
            dict(detect_tpr=0.0, detect_fpr=0.0, detect_flagged_malicious=0,
                 detect_flagged_benign=0, num_malicious=0, num_clients=10)]
  s = epoch_summary(rounds, {}, epoch=0, seconds=1.0, real=1, padded=1)
  assert s["detect_tpr"] == 0.5 and np.isclose(s["detect_fpr"], 1 / 18)
  assert pooled_rates({"num_clients": 3.0}) == {}
  assert pooled_rates({"detect_flagged_malicious": 0.0, "detect_flagged_benign": 0.0,
                       "num_malicious": 0.0, "num_clients": 0.0}) == {
                           "detect_tpr": 0.0, "detect_fpr": 0.0}
