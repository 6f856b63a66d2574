"""Sharded client axis: 8 CPU devices give the single-device result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedjax_rec import sharding

REPO = Path(__file__).resolve().parents[2]


def test_sharded_equals_single_device():
  env = dict(os.environ, PYTHONPATH=str(REPO),
             XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "tests.scale.sharded_run"], cwd=REPO,
                        capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  diffs = json.loads(proc.stdout.strip().splitlines()[-1])
  assert {"fedavg", "median", "sequential"} <= set(diffs)
  for name, diff in diffs.items():
    assert diff < 1e-4, (name, diff)


def test_mesh_must_divide_devices():
  with pytest.raises(ValueError, match="--mesh_shape"):
    sharding.make_mesh(3 + 64)
