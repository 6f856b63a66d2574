"""The MF and loss flags' translation, run by `tests/test_mf.py` in a fresh process."""

from __future__ import annotations

import dataclasses

import pytest
from absl import flags

from experiments import flags_lib
from fedjax_rec.models import ncf
from fedjax_rec.tasks.ncf.presets import get_preset

FLAGS = flags.FLAGS


def parse(*args):
  FLAGS.unparse_flags()
  FLAGS(["train", *args])
  return flags_lib.sim_config_from_flags()


def test_fedrecattack_preset_from_flags():
  cfg = parse("--preset=fedrecattack")
  assert cfg == get_preset("fedrecattack")
  assert (cfg.model.interaction, cfg.model.embed_dim, cfg.model.hidden) == ("dot", 32, ())
  assert cfg.aggregator == "norm_bound" and dict(cfg.aggregator_kwargs)["clip_norm"] == 1.0
  assert dict(cfg.method_kwargs) == {"rec_loss": "bpr", "loss_reduction": "sum",
                                     "l2_reg": 0.1}
  assert (cfg.local.user_optimizer, cfg.local.user_lr, cfg.server.lr) == ("sgd", 0.01, 0.01)
  # A flag replaces one loss setting and keeps the others; --aggregator replaces the clip.
  cfg = parse("--preset=fedrecattack", "--l2_reg=0", "--aggregator=fedavg")
  assert dict(cfg.method_kwargs) == {"rec_loss": "bpr", "loss_reduction": "sum", "l2_reg": 0}
  assert cfg.aggregator == "fedavg" and cfg.aggregator_kwargs == ()
  cfg = parse("--preset=fedrecattack", "--model=ncf")
  assert cfg.model.interaction == "mlp" and cfg.model.hidden == ncf.NCFConfig().hidden


def test_mf_flags_on_the_default_preset():
  cfg = parse("--model=mf", "--rec_loss=bpr")
  assert (cfg.model.interaction, cfg.model.hidden) == ("dot", ())
  assert dict(cfg.method_kwargs) == {"rec_loss": "bpr"}
  assert dataclasses.replace(cfg, model=get_preset("paper").model,
                             method_kwargs=()) == parse()
  for args, needle in ((("--model=mf", "--hidden=8"), "--hidden does not apply to --model=mf"),
                       (("--rec_loss=softmax",), "rec_loss must be one of bce, bpr"),
                       (("--method=cl4fedrec", "--l2_reg=0.1"), "--l2_reg does not apply"),
                       (("--model=mf", "--rec_loss=bpr", "--num_negatives=0"),
                        "num_negatives must be >= 1")):
    with pytest.raises(flags_lib.UsageError, match=needle):
      parse(*args)


if __name__ == "__main__":
  test_fedrecattack_preset_from_flags()
  test_mf_flags_on_the_default_preset()
  print("ok")
