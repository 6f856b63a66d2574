"""The accuracy drop of an attacked run against its baseline run (and its refusals)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedjax_rec import checkpoints
from fedjax_rec.accuracy_drop import BaselineMismatch, accuracy_drop, drop_rows
from fedjax_rec.runner import EvalConfig, WorkdirError, config_dict
from fedjax_rec.server import ServerConfig
from fedjax_rec.tasks.ncf.config import SimConfig

REPO = Path(__file__).resolve().parents[1]
BASE = SimConfig(epochs=2, targets=(5,))
ROWS = [{"epoch": 1, "test/recall@20": 0.10, "test/ndcg@20": 0.08, "test/er@5": 0.0,
         "test/recall@20_se": 0.01, "train/seconds": 1.0},
        {"epoch": 2, "test/recall@20": 0.16, "test/ndcg@20": 0.12, "test/er@5": 0.0,
         "train/seconds": 1.0}]


def _workdir(path: Path, config: SimConfig, rows: list[dict]) -> Path:
  checkpoints.atomic_write_json(path / "config.json",
                                config_dict(config, "synthetic", EvalConfig()))
  checkpoints.write_jsonl(path / "metrics.jsonl", rows)
  return path


def _scaled(rows, factor):
  return [{k: (v * factor if k.startswith("test/") else v) for k, v in r.items()} for r in rows]


def test_identical_runs_drop_nothing(tmp_path):
  run = _workdir(tmp_path / "a", BASE, ROWS)
  base = _workdir(tmp_path / "b", BASE, ROWS)
  out = accuracy_drop(run, base)
  assert [r["epoch"] for r in out] == [1, 2]
  for row in out:
    assert set(row) == {"epoch", "recall@20", "ndcg@20", "baseline/recall@20",
                        "baseline/ndcg@20", "drop/recall@20", "drop/ndcg@20",
                        "rel_drop/recall@20", "rel_drop/ndcg@20"}
    assert row["rel_drop/recall@20"] == 0 and row["drop/ndcg@20"] == 0


def test_worse_attacked_run_drops(tmp_path):
  attacked = dataclasses.replace(BASE, attack="lie", num_malicious=3, targets=(7,),
                                 attack_kwargs=(("z", 1.0),))
  run = _workdir(tmp_path / "a", attacked, _scaled(ROWS, 0.75))
  base = _workdir(tmp_path / "b", BASE, ROWS)
  out = accuracy_drop(run, base)
  # 0.16 against 0.75 · 0.16 = 0.12: a drop of 0.04, 25% of the baseline.
  np.testing.assert_allclose(out[1]["drop/recall@20"], 0.04)
  np.testing.assert_allclose([r["rel_drop/recall@20"] for r in out], [0.25, 0.25])
  np.testing.assert_allclose([r["rel_drop/ndcg@20"] for r in out], [0.25, 0.25])
  better = accuracy_drop(_workdir(tmp_path / "c", attacked, _scaled(ROWS, 1.5)), base)
  assert all(r["rel_drop/recall@20"] < 0 for r in better)


@pytest.mark.parametrize("change, field", [
    (dict(seed=1), "sim.seed"), (dict(epochs=3), "sim.epochs"),
    (dict(server=ServerConfig(lr=0.5)), "sim.server.lr"),
    (dict(aggregator="median"), "sim.aggregator")])
def test_mismatched_baseline_refused(tmp_path, change, field):
  run = _workdir(tmp_path / "a", dataclasses.replace(BASE, attack="fang", num_malicious=2), ROWS)
  base = _workdir(tmp_path / "b", dataclasses.replace(BASE, **change), ROWS)
  with pytest.raises(BaselineMismatch, match=field.replace(".", r"\.")) as info:
    accuracy_drop(run, base)
  assert "\n" not in str(info.value)


def test_baseline_with_attackers_refused(tmp_path):
  attacked = dataclasses.replace(BASE, attack="lie", num_malicious=3)
  run = _workdir(tmp_path / "a", attacked, ROWS)
  with pytest.raises(BaselineMismatch, match="has attackers"):
    accuracy_drop(run, _workdir(tmp_path / "b", attacked, ROWS))


def test_missing_files_and_no_common_epoch(tmp_path):
  run = _workdir(tmp_path / "a", BASE, ROWS)
  with pytest.raises(WorkdirError, match="config.json"):
    accuracy_drop(run, tmp_path / "missing")
  base = _workdir(tmp_path / "b", BASE, [dict(ROWS[0], epoch=9)])
  with pytest.raises(BaselineMismatch, match="share no evaluated epoch"):
    accuracy_drop(run, base)


def test_seeds_and_hit_rate_rows_pair_up():
  rows = [{"epoch": 1, "seed": s, "test/hr@10": 0.5, "test/sampled_ndcg@10": 0.2}
          for s in (0, 1)]
  base = [{"epoch": 1, "seed": 1, "test/hr@10": 1.0, "test/sampled_ndcg@10": 0.4}]
  (out,) = drop_rows(rows, base)
  assert out["seed"] == 1 and out["rel_drop/hr@10"] == 0.5
  assert out["rel_drop/sampled_ndcg@10"] == 0.5


def test_cli(tmp_path):
  attacked = dataclasses.replace(BASE, attack="lie", num_malicious=3)
  run = _workdir(tmp_path / "a", attacked, _scaled(ROWS, 0.5))
  base = _workdir(tmp_path / "b", BASE, ROWS)
  bad = _workdir(tmp_path / "c", dataclasses.replace(BASE, seed=4), ROWS)
  cmd = [sys.executable, "-m", "experiments.accuracy_drop"]
  ok = subprocess.run(cmd + [str(run), str(base), "--json"], cwd=REPO, capture_output=True,
                      text=True, check=True)
  rows = [json.loads(line) for line in ok.stdout.splitlines()]
  assert [r["rel_drop/recall@20"] for r in rows] == [0.5, 0.5]
  refused = subprocess.run(cmd + [str(run), str(bad)], cwd=REPO, capture_output=True, text=True)
  assert refused.returncode == 2
  assert refused.stderr.count("\n") == 1 and "sim.seed" in refused.stderr
