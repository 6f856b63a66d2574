"""Binaries: `--method`/`--attack` and task-only flags per `--task`; `--paper=fortress`.

Each case is a subprocess (absl flags are process-global); every one of them fails
or finishes before any training.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _binary(module: str, *args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=180, env=env)


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
  return [l for l in proc.stderr.splitlines() if l.strip() and "tpu" not in l.lower()]


@pytest.mark.parametrize("args,message", [
    (["--method=fortress"], "--method=fortress needs --task=sequential"),
    (["--task=sequential", "--method=cl4fedrec"], "--method=cl4fedrec needs --task=core"),
    (["--encoder=gru4rec"], "--encoder applies only to --task=sequential"),
    (["--task=sequential", "--lambda1=0.5"], "--lambda1 applies only to --task=core"),
    (["--task=sequential", "--attack=a_ra"], "--attack=a_ra has no --task=sequential version"),
])
def test_train_rejects_a_name_or_flag_of_the_other_task_in_one_line(args, message):
  proc = _binary("experiments.train", *args, "--epochs=0")
  err = _error_lines(proc)
  assert proc.returncode != 0 and len(err) == 1 and message in err[0], proc.stderr


def test_reproduce_paper_fortress_writes_the_table(tmp_path):
  data = tmp_path / "data" / "ml-1m"
  data.mkdir(parents=True)
  (data / "user_movie_pairs.dat").write_text("1::10\n1::11\n1::12\n")
  proc = _binary("experiments.reproduce", "--paper=fortress", "--datasets=ml-1m",
                 f"--data_root={tmp_path / 'data'}", f"--workdir={tmp_path / 'out'}")
  assert proc.returncode == 0, proc.stderr
  table = (tmp_path / "out" / "fortress" / "fortress_table.md").read_text()
  assert "ml-1m: unavailable" in table

  proc = _binary("experiments.reproduce", "--paper=fortress", "--encoder=sasrec,rnn")
  assert proc.returncode != 0 and "--encoder=sasrec,rnn" in proc.stderr
