"""Bad input through every CLI: non-zero exit, one line naming the file/line/flag, no traceback.

Each case is one subprocess (mostly import time); the settings are tiny and every case is
refused before any training or compilation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_LOG_LINE = re.compile(r"^[IWE]\d{4} ")  # absl/XLA log lines (e.g. the TPU probe)


def _cli(module: str, *args, timeout=120):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, env=env)


def _u_data(tmp: Path, text: str) -> Path:
  folder = tmp / "ml-100k"
  folder.mkdir(parents=True)
  (folder / "u.data").write_text(text)
  return folder


_TEN_USERS = "".join(f"{u}\t{i}\t5\t88\n" for u in range(1, 11) for i in range(1, 6))


def _cases(tmp: Path):
  """(name, module, args, needle) with `tmp` holding the bad files."""
  afile = tmp / "a_file"
  afile.write_text("x")
  empty = tmp / "empty"
  empty.mkdir()
  abc = _u_data(tmp / "abc", "1\t2\t5\t88\n1\tabc\t5\t88\n")
  neg = _u_data(tmp / "neg", "1\t2\t5\t88\n-4\t2\t5\t88\n")
  ten = _u_data(tmp / "ten", _TEN_USERS)
  (tmp / "store").mkdir()
  (tmp / "store" / "results.csv").write_text("garbage,\"unclosed\n1,2,3\n")
  train = "experiments.train"
  return [
      ("zero_attackers", train, ["--dataset=ml-100k", f"--data_dir={ten}", "--attack=a_hum",
                                 "--aggregator=median"],
       "--attack=a_hum with --malicious_share=0.001 gives int(0.001 x 10) = 0 attackers"),
      ("krum_f", train, ["--aggregator=krum", "--num_byzantine=100000"],
       "--num_byzantine=100000: Krum needs n - f - 2 > 0"),
      ("trimmed_f", train, ["--aggregator=trimmed_mean", "--num_byzantine=40",
                            "--clients_per_round=64"], "trimmed mean needs 2f <"),
      ("topk", train, ["--dataset=ml-100k", f"--data_dir={ten}", "--topk=10,100"],
       "--topk=10,100: ml-100k has 5 items"),
      ("clients_per_round", train, ["--clients_per_round=0"], "--clients_per_round=0"),
      ("inject_faults", train, ["--inject_faults=nan:x"], "--inject_faults=nan:x"),
      ("eval_users", train, ["--eval_users=0"], "--eval_users must be a positive number"),
      ("seq_only_flag", train, ["--encoder=gru4rec"], "--encoder applies only to --task=sequential"),
      ("field", train, ["--dataset=ml-100k", f"--data_dir={abc}"],
       "u.data:2: expected field 2 (item) to be an integer"),
      ("negative_user", train, ["--dataset=ml-100k", f"--data_dir={neg}"],
       "u.data:2: negative user id -4"),
      ("data_dir_file", train, ["--dataset=ml-100k", f"--data_dir={afile}"],
       "is a file, not a directory"),
      ("workdir_file", train, ["--epochs=1", f"--workdir={afile}"],
       "is a file, not a directory"),
      ("sweep_missing_data", "experiments.sweep",
       ["--grid=dataset=synthetic,ml-100k;epochs=1", f"--data_root={empty}",
        f"--workdir={tmp / 'sweep'}"], "dataset=ml-100k"),
      ("plot_store", "experiments.plot", [f"--workdir={tmp / 'store'}"], "results.csv"),
      ("reproduce_table", "experiments.reproduce", ["--table=9"], "unknown table9"),
      ("reproduce_preset_fortress", "experiments.reproduce",
       ["--paper=fortress", "--preset=paper-onestep"], "--preset"),
      ("benchmark_flag", "experiments.benchmark", ["--epochs=abc"], "--epochs"),
  ]


_NAMES = [
    "zero_attackers", "krum_f", "trimmed_f", "topk", "clients_per_round", "inject_faults",
    "eval_users", "seq_only_flag", "field", "negative_user", "data_dir_file", "workdir_file", "sweep_missing_data",
    "plot_store", "reproduce_table", "reproduce_preset_fortress", "benchmark_flag"]


@pytest.mark.parametrize("name", _NAMES)
def test_bad_input_gives_one_line(tmp_path, name):
  case = {c[0]: c for c in _cases(tmp_path)}[name]
  _, module, args, needle = case
  proc = _cli(module, *args)
  out = proc.stdout + proc.stderr
  assert proc.returncode != 0, out
  assert "Traceback" not in out, out
  lines = [l for l in proc.stderr.splitlines()
           if l.strip() and not _LOG_LINE.match(l) and "tpu" not in l.lower()]
  assert needle in "\n".join(lines), out
  if module == "experiments.benchmark":  # absl's own flag error (and its help hint)
    assert len(lines) <= 2, out
  else:
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    assert proc.returncode == 2


def test_garbage_in_metrics_is_one_line(tmp_path):
  args = ["--epochs=1", "--clients_per_round=64", "--embed_dim=4", "--hidden=4", "--topk=5",
          f"--workdir={tmp_path / 'run'}"]
  first = _cli("experiments.train", *args, timeout=300)
  assert first.returncode == 0, first.stderr
  (tmp_path / "run" / "summary.json").unlink()
  with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
    f.write("{not json\n")
  proc = _cli("experiments.train", *args)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert "metrics.jsonl:2" in proc.stderr
