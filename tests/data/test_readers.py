"""Tests for fedjax_rec.data.readers (raw-format readers and dispatcher)."""

import calendar
import gzip
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedjax_rec.data import readers
from fedjax_rec.data.readers import (DataFormatError, load_interactions, load_presplit_dir,
                                     read_amazon_csv, read_amazon_json, read_mind_behaviors,
                                     read_movielens_100k, read_movielens_1m, read_presplit,
                                     read_tenrec_qb_article, reindex)

# "plain": as is; "gz": gzipped with .gz suffix; "gz-nosuffix": gzipped, no suffix.
MODES = ("plain", "gz", "gz-nosuffix")


def write(tmp_path: Path, name: str, text: str, mode: str = "plain",
          encoding: str = "utf-8") -> Path:
  data = text.encode(encoding)
  if mode == "plain":
    path = tmp_path / name
    path.write_bytes(data)
  else:
    path = tmp_path / (name + ".gz" if mode == "gz" else name)
    path.write_bytes(gzip.compress(data))
  return path


def mind_time(s: str) -> int:
  return calendar.timegm(time.strptime(s, "%m/%d/%Y %I:%M:%S %p"))


# ---------------------------------------------------------------------- fixtures' text

ML1M = "1::1193::5::978300760\n1::661::3::978302109\n2::1357::4::978298709\n"
ML1M_PAIRS = "1::1193\n1::661\n\n2::1357\n"
ML100K = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
AMAZON_CSV = "A2CX7LUOHB2NDG,0000000078,5.0,1341100800\nAB1,B0002,3.0,1341100900\n"
AMAZON_JSON = "".join(json.dumps(r) + "\n" for r in [
    {"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000,
     "reviewText": "great"},
    {"reviewerID": "A2", "asin": "B02", "overall": 2, "unixReviewTime": 1400000100},
])
TENREC = ("user_id,item_id,click,follow,like,share,video_category,read_percentage\n"
          "1,10,1,0,0,0,3,0.5\n1,11,0,0,0,0,3,0\n2,10,1,1,0,0,2,1.0\n"
          "3,12,0,0,0,0,1,0\n")
MIND = ("1\tU1\t11/11/2019 9:05:58 AM\tN1 N2\tN10-1 N11-0 N12-1\n"
        "2\tU2\t11/11/2019 8:00:00 AM\t\tN20-0 N21-1\n"
        "3\tU1\t11/11/2019 8:05:58 AM\tN1 N2\tN13-1 N2-1\n"
        "4\tU1\t11/12/2019 12:00:00 PM\tN1 N2\tN10-1 N14-0\n")


# ---------------------------------------------------------------------------- MovieLens


@pytest.mark.parametrize("mode", MODES)
def test_movielens_1m_four_columns(tmp_path, mode):
  df = read_movielens_1m(write(tmp_path, "ratings.dat", ML1M, mode, "latin-1"))
  assert list(df.columns) == ["user", "item", "rating", "timestamp"]
  assert df["user"].tolist() == [1, 1, 2]
  assert df["item"].tolist() == [1193, 661, 1357]
  assert df["rating"].tolist() == [5.0, 3.0, 4.0]
  assert df["timestamp"].tolist() == [978300760, 978302109, 978298709]
  assert df["timestamp"].dtype == np.int64 and df["rating"].dtype == np.float64


@pytest.mark.parametrize("mode", MODES)
def test_movielens_1m_pairs(tmp_path, mode):
  df = read_movielens_1m(write(tmp_path, "user_movie_pairs.dat", ML1M_PAIRS, mode))
  assert list(df.columns) == ["user", "item"]
  assert df.values.tolist() == [[1, 1193], [1, 661], [2, 1357]]


def test_movielens_1m_crlf_and_slow_path_agree(tmp_path):
  crlf = read_movielens_1m(write(tmp_path, "a.dat", ML1M.replace("\n", "\r\n")))
  pd.testing.assert_frame_equal(crlf, read_movielens_1m(write(tmp_path, "b.dat", ML1M)))
  # A whitespace-only line defeats the vectorised parse; the line scan skips it.
  spaced = read_movielens_1m(write(tmp_path, "c.dat", "1::5\n   \n2::6\n"))
  assert spaced.values.tolist() == [[1, 5], [2, 6]]


