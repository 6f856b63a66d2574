"""Readers for Amazon, Tenrec QB-Article and MIND raw files.

Re-exported by `fedjax_rec.data.readers`, which holds the shared helpers and the error
conventions (see its docstring).
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd

from fedjax_rec.data.parsing import (DataFormatError, PathLike, bad_line, first_nonblank,
                                     parse_fixed, read_text, shorten, split_lines)

AMAZON_CSV_LAYOUT = "Amazon ratings CSV (user,item,rating,timestamp; no header)"
AMAZON_JSON_LAYOUT = ("Amazon 5-core JSON lines (keys reviewerID, asin, overall, "
                      "unixReviewTime)")
TENREC_LAYOUT = "Tenrec QB-Article CSV with header (user_id, item_id, click, ...)"
MIND_LAYOUT = ("MIND behaviors.tsv (impression_id \\t user_id \\t time \\t history "
               "\\t impressions)")

_TIME_COLUMNS = ("timestamp", "ts", "time", "unix_time", "unix_timestamp")
_MIND_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


def read_amazon_csv(path: PathLike) -> pd.DataFrame:
  """Reads an Amazon "ratings only" CSV: `user,item,rating,timestamp`.

  The files have no header; a header row is tolerated (and skipped) when the first
  line's rating field is not numeric.

  Args:
    path: the CSV, plain or gzipped.

  Returns:
    Columns `user`, `item` (str), `rating` (float64), `timestamp` (int64), file order.
  """
  text = read_text(path, AMAZON_CSV_LAYOUT)
  lineno, line = first_nonblank(text)
  parts = line.split(",")
  offset = 0
  if len(parts) == 4:
    try:
      float(parts[2])
    except ValueError:  # A header: drop everything up to and including it.
      offset = lineno
      text = "\n".join(split_lines(text)[lineno:])
      if not text.strip():
        raise DataFormatError(f"{path}: only a header, expected {AMAZON_CSV_LAYOUT}")
  return parse_fixed(path, text, ",", ("user", "item", "rating", "timestamp"),
                     ("str", "str", "float", "int"),
                     "4 comma-separated fields user,item,rating,timestamp", offset)


def read_amazon_json(path: PathLike) -> pd.DataFrame:
  """Reads Amazon 5-core reviews, one JSON object per line.

  Args:
    path: the `.json` file, plain or gzipped.

  Returns:
    Columns `user` (reviewerID), `item` (asin), `rating` (overall, float64) and
    `timestamp` (unixReviewTime, int64), file order.
  """
  text = read_text(path, AMAZON_JSON_LAYOUT)
  desc = "a JSON object with reviewerID, asin, overall, unixReviewTime"
  users, items, ratings, times = [], [], [], []
  for lineno, line in enumerate(split_lines(text), 1):
    if not line.strip():
      continue
    try:
      rec = json.loads(line)
      user, item = rec["reviewerID"], rec["asin"]
      rating, ts = float(rec["overall"]), int(rec["unixReviewTime"])
    except (ValueError, KeyError, TypeError):
      raise bad_line(path, lineno, desc, line) from None
    if not isinstance(user, str) or not isinstance(item, str):
      raise bad_line(path, lineno, desc, line)
    users.append(user)
    items.append(item)
    ratings.append(rating)
    times.append(ts)
  return pd.DataFrame({"user": users, "item": items,
                       "rating": np.asarray(ratings, dtype=np.float64),
                       "timestamp": np.asarray(times, dtype=np.int64)})


def _ids(values: list[str]) -> np.ndarray:
  """Raw ids as read: int64 when every id is an integer, else strings."""
  try:
    return np.asarray([int(v) for v in values], dtype=np.int64)
  except ValueError:
    return np.asarray(values, dtype=object)


def _counts_ok(text: str, sep: str, nfields: int) -> bool:
  """Whether every non-blank line has exactly `nfields` fields (no quoting)."""
  data = np.frombuffer(text.encode("utf-8"), np.uint8)
  newlines = np.flatnonzero(data == 10)
  starts = np.concatenate([[0], newlines + 1])
  ends = np.concatenate([newlines, [len(data)]])
  ends = ends - ((ends > starts) & (data[np.maximum(ends - 1, 0)] == 13))
  line_of_sep = np.searchsorted(newlines, np.flatnonzero(data == ord(sep)))
  counts = np.bincount(line_of_sep, minlength=len(starts))
  return bool(np.all((counts == nfields - 1) | ((ends == starts) & (counts == 0))))


def _tenrec_scan(path: PathLike, text: str, header: list[str], used: dict[str, int],
                 desc: str) -> dict[str, list[str]]:
  """Line-by-line parse of a Tenrec CSV; raises at the first bad line."""
  cols: dict[str, list[str]] = {c: [] for c in used}
  for lineno, line in enumerate(split_lines(text), 1):
    if lineno == 1 or not line.strip():
      continue
    row = next(csv.reader([line]))
    if len(row) != len(header):
      raise bad_line(path, lineno, desc, line)
    try:
      for col, idx in used.items():
        value = row[idx].strip()
        if col in ("user_id", "item_id"):
          if not value:
            raise ValueError(col)
        else:
          float(value)
        cols[col].append(value)
    except ValueError:
      raise bad_line(path, lineno, desc, line) from None
  return cols


def read_tenrec_qb_article(path: PathLike) -> pd.DataFrame:
  """Reads Tenrec QB-Article; positives are rows with `click == 1`.

  Args:
    path: the CSV (header with at least `user_id`, `item_id`, `click`), plain or
      gzipped. Other columns are ignored, except a timestamp-like column
      (`timestamp`, `ts`, `time`, ...) which is kept as `timestamp`.

  Returns:
    Columns `user`, `item` (as read: int64 if integral) and possibly `timestamp`
    (int64), file order.
  """
  text = read_text(path, TENREC_LAYOUT)
  header_line = split_lines(text)[0]
  header = next(csv.reader([header_line]))
  lower = [h.strip().lower() for h in header]
  if not {"user_id", "item_id", "click"} <= set(lower):
    raise bad_line(path, 1, "a header with user_id, item_id, click", header_line)
  used = {c: lower.index(c) for c in ("user_id", "item_id", "click")}
  time_col = next((c for c in _TIME_COLUMNS if c in lower), None)
  if time_col is not None:
    used[time_col] = lower.index(time_col)
  desc = f"{len(header)} comma-separated fields ({shorten(header_line, 60)})"
  numeric = [c for c in used if c not in ("user_id", "item_id")]
  df = None
  if '"' not in text and _counts_ok(text, ",", len(header)):
    try:
      df = pd.read_csv(io.StringIO(text), header=0, names=lower, usecols=list(used),
                       engine="c", index_col=False)
      if (df.isna().any().any()
          or not all(pd.api.types.is_numeric_dtype(df[c]) for c in numeric)):
        df = None
    except (ValueError, pd.errors.ParserError):
      df = None
  if df is None:
    cols = _tenrec_scan(path, text, header, used, desc)
    df = pd.DataFrame({c: (_ids(v) if c in ("user_id", "item_id")
                           else np.asarray(v, dtype=np.float64))
                       for c, v in cols.items()})
  df = df[df["click"] == 1]
  out = pd.DataFrame({"user": df["user_id"].to_numpy(), "item": df["item_id"].to_numpy()})
  if time_col is not None:
    out["timestamp"] = df[time_col].to_numpy().astype(np.int64)
  return out


def read_mind_behaviors(path: PathLike) -> pd.DataFrame:
  """Reads MIND `behaviors.tsv` into per-user positives in time order.

  For each user the history items come first (they precede the first impression:
  they get the user's earliest impression time minus their reverse position, so they
  sort before it and keep their order), then the clicked (`-1`) impression items
  with their impression's time. Repeated (user, item) pairs keep the first one.

  Args:
    path: `behaviors.tsv`, plain or gzipped; tab-separated impression id, user id,
      time (`11/11/2019 9:05:58 AM`, read as UTC), history (space-separated news
      ids, may be empty), impressions (space-separated `N123-1` / `N456-0`).

  Returns:
    Columns `user`, `item` (str) and `timestamp` (int64 seconds), grouped by user in
    order of first appearance, each user's rows in time order.
  """
  text = read_text(path, MIND_LAYOUT)
  desc = ("5 tab-separated fields impression_id, user_id, time, history, "
          "impressions ('N1-1 N2-0 ...')")
  lines = split_lines(text)
  linenos, users, times, histories, clicks = [], [], [], [], []
  for lineno, line in enumerate(lines, 1):
    if not line.strip():
      continue
    parts = line.split("\t")
    if len(parts) != 5 or not parts[1]:
      raise bad_line(path, lineno, desc, line)
    clicked = []
    for tok in parts[4].split():
      news, sep, label = tok.rpartition("-")
      if not sep or not news or label not in ("0", "1"):
        raise bad_line(path, lineno, desc, line)
      if label == "1":
        clicked.append(news)
    linenos.append(lineno)
    users.append(parts[1])
    times.append(parts[2])
    histories.append(parts[3].split())
    clicks.append(clicked)
  parsed = pd.to_datetime(pd.Series(times, dtype=object), format=_MIND_TIME_FORMAT,
                          errors="coerce")
  if parsed.isna().any():
    i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
    raise bad_line(path, linenos[i], desc, lines[linenos[i] - 1])
  secs = (parsed - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
  secs = secs.to_numpy(dtype=np.int64)
  # Impressions grouped by user (first appearance), in time order (ties: file order).
  user_codes, _ = pd.factorize(pd.Series(users, dtype=object), sort=False)
  order = np.lexsort((np.arange(len(users)), secs, user_codes))
  out_users, out_items, out_times = [], [], []
  start = 0
  while start < len(order):
    end = start
    while end < len(order) and user_codes[order[end]] == user_codes[order[start]]:
      end += 1
    rows = order[start:end]
    first_time = secs[rows[0]]
    history = list(dict.fromkeys(h for r in rows for h in histories[r]))
    out_times.extend(first_time - np.arange(len(history), 0, -1))
    out_items.extend(history)
    for r in rows:
      out_items.extend(clicks[r])
      out_times.extend([secs[r]] * len(clicks[r]))
    out_users.extend([users[rows[0]]] * (len(out_items) - len(out_users)))
    start = end
  df = pd.DataFrame({"user": out_users, "item": out_items,
                     "timestamp": np.asarray(out_times, dtype=np.int64)})
  return df.drop_duplicates(subset=["user", "item"], keep="first").reset_index(drop=True)
