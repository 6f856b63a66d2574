"""`runner.run` with the sequential simulator: results, exact resume, attack and defense."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest

from fedjax_rec import checkpoints, runner
from fedjax_rec.runner import EvalConfig, run
from fedjax_rec.simulation import Simulator
from tests.sequential.conftest import FAST_COMPILE, tiny_config

EVAL = EvalConfig(every=1, ks=(10,), er_ks=(5,), batch_size=32)


class _Crash(RuntimeError):
  pass


class _CrashAfter:
  """Delegates to a simulator; the (n+1)-th `run_epoch` raises (a killed run)."""

  def __init__(self, sim, epochs_before_crash):
    self._sim, self._left = sim, epochs_before_crash

  def __getattr__(self, name):
    return getattr(self._sim, name)

  def run_epoch(self, state):
    if self._left == 0:
      raise _Crash()
    self._left -= 1
    return self._sim.run_epoch(state)


def test_run_writes_results_and_resumes_exactly(tiny_dataset, tmp_path):
  # GRU4Rec with the server defense and an A-hum attacker: every part of the round.
  cfg = tiny_config("fedseq", "gru4rec", attack="a_hum", num_malicious=2, targets=(5,),
                    attack_kwargs=(("history_len", 4), ("num_users", 3)))
  cfg = dataclasses.replace(cfg, defense=dataclasses.replace(cfg.defense, enabled=True,
                                                             warmup_rounds=1))
  sim = Simulator(cfg, tiny_dataset, compiler_options=FAST_COMPILE)
  factory = lambda c, d: sim  # one compiled round for the three runs below
  logs = []
  full = run(cfg, tiny_dataset, workdir=tmp_path / "full", eval_config=EVAL,
             simulator_factory=factory, log=logs.append)
  rows = checkpoints.read_jsonl(tmp_path / "full" / "metrics.jsonl")
  assert [r["epoch"] for r in rows] == [1, 2]
  for key in ("test/hr@10", "test/ndcg@10", "test/er@5", "train/defense/flagged",
              "train/loss/rec", "train/num_malicious"):
    assert np.isfinite(rows[-1][key]), key
  assert rows[-1]["train/num_malicious"] > 0 or rows[0]["train/num_malicious"] > 0
  assert json.loads((tmp_path / "full" / "summary.json").read_text())["epochs"] == 2

  with pytest.raises(_Crash):
    run(cfg, tiny_dataset, workdir=tmp_path / "cut", eval_config=EVAL,
        simulator_factory=lambda c, d: _CrashAfter(sim, 1), log=logs.append)
  assert [r["epoch"] for r in checkpoints.read_jsonl(tmp_path / "cut" / "metrics.jsonl")] == [1]
  logs.clear()
  resumed = run(cfg, tiny_dataset, workdir=tmp_path / "cut", eval_config=EVAL,
                simulator_factory=factory, log=logs.append)
  assert any("resuming after epoch 1" in line for line in logs)
  drop = lambda r: {k: v for k, v in r.items() if "seconds" not in k}
  assert drop(resumed["final"]) == drop(full["final"])
  logs.clear()
  again = run(cfg, tiny_dataset, workdir=tmp_path / "cut", eval_config=EVAL,
              simulator_factory=factory, log=logs.append)
  assert any("already finished" in line for line in logs) and again == resumed


def test_seeds_as_a_leading_axis_equal_separate_runs(tiny_dataset, tmp_path, monkeypatch):
  # The sequential task gets --num_seeds from the protocol: S replicas in one program,
  # each equal to its own run (FORTRESS with its defense and an attacker). Both sides
  # compile with the tests' fast XLA options.
  monkeypatch.setattr(runner, "Simulator",
                      functools.partial(Simulator, compiler_options=FAST_COMPILE))
  cfg = tiny_config("fortress", attack="a_hum", num_malicious=2, targets=(3,), epochs=2,
                    attack_kwargs=(("history_len", 4), ("num_users", 3)))
  summary = run(cfg, tiny_dataset, num_seeds=2, eval_config=EVAL, workdir=tmp_path / "x2",
                log=lambda s: None)
  assert summary["seeds"] == [0, 1]
  for seed, final in zip((0, 1), summary["final"]):
    single = run(dataclasses.replace(cfg, seed=seed), tiny_dataset, eval_config=EVAL,
                 log=lambda s: None, simulator_factory=lambda c, d: Simulator(
                     c, d, compiler_options=FAST_COMPILE))["final"]
    for key in ("test/hr@10", "test/ndcg@10", "test/er@5", "train/loss/rec"):
      np.testing.assert_allclose(final[key], single[key], rtol=2e-4, atol=1e-6, err_msg=key)
  rows = checkpoints.read_jsonl(tmp_path / "x2" / "metrics.jsonl")
  assert [(r["epoch"], r["seed"]) for r in rows] == [(1, 0), (1, 1), (2, 0), (2, 1)]