@pytest.mark.parametrize("text", [
    "1::1::5::1\n2::2::5::2\n3::3::5\n",          # too few fields
    "1::1::5::1\n2::2::5::2\n3::3::5::3::9\n",    # too many fields
    "1::1::5::1\n2::2::5::2\nx::3::5::3\n",       # non-integer id
    "1::1::5::1\n2::2::5::2\n3::3::five::3\n",    # non-numeric rating
    "1::1::5::1\n2::2::5::2\n3::3::5::3.5\n",     # non-integer timestamp
    "1::1\n2::2\n3::3::5::3\n",                   # 4 fields in a pairs file
])
def test_movielens_1m_bad_third_line(tmp_path, text):
  path = write(tmp_path, "ratings.dat", text)
  with pytest.raises(DataFormatError) as e:
    read_movielens_1m(path)
  msg = str(e.value)
  assert msg.startswith(f"{path}:3: expected ")
  assert msg.endswith(f"got {text.split(chr(10))[2]!r}")


def test_movielens_1m_bad_column_count(tmp_path):
  path = write(tmp_path, "ratings.dat", "1::2::3\n")
  with pytest.raises(DataFormatError, match=r":1: expected .*UserID::MovieID"):
    read_movielens_1m(path)


def test_long_bad_line_is_shortened(tmp_path):
  path = write(tmp_path, "ratings.dat", "1::2\n" * 2 + "3::" + "9" * 500 + "x\n")
  with pytest.raises(DataFormatError) as e:
    read_movielens_1m(path)
  assert ":3:" in str(e.value) and len(str(e.value)) < len(str(path)) + 250


@pytest.mark.parametrize("mode", MODES)
def test_movielens_100k(tmp_path, mode):
  df = read_movielens_100k(write(tmp_path, "u.data", ML100K, mode))
  assert df["user"].tolist() == [196, 186, 22]
  assert df["item"].tolist() == [242, 302, 377]
  assert df["rating"].tolist() == [3.0, 3.0, 1.0]
  assert df["timestamp"].tolist() == [881250949, 891717742, 878887116]


@pytest.mark.parametrize("bad", ["3\t3\t1\tnever", "3\t3\t1", "3 3 1 5", "3\tx\t1\t5"])
def test_movielens_100k_bad_third_line(tmp_path, bad):
  path = write(tmp_path, "u.data", "1\t1\t1\t1\n2\t2\t2\t2\n" + bad + "\n")
  with pytest.raises(DataFormatError, match=f"^{path}:3: expected "):
    read_movielens_100k(path)


# ---------------------------------------------------------------------------- pre-split


@pytest.mark.parametrize("mode", MODES)
def test_presplit(tmp_path, mode):
  train = write(tmp_path, "train.dat", "0 5 3 9\n1\n2 3 3 1\n", mode)
  test = write(tmp_path, "test.dat", "0 7\n1 2 \n2\n", mode)
  tr, te = read_presplit(train, test)
  assert tr.values.tolist() == [[0, 5], [0, 3], [0, 9], [2, 3], [2, 3], [2, 1]]
  assert te.values.tolist() == [[0, 7], [1, 2]]
  assert tr["user"].dtype == np.int64 and te["item"].dtype == np.int64


@pytest.mark.parametrize("bad", ["2 3 x", "2 -3", "two 3"])
def test_presplit_bad_third_line(tmp_path, bad):
  path = write(tmp_path, "train.dat", "0 1 2\n1 2\n" + bad + "\n")
  ok = write(tmp_path, "test.dat", "0 3\n")
  with pytest.raises(DataFormatError, match=f"^{path}:3: expected .*got '{bad}'"):
    read_presplit(path, ok)


def test_load_presplit_dir(tmp_path):
  sub = tmp_path / "processed-rdz98-implicit"
  sub.mkdir()
  write(sub, "train.dat", "0 1\n", "gz")
  write(sub, "test.dat", "0 2\n")
  tr, te = load_presplit_dir(tmp_path)
  assert tr.values.tolist() == [[0, 1]] and te.values.tolist() == [[0, 2]]
  with pytest.raises(FileNotFoundError, match="train.dat"):
    load_presplit_dir(tmp_path / "nowhere")


