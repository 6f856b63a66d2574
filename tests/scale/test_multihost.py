"""Two processes on localhost (jax.distributed) match a single-process run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--epochs=1", "--embed_dim=8", "--hidden=8", "--clients_per_round=64",
         "--max_buckets=3", "--topk=10"]


def _free_port():
  try:
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      return s.getsockname()[1]
  except OSError:
    pytest.skip("cannot bind a localhost port")


def _cmd(*args):
  return [sys.executable, "-m", "experiments.train", *SMALL, *args]


def _env():
  return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")


def _final(workdir: Path) -> dict:
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {k: v for k, v in rows[-1].items() if k.startswith("test/")}


@pytest.mark.multihost
def test_two_processes_match_one(tmp_path):
  port = _free_port()
  procs = [subprocess.Popen(
      _cmd(f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
           f"--process_id={i}", f"--workdir={tmp_path / 'multi'}",
           "--distributed_timeout=120"),
      cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "epoch   1" in outs[0][0] and "epoch" not in outs[1][0]  # only process 0 logs
  single = subprocess.run(_cmd(f"--workdir={tmp_path / 'single'}", "--mesh_shape=1"),
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]
  multi, one = _final(tmp_path / "multi"), _final(tmp_path / "single")
  assert multi.keys() == one.keys()
  for k in one:
    assert multi[k] == pytest.approx(one[k], abs=1e-4), k


def test_unreachable_coordinator_fails_fast_naming_the_flag():
  port = _free_port()
  t0 = time.monotonic()
  proc = subprocess.run(_cmd(f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                             "--process_id=1", "--distributed_timeout=3"),
                        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert "--coordinator_address" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert time.monotonic() - t0 < 90
