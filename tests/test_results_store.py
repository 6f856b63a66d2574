"""The results store: exactly-once appends, exact floats, foreign files refused."""

import math

import pytest

from fedjax_rec.grid import parse_grid, point_id
from fedjax_rec.results_store import FORMAT, ResultsStore, StoreError
from fedjax_rec.sweep import STORE_NAME, SweepError, check_workdir, format_summary, summarize

ROWS = [{"epoch": 1, "train/seconds": 0.5, "test/recall@20": 0.1 + 0.2},
        {"epoch": 2, "train/seconds": 0.25, "test/recall@20": 1 / 3, "test/er@5": 2 / 7}]


def _point(seed=0, method="original"):
  (p,) = parse_grid(f"method={method};seed={seed}")
  return p


def test_append_once_and_floats_survive_the_file(tmp_path):
  store = ResultsStore(tmp_path / STORE_NAME)
  p = _point()
  assert store.append(point_id(p), p, 0, ROWS)
  assert not store.append(point_id(p), p, 0, ROWS)  # already there: nothing written
  again = ResultsStore(tmp_path / STORE_NAME).frame()
  assert len(again) == 2 and set(again["results_format"]) == {FORMAT}
  assert again["test/recall@20"].tolist() == [0.1 + 0.2, 1 / 3]  # bit for bit
  assert math.isnan(again["test/er@5"][0]) and again["test/er@5"][1] == 2 / 7
  assert again["seed"].tolist() == [0, 0] and again["attack"].tolist() == ["none"] * 2


def test_summary_mean_and_std_over_seeds(tmp_path):
  store = ResultsStore(tmp_path / STORE_NAME)
  for seed, value in [(0, 0.2), (1, 0.4)]:
    p = _point(seed)
    store.append(point_id(p), p, 0, [{"epoch": 1, "test/recall@20": 0.0},
                                     {"epoch": 2, "test/recall@20": value}])
  summary = summarize(ResultsStore(tmp_path / STORE_NAME).frame())
  assert len(summary) == 1
  assert summary[("test/recall@20", "mean")].iloc[0] == pytest.approx(0.3)
  assert summary[("test/recall@20", "std")].iloc[0] == pytest.approx(0.1414213562)
  assert summary[("seeds", "n")].iloc[0] == 2
  assert format_summary(summary)["test/recall@20"].iloc[0] == "0.3000 ± 0.1414"


@pytest.mark.parametrize("content", [
    b"a,b,c\n1,2,3\n",                                   # a foreign CSV
    b"",                                                 # empty
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",      # binary
    b"results_format,point_id\nsomething_else,x\n",      # wrong marker
])
def test_foreign_or_corrupt_file_is_refused_and_left_untouched(tmp_path, content):
  path = tmp_path / STORE_NAME
  path.write_bytes(content)
  with pytest.raises(StoreError, match="not a fedjax_rec results store"):
    check_workdir(tmp_path, resume=True)
  assert path.read_bytes() == content


def test_no_resume_refuses_an_existing_sweep(tmp_path):
  check_workdir(tmp_path, resume=False)  # empty: fine
  store = ResultsStore(tmp_path / STORE_NAME)
  store.append(point_id(_point()), _point(), 0, ROWS)
  with pytest.raises(SweepError, match="pass --resume"):
    check_workdir(tmp_path, resume=False)


def test_run_point_runs_once_then_reads_back(tmp_path):
  from fedjax_rec.data.loaders import load_dataset
  from fedjax_rec.data.synthetic import SyntheticConfig
  from fedjax_rec.results_store import run_point
  from fedjax_rec.runner import EvalConfig
  from fedjax_rec.tasks.ncf.presets import get_preset
  dataset = load_dataset("synthetic", seed=0, synthetic=SyntheticConfig(
      num_users=40, num_items=30, num_clusters=3, mean_activity=8.0, min_activity=4,
      max_activity=12))
  config = get_preset("paper", epochs=2, clients_per_round=8)
  store = ResultsStore(tmp_path / STORE_NAME, ("dataset", "seed"))
  point, logs = {"dataset": "synthetic", "seed": 0}, []
  rows = run_point(store, "p0", point, config, dataset, eval_config=EvalConfig(),
                   log=logs.append)
  assert [r["epoch"] for r in rows] == [1, 2] and (tmp_path / "points" / "p0").is_dir()
  reopened = ResultsStore(tmp_path / STORE_NAME)  # keys read from the file
  assert reopened.keys == ("dataset", "seed")
  again = run_point(reopened, "p0", point, config, dataset, log=logs.append)
  assert again == rows and reopened.frame()["seed"].tolist() == [0, 0]
  with pytest.raises(ValueError, match="plain directory name"):
    run_point(reopened, "../p1", point, config, dataset)
