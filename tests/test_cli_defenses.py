"""The client-level defenses through `experiments.train`: a_hum on the synthetic data, and
the detection metrics and ER@K cut-offs in metrics.jsonl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


# Bulyan runs Multi-Krum's selection, so its run covers the command-line path of all
# three in the default suite; each rule's aggregate is checked against its oracle in
# tests/aggregators/test_client_rules.py.
@pytest.mark.parametrize("aggregator", [
    pytest.param("multi_krum", marks=pytest.mark.slow), "bulyan",
    pytest.param("union_filter", marks=pytest.mark.slow)])
def test_defense_reports_detection(aggregator, tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--attack=a_hum", "--num_malicious=5",
       f"--aggregator={aggregator}", "--epochs=2", "--max_buckets=2", "--er_ks=5,10,20,50",
       f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=600,
      env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert len(rows) == 2
  for row in rows:
    for key in ("train/detect_tpr", "train/detect_fpr", "train/detect_flagged_malicious",
                "test/er@5", "test/er@10", "test/er@20", "test/er@50"):
      assert key in row and np.isfinite(row[key]), (key, row)
    assert 0.0 <= row["train/detect_tpr"] <= 1.0 and 0.0 <= row["train/detect_fpr"] <= 1.0
    assert row["train/num_malicious"] > 0
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["eval"]["er_ks"] == [5, 10, 20, 50]
