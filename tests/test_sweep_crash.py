"""Crash safety and resume: a sweep killed (SIGKILL) mid-point, then rerun.

The sweeps are real `python -m experiments.sweep` processes: an uninterrupted one,
one killed while its second point is under way, and the same command rerun. They
share a JAX persistent compilation cache, so only the first one compiles.

Resume is bitwise on CPU: the resumed point's metrics, float for float, and its
final checkpoint (the whole `SimState`) byte for byte equal the uninterrupted run.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fedjax_rec import checkpoints
from fedjax_rec.grid import parse_grid, point_dirname, point_id
from fedjax_rec.results_store import ResultsStore
from fedjax_rec.sweep import POINTS_DIR, STORE_NAME, summarize

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 24
GRID = ("method=original;attack=none,a_hum;malicious_share=0.02;clients_per_round=64;"
        f"epochs={EPOCHS}")
FLAGS = ["--synthetic_users=200", "--synthetic_items=100", "--embed_dim=8", "--hidden=8",
         "--max_buckets=1", "--er_k=5", "--checkpoint_every=2", "--grid=" + GRID]
FIRST, SECOND = parse_grid(GRID)


def _env(cache: Path) -> dict:
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
  return env


def _start(workdir: Path, cache: Path, *flags: str) -> tuple[subprocess.Popen, Path]:
  """Starts a sweep; its output goes to a file (a full pipe would block it)."""
  cmd = [sys.executable, "-m", "experiments.sweep", f"--workdir={workdir}", *flags]
  log = workdir.parent / f"{workdir.name}-{time.monotonic_ns()}.log"
  with open(log, "w") as f:
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(cache), stdout=f,
                            stderr=subprocess.STDOUT)
  return proc, log


def _finish(started: tuple[subprocess.Popen, Path], code: int = 0) -> str:
  proc, log = started
  proc.wait(timeout=300)
  out = log.read_text()
  assert proc.returncode == code, out
  return out


def _lines(path: Path) -> int:
  return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
  """Runs the three sweeps once for the tests of this module."""
  root = tmp_path_factory.mktemp("sweeps")
  cache = root / "jax_cache"
  out = {"root": root, "cache": cache, "ref": _finish(_start(root / "ref", cache, *FLAGS))}
  work = root / "killed"
  proc, log = _start(work, cache, *FLAGS)
  metrics = work / POINTS_DIR / point_dirname(SECOND) / "metrics.jsonl"
  deadline = time.monotonic() + 240
  while _lines(metrics) < 3:  # the second point is under way
    assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  out["done_after_kill"] = ResultsStore(work / STORE_NAME).done_ids()
  out["finished_after_kill"] = (metrics.parent / "summary.json").exists()
  out["rerun"] = _finish(_start(work, cache, *FLAGS))
  return out


def test_killed_sweep_keeps_finished_points_once_and_the_same_table(sweeps):
  assert sweeps["done_after_kill"] == {point_id(FIRST)}  # the finished point only
  assert not sweeps["finished_after_kill"]  # killed mid-point
  assert "1 already done" in sweeps["rerun"] and "2/2 points done" in sweeps["rerun"]
  frame = ResultsStore(sweeps["root"] / "killed" / STORE_NAME).frame()
  ref = ResultsStore(sweeps["root"] / "ref" / STORE_NAME).frame()
  assert frame["point_id"].value_counts().to_dict() == {point_id(FIRST): EPOCHS,
                                                        point_id(SECOND): EPOCHS}
  assert not frame.duplicated(["point_id", "epoch"]).any()
  pd.testing.assert_frame_equal(summarize(frame), summarize(ref))  # bitwise
  assert "test/recall@20" in sweeps["ref"] and "±" not in sweeps["ref"]  # one seed


def test_resumed_point_equals_the_uninterrupted_run(sweeps):
  assert "resuming after epoch" in sweeps["rerun"]
  runs = [sweeps["root"] / name / POINTS_DIR / point_dirname(SECOND)
          for name in ("killed", "ref")]
  test_rows = [[{k: v for k, v in r.items() if k.startswith("test/") or k == "epoch"}
                for r in checkpoints.read_jsonl(run / "metrics.jsonl")] for run in runs]
  assert len(test_rows[0]) == EPOCHS and test_rows[0] == test_rows[1]
  assert (runs[0] / "checkpoint.msgpack").read_bytes() == \
      (runs[1] / "checkpoint.msgpack").read_bytes()


def test_rerun_of_a_finished_sweep_changes_nothing(sweeps):
  work = sweeps["root"] / "killed"
  before = (work / STORE_NAME).read_bytes()
  assert "0 to run" in _finish(_start(work, sweeps["cache"], *FLAGS))
  assert (work / STORE_NAME).read_bytes() == before
  refused = _finish(_start(work, sweeps["cache"], *FLAGS, "--noresume"), code=2)
  assert "pass --resume" in refused


def test_cli_rejects_a_bad_grid_and_a_foreign_store(tmp_path):
  bad = _finish(_start(tmp_path / "a", tmp_path / "cache",
                       "--grid=method=original;atack=a_hum"), code=2)
  assert "'atack=a_hum'" in bad and "unknown key" in bad
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / STORE_NAME).write_text("user,item\n1,2\n")
  foreign = _finish(_start(tmp_path / "b", tmp_path / "cache", "--grid=method=original"),
                    code=2)
  assert "not a fedjax_rec results store" in foreign
  assert (tmp_path / "b" / STORE_NAME).read_text() == "user,item\n1,2\n"
