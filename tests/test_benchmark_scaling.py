"""The scaling benchmark at toy size: rows, slope, table and figure."""

from __future__ import annotations

import numpy as np

from experiments import benchmark_scaling as bs


def _row(b, seconds, error=""):
  return bs.ScalingRow(b, 10, 5.0 * b, 6 * b, seconds, seconds, seconds, 0.5, None, None,
                       None, None, error)


def test_slope_from_4096_up():
  rows = [_row(b, 1e-4 * b + 0.3) for b in (256, 1024)]
  rows += [_row(b, 2e-5 * b) for b in (4096, 16384, 65536)]
  result = bs.ScalingResult(bs.ScalingConfig(), "synthetic: toy", 1.0, 1.0, rows)
  np.testing.assert_allclose(result.slope(), 1.0, atol=1e-9)
  out_of_memory = result.rows[:-1] + [_row(65536, float("nan"), error="out of memory")]
  lone = bs.ScalingResult(bs.ScalingConfig(), "synthetic: toy", 1.0, 1.0, out_of_memory[:3])
  assert lone.slope() is None  # one size from 4096 up
  assert "out of memory" in bs.to_markdown(
      bs.ScalingResult(bs.ScalingConfig(), "synthetic: toy", 1.0, 1.0, out_of_memory), "cmd")


def test_run_and_write(tmp_path):
  config = bs.ScalingConfig(num_users=1500, num_items=400, mean_activity=10,
                            clients=(64, 4096), timed_rounds=1, preset="ahum-reference")
  lines = []
  result = bs.run_scaling(config, log=lines.append)
  assert [r.clients_per_round for r in result.rows] == [64]  # 4096 > users: skipped
  for r in result.rows:
    assert not r.error and r.round_s > 0 and r.padded_rows >= r.real_rows > 0
    assert r.cpu_s > 0
    assert r.rss_peak is None or r.rss_peak > 0
  md, png = bs.write_outputs(result, tmp_path / "scaling.md", "python -m experiments.benchmark")
  text = md.read_text()
  assert text.count("\n| 64 |") == 1
  assert "![" in text and "(scaling.png)" in text
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
