"""Standard plots and Markdown tables from a results store (no training needed)."""

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np

from fedjax_rec.grid import parse_grid, point_id
from fedjax_rec.plots import markdown_table, standard_plots
from fedjax_rec.results_store import ResultsStore
from fedjax_rec.sweep import STORE_NAME, format_summary, summarize

REPO = Path(__file__).resolve().parents[1]


def _fake_store(workdir: Path) -> ResultsStore:
  store = ResultsStore(workdir / STORE_NAME)
  rng = np.random.default_rng(0)
  for p in parse_grid("dataset=synthetic,ml-100k;method=original,cl4fedrec;"
                      "attack=none,a_hum;seed=0,1;epochs=3"):
    rows = [{"epoch": e, "train/seconds": 0.1, "test/recall@20": 0.1 * e + rng.random() / 50,
             "test/ndcg@20": 0.05 * e, "test/er@5": rng.random()} for e in (1, 2, 3)]
    store.append(point_id(p), p, 1, rows)
  return store


def _nonblank_png(path: Path) -> None:
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
  assert image.std() > 0.01, f"{path} is blank"


def test_standard_plots_and_markdown(tmp_path):
  frame = _fake_store(tmp_path).frame()
  paths = standard_plots(frame, tmp_path / "plots")
  names = sorted(p.name for p in paths)
  assert names == ["er@5.png", "ndcg@20.png", "recall@20.png", "summary.md"]
  for p in paths[:-1]:
    _nonblank_png(p)
  md = (tmp_path / "plots" / "summary.md").read_text()
  assert "| dataset | method | attack |" in md and "±" in md
  table = format_summary(summarize(frame))
  assert list(table.columns) == ["test/recall@20", "test/ndcg@20", "test/er@5", "seeds"]
  assert len(table) == 8 and markdown_table(table).count("\n") == 10


def test_plot_cli(tmp_path):
  _fake_store(tmp_path)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH",
                                                                                "")]))
  out = subprocess.run([sys.executable, "-m", "experiments.plot", f"--workdir={tmp_path}",
                        "--metrics=test/er@5"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  _nonblank_png(tmp_path / "plots" / "er@5.png")
  assert not (tmp_path / "plots" / "recall@20.png").exists()
  bad = subprocess.run([sys.executable, "-m", "experiments.plot", f"--workdir={tmp_path}",
                        "--metrics=test/nope"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
  assert bad.returncode == 2 and "test/nope" in bad.stderr


def test_line_styles_stay_distinct_past_ten_lines():
  from fedjax_rec.plots import line_style, new_figure  # pylint: disable=import-outside-toplevel
  styles = [line_style(k) for k in range(40)]
  assert len({(s["color"], s["linestyle"]) for s in styles}) == 40
  fig, (ax,) = new_figure()
  for k in range(12):
    ax.plot([0, 1], [k, k], **line_style(k))
  drawn = {(line.get_color(), line.get_linestyle()) for line in ax.get_lines()}
  assert len(drawn) == 12  # the default cycle would repeat two colours
