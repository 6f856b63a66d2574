"""Fault injection: NaN/Inf uploads are rejected by every aggregator (the model equals a
round without those clients); 1e30 ("huge") is rejected by the robust ones."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from fedjax_rec.aggregators import AGGREGATORS
from fedjax_rec import scheduling
from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
from fedjax_rec.faults import parse_faults
from fedjax_rec.models.ncf import NCFConfig
from fedjax_rec.runner import EvalConfig, config_dict
from fedjax_rec.simulation import Simulator
from fedjax_rec.tasks.ncf.config import SimConfig

K = 2


@pytest.fixture(scope="module")
def dataset():
  return load_synthetic(SyntheticConfig(num_users=40, num_items=30, num_clusters=2,
                                        mean_activity=6, min_activity=3, max_activity=12))


def _config(aggregator: str, faults: str = "none") -> SimConfig:
  return SimConfig(model=NCFConfig(embed_dim=4, hidden=(4,)), clients_per_round=12, epochs=1,
                   max_buckets=2, aggregator=aggregator, inject_faults=faults)


def _round(config, dataset, users, plan=None):
  sim = Simulator(config, dataset)
  state = sim.init()
  (server, _, _, out), plan = sim.apply_round(state.server, state.clients, state.attackers,
                                              users, plan=plan)
  return sim, jax.device_get(server.params), jax.device_get(out), plan


_CLEAN: dict = {}  # the clean round of each aggregator, users and plan: one compile each


def _faulty_and_clean(aggregator, kind, dataset):
  users = np.arange(12)
  sim, params, out, plan = _round(_config(aggregator, f"{kind}:{K}"), dataset, users)
  slots = np.concatenate([np.asarray(s) for s in
                          scheduling.fill_slots(sim.data.client_data.num_rows, users, plan)])
  corrupted = slots[slots >= 0][:K]
  rest = np.setdiff1d(users, corrupted)
  key = (aggregator, tuple(rest), repr(plan))
  if key not in _CLEAN:
    _CLEAN[key] = _round(_config(aggregator), dataset, rest, plan=plan)[1:3]
  clean, clean_out = _CLEAN[key]
  return params, out, clean, clean_out


@pytest.mark.parametrize("aggregator", AGGREGATORS)
@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_non_finite_uploads_are_rejected_by_every_aggregator(dataset, aggregator, kind):
  params, out, clean, clean_out = _faulty_and_clean(aggregator, kind, dataset)
  assert int(out["injected_faults"]) == K
  assert int(out["rejected"]) == K and int(clean_out["rejected"]) == 0
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(clean)):
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("aggregator", ["median", "trimmed_mean", "krum", "norm_bound",
                                        "hics"])
def test_huge_uploads_are_rejected_by_the_robust_aggregators(dataset, aggregator):
  params, out, clean, _ = _faulty_and_clean(aggregator, "huge", dataset)
  assert int(out["rejected"]) == K
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(clean)):
    assert np.all(np.isfinite(a)) and np.abs(a).max() < 1e3
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fedavg_aggregates_huge_uploads(dataset):
  """Documented: plain FedAvg has no magnitude bound (max_abs=None), so 1e30 is accepted.

  Under the default Adam server step the update stays about `lr` per coordinate; under
  SGD it is `lr * 1e30`, and the run stops at the next non-finite state (`check_finite`).
  """
  _, params, out, _ = _round(_config("fedavg", f"huge:{K}"), dataset, np.arange(12))
  assert int(out["rejected"]) == 0 and int(out["injected_faults"]) == K
  sgd = dataclasses.replace(_config("fedavg", f"huge:{K}"),
                            server=dataclasses.replace(SimConfig().server, optimizer="sgd"))
  _, params, _, _ = _round(sgd, dataset, np.arange(12))
  assert np.abs(params.item_emb).max() > 1e20


@pytest.mark.parametrize("spec", ["nan", "nan:0", "bad:1", "inf:x", "huge:-1"])
def test_bad_specs_are_refused(spec):
  with pytest.raises(ValueError, match="inject_faults"):
    parse_faults(spec)
  with pytest.raises(ValueError, match="inject_faults"):
    dataclasses.replace(SimConfig(), inject_faults=spec)


def test_default_is_not_recorded(dataset):
  assert "inject_faults" not in config_dict(SimConfig(), "x", EvalConfig())["sim"]
  assert config_dict(SimConfig(inject_faults="nan:1"), "x", EvalConfig())["sim"][
      "inject_faults"] == "nan:1"
