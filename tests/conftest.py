"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest


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
