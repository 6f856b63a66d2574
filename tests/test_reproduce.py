"""The reproduction driver on the synthetic data: runs, tables, figures, resume."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from absl import flags

from experiments import reproduce
from experiments.repro_specs import EXPERIMENTS, Experiment

FLAGS = flags.FLAGS


@pytest.fixture
def parsed_flags():
  FLAGS(["reproduce", "--epochs=2"])
  yield
  FLAGS.unparse_flags()


def _experiment() -> Experiment:
  return Experiment(
      "figuretest", "Figure 4a: test", [
          ("alpha=0.0", {"method": "poc", "method_kwargs": (("alpha", 0.0),),
                         "attack": "a_hum"}, {"er@5": 0.5}),
          ("alpha=5.0", {"method": "poc", "method_kwargs": (("alpha", 5.0),),
                         "attack": "a_hum"}, {})],
      metrics=("er@5", "recall@20"), preset="ahum-reference", dataset="synthetic",
      malicious_share=0.01, spectra=True)


def test_runs_tables_figures_and_resume(tmp_path: Path, parsed_flags):
  exp = _experiment()
  # Identical configurations in two experiments share one run directory.
  _, twin_runs = reproduce.run_experiment(
      exp._replace(name="tabletest", rows=exp.rows[:1]), tmp_path, seeds=1)
  frame, runs = reproduce.run_experiment(exp, tmp_path, seeds=1)
  assert runs[0].workdir == twin_runs[0].workdir != runs[1].workdir
  assert sorted(frame.label.unique()) == ["alpha=0.0", "alpha=5.0"]
  assert sorted(frame.epoch.unique()) == [1, 2]
  assert len({r.workdir for r in runs}) == 2
  tab = reproduce.table(exp, frame)
  assert list(tab.configuration) == ["alpha=0.0", "alpha=5.0"]
  assert tab["er@5 (paper)"].iloc[0] == 0.5
  reproduce.figure(exp, frame, tmp_path / "f.png")
  spec = reproduce.spectra(exp, runs, tmp_path)
  # Normalized spectra start at 1 and decrease; the two alphas train different tables.
  for label in ("alpha=0.0", "alpha=5.0"):
    s = spec[spec.label == label].singular_value.to_numpy()
    assert s[0] == pytest.approx(1.0) and np.all(np.diff(s) <= 1e-6)
  assert not np.allclose(spec[spec.label == "alpha=0.0"].singular_value.to_numpy(),
                         spec[spec.label == "alpha=5.0"].singular_value.to_numpy())
  reproduce.spectra_figure(exp, spec, tmp_path / "fb.png")
  # Spectra are kept beside the store: without the checkpoints they read back alike.
  for r in runs:
    (r.workdir / "checkpoint.msgpack").rename(r.workdir / "moved.msgpack")
  pd.testing.assert_frame_equal(reproduce.spectra(exp, runs, tmp_path), spec)
  for r in runs:
    (r.workdir / "moved.msgpack").rename(r.workdir / "checkpoint.msgpack")
  for png in ("f.png", "fb.png"):
    assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # A rerun trains nothing: every run directory is finished and left untouched.
  stamps = {r.workdir: (r.workdir / "summary.json").stat().st_mtime_ns for r in runs}
  again, _ = reproduce.run_experiment(exp, tmp_path, seeds=1)
  assert {r.workdir: (r.workdir / "summary.json").stat().st_mtime_ns for r in runs} == stamps
  assert again.equals(frame)


def test_points_train_seed_by_seed_and_come_back_row_by_row(tmp_path, parsed_flags,
                                                            monkeypatch):
  trained = []

  def fake_run_point(store, pid, keys, cfg, dataset, eval_config, log):
    trained.append((cfg.method_kwargs, keys["seed"]))
    return [{"epoch": 1, "test/er@5": float(keys["seed"])}]

  monkeypatch.setattr(reproduce, "run_point", fake_run_point)
  exp = _experiment()
  frame, runs = reproduce.run_experiment(exp, tmp_path, seeds=2)
  a0, a5 = (), (("alpha", 5.0),)  # alpha 0 is the default, so it is not spelled out
  # Cut short after two points, every row already has its seed 0.
  assert trained == [(a0, 0), (a5, 0), (a0, 1), (a5, 1)]
  assert [(r.label, r.seed) for r in runs] == [
      ("alpha=0.0", 0), ("alpha=0.0", 1), ("alpha=5.0", 0), ("alpha=5.0", 1)]
  assert list(zip(frame.label, frame.seed)) == [(r.label, r.seed) for r in runs]


def test_dataset_and_preset_flags_select_the_earlier_setting():
  table2 = EXPERIMENTS["table2"]
  FLAGS(["reproduce", "--dataset=ml-1m", "--preset=paper-onestep"])
  try:
    exp = reproduce.selected(table2)
    # An experiment on other data keeps it; the preset applies to every experiment.
    efficacy = reproduce.selected(EXPERIMENTS["figureefficacy"]._replace(dataset="synthetic"))
  finally:
    FLAGS.unparse_flags()
  assert (exp.dataset, exp.preset) == ("ml-1m", "paper-onestep")
  assert (table2.dataset, table2.preset) == ("ml-1m-presplit", "paper")
  assert efficacy.dataset == "synthetic" and efficacy.preset == "paper-onestep"
  FLAGS(["reproduce"])
  try:
    assert reproduce.selected(table2) == table2
  finally:
    FLAGS.unparse_flags()


def test_a_default_spelled_out_names_the_same_point(parsed_flags):
  """Figure 6's explicit |U_syn| = 60 (the default) is Table 2's rCL4FedRec point."""
  eval_config = reproduce.EvalConfig(every=5)
  names = {}
  for name, label in (("table2", "rcl4fedrec"), ("figure6", "|U_syn|=60"),
                      ("figure6", "|U_syn|=40")):
    exp = EXPERIMENTS[name]._replace(dataset="synthetic")
    overrides = next(o for lab, o, _ in exp.rows if lab == label)
    cfg = reproduce._config(exp, overrides, reproduce._dataset("synthetic", 0), 0)
    names[label] = reproduce.point_name(exp, cfg, eval_config)
  assert names["rcl4fedrec"] == names["|U_syn|=60"] != names["|U_syn|=40"]


def test_table_mean_and_sample_std_over_seeds():
  exp = _experiment()
  frame = pd.DataFrame({
      "label": ["alpha=0.0"] * 4 + ["alpha=5.0"],
      "seed": [0, 0, 1, 1, 0], "epoch": [1, 2, 1, 2, 2],
      "test/er@5": [9.0, 0.25, 9.0, 0.75, 0.5], "test/recall@20": [9.0, 0.1, 9.0, 0.3, 0.2]})
  tab = reproduce.table(exp, frame).set_index("configuration")
  # Last epoch of each seed only; sample std (ddof=1) of (0.25, 0.75) is 0.3536.
  assert tab.loc["alpha=0.0", "er@5 (ours)"] == "0.5000 ± 0.3536"
  assert tab.loc["alpha=0.0", "recall@20 (ours)"] == "0.2000 ± 0.1414"
  assert tab.loc["alpha=5.0", "er@5 (ours)"] == "0.5000 (1 seed)"


def test_sweep_figure_plots_the_mean_with_the_seed_spread(tmp_path: Path):
  exp = Experiment("figuresweep", "Figure 6: test", [
      (f"|U_syn|={n}", {}, {}) for n in (10, 20)], metrics=("recall@20",), x_axis="|U_syn|")
  frame = pd.DataFrame({"label": ["|U_syn|=10"] * 2 + ["|U_syn|=20"], "seed": [0, 1, 0],
                        "epoch": [19, 19, 19], "test/recall@20": [0.02, 0.03, 0.025]})
  reproduce.figure(exp, frame, tmp_path / "s.png")
  assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curve_figure_gives_every_line_a_panel_over_its_reference(tmp_path: Path, monkeypatch):
  # Three defenses at ER@5 = 0 lay on one line; each now has a panel of its own.
  exp = Experiment("figuregrid", "Figure 5: test", [
      (f"{a} / {d}", {}, {}) for a in ("a_hum", "psmu") for d in ("none", "krum", "median")],
      metrics=("er@5",))
  frame = pd.DataFrame([
      {"label": f"{a} / {d}", "seed": s, "epoch": e,
       "test/er@5": 0.0 if d != "none" else 1.0 / e}
      for a in ("a_hum", "psmu") for d in ("none", "krum", "median")
      for s in (0, 1) for e in (1, 2)])
  drawn = []
  monkeypatch.setattr(reproduce.plots, "save_figure", lambda fig, path: drawn.append(fig))
  reproduce.figure(exp, frame, tmp_path / "g.png")
  axes = drawn[0].axes
  assert [ax.get_title() for ax in axes] == [label for label, _, _ in exp.rows]
  for ax in axes:
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert lines[ax.get_title().split(" / ")[1]] == ([1.0, 0.5] if "none" in ax.get_title()
                                                     else [0.0, 0.0])
    # The row's reference (no defense) under every other line, and only there.
    assert ("none" in lines) and len(lines) == (1 if "none" in ax.get_title() else 2)
  # Without a `panel / ` prefix the panels are one row, one per line.
  flat = exp._replace(rows=[(d, {}, {}) for d in ("none", "krum")])
  reproduce.figure(flat, frame.assign(label=frame.label.str.split(" / ").str[1]),
                   tmp_path / "h.png")
  assert [ax.get_title() for ax in drawn[1].axes] == ["none", "krum"]
  assert [line.get_label() for line in drawn[1].axes[1].get_lines()] == ["none", "krum"]
