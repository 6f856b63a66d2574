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


def _sharded_diffs(cases: str) -> dict:
  env = dict(os.environ, PYTHONPATH=str(REPO),
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
             "--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "tests.scale.sharded_run", cases], cwd=REPO,
                        capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  diffs = json.loads(proc.stdout.strip().splitlines()[-1])
  assert set(diffs) == set(cases.split(","))
  return diffs


def test_sharded_equals_single_device():
  for name, diff in _sharded_diffs("fedavg,median,sequential").items():
    assert diff < 1e-4, (name, diff)


@pytest.mark.slow
def test_sharded_cl4fedrec_equals_single_device():
  """The contrastive method's round on the mesh (its client update is vmapped like the
  others', which the default run covers; this adds its synthetic-user context)."""
  assert _sharded_diffs("cl4fedrec")["cl4fedrec"] < 1e-4


def test_mesh_must_divide_devices():
  with pytest.raises(ValueError, match="--mesh_shape"):
    sharding.make_mesh(3 + 64)
