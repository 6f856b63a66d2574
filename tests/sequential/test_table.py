"""The FORTRESS table: unavailable datasets, its points in the store, mean ± std over seeds."""

from __future__ import annotations

import csv

from experiments import fortress_table
from fedjax_rec.tasks.sequential.data import load_seq_dataset
from tests.sequential.conftest import TINY_DATA


def test_ml1m_without_timestamps_is_reported_unavailable(tmp_path):
  data = tmp_path / "data" / "ml-1m"
  data.mkdir(parents=True)
  (data / "user_movie_pairs.dat").write_text("1::10\n1::11\n1::12\n")
  lines = []
  rows = fortress_table.run_fortress_table(tmp_path / "out", datasets=("ml-1m",),
                                           data_root=tmp_path / "data", log=lines.append)
  assert rows == []
  table = (tmp_path / "out" / "fortress_table.md").read_text()
  assert "ml-1m: unavailable" in table and "no timestamps" in table
  assert (tmp_path / "out" / "fortress_runs.csv").read_text().startswith("dataset,method")


def test_points_are_one_per_configuration():
  dataset = load_seq_dataset("synthetic", max_len=10, seed=1, synthetic=TINY_DATA)
  settings = fortress_table.TableSettings(epochs=2, seeds=2)
  config = lambda method, attack, seed: fortress_table.make_config(
      method, "sasrec", attack, dataset, seed, settings)
  a = fortress_table.point_name("toy", config("fortress", "psmu", 0))
  assert a == fortress_table.point_name("toy", config("fortress", "psmu", 0))
  assert a.startswith("toy-sasrec-fortress-psmu-s0-")
  others = {fortress_table.point_name("toy", config(m, t, s))
            for m, t, s in (("fortress", "psmu", 1), ("cl_temporal", "psmu", 0),
                            ("fortress", "a_hum", 0), ("fortress", "none", 0))}
  assert a not in others and len(others) == 4
  longer = fortress_table.TableSettings(epochs=3, seeds=2)
  assert a != fortress_table.point_name("toy", fortress_table.make_config(
      "fortress", "sasrec", "psmu", dataset, 0, longer))
  attacked = config("fedseq", "a_hum", 0)
  assert attacked.num_malicious >= 1 and config("fedseq", "none", 0).num_malicious == 0
  assert attacked.targets == config("fedseq", "none", 0).targets


def test_markdown_averages_seeds_and_shows_the_defense_view():
  def row(method, attack, seed, hr, er):
    return {"dataset": "toy", "method": method, "encoder": "sasrec", "attack": attack,
            "seed": seed, "hr@10": hr, "ndcg@10": hr / 2, "er@5": er, "epochs": 2,
            "train_seconds": 1.0, "run_dir": f"r{seed}"}
  rows = [row("CL + temporal (SASRec)", "a_hum", 0, 0.1, 0.2),
          row("CL + temporal (SASRec)", "a_hum", 1, 0.3, 0.4),
          row("FORTRESS (SASRec)", "a_hum", 0, 0.1, 0.01),
          row("FORTRESS (SASRec)", "none", 0, 0.12, float("nan"))]
  md = fortress_table.to_markdown(rows, ["a note"], attacks=("none", "a_hum"),
                                  reference={"toy": {"hr@10": 0.05, "ndcg@10": 0.02}})
  # mean and population std of (0.2, 0.4) = 0.3 ± 0.1; of (0.1, 0.3) = 0.2 ± 0.1
  assert "| toy | SASRec | A-hum | off | 0.3000 ± 0.1000 | 0.2000 ± 0.1000 |" in md
  assert "| toy | SASRec | A-hum | on | 0.0100 | 0.1000 |" in md
  assert "| toy | MostPop | - | 0.0500 | 0.0200 |" in md
  fortress = next(l for l in md.splitlines() if l.startswith("| toy | FORTRESS (SASRec) |"))
  assert fortress.split(" | ")[2:6] == ["1", "0.1200", "0.0600", "n/a"]
  parsed = list(csv.DictReader(fortress_table.to_csv(rows).splitlines()))
  assert len(parsed) == 4 and parsed[2]["er@5"] == "0.01" and parsed[1]["seed"] == "1"


def test_table_points_live_in_the_store_and_read_back(tmp_path, monkeypatch):
  tiny = load_seq_dataset("synthetic", max_len=50, seed=1, synthetic=TINY_DATA)
  monkeypatch.setattr(fortress_table, "load_seq_dataset", lambda *a, **k: tiny)
  settings = fortress_table.TableSettings(epochs=1, seeds=1)
  go = lambda log: fortress_table.run_fortress_table(
      tmp_path, datasets=("synthetic",), settings=settings, attacks=("none",),
      methods=(("FedSeq", "fedseq"),), log=log)
  first, again = [], []
  rows = go(first.append)
  assert len(rows) == 1 and rows[0]["epochs"] == 1 and rows[0]["hr@10"] >= 0
  assert (tmp_path / "results.csv").exists() and (tmp_path / "points").is_dir()
  assert go(again.append) == rows  # read back from the store, not trained again
  trained = lambda lines: any(line.startswith("epoch") for line in lines)
  assert trained(first) and not trained(again)
