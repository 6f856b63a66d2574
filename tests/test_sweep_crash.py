"""Crash safety: a sweep killed (SIGKILL) mid-point and rerun equals an uninterrupted one.

The sweeps run as real `python -m experiments.sweep` processes. They share a JAX
persistent compilation cache, so only the first one compiles.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from fedjax_rec.grid import parse_grid, point_dirname, point_id
from fedjax_rec.results_store import ResultsStore
from fedjax_rec.sweep import POINTS_DIR, STORE_NAME, summarize

REPO = Path(__file__).resolve().parents[1]
GRID = "method=original;attack=none,a_hum;malicious_share=0.02;clients_per_round=64;epochs=25"
FLAGS = ["--synthetic_users=200", "--synthetic_items=100", "--embed_dim=8", "--hidden=8",
         "--max_buckets=1", "--er_k=5", "--grid=" + GRID]


def _env(cache: Path) -> dict:
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
  return env


def _sweep(workdir: Path, cache: Path) -> tuple[subprocess.Popen, Path]:
  """Starts a sweep; its output goes to a file (a full pipe would block it)."""
  cmd = [sys.executable, "-m", "experiments.sweep", f"--workdir={workdir}", *FLAGS]
  log = workdir.parent / f"{workdir.name}-{time.monotonic_ns()}.log"
  with open(log, "w") as f:
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(cache), stdout=f,
                            stderr=subprocess.STDOUT)
  return proc, log


def _finish(started: tuple[subprocess.Popen, Path]) -> str:
  proc, log = started
  proc.wait(timeout=300)
  out = log.read_text()
  assert proc.returncode == 0, out
  return out


def _rows(path: Path) -> int:
  return len(path.read_text().splitlines()) if path.exists() else 0


def test_killed_sweep_resumes_to_the_same_table(tmp_path):
  cache = tmp_path / "jax_cache"
  first, second = parse_grid(GRID)
  reference = _finish(_sweep(tmp_path / "ref", cache))
  assert "2/2 points done" in reference and "test/recall@20" in reference

  work = tmp_path / "killed"
  proc, log = _sweep(work, cache)
  metrics = work / POINTS_DIR / point_dirname(second) / "metrics.jsonl"
  deadline = time.monotonic() + 240
  while _rows(metrics) < 3:  # the second point is under way
    assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  store = ResultsStore(work / STORE_NAME)
  assert store.done_ids() == {point_id(first)}  # the finished point only
  assert not (metrics.parent / "summary.json").exists()  # killed mid-point

  out = _finish(_sweep(work, cache))
  assert "1 already done" in out and "resuming after epoch" in out
  frame = ResultsStore(work / STORE_NAME).frame()
  assert sorted(frame["point_id"].unique()) == sorted([point_id(first), point_id(second)])
  assert len(frame) == 2 * 25 and not frame.duplicated(["point_id", "epoch"]).any()

  ref = ResultsStore(tmp_path / "ref" / STORE_NAME).frame()
  pd.testing.assert_frame_equal(summarize(frame), summarize(ref))  # bitwise
  metrics_cols = [c for c in ref.columns if c.startswith("test/")]
  pd.testing.assert_frame_equal(frame[["point_id", "epoch", *metrics_cols]],
                                ref[["point_id", "epoch", *metrics_cols]])

  # A third run has nothing to do and leaves the store as it is.
  before = (work / STORE_NAME).read_bytes()
  assert "0 to run" in _finish(_sweep(work, cache))
  assert (work / STORE_NAME).read_bytes() == before


def test_cli_rejects_bad_grid_and_foreign_store(tmp_path):
  cache = tmp_path / "jax_cache"
  bad = subprocess.run(
      [sys.executable, "-m", "experiments.sweep", f"--workdir={tmp_path}",
       "--grid=method=original;atack=a_hum"], cwd=REPO, env=_env(cache),
      capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2 and "'atack=a_hum'" in bad.stderr, bad.stderr
  (tmp_path / STORE_NAME).write_text("user,item\n1,2\n")
  foreign = subprocess.run(
      [sys.executable, "-m", "experiments.sweep", f"--workdir={tmp_path}",
       "--grid=method=original"], cwd=REPO, env=_env(cache), capture_output=True,
      text=True, timeout=120)
  assert foreign.returncode == 2 and "not a fedjax_rec results store" in foreign.stderr
  assert (tmp_path / STORE_NAME).read_text() == "user,item\n1,2\n"
