"""Resume: a run interrupted after a checkpoint and rerun equals the uninterrupted run.

On CPU the equality is bitwise: the same test metrics, float for float, and the same
final checkpoint bytes (the whole `SimState`: server, clients, attackers, epoch).
"""

import pytest

from fedjax_rec import io, runner
from fedjax_rec.data.synthetic import SyntheticConfig
from fedjax_rec.grid import parse_grid
from fedjax_rec.simulation import Simulator
from fedjax_rec.sweep import SweepSettings, build_config, load_point_dataset

SETTINGS = SweepSettings(synthetic=SyntheticConfig(num_users=200, num_items=100,
                                                   max_activity=50),
                         embed_dim=8, hidden=(8,), max_buckets=1)
EVAL = runner.EvalConfig(er_ks=(5,))


class Interrupted(Exception):
  pass


def _interrupting(after: int):
  """A simulator factory whose runs stop (as if killed) before epoch `after + 1`."""

  class InterruptedSimulator(Simulator):

    def run_epoch(self, state):
      if int(state.epoch) >= after:
        raise Interrupted
      return super().run_epoch(state)

  return InterruptedSimulator


def _test_rows(workdir):
  return [{k: v for k, v in r.items() if k.startswith("test/") or k == "epoch"}
          for r in io.read_jsonl(workdir / "metrics.jsonl")]


def test_resume_from_checkpoint_is_bitwise_equal(tmp_path):
  (point,) = parse_grid("attack=a_hum;malicious_share=0.02;clients_per_round=64;epochs=4")
  dataset = load_point_dataset(point["dataset"], point["seed"], SETTINGS)
  config = build_config(point, dataset, SETTINGS)
  assert config.num_malicious == 4 and config.targets
  quiet = dict(eval_config=EVAL, checkpoint_every=2, log=lambda s: None)

  full = runner.run(config, dataset, workdir=tmp_path / "full", **quiet)
  with pytest.raises(Interrupted):  # checkpoint after epoch 2; epoch 3 done, then lost
    runner.run(config, dataset, workdir=tmp_path / "cut",
               simulator_factory=_interrupting(3), **quiet)
  assert len(io.read_jsonl(tmp_path / "cut" / "metrics.jsonl")) == 3
  lines = []
  resumed = runner.run(config, dataset, workdir=tmp_path / "cut",
                       **{**quiet, "log": lines.append})
  assert any("resuming after epoch 2" in s for s in lines)

  assert _test_rows(tmp_path / "cut") == _test_rows(tmp_path / "full")
  assert resumed["final"]["test/er@5"] == full["final"]["test/er@5"]
  assert ((tmp_path / "cut" / "checkpoint.msgpack").read_bytes()
          == (tmp_path / "full" / "checkpoint.msgpack").read_bytes())
