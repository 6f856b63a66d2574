"""Out of memory becomes one clear line naming the round size, not a crash."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from fedjax_rec import oom
from tests import test_cli
from fedjax_rec.oom import MemoryLimitError
from fedjax_rec.runner import run
from fedjax_rec.simulation import Simulator

XLA_OOM = ("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes.\n"
           "BufferAssignment OOM Debugging.\n...")


def _xla_oom():
  return jax.errors.JaxRuntimeError(XLA_OOM)


@pytest.mark.parametrize("error,expected", [
    (_xla_oom(), True),
    (MemoryError(), True),
    (RuntimeError("CUDA error: out of memory"), True),
    (RuntimeError("INVALID_ARGUMENT: shapes differ"), False),
    (ValueError("RESOURCE_EXHAUSTED"), False),
])
def test_is_out_of_memory(error, expected):
  assert oom.is_out_of_memory(error) is expected


def test_guard_turns_xla_oom_into_one_clear_line():
  with pytest.raises(MemoryLimitError) as info:
    with oom.memory_guard(65536):
      raise _xla_oom()
  message = str(info.value)
  assert "\n" not in message
  assert "65536 clients per round" in message
  assert "smaller --clients_per_round (e.g. 32768)" in message
  assert "allocating 16.00 GiB" in message
  assert info.value.clients_per_round == 65536
  assert isinstance(info.value.__cause__, jax.errors.JaxRuntimeError)


def test_guard_passes_other_errors_through():
  with pytest.raises(ValueError, match="not memory"):
    with oom.memory_guard(256):
      raise ValueError("not memory")
  with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):
    with oom.memory_guard(256):
      raise RuntimeError("INVALID_ARGUMENT: bad")


def test_one_client_gets_other_advice():
  with pytest.raises(MemoryLimitError, match="one client per round is the least"):
    with oom.memory_guard(1):
      raise MemoryError()


def test_check_round_fits():
  oom.check_round_fits(10**12, 256, None)  # CPU: no limit reported, no check
  oom.check_round_fits(100, 256, {"bytes_limit": 1000, "bytes_in_use": 800})
  with pytest.raises(MemoryLimitError, match=r"4096 clients per round \(needs at least"):
    oom.check_round_fits(300, 4096, {"bytes_limit": 1000, "bytes_in_use": 800})


def test_round_floor_counts_upload_rows():
  # d = 32: a 32-float gradient plus item and client ids, 4 bytes each.
  assert oom.round_bytes_floor(1000, 32) == 1000 * 34 * 4


def _tiny():
  ds, cfg = test_cli.tiny_run()
  return ds, dataclasses.replace(cfg, epochs=1)


@pytest.mark.parametrize("error", [_xla_oom(), MemoryError("numpy")])
def test_simulator_round_oom_is_a_memory_limit_error(error):
  ds, cfg = _tiny()
  sim = Simulator(cfg, ds)
  state = sim.init()

  def out_of_memory(*args, **kwargs):
    raise error

  sim.round_step = out_of_memory
  with pytest.raises(MemoryLimitError, match="smaller --clients_per_round") as info:
    sim.run_epoch(state)
  assert f"{sim.plan.num_slots} clients per round" in str(info.value)


def test_simulator_refuses_a_plan_beyond_the_device_limit(monkeypatch):
  ds, cfg = _tiny()
  sim = Simulator(cfg, ds)

  class Device:
    def memory_stats(self):
      return {"bytes_limit": 1024, "bytes_in_use": 0}

  monkeypatch.setattr(jax, "local_devices", lambda: [Device()])
  with pytest.raises(MemoryLimitError, match="needs at least"):
    sim.check_fits(dataclasses.replace(sim.plan, capacities=tuple(
        c + 1 for c in sim.plan.capacities)))  # not yet checked


def test_runner_reports_oom_surfacing_after_dispatch():
  ds, cfg = _tiny()

  class Sim(Simulator):
    def run_epoch(self, state):
      raise _xla_oom()

  with pytest.raises(MemoryLimitError, match="16 clients per round"):
    run(cfg, ds, log=lambda line: None, simulator_factory=Sim)


def test_train_prints_one_line():
  # In a fresh process: the experiments programs each define their own absl flags.
  code = """
import sys
from absl import app
from experiments import train
from fedjax_rec import oom
from fedjax_rec.oom import MemoryLimitError

def out_of_memory(config, *args, **kwargs):
  raise MemoryLimitError(oom.limit_message(config.clients_per_round),
                         config.clients_per_round)

train.run = out_of_memory
sys.argv = ["train", "--epochs=1", "--clients_per_round=4096"]
app.run(train.main)
"""
  repo = Path(__file__).resolve().parents[1]
  proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(repo)))
  assert proc.returncode != 0
  err = [l for l in proc.stderr.splitlines() if l.strip() and "tpu" not in l.lower()]
  assert err == ["error: out of memory in a round with 4096 clients per round; rerun with a "
                 "smaller --clients_per_round (e.g. 2048)"], proc.stderr
