"""A sweep checks every grid point before the first runs."""

from __future__ import annotations

import pytest

from fedjax_rec.grid import parse_grid
from fedjax_rec.sweep import SweepError, SweepSettings, run_sweep, validate_points


def test_missing_dataset_fails_before_any_point_runs(tmp_path):
  points = parse_grid("dataset=synthetic,ml-100k;epochs=1;clients_per_round=8")
  lines = []
  with pytest.raises(FileNotFoundError, match=r"dataset=ml-100k.*u\.data"):
    run_sweep(points, tmp_path / "sweep", SweepSettings(data_root=str(tmp_path / "empty")),
              log=lines.append)
  assert not (tmp_path / "sweep" / "points").exists()
  assert not any("done" in l and "left" in l for l in lines)


def test_data_root_naming_a_file(tmp_path):
  (tmp_path / "ml-100k").write_text("not a folder")
  points = parse_grid("dataset=ml-100k")
  with pytest.raises(FileNotFoundError, match="is a file, not a directory"):
    validate_points(points, SweepSettings(data_root=str(tmp_path)))


def test_bad_point_values_are_named(tmp_path):
  points = parse_grid("dataset=synthetic;epochs=1")
  points[0]["clients_per_round"] = 0  # past the grid parser, e.g. a hand-built point
  with pytest.raises(SweepError, match="clients_per_round must be >= 1"):
    validate_points(points)


def test_workdir_that_is_a_file(tmp_path):
  afile = tmp_path / "f"
  afile.write_text("x")
  with pytest.raises(SweepError, match="is a file, not a directory"):
    run_sweep(parse_grid("dataset=synthetic;epochs=1"), afile)
