"""Sequential split, padded windows, loaders and the synthetic generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedjax_rec.data.dataset import UserItems
from fedjax_rec.tasks.sequential import data as seq_data
from fedjax_rec.tasks.sequential.synthetic import SeqSyntheticConfig, make_sequences


def test_split_sorts_by_time_keeps_earliest_duplicate_and_drops_short_users():
  df = pd.DataFrame({
      # user 10: times out of file order, a tie (5, 5: file order), a repeat of item 1.
      "user": [10, 10, 10, 10, 10, 20, 20, 30, 30, 30],
      "item": [1, 2, 3, 4, 1, 2, 3, 5, 6, 7],
      "timestamp": [5, 1, 5, 9, 7, 1, 2, 3, 2, 1]})
  ds = seq_data.sequential_split(df, name="toy", max_len=3)
  assert ds.num_users == 2  # user 20 has 2 interactions: dropped
  # Ids by first appearance in the file: users 10 -> 0, 30 -> 1; items 1,2,3,4,5,6,7 -> 0..5
  items = {raw: i for i, raw in enumerate([1, 2, 3, 4, 5, 6, 7])}
  # User 10 in time order: 2 (t1), 1 (t5), 3 (t5, later in the file), 4 (t9); repeat dropped.
  assert ds.train.row(0).tolist() == [items[2], items[1]]
  assert ds.valid.row(0).tolist() == [items[3]] and ds.test.row(0).tolist() == [items[4]]
  assert ds.train.row(1).tolist() == [items[7]]
  assert ds.valid.row(1).tolist() == [items[6]] and ds.test.row(1).tolist() == [items[5]]
  assert ds.history().row(0).tolist() == [items[2], items[1], items[3]]


def test_left_padded_keeps_the_most_recent_items_right_aligned():
  ui = UserItems.from_lists([[1, 2, 3, 4, 5], [7], []])
  ids, mask = seq_data.left_padded(ui, 3)
  np.testing.assert_array_equal(ids, [[3, 4, 5], [0, 0, 7], [0, 0, 0]])
  np.testing.assert_array_equal(mask, [[1, 1, 1], [0, 0, 1], [0, 0, 0]])


def test_missing_timestamps_give_a_clear_error(tmp_path):
  (tmp_path / "user_movie_pairs.dat").write_text("1::10\n1::11\n1::12\n2::10\n")
  with pytest.raises(seq_data.NoTimestampsError, match="ratings.dat with timestamps"):
    seq_data.load_seq_dataset("ml-1m", tmp_path)
  with pytest.raises(seq_data.NoTimestampsError):
    seq_data.sequential_split(pd.DataFrame({"user": [1], "item": [2]}), name="x")


def test_ml100k_sequential_split(shared_data_dir):
  path = shared_data_dir / "ml-100k"
  if not path.is_dir():
    pytest.skip("ml-100k not available")
  ds = seq_data.load_seq_dataset("ml-100k", path)
  assert (ds.num_users, ds.num_items) == (943, 1682)
  assert ds.valid.nnz == ds.test.nnz == 943 and ds.train.nnz == 100000 - 2 * 943
  window, mask = seq_data.train_windows(ds)
  assert window.shape == (943, 51) and mask[:, -1].all()


def test_synthetic_is_deterministic_and_sequential():
  cfg = SeqSyntheticConfig(num_users=200, num_items=120, num_clusters=4)
  a, b = make_sequences(cfg, seed=3), make_sequences(cfg, seed=3)
  pd.testing.assert_frame_equal(a, b)
  assert not make_sequences(cfg, seed=4).equals(a)
  assert a.groupby("user").item.nunique().eq(a.groupby("user").size()).all()  # no repeats
  # The next item is one of few successors of the current one far more often than chance:
  # the most frequent successor pairs cover a large share of all transitions.
  a = a.sort_values(["user", "timestamp"])
  same_user = a.user.to_numpy()[1:] == a.user.to_numpy()[:-1]
  pairs = pd.Series(list(zip(a.item.to_numpy()[:-1][same_user], a.item.to_numpy()[1:][same_user])))
  top = pairs.value_counts()
  assert top.iloc[:3 * cfg.num_items].sum() / len(pairs) > 0.4


def test_amazon_csv_is_split_by_time(tmp_path):
  rows = ["u1,a,5,30", "u1,b,4,10", "u1,c,3,20", "u1,d,5,40", "u2,a,5,1", "u2,b,5,2"]
  (tmp_path / "ratings.csv").write_text("\n".join(rows) + "\n")
  ds = seq_data.load_seq_dataset("amazon-csv", tmp_path)
  assert ds.num_users == 1  # u2 has only two interactions
  # u1 in time order: b (10), c (20), a (30), d (40); ids by first appearance: a0 b1 c2 d3.
  assert ds.train.row(0).tolist() == [1, 2] and ds.valid.row(0).tolist() == [0]
  assert ds.test.row(0).tolist() == [3]
