"""The leave-one-out split, its fixed evaluation negatives (the same in every evaluation
and across a resume), the pre-split `train.txt`/`test.txt` format, and the command line."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedjax_rec import metrics_loo
from fedjax_rec.data import loo
from fedjax_rec.data.loaders import load_dataset
from fedjax_rec.data.readers import DataFormatError
from fedjax_rec.data.synthetic import SyntheticConfig
from fedjax_rec.models.ncf import NCFConfig
from fedjax_rec.runner import EvalConfig, run
from fedjax_rec.tasks.ncf.config import SimConfig

REPO = Path(__file__).resolve().parents[1]
SMALL = SyntheticConfig(num_users=60, num_items=150, num_clusters=4, mean_activity=12,
                        min_activity=3, max_activity=40)


def _u_data(folder: Path, rows) -> Path:
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "u.data").write_text("".join(f"{u}\t{i}\t4\t{t}\n" for u, i, t in rows))
  return folder


def test_the_last_interaction_in_time_is_the_test_item(tmp_path):
  # user 1: timestamps put item 30 last although it comes first in the file; items 11
  # and 12 tie at the latest time: the later line wins. user 3 has one interaction.
  rows = [(1, 30, 900), (1, 10, 100), (1, 20, 200), (2, 11, 500), (2, 12, 500),
          (2, 13, 100), (3, 40, 50)] + [(4, i, i) for i in range(50, 120)]
  ds = load_dataset("ml-100k", _u_data(tmp_path / "d", rows), split="loo", valid_frac=0)
  assert ds.name == "ml-100k-loo"
  # Reindexed by first appearance: users 1, 2, 3, 4 -> 0..3; items likewise.
  raw_item = {30: 0, 10: 1, 20: 2, 11: 3, 12: 4, 13: 5, 40: 6}
  assert ds.test.row(0).tolist() == [raw_item[30]]
  assert ds.test.row(1).tolist() == [raw_item[12]]
  assert ds.test.row(2).tolist() == [] and ds.train.row(2).tolist() == [raw_item[40]]
  assert sorted(ds.train.row(0).tolist()) == [raw_item[10], raw_item[20]]
  # Validation (asked for) is the tail of the rest in time order.
  with_valid = load_dataset("ml-100k", tmp_path / "d", split="loo", valid_frac=0.1)
  assert len(with_valid.valid.row(3)) == 6 and with_valid.test.row(3).tolist() == \
      ds.test.row(3).tolist()


def test_eval_negatives_are_fixed_distinct_and_never_interacted(tmp_path):
  ds = load_dataset("synthetic", split="loo", valid_frac=0.1, synthetic=SMALL)
  negs, inter = ds.eval_negatives, ds.interacted()
  for u in range(ds.num_users):
    row = negs.row(u)
    assert len(row) == min(99, ds.num_items - len(set(inter.row(u)))) and \
        len(set(row.tolist())) == len(row)
    assert not set(row.tolist()) & set(inter.row(u).tolist())
  # A pure function of the split and a constant: again, and whatever the run's seed.
  again = loo.with_eval_negatives(dataclasses.replace(ds, eval_negatives=None))
  np.testing.assert_array_equal(again.eval_negatives.items, negs.items)
  np.testing.assert_array_equal(again.eval_negatives.indptr, negs.indptr)
  rows = [(u, i, 1000 + i) for u in range(1, 9) for i in range(1, 30 + 3 * u)]
  a = load_dataset("ml-100k", _u_data(tmp_path / "m", rows), split="loo", seed=0)
  b = load_dataset("ml-100k", tmp_path / "m", split="loo", seed=11)
  np.testing.assert_array_equal(a.eval_negatives.items, b.eval_negatives.items)
  # A user's draw depends on its own interactions only.
  moved = loo.sample_eval_negatives(inter, ds.test, ds.num_items, seed=loo.EVAL_NEGATIVE_SEED)
  np.testing.assert_array_equal(moved.row(5), negs.row(5))


def test_fedrecattack_presplit_files(tmp_path):
  """`train.txt`/`test.txt`: one line per user, `uid i1 i2 ...`, the test file holding one
  item per user (the FedRecAttack data)."""
  (tmp_path / "train.txt").write_text("0 5 3 8 1\n1 2 7 4\n2 9 0\n")
  (tmp_path / "test.txt").write_text("0 6\n1 3\n2 4\n")
  ds = load_dataset("presplit", tmp_path, split="loo")
  assert ds.name == "presplit-loo" and ds.num_items == 10 and ds.valid.nnz == 0
  assert [ds.test.row(u).tolist() for u in range(3)] == [[6], [3], [4]]
  assert ds.train.row(0).tolist() == [5, 3, 8, 1]
  assert not set(ds.eval_negatives.row(0).tolist()) & {5, 3, 8, 1, 6}
  assert load_dataset("presplit", tmp_path, valid_frac=0).eval_negatives is None
  (tmp_path / "test.txt").write_text("0 6\n1 3 5\n2 4\n")
  with pytest.raises(DataFormatError, match=r"test\.txt: the leave-one-out split needs at "
                     r"most one test item per user; user 1 has 2"):
    load_dataset("presplit", tmp_path, split="loo")


def test_negatives_identical_across_evaluations_and_resume(tmp_path, monkeypatch):
  seen = []
  real = metrics_loo.sampled_metrics

  def spy(score_fn, params, test, negatives, *args, **kwargs):
    seen.append((negatives.indptr.copy(), negatives.items.copy()))
    return real(score_fn, params, test, negatives, *args, **kwargs)

  monkeypatch.setattr(metrics_loo, "sampled_metrics", spy)
  cfg = SimConfig(model=NCFConfig(embed_dim=4, hidden=(), interaction="dot"),
                  method_kwargs=(("rec_loss", "bpr"),), num_negatives=1, clients_per_round=32,
                  epochs=2, max_buckets=2)
  quiet = dict(log=lambda line: None, progress=False, eval_config=EvalConfig(ks=(10,)))
  load = lambda: load_dataset("synthetic", split="loo", valid_frac=0, synthetic=SMALL)
  straight = run(cfg, load(), workdir=tmp_path / "straight", **quiet)

  def kill(state, rows):  # the process dies in epoch 2, before its checkpoint
    del state
    if rows and rows[0]["epoch"] == 2:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    run(cfg, load(), workdir=tmp_path / "resumed", on_epoch=kill, **quiet)
  lines = []
  resumed = run(cfg, load(), workdir=tmp_path / "resumed",
                **{**quiet, "log": lines.append})
  assert any("resuming after epoch 1" in line for line in lines)
  assert len(seen) == 3 + 3 + 2  # MostPop and every evaluated epoch, per run
  for indptr, items in seen[1:]:
    np.testing.assert_array_equal(indptr, seen[0][0])
    np.testing.assert_array_equal(items, seen[0][1])
  final = {k: v for k, v in straight["final"].items() if k.startswith("test/")}
  assert {"test/hr@10", "test/ndcg@10", "test/sampled_hr@10",
          "test/sampled_ndcg@10"} <= set(final)
  assert final == {k: v for k, v in resumed["final"].items() if k.startswith("test/")}


def _train(*args, timeout=300):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout, env=env)


def test_command_line_prints_and_records_loo_metrics(tmp_path):
  proc = _train("--split=loo", "--model=mf", "--rec_loss=bpr", "--num_negatives=1",
                "--epochs=1", "--max_buckets=2", "--embed_dim=8", f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("epoch   1")][0]
  for name in ("hr@10", "ndcg@10", "sampled_hr@10", "sampled_ndcg@10"):
    assert f" {name}=" in line, line
  assert "MostPop hr@10=" in proc.stdout and "sampled_hr@10=" in proc.stdout
  row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
  assert 0 <= row["test/sampled_hr@10"] <= 1 and "test/hr@10" in row
  assert json.loads((tmp_path / "config.json").read_text())["dataset"] == "synthetic-loo"


def test_command_line_refuses_loo_for_the_sequential_task():
  bad = _train("--task=sequential", "--dataset=ml-100k", "--split=loo")
  err = [l for l in bad.stderr.splitlines() if l.startswith("error:")]
  assert bad.returncode != 0 and err == ["error: --split applies only to --task=core"]
  assert "Traceback" not in bad.stderr


def test_real_ml100k_holds_out_each_users_latest_rating(shared_data_dir):
  folder = shared_data_dir / "ml-100k"
  if not folder.is_dir():
    pytest.skip("ml-100k not found")
  ds = load_dataset("ml-100k", folder, split="loo", valid_frac=0)
  assert (ds.num_users, ds.test.nnz, ds.train.nnz) == (943, 943, 99057)
  with gzip.open(folder / "u.data.gz", "rt") as f:
    df = pd.read_csv(f, sep="\t", names=["user", "item", "rating", "ts"])
  latest = df.groupby("user").ts.max()
  # Users are reindexed by first appearance in the file.
  first_users = pd.unique(df.user)
  first_items = {raw: i for i, raw in enumerate(pd.unique(df.item))}
  for code in (0, 1, 500, 942):
    raw = first_users[code]
    test_item = [k for k, v in first_items.items() if v == ds.test.row(code)[0]][0]
    assert df[(df.user == raw) & (df.item == test_item)].ts.iloc[0] == latest[raw]
  assert ds.eval_negatives.lengths.min() == 99
