"""The validation search: a candidate runs once into the store, then reads back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _presplit(folder: Path, num_users=60, num_items=40, seed=0) -> None:
  rng = np.random.default_rng(seed)
  train, test = [], []
  for u in range(num_users):
    items = rng.choice(num_items, size=25, replace=False)
    train.append(" ".join(map(str, [u, *items[:20]])))
    test.append(" ".join(map(str, [u, *items[20:]])))
  folder.mkdir(parents=True)
  (folder / "train.dat").write_text("\n".join(train) + "\n")
  (folder / "test.dat").write_text("\n".join(test) + "\n")


def test_search_candidate_runs_once_and_resumes(tmp_path):
  _presplit(tmp_path / "data")
  cmd = [sys.executable, "-m", "experiments.search", f"--data_dir={tmp_path / 'data'}",
         f"--workdir={tmp_path / 'search'}", "--only=o2", "--epochs=1"]
  first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert first.returncode == 0, first.stderr[-2000:]
  table = json.loads((tmp_path / "search" / "search.json").read_text())
  assert set(table) == {"o2"} and table["o2"]["best_epoch"] == 1
  assert 0 <= table["o2"]["best_valid_recall@20"] <= 1
  assert (tmp_path / "search" / "results.csv").exists()
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0 and "| o2 |" in again.stdout
  assert "epoch   1" in first.stdout and "epoch   1" not in again.stdout  # read back
  assert json.loads((tmp_path / "search" / "search.json").read_text()) == table
