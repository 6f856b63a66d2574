"""The golden runs (`tests/golden_runs.py`) give their recorded metrics.

Tolerance: rtol 1e-4, enough for float sums reordered by a restructuring, far below
any change of behaviour (a changed default or key moves these metrics by > 1e-3).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests import golden_runs


@pytest.mark.parametrize("name", sorted(golden_runs.RUNS))
def test_golden_run(name):
  path = golden_runs.GOLDEN / f"{name}.json"
  if not golden_runs.available(name):
    pytest.skip(f"data of {name} not found under {golden_runs.DATA_ROOT}")
  assert path.exists(), f"no golden record: python -m tests.golden_runs --record {name}"
  want = json.loads(path.read_text())["rows"]
  got = golden_runs.run(name)
  assert len(got) == len(want)
  for g, w in zip(got, want):
    assert sorted(g) == sorted(w), (sorted(g), sorted(w))
    for key, value in w.items():
      np.testing.assert_allclose(g[key], value, rtol=1e-4, atol=1e-7, err_msg=f"{name} {key}")