# ------------------------------------------------------------------------------- Amazon


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("header", [False, True])
def test_amazon_csv(tmp_path, mode, header):
  text = ("user,item,rating,timestamp\n" if header else "") + AMAZON_CSV
  df = read_amazon_csv(write(tmp_path, "ratings.csv", text, mode))
  assert df["user"].tolist() == ["A2CX7LUOHB2NDG", "AB1"]
  assert df["item"].tolist() == ["0000000078", "B0002"]  # Leading zeros kept.
  assert df["rating"].tolist() == [5.0, 3.0]
  assert df["timestamp"].tolist() == [1341100800, 1341100900]


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("bad", ["u,i,bad,1", "u,i,1", "u,i,1,2,3", "u,i,1,x"])
def test_amazon_csv_bad_line(tmp_path, header, bad):
  lines = ["a,b,1,1", "c,d,2,2", bad]
  if header:
    lines[0] = "user,item,rating,timestamp"
  path = write(tmp_path, "r.csv", "\n".join(lines) + "\n")
  with pytest.raises(DataFormatError, match=f"^{path}:3: expected "):
    read_amazon_csv(path)


@pytest.mark.parametrize("mode", MODES)
def test_amazon_json(tmp_path, mode):
  df = read_amazon_json(write(tmp_path, "Beauty_5.json", AMAZON_JSON, mode))
  assert df["user"].tolist() == ["A1", "A2"]
  assert df["item"].tolist() == ["B01", "B02"]
  assert df["rating"].tolist() == [5.0, 2.0]
  assert df["timestamp"].tolist() == [1400000000, 1400000100]


@pytest.mark.parametrize("bad", [
    '{"reviewerID": "A3", "asin": "B03", "overall": 1.0',           # bad JSON
    '{"reviewerID": "A3", "asin": "B03", "overall": 1.0}',          # missing key
    '{"reviewerID": "A3", "asin": "B03", "overall": "x", "unixReviewTime": 1}',
])
def test_amazon_json_bad_third_line(tmp_path, bad):
  path = write(tmp_path, "r.json", AMAZON_JSON + bad + "\n")
  with pytest.raises(DataFormatError, match=f"^{path}:3: expected "):
    read_amazon_json(path)


# ------------------------------------------------------------------------------- Tenrec


@pytest.mark.parametrize("mode", MODES)
def test_tenrec_click_filter(tmp_path, mode):
  df = read_tenrec_qb_article(write(tmp_path, "QB-article.csv", TENREC, mode))
  assert list(df.columns) == ["user", "item"]
  assert df.values.tolist() == [[1, 10], [2, 10]]


def test_tenrec_keeps_timestamp_and_quoted_fields(tmp_path):
  text = ('item_id,user_id,title,click,timestamp\n'
          '10,1,"a, b",1,100\n11,1,c,0,101\n12,2,"d",1,102\n')
  df = read_tenrec_qb_article(write(tmp_path, "t.csv", text))
  assert df["user"].tolist() == [1, 2] and df["item"].tolist() == [10, 12]
  assert df["timestamp"].tolist() == [100, 102]


@pytest.mark.parametrize("bad", ["3,12,1,0,0,0,1", "3,12,1,0,0,0,1,0,9", "3,12,yes,0,0,0,1,0",
                                 ",12,1,0,0,0,1,0"])
def test_tenrec_bad_third_line(tmp_path, bad):
  header = TENREC.split("\n")[0]
  path = write(tmp_path, "t.csv", f"{header}\n1,10,1,0,0,0,3,0.5\n{bad}\n")
  with pytest.raises(DataFormatError, match=f"^{path}:3: expected "):
    read_tenrec_qb_article(path)


def test_tenrec_missing_column(tmp_path):
  path = write(tmp_path, "t.csv", "user_id,item_id,like\n1,2,1\n")
  with pytest.raises(DataFormatError, match=r":1: expected .*click"):
    read_tenrec_qb_article(path)


# --------------------------------------------------------------------------------- MIND


