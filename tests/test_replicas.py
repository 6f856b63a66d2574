"""`num_seeds` replicas in one vmapped program against separate runs of each seed."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec.tasks.ncf.client import LocalConfig
from fedjax_rec import scheduling
from fedjax_rec.data.synthetic import load_synthetic
from fedjax_rec.runner import EvalConfig, WorkdirError, run
from fedjax_rec.simulation import Simulator, take
from tests.test_simulation import SMALL, small_config

TOL = dict(rtol=2e-4, atol=2e-6)
# Wall time and the padding of the shared plan are the only numbers allowed to differ.
UNSHARED = ("seconds", "padding_efficiency")


@pytest.fixture(scope="module")
def dataset():
  return load_synthetic(SMALL, seed=3)


def _separate_runs(config, dataset, seeds, epochs, start=0):
  """`(state, epoch summaries, evaluation)` of one plain `Simulator` run per seed."""
  sims = [Simulator(dataclasses.replace(config, seed=seed), dataset) for seed in seeds]
  for sim in sims[1:]:
    # Only the seed differs, and it enters the round as data: share one compilation.
    sim.round_step = sims[0].round_step
    sim._epoch_end = sims[0]._epoch_end  # pylint: disable=protected-access
  out = []
  for sim in sims:
    state, summaries = sim.init()._replace(epoch=jnp.asarray(start, jnp.int32)), []
    for _ in range(epochs):
      state, m = sim.run_epoch(state)
      summaries.append(m)
    out.append((state, summaries, sim.evaluate(state, ks=(5,), targets=config.targets or None)))
  return out


def _assert_replica_equals(state, per_epoch, s, ref_state, ref_summaries):
  """Replica `s` of `state` and of each epoch's summaries equals a separate run."""
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), take(state, s), ref_state)
  for summaries, ref in zip(per_epoch, ref_summaries, strict=True):
    assert summaries[s].keys() == ref.keys()
    for k in ref:
      if k not in UNSHARED:
        np.testing.assert_allclose(summaries[s][k], ref[k], err_msg=k, **TOL)


