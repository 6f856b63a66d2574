"""The train binary: bad input gets one line and a non-zero exit; results are atomic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
from fedjax_rec.models.ncf import NCFConfig
from fedjax_rec.runner import EvalConfig, WorkdirError, run
from fedjax_rec.tasks.ncf.config import SimConfig

REPO = Path(__file__).resolve().parents[1]


def _train(*args, timeout=120):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("args,needle", [
    (["--dataset=nope"], "--dataset"),
    (["--preset=nope"], "--preset"),
    (["--aggregator=nope"], "--aggregator"),
    (["--hidden=a,b"], "--hidden"),
    (["--clip_norm=1"], "--clip_norm"),
    (["--aggregator=norm_bound", "--clip_quantile=2"], "--clip_quantile=2.0"),
    (["--aggregator=norm_bound", "--clip_quantile=0.5", "--clip_norm=1"], "exclude"),
    (["--aggregator=hics", "--row_clip=-1"], "--row_clip=-1.0"),
    (["--aggregator=multi_krum", "--num_selected=0"], "--num_selected=0"),
    (["--aggregator=bulyan", "--num_byzantine=-1"], "--num_byzantine=-1"),
    (["--aggregator=union_filter", "--union_ref_items=1"], "--union_ref_items=1"),
    (["--aggregator=union_filter", "--sim_lr=0"], "--sim_lr=0.0"),
    (["--sim_lr=0.1"], "--sim_lr"),
    (["--er_ks=5,x"], "--er_ks"),
    (["--epochs=-1"], "epochs"),
    (["--dataset=ml-100k", "--data_dir=/nonexistent/dir"], "/nonexistent/dir"),
])
def test_bad_input_is_one_line(args, needle):
  proc = _train(*args)
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr
  err = [l for l in proc.stderr.splitlines() if "tpu" not in l.lower() and l.strip()]
  assert needle in "\n".join(err)
  assert len(err) <= 2, proc.stderr


def test_malformed_data_names_file_and_line(tmp_path):
  data = tmp_path / "ml-100k"
  data.mkdir()
  (data / "u.data").write_text("1\t2\t3\t100\n1\t3\t4\t101\nbroken line\n")
  proc = _train("--dataset=ml-100k", f"--data_dir={data}")
  assert proc.returncode != 0
  assert f"{data / 'u.data'}:3" in proc.stderr
  assert "Traceback" not in proc.stderr


def tiny_run():
  """A 60-user synthetic dataset and a 2-epoch config small enough for a CLI test."""
  ds = load_synthetic(SyntheticConfig(num_users=60, num_items=50, num_clusters=3,
                                      mean_activity=8, min_activity=3, max_activity=20))
  cfg = SimConfig(model=NCFConfig(embed_dim=4, hidden=(4,)), clients_per_round=16, epochs=2,
                  max_buckets=2)
  return ds, cfg


def test_workdir_results_and_resume(tmp_path):
  ds, cfg = tiny_run()
  lines = []
  summary = run(cfg, ds, workdir=tmp_path, eval_config=EvalConfig(ks=(5,)), log=lines.append)
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in rows] == [1, 2]
  assert "test/recall@5" in rows[-1]
  assert json.loads((tmp_path / "summary.json").read_text()) == summary
  assert not list(tmp_path.glob(".*.tmp"))  # no temporary file is left behind
  # A rerun of a finished run does nothing; a different config is refused.
  again = run(cfg, ds, workdir=tmp_path, eval_config=EvalConfig(ks=(5,)), log=lines.append)
  assert again == summary
  import dataclasses
  with pytest.raises(WorkdirError, match="different configuration"):
    run(dataclasses.replace(cfg, seed=1), ds, workdir=tmp_path,
        eval_config=EvalConfig(ks=(5,)), log=lines.append)


def test_run_under_another_aggregator_default_is_not_resumed(tmp_path):
  """config.json records the aggregator's defaults; a run recorded under other ones
  (as an older version with another default wrote it) is refused, not resumed."""
  import dataclasses
  from fedjax_rec import runner as runner_lib
  ds, cfg = tiny_run()
  cfg = dataclasses.replace(cfg, aggregator="norm_bound", epochs=1)
  record = runner_lib.config_dict(cfg, ds.name, EvalConfig(ks=(5,)))
  assert dict(record["sim"]["aggregator_kwargs"])["clip_norm"] == 0.1
  run(cfg, ds, workdir=tmp_path, eval_config=EvalConfig(ks=(5,)), log=lambda s: None)
  old = json.loads((tmp_path / "config.json").read_text())
  old["sim"]["aggregator_kwargs"] = [["clip_norm", 1.0], ["clip_quantile", None],
                                     ["max_abs", 1e6]]
  (tmp_path / "config.json").write_text(json.dumps(old))
  with pytest.raises(WorkdirError, match="different configuration"):
    run(cfg, ds, workdir=tmp_path, eval_config=EvalConfig(ks=(5,)), log=lambda s: None)


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
  ds, cfg = tiny_run()
  full = run(cfg, ds, workdir=tmp_path / "full", eval_config=EvalConfig(ks=(5,)),
             log=lambda s: None)
  import dataclasses
  # Stop after one epoch (the first run's config says 2 epochs: simulate the kill by
  # deleting the summary and truncating metrics to the checkpointed epoch 1).
  part = tmp_path / "part"
  run(dataclasses.replace(cfg, epochs=1), ds, workdir=part / "tmp",
      eval_config=EvalConfig(ks=(5,)), log=lambda s: None)
  part.mkdir(exist_ok=True)
  # Rebuild a workdir as an interrupted 2-epoch run would have left it.
  from fedjax_rec import runner as runner_lib
  cfg_json = runner_lib.config_dict(cfg, ds.name, EvalConfig(ks=(5,)))
  (part / "config.json").write_text(json.dumps(cfg_json))
  (part / "checkpoint.msgpack").write_bytes((part / "tmp" / "checkpoint.msgpack").read_bytes())
  (part / "metrics.jsonl").write_text((part / "tmp" / "metrics.jsonl").read_text())
  resumed = run(cfg, ds, workdir=part, eval_config=EvalConfig(ks=(5,)), log=lambda s: None)
  assert resumed["final"]["test/recall@5"] == full["final"]["test/recall@5"]
  assert resumed["final"]["test/ndcg@5"] == full["final"]["test/ndcg@5"]


@pytest.mark.parametrize("args,needle", [
    (["--method=cl4fedrec", "--tau=0"], "tau"),
    (["--method=cl4fedrec", "--lambda1=-1"], "lambda1"),
    (["--method=rcl4fedrec", "--num_synthetic_users=0"], "num_synthetic_users"),
    (["--method=cl4fedrec", "--eta=-0.5"], "eta"),
])
def test_bad_cl_flags_fail_at_parsing(args, needle):
  proc = _train(*args)
  assert proc.returncode != 0
  err = [l for l in proc.stderr.splitlines() if l.strip() and "tpu" not in l.lower()]
  assert len(err) == 1 and needle in err[0], proc.stderr


def test_cl_method_runs_from_flags(tmp_path):
  """Valid CL flags pass parsing and train (flag validation must not refuse defaults)."""
  proc = _train("--method=rcl4fedrec", "--epochs=1", "--clients_per_round=600",
                "--num_synthetic_users=4", "--embed_dim=8", "--hidden=8", "--max_buckets=2",
                f"--workdir={tmp_path}", timeout=900)
  assert proc.returncode == 0, proc.stderr[-2000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert np.isfinite(summary["final"]["test/recall@20"])


def test_noresume_refuses_a_workdir_with_a_run(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  proc = _train("--noresume", f"--workdir={tmp_path}")
  assert proc.returncode != 0
  err = [l for l in proc.stderr.splitlines() if l.strip() and "tpu" not in l.lower()]
  assert len(err) == 1 and "--resume" in err[0] and str(tmp_path) in err[0], proc.stderr
  assert (tmp_path / "config.json").read_text() == "{}"