@pytest.mark.parametrize("mode", MODES)
def test_mind_history_then_clicks_in_time_order(tmp_path, mode):
  df = read_mind_behaviors(write(tmp_path, "behaviors.tsv", MIND, mode))
  t1 = mind_time("11/11/2019 9:05:58 AM")
  t2 = mind_time("11/11/2019 8:00:00 AM")
  t3 = mind_time("11/11/2019 8:05:58 AM")
  assert t3 == 1573459558
  # U1 (first seen) before U2; U1: history before its earliest impression (line 3),
  # then clicks by impression time; repeated N2 (history) and N10 (line 4) dropped.
  assert list(zip(df["user"], df["item"], df["timestamp"])) == [
      ("U1", "N1", t3 - 2), ("U1", "N2", t3 - 1), ("U1", "N13", t3),
      ("U1", "N10", t1), ("U1", "N12", t1), ("U2", "N21", t2)]
  assert df["timestamp"].dtype == np.int64


def test_mind_noon_and_midnight(tmp_path):
  text = ("1\tU\t1/2/2020 12:00:00 AM\t\tA-1\n"
          "2\tU\t1/2/2020 12:00:00 PM\t\tB-1\n")
  df = read_mind_behaviors(write(tmp_path, "behaviors.tsv", text))
  assert df["timestamp"].tolist() == [1577923200, 1577923200 + 12 * 3600]


@pytest.mark.parametrize("bad", [
    "3\tU3\t11/11/2019 9:05:58 AM\t\tN1-1 N2",       # impression without label
    "3\tU3\t11/11/2019 9:05:58 AM\t\tN1-2",          # label not 0/1
    "3\tU3\t11/11/2019 9:05:58 AM\tN1-1",            # 4 fields
    "3\tU3\t2019-11-11 09:05:58\t\tN1-1",            # bad time
])
def test_mind_bad_third_line(tmp_path, bad):
  good = MIND.split("\n")[:2]
  path = write(tmp_path, "behaviors.tsv", "\n".join(good + [bad]) + "\n")
  with pytest.raises(DataFormatError, match=f"^{path}:3: expected "):
    read_mind_behaviors(path)


# ------------------------------------------------------------------- empty and missing

READERS = {
    "ml-1m": read_movielens_1m, "ml-100k": read_movielens_100k,
    "amazon-csv": read_amazon_csv, "amazon-json": read_amazon_json,
    "qb-article": read_tenrec_qb_article, "mind": read_mind_behaviors,
    "presplit": lambda p: read_presplit(p, p),
}
LAYOUT_WORDS = {"ml-1m": "UserID::MovieID", "ml-100k": "u.data", "amazon-csv": "rating",
                "amazon-json": "reviewerID", "qb-article": "click", "mind": "behaviors",
                "presplit": "uid"}


@pytest.mark.parametrize("name", sorted(READERS))
@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_empty_file(tmp_path, name, text):
  path = write(tmp_path, "empty", text, "gz")
  with pytest.raises(DataFormatError, match="empty") as e:
    READERS[name](path)
  assert str(path) in str(e.value)


@pytest.mark.parametrize("name", sorted(READERS))
def test_missing_file(tmp_path, name):
  path = tmp_path / "absent.dat"
  with pytest.raises(FileNotFoundError) as e:
    READERS[name](path)
  assert str(path) in str(e.value) and LAYOUT_WORDS[name] in str(e.value)


def test_data_format_error_is_value_error():
  assert issubclass(DataFormatError, ValueError)


# --------------------------------------------------------------------------- dispatcher


@pytest.mark.parametrize("name,files,expected_rows", [
    ("ml-1m", {"ratings.dat.gz": ML1M}, 3),
    ("ml-1m", {"pairs-aurasparktraining/user_movie_pairs.dat.gz": ML1M_PAIRS}, 3),
    ("ml-1m", {"user_movie_pairs.dat": ML1M_PAIRS}, 3),
    ("ml-100k", {"u.data.gz": ML100K}, 3),
    ("amazon-csv", {"ratings_Beauty.csv": AMAZON_CSV}, 2),
    ("amazon-csv", {"ratings.csv": AMAZON_CSV, "other.csv": "x"}, 2),
    ("amazon-json", {"Beauty_5.json.gz": AMAZON_JSON}, 2),
    ("qb-article", {"QB-article.csv": TENREC, "QB-video.csv": "x"}, 2),
    ("mind", {"behaviors.tsv.gz": MIND}, 6),
])
def test_load_interactions(tmp_path, name, files, expected_rows):
  for rel, text in files.items():
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    (tmp_path / rel).write_bytes(gzip.compress(data) if rel.endswith(".gz") else data)
  assert len(load_interactions(name, tmp_path)) == expected_rows