# name: (config fields, replicas, replicas vmapped together, epochs, first epoch).
CASES = {
    # Fresh negatives in every replica (re-stacked client data): the first epoch that draws
    # them. Three replicas two at a time: a vmapped pair, then the third.
    "fedavg_resampled": (dict(resample_negatives=True, max_buckets=2), 3, 2, 1, 1),
    # A robust aggregator on Algorithm 1's uniform rounds (merged plans, fallbacks), one
    # replica after another.
    "median_uniform": (dict(aggregator="median", round_assignment="uniform"), 2, 1, 2, 0),
    # A poisoning attack: attacker states and slots are per replica too. All vmapped.
    "a_hum": (dict(attack="a_hum", num_malicious=3, targets=(5, 7)), 2, None, 2, 0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_replicas_equal_separate_runs(dataset, case):
  fields, num_seeds, vmap_size, epochs, start = CASES[case]
  config = small_config(seed=10, **fields)
  rep = Simulator(config, dataset, num_seeds=num_seeds, vmap_size=vmap_size)
  state, per_epoch = rep.init()._replace(epoch=jnp.full(num_seeds, start, jnp.int32)), []
  for _ in range(epochs):
    state, ms = rep.run_epoch(state)
    per_epoch.append(ms)
  evals = rep.evaluate(state, ks=(5,), targets=config.targets or None)
  assert np.asarray(state.epoch).tolist() == [start + epochs] * num_seeds

  separate = _separate_runs(config, dataset, rep.seeds, epochs, start)
  for s, (ref_state, ref_ms, ref_eval) in enumerate(separate):
    _assert_replica_equals(state, per_epoch, s, ref_state, ref_ms)
    for k in ref_eval:
      np.testing.assert_allclose(evals[s][k], ref_eval[k], err_msg=k, **TOL)
  # The replicas are distinct runs: equal replicas would pass the loop above trivially.
  emb = np.asarray(state.server.params.item_emb)
  for s in range(1, num_seeds):
    assert np.abs(emb[s] - emb[0]).max() > 1e-3
  if case == "a_hum":
    assert all(m[s]["num_malicious"] > 0 for m in per_epoch for s in range(num_seeds))


def test_stratified_replicas_compile_once(dataset):
  rep = Simulator(small_config(), dataset, num_seeds=2)
  state = rep.init()
  for _ in range(2):
    state, _ = rep.run_epoch(state)
  assert rep.round_step._cache_size() == 1  # pylint: disable=protected-access
  # The shared plan fits every replica's rounds, so no round fell back to another.
  for s, host in enumerate(rep.hosts):
    for users, _ in rep.epoch_rounds(0, s):
      assert rep.plan.fits(np.sort(host.num_rows[users])[::-1])


def test_merge_plans_fits_what_either_plan_fits():
  a = scheduling.BucketPlan((40, 16), (2, 6))
  b = scheduling.BucketPlan((24, 8), (4, 4))
  merged = scheduling.merge_plans([a, b])
  # Slot by slot: max(40,24) max(40,24) max(16,24) max(16,24) max(16,8) x4.
  assert merged == scheduling.BucketPlan((40, 24, 16), (2, 2, 4))
  assert merged.fits(np.array([40, 40, 16, 16, 16])) and merged.fits(np.array([24] * 4 + [8]))
  with pytest.raises(ValueError, match="slots"):
    scheduling.merge_plans([a, scheduling.BucketPlan((8,), (3,))])


def test_run_replicas_rows_summary_and_resume(dataset, tmp_path):
  config = small_config(epochs=2)
  ev = EvalConfig(ks=(5,))
  full = run(config, dataset, num_seeds=2, workdir=tmp_path / "full", eval_config=ev,
                      log=lambda line: None)
  rows = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
  assert [(r["epoch"], r["seed"]) for r in rows] == [(1, 0), (1, 1), (2, 0), (2, 1)]
  assert full["seeds"] == [0, 1] and "test/recall@5" in full["mean"]
  assert full["final"][0]["test/recall@5"] != full["final"][1]["test/recall@5"]

  # Killed during epoch 2: its first log line raises, after epoch 1 was checkpointed.
  def killer(line):
    if "epoch   2" in line:
      raise KeyboardInterrupt
  with pytest.raises(KeyboardInterrupt):
    run(config, dataset, num_seeds=2, workdir=tmp_path / "part", eval_config=ev, log=killer)
  lines = []
  resumed = run(config, dataset, num_seeds=2, workdir=tmp_path / "part", eval_config=ev,
                         log=lines.append)
  assert any("resuming after epoch 1" in line for line in lines)
  for got, want in zip(resumed["final"], full["final"]):
    assert got.keys() == want.keys()
    for k in want:
      if k not in ("train/seconds", "eval_seconds"):
        assert got[k] == pytest.approx(want[k], rel=1e-6), k
  # A single run, or another replica count, is refused on a replica workdir.
  with pytest.raises(WorkdirError, match="--num_seeds=2"):
    run(config, dataset, workdir=tmp_path / "full", eval_config=ev, log=lambda line: None)
  with pytest.raises(WorkdirError, match="--num_seeds=2"):
    run(config, dataset, num_seeds=3, workdir=tmp_path / "full", eval_config=ev,
                 log=lambda line: None)


def test_num_seeds_flag_rejects_non_positive():
  from tests.test_cli import _train  # pylint: disable=import-outside-toplevel
  proc = _train("--num_seeds=0")
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "--num_seeds" in proc.stderr


@pytest.mark.slow
def test_replicas_equal_separate_runs_with_client_randomness(dataset):
  """rCL4FedRec with local mini-batches: client keys, padded draws, aux and epoch end."""
  config = small_config(
      method="rcl4fedrec",
      method_kwargs=(("num_hot", 5), ("num_sparse", 10), ("num_synthetic_users", 6),
                     ("reg_steps", 2), ("synthetic_items", 5), ("synthetic_steps", 2)),
      local=LocalConfig(user_optimizer="sgd", user_lr=0.05, lr=0.05, batch_size=8))
  rep = Simulator(config, dataset, num_seeds=2)
  state, summaries = rep.run_epoch(rep.init())
  for s, (ref_state, ref_ms, _) in enumerate(_separate_runs(config, dataset, rep.seeds, 1)):
    _assert_replica_equals(state, [summaries], s, ref_state, ref_ms)


def test_seeds_benchmark_ratios():
  from experiments import benchmark_seeds as bs  # pylint: disable=import-outside-toplevel
  r = bs.SeedsResult(2, sequential=[bs.Timing(3.0, 20.0, 0.9), bs.Timing(5.0, 20.0, 0.9)],
                     replicas={None: bs.Timing(6.0, 24.0, 0.88)})
  assert r.ratio(None) == 6.0 / 8.0
  assert r.run_ratio(None, 1) == 24.0 / 40.0
  assert r.run_ratio(None, 3) == (24.0 + 2 * 6.0) / (40.0 + 2 * 8.0)
  assert "0.750 per epoch" in r.lines(3)[-1]
