"""Ids are checked before anything is sized by them; messages name the file, line and field."""

from __future__ import annotations

import pytest

from fedjax_rec.data import readers
from fedjax_rec.data.loaders import load_dataset
from fedjax_rec.data.readers import DataFormatError


def test_non_integer_field_is_named(tmp_path):
  path = tmp_path / "u.data"
  path.write_text("1\t2\t5\t88\n1\tabc\t5\t88\n")
  with pytest.raises(DataFormatError, match=r"u.data:2: expected field 2 \(item\) to be an "
                     r"integer \(not 'abc'\)") as e:
    readers.read_movielens_100k(path)
  assert "expected 4" not in str(e.value)


def test_wrong_field_count_still_says_so(tmp_path):
  path = tmp_path / "u.data"
  path.write_text("1\t2\t5\t88\n1\t2\t5\n")
  with pytest.raises(DataFormatError, match="u.data:2: expected 4 tab-separated"):
    readers.read_movielens_100k(path)


def test_huge_integer_is_named_not_a_crash(tmp_path):
  path = tmp_path / "u.data"
  path.write_text("1\t2\t5\t88\n1\t99999999999999999999999\t5\t88\n")
  with pytest.raises(DataFormatError, match=r"u.data:2: expected field 2 \(item\)"):
    readers.read_movielens_100k(path)


@pytest.mark.parametrize("text,line,what", [
    ("1\t2\t5\t88\n\n-3\t2\t5\t88\n", 3, "negative user id -3"),
    ("1\t2\t5\t88\n4\t-2\t5\t88\n", 2, "negative item id -2"),
])
def test_negative_id_in_u_data_names_file_and_line(tmp_path, text, line, what):
  path = tmp_path / "u.data"
  path.write_text(text)
  with pytest.raises(DataFormatError, match=f"u.data:{line}: {what}"):
    readers.read_movielens_100k(path)


def test_negative_id_in_ml1m(tmp_path):
  path = tmp_path / "ratings.dat"
  path.write_text("1::2::5::88\n1::3::5::88\n-7::3::5::88\n")
  with pytest.raises(DataFormatError, match="ratings.dat:3: negative user id -7"):
    readers.read_movielens_1m(path)


def _presplit(tmp_path, train: str, test: str):
  (tmp_path / "train.dat").write_text(train)
  (tmp_path / "test.dat").write_text(test)
  return tmp_path


def test_presplit_far_id_is_refused_with_file_and_line(tmp_path):
  d = _presplit(tmp_path, "0 1 2 3\n1 2 3\n", "0 4\n1 5 123456789\n")
  with pytest.raises(DataFormatError, match=r"test.dat:2: item id 123456789 is far beyond"):
    readers.load_presplit_dir(d)
  d2 = _presplit(tmp_path / "u", "0 1 2\n987654321 2\n", "0 3\n") if (
      (tmp_path / "u").mkdir() or True) else None
  with pytest.raises(DataFormatError, match=r"train.dat:2: user id 987654321"):
    readers.load_presplit_dir(d2)


def test_presplit_ids_with_gaps_are_kept_as_given(tmp_path):
  d = _presplit(tmp_path, "0 1 2 30\n5 2 3\n", "0 40\n5 7\n")
  train, test = readers.load_presplit_dir(d)
  assert train.item.max() == 30 and test.item.max() == 40 and train.user.max() == 5


def test_data_dir_that_is_a_file(tmp_path):
  afile = tmp_path / "u.data"
  afile.write_text("1\t2\t5\t88\n")
  with pytest.raises(FileNotFoundError, match="is a file, not a directory"):
    load_dataset("ml-100k", afile)
  with pytest.raises(FileNotFoundError, match="is a file, not a directory"):
    load_dataset("ml-1m-presplit", afile)
