"""The driver's one evaluation path: one scoring pass, samples, both tasks."""

from __future__ import annotations

import numpy as np
import pytest

from fedjax_rec import metrics
from fedjax_rec.data.synthetic import load_synthetic
from fedjax_rec.runner import EvalConfig, config_dict, run
from fedjax_rec.simulation import Simulator
from tests.test_simulation import SMALL, small_config


@pytest.fixture(scope="module")
def trained():
  dataset = load_synthetic(SMALL, seed=3)
  sim = Simulator(small_config(epochs=2), dataset)
  state = sim.init()
  for _ in range(2):
    state, _ = sim.run_epoch(state)
  return sim, state


def test_evaluate_equals_the_separate_passes(trained):
  sim, state = trained
  targets = np.asarray([3, 17])
  got = sim.evaluate(state, ks=(5, 20), targets=targets, er_ks=(5, 10))
  params, ds = sim.eval_params(state), sim.dataset
  want = metrics.ranking_metrics(sim.score_fn(), params, ds.seen(), ds.test, ks=(5, 20))
  want.update(metrics.exposure_ratio(sim.score_fn(), params, ds.interacted(), targets,
                                     ks=(5, 10)))
  assert got.keys() == want.keys()
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-6, err_msg=name)
  valid = sim.evaluate(state, split="valid")
  assert valid == pytest.approx(metrics.ranking_metrics(sim.score_fn(), params, ds.train,
                                                        ds.valid))


def test_user_sample_is_fixed_and_reports_standard_errors(trained):
  sim, state = trained
  a = sim.evaluate(state, users=20)
  assert a == sim.evaluate(state, users=20)
  assert {"recall@20_se", "ndcg@20_se"} <= set(a)
  full = sim.evaluate(state)
  assert not any(k.endswith("_se") for k in full)
  everyone = sim.evaluate(state, users=sim.dataset.num_users)
  assert everyone["recall@20"] == pytest.approx(full["recall@20"])


def test_run_records_the_sample_only_when_asked(tmp_path):
  dataset = load_synthetic(SMALL, seed=3)
  summary = run(small_config(), dataset, eval_config=EvalConfig(users=20), log=lambda s: None)
  assert "test/recall@20_se" in summary["final"]
  # Defaults stay out of config.json, so runs recorded before these options still resume.
  assert "users" not in config_dict(small_config(), dataset.name, EvalConfig())["eval"]
  assert config_dict(small_config(), dataset.name, EvalConfig(users=20))["eval"]["users"] == 20
