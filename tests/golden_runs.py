"""Golden runs: short command lines whose per-epoch metrics are pinned.

They pin behaviour through the command line, which outlives any internal
restructuring: `python -m tests.golden_runs --record [NAME ...]` reruns them and
rewrites `tests/golden/<name>.json`; `tests/test_golden.py` reruns them and compares.
Runs on real data are skipped where the data is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
DATA_ROOT = Path(os.environ.get("FEDJAX_REC_DATA", ROOT.parent / "shared" / "data"))

# name -> (flags of `python -m experiments.train`, dataset folder it needs or None).
# `--max_buckets=2` on the CL run halves its compile time; padding changes no metric
# (checked bitwise against the record made with the default 12 buckets, 2026-12-03).
RUNS = {
    "main": (["--preset=paper-o2", "--epochs=3"], None),
    "ml100k_cl4fedrec_ahum_median": (
        ["--dataset=ml-100k", "--method=cl4fedrec", "--attack=a_hum", "--num_malicious=5",
         "--aggregator=median", "--epochs=1", "--preset=paper-o2", "--max_buckets=2"],
        "ml-100k"),
    "fortress_defense": (
        ["--task=sequential", "--dataset=ml-100k", "--method=fortress", "--server_defense",
         "--attack=a_hum", "--epochs=2"], "ml-100k"),
    "num_seeds_2": (["--preset=paper-o2", "--num_seeds=2", "--epochs=2"], None),
    "ahum_reference": (
        ["--dataset=ml-1m-presplit", "--preset=ahum-reference", "--attack=a_hum",
         "--epochs=12", "--valid_frac=0"], "ml-1m"),
}

# What is compared: the evaluation metrics of every epoch (timings are not).
PREFIXES = ("test/", "valid/")


def available(name: str) -> bool:
  need = RUNS[name][1]
  return need is None or (DATA_ROOT / need).is_dir()


def run(name: str) -> list[dict]:
  """Runs golden run `name` in a fresh workdir; returns its compared metrics per row."""
  args, need = RUNS[name]
  with tempfile.TemporaryDirectory() as wd:
    cmd = [sys.executable, "-m", "experiments.train", *args, f"--workdir={wd}"]
    if need is not None:
      cmd.append(f"--data_dir={DATA_ROOT / need}")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env=_user_env())
    if proc.returncode != 0:
      raise RuntimeError(f"golden run {name} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (Path(wd) / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
  keep = lambda k: k.startswith(PREFIXES) or k in ("epoch", "seed")
  return [{k: v for k, v in r.items() if keep(k)} for r in rows]


def _user_env() -> dict:
  """The environment without the test session's XLA options (`tests/conftest.py`)."""
  env = dict(os.environ)
  if "FEDJAX_REC_XLA_FLAGS_OUTSIDE_TESTS" in env:
    env["XLA_FLAGS"] = env.pop("FEDJAX_REC_XLA_FLAGS_OUTSIDE_TESTS")
  return env


def record(names: list[str]) -> None:
  GOLDEN.mkdir(exist_ok=True)
  for name in names:
    if not available(name):
      print(f"{name}: data missing, not recorded")
      continue
    rows = run(name)
    (GOLDEN / f"{name}.json").write_text(json.dumps(
        {"command": ["python", "-m", "experiments.train", *RUNS[name][0]], "rows": rows},
        indent=1) + "\n")
    print(f"{name}: recorded {len(rows)} rows")


if __name__ == "__main__":
  if len(sys.argv) < 2 or sys.argv[1] != "--record":
    sys.exit("usage: python -m tests.golden_runs --record [NAME ...]")
  record(sys.argv[2:] or list(RUNS))
