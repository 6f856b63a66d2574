"""Files are found by content under any of the extensions public copies use."""

from __future__ import annotations

import gzip

import pytest

from fedjax_rec.data import readers
from fedjax_rec.data.loaders import load_dataset


def _write(path, text, gz=False):
  if gz:
    with gzip.open(path, "wt") as f:
      f.write(text)
  else:
    path.write_text(text)


@pytest.mark.parametrize("name,gz", [("ratings.txt", False), ("ml1m.csv", False),
                                     ("pairs.dat.gz", True)])
def test_ml1m_found_under_another_name(tmp_path, name, gz):
  _write(tmp_path / name, "1::10::5::978300760\n2::10::3::978300761\n2::11::4::97830\n", gz)
  (tmp_path / "README.txt").write_text("MovieLens 1M\n")
  assert readers.find_file("ml-1m", tmp_path) == tmp_path / name
  assert len(readers.load_interactions("ml-1m", tmp_path)) == 3


def test_ml100k_found_by_content(tmp_path):
  (tmp_path / "ratings.csv").write_text("1\t10\t5\t881250949\n2\t11\t3\t881250950\n")
  assert readers.find_file("ml-100k", tmp_path) == tmp_path / "ratings.csv"


def test_no_candidate_lists_the_folder(tmp_path):
  (tmp_path / "notes.txt").write_text("hello world\n")
  (tmp_path / "movies.dat").write_text("1::Toy Story (1995)::Animation\n")
  with pytest.raises(FileNotFoundError) as e:
    readers.find_file("ml-1m", tmp_path)
  msg = str(e.value)
  assert "ratings.dat" in msg and "movies.dat" in msg and "notes.txt" in msg


def test_several_candidates_are_named(tmp_path):
  for name in ("a.txt", "b.csv"):
    (tmp_path / name).write_text("1::10::5::978300760\n")
  with pytest.raises(FileNotFoundError, match="several candidate"):
    readers.find_file("ml-1m", tmp_path)


@pytest.mark.parametrize("ext", [".txt", ".csv", ".dat.gz"])
def test_presplit_pair_under_other_extensions(tmp_path, ext):
  gz = ext.endswith(".gz")
  _write(tmp_path / f"train{ext}", "0 0 1 2\n1 2 3\n", gz)
  _write(tmp_path / f"test{ext}", "0 3\n1 0\n", gz)
  ds = load_dataset("presplit", tmp_path, seed=0)
  assert (ds.num_users, ds.num_items, ds.train.nnz, ds.test.nnz) == (2, 4, 5, 2)


def test_presplit_missing_lists_the_folder(tmp_path):
  (tmp_path / "train.txt").write_text("0 0 1\n")
  (tmp_path / "other.txt").write_text("x\n")
  with pytest.raises(FileNotFoundError) as e:
    load_dataset("presplit", tmp_path, seed=0)
  assert "other.txt" in str(e.value) and "train.txt" in str(e.value)
