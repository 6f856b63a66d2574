"""The FORTRESS table's files: unavailable datasets, Markdown and CSV."""

from __future__ import annotations

import csv

from experiments import fortress_table


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
  assert (tmp_path / "out" / "fortress_table.csv").read_text().startswith("dataset,method")


def test_markdown_and_csv_hold_every_row_and_the_defense_view():
  row = lambda method, attack, er: {"dataset": "toy", "method": method, "encoder": "sasrec",
                                    "attack": attack, "hr@10": 0.1, "ndcg@10": 0.05,
                                    "er@5": er, "epochs": 2, "train_seconds": 1.0,
                                    "status": "done"}
  rows = [row("CL + temporal (SASRec)", "a_hum", 0.3), row("FORTRESS (SASRec)", "a_hum", 0.01),
          row("FORTRESS (SASRec)", "none", float("nan"))]
  md = fortress_table.to_markdown(rows, ["a note"])
  assert "| toy | off (CL + temporal) | 0.3000 | 0.1000 |" in md
  assert "| toy | on (FORTRESS) | 0.0100 | 0.1000 |" in md and "n/a" in md
  parsed = list(csv.DictReader(fortress_table.to_csv(rows).splitlines()))
  assert len(parsed) == 3 and parsed[1]["er@5"] == "0.01"