def test_load_interactions_errors(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    load_interactions("ml-1m", tmp_path)
  assert str(tmp_path) in str(e.value) and "ratings.dat" in str(e.value)
  assert "user_movie_pairs.dat.gz" in str(e.value)
  with pytest.raises(FileNotFoundError, match="behaviors.tsv"):
    load_interactions("mind", tmp_path / "missing")
  (tmp_path / "a.json").write_text("{}")
  (tmp_path / "b.json").write_text("{}")
  with pytest.raises(FileNotFoundError, match="several"):
    load_interactions("amazon-json", tmp_path)
  with pytest.raises(ValueError, match="unknown dataset"):
    load_interactions("netflix", tmp_path)


# ------------------------------------------------------------------------------ reindex


def test_reindex_first_appearance_and_dedup():
  df = pd.DataFrame({"user": ["b", "a", "b", "b", "c"], "item": [10, 20, 10, 30, 20],
                     "timestamp": [5, 4, 3, 2, 1]})
  out, users, items = reindex(df)
  assert out["user"].tolist() == [0, 1, 0, 2]
  assert out["item"].tolist() == [0, 1, 2, 1]
  assert out["timestamp"].tolist() == [5, 4, 2, 1]  # Duplicate (b, 10) dropped.
  assert users.tolist() == ["b", "a", "c"] and items.tolist() == [10, 20, 30]
  assert out["user"].dtype == np.int64
  assert df["user"].tolist()[0] == "b"  # Input untouched.


def test_module_reexports():
  from fedjax_rec.data import readers_other  # pylint: disable=import-outside-toplevel
  assert readers.read_mind_behaviors is readers_other.read_mind_behaviors
  assert set(readers.__all__) <= set(dir(readers))


# ---------------------------------------------------------------------------- real data


def test_real_ml1m_pairs(shared_data_dir):
  start = time.perf_counter()
  df = load_interactions("ml-1m", shared_data_dir / "ml-1m")
  elapsed = time.perf_counter() - start
  assert len(df) == 1_000_209
  assert df["user"].nunique() == 6040 and df["item"].nunique() == 3706
  assert df.iloc[:4].values.tolist() == [[1, 1193], [1, 661], [1, 914], [1, 3408]]
  assert elapsed < 10, elapsed


def test_real_ml100k(shared_data_dir):
  df = load_interactions("ml-100k", shared_data_dir / "ml-100k")
  assert len(df) == 100_000
  assert df["user"].nunique() == 943 and df["item"].nunique() == 1682
  assert df["timestamp"].min() == 874724710 and df["timestamp"].max() == 893286638
  assert df["rating"].value_counts().sort_index().tolist() == [6110, 11370, 27145, 34174,
                                                              21201]


def test_real_presplit_matches_pairs(shared_data_dir):
  train, test = load_presplit_dir(shared_data_dir / "ml-1m")
  assert len(train) == 802_552 and len(test) == 197_656
  both = pd.concat([train, test])
  assert both["user"].nunique() == 6040 and both["item"].nunique() == 3706
  assert both["item"].max() == 3705
  # SOURCE.md: the pre-split data is the pairs file minus its first line, re-indexed by
  # first appearance, each user's test = the last floor(0.2 n) of its items.
  pairs = load_interactions("ml-1m", shared_data_dir / "ml-1m").iloc[1:]
  ids, _, _ = reindex(pairs)
  first_user = ids[ids["user"] == 0]["item"].tolist()
  assert first_user == (train[train["user"] == 0]["item"].tolist()
                        + test[test["user"] == 0]["item"].tolist())
