"""Checked checkpoints: header + sha256, the previous one kept, refusal and fallback."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec import checkpoints
from fedjax_rec.runner import EvalConfig, NonFiniteError, WorkdirError, run
from fedjax_rec.simulation import Simulator

from tests.test_cli import tiny_run

EVAL = EvalConfig(ks=(5,))


def test_round_trip_and_rotation(tmp_path):
  path = tmp_path / checkpoints.CHECKPOINT_NAME
  checkpoints.save_checkpoint(path, {"a": np.arange(3.0)})
  checkpoints.save_checkpoint(path, {"a": np.arange(3.0) + 1})
  template = {"a": jnp.zeros(3)}
  assert np.allclose(checkpoints.load_checkpoint(path, template)["a"], [1, 2, 3])
  assert np.allclose(checkpoints.load_checkpoint(checkpoints.previous_path(path), template)["a"], [0, 1, 2])
  assert checkpoints.previous_path(path).name == "checkpoint.prev.msgpack"


def test_legacy_headerless_checkpoint_loads(tmp_path):
  import flax.serialization
  path = tmp_path / "old.msgpack"
  path.write_bytes(flax.serialization.msgpack_serialize({"a": np.arange(3.0)}))
  assert np.allclose(checkpoints.load_checkpoint(path, {"a": jnp.zeros(3)})["a"], [0, 1, 2])


def test_wrong_shape_is_refused(tmp_path):
  path = tmp_path / "c.msgpack"
  checkpoints.save_checkpoint(path, {"a": np.arange(4.0)})
  with pytest.raises(checkpoints.CheckpointError, match="c.msgpack"):
    checkpoints.load_checkpoint(path, {"a": jnp.zeros(3)})


def _two_epoch_workdir(tmp_path):
  ds, cfg = tiny_run()
  wd = tmp_path / "run"
  run(cfg, ds, workdir=wd, eval_config=EVAL, log=lambda s: None)
  (wd / "summary.json").unlink()  # as if killed after epoch 2's checkpoint
  return ds, cfg, wd


def test_altered_byte_is_refused_and_previous_is_resumed(tmp_path):
  ds, cfg, wd = _two_epoch_workdir(tmp_path)
  ckpt = wd / checkpoints.CHECKPOINT_NAME
  data = bytearray(ckpt.read_bytes())
  data[len(data) // 2] ^= 0xFF
  ckpt.write_bytes(bytes(data))
  with pytest.raises(checkpoints.CheckpointError, match=f"{ckpt}.*checksum"):
    checkpoints.load_checkpoint(ckpt, {"a": jnp.zeros(1)})
  lines = []
  run(cfg, ds, workdir=wd, eval_config=EVAL, log=lines.append)
  text = "\n".join(lines)
  assert f"refused {ckpt}" in text and "checksum" in text
  assert "resuming from the previous checkpoint" in text
  assert "resuming after epoch 1" in text


def test_truncated_checkpoint_falls_back_then_refuses(tmp_path):
  ds, cfg, wd = _two_epoch_workdir(tmp_path)
  ckpt = wd / checkpoints.CHECKPOINT_NAME
  ckpt.write_bytes(ckpt.read_bytes()[:-10])
  with pytest.raises(checkpoints.CheckpointError, match="truncated"):
    checkpoints.load_checkpoint(ckpt, {"a": jnp.zeros(1)})
  lines = []
  run(cfg, ds, workdir=wd, eval_config=EVAL, log=lines.append)  # reruns epoch 2 from prev
  assert any("resuming after epoch 1" in l for l in lines)
  # Both truncated: one error saying how to start over.
  for p in (ckpt, checkpoints.previous_path(ckpt)):
    p.write_bytes(p.read_bytes()[:30])
  (wd / "summary.json").unlink()
  with pytest.raises(WorkdirError, match="delete .* or use another --workdir"):
    run(cfg, ds, workdir=wd, eval_config=EVAL,
        log=lambda s: None)


class _NaNAfterFirst(Simulator):
  """A simulator whose second epoch leaves a NaN in the public item embeddings."""

  def run_epoch(self, state):
    state, summary = super().run_epoch(state)
    if int(state.epoch) == 2:
      params = state.server.params
      params = params._replace(item_emb=params.item_emb.at[0, 0].set(jnp.nan))
      state = state._replace(server=state.server._replace(params=params))
    return state, summary


def test_non_finite_state_stops_the_run_and_is_not_checkpointed(tmp_path):
  ds, cfg = tiny_run()
  wd = tmp_path / "run"
  with pytest.raises(NonFiniteError, match="epoch 2: non-finite public parameters"):
    run(cfg, ds, workdir=wd, eval_config=EVAL, log=lambda s: None,
        simulator_factory=_NaNAfterFirst)
  sim = Simulator(cfg, ds)
  saved = checkpoints.load_checkpoint(wd / checkpoints.CHECKPOINT_NAME, sim.init())
  assert int(saved.epoch) == 1
  assert not checkpoints.previous_path(wd / checkpoints.CHECKPOINT_NAME).exists()


def test_workdir_that_is_a_file_and_garbage_metrics(tmp_path):
  ds, cfg = tiny_run()
  afile = tmp_path / "file"
  afile.write_text("x")
  with pytest.raises(WorkdirError, match="is a file, not a directory"):
    run(cfg, ds, workdir=afile, eval_config=EVAL, log=lambda s: None)
  _, _, wd = _two_epoch_workdir(tmp_path)
  with open(wd / "metrics.jsonl", "a") as f:
    f.write("garbage{\n")
  with pytest.raises(WorkdirError, match=r"metrics.jsonl:3"):
    run(cfg, ds, workdir=wd, eval_config=EVAL, log=lambda s: None)
