"""Shared pytest fixtures, and the XLA options of the test session.

Compilation, not execution, is most of the suite's time: its programs are small and each
is compiled once or twice. So the session (and every command a test starts, which
inherits the environment) compiles with XLA's CPU backend optimization off, as the
sequential tests' `FAST_COMPILE` already did per program. It changes code generation,
not what is computed: the golden runs give their recorded metrics either way (checked
2026-12-03); they still run with the flags a user has (`XLA_FLAGS_OUTSIDE_TESTS`), as
they pin what the command line gives. `FEDJAX_REC_TEST_XLA_OPT=1` keeps XLA's defaults.
"""

import os
from pathlib import Path

import pytest

_FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
# Kept in the environment too: xdist's workers start with the controller's environment.
XLA_FLAGS_OUTSIDE_TESTS = os.environ.setdefault("FEDJAX_REC_XLA_FLAGS_OUTSIDE_TESTS",
                                                os.environ.get("XLA_FLAGS", ""))
if os.environ.get("FEDJAX_REC_TEST_XLA_OPT") != "1" and "xla_backend_optimization_level" \
    not in XLA_FLAGS_OUTSIDE_TESTS:
  os.environ["XLA_FLAGS"] = f"{XLA_FLAGS_OUTSIDE_TESTS} {_FAST_XLA}".strip()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
  """The shared real-data folder (`$FEDJAX_REC_DATA`, default `<repo>/../shared/data`).

  Skips the test when the folder is absent.
  """
  default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
  path = Path(os.environ.get("FEDJAX_REC_DATA", default))
  if not path.is_dir():
    pytest.skip(f"shared data folder {path} not found (set FEDJAX_REC_DATA)")
  return path
