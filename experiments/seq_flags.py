"""Flags of `--task=sequential` and their translation into a `SeqConfig`.

The sequential task reuses the core flags where they mean the same thing
(`--dataset`, `--data_dir`, `--epochs`, `--clients_per_round`, `--seed`,
`--workdir`, `--embed_dim`, `--server_optimizer`, `--server_lr`, `--convention`,
`--num_negatives`, `--aggregator` and its defense flags, `--attack`, `--target`,
`--malicious_share`, `--num_malicious`, `--eval_every`, `--topk`) and adds its own
below. Two core defaults differ for sequences when the flag is not given:
`--topk` is 10 (HR@10 / NDCG@10) and `--malicious_share` is 0.01 (0.1% of ML-100K's
943 users is no attacker at all). `--task`, `--method` and `--attack` are defined in
`flags_lib` over both tasks' names; `check_task_flags` rejects a name or a flag of
the other task in one line.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from experiments import flags_lib
from fedjax_rec.models.encoders import ENCODERS
from fedjax_rec.runner import EvalConfig
from fedjax_rec.tasks.sequential.config import SeqConfig, method_config
from fedjax_rec.tasks.sequential.objective import REC_LOSSES
from fedjax_rec.server import ServerConfig

FLAGS = flags.FLAGS
SEQ_MALICIOUS_SHARE = 0.01
SEQ_TOPK = (10,)


def _define(kind: str, name: str, default, help_text: str, **kw) -> None:
  """Defines a flag unless another module already did (shared flag names)."""
  if name not in FLAGS:
    getattr(flags, f"DEFINE_{kind}")(name, default, help=help_text, **kw)


_define("enum", "encoder", "sasrec", "Sequential encoder.", enum_values=list(ENCODERS))
_define("integer", "max_len", 50, "Sequential window: most recent items kept.")
_define("integer", "num_blocks", None, "SASRec blocks (default 2).")
_define("float", "dropout", None, "Encoder dropout (default 0.2).")
_define("enum", "rec_loss", None, "Next-item loss (default bce).", enum_values=list(REC_LOSSES))
_define("float", "seq_cl_weight", None, "Weight of the sequence view (0: off).")
_define("float", "user_cl_weight", None, "Weight of the user view (0: off).")
_define("float", "item_cl_weight", None, "Weight of the item view (0: off).")
_define("float", "temporal_weight", None, "Weight of the temporal regularizer (0: off).")
_define("float", "cl_tau", None, "InfoNCE temperature of the views.")
_define("bool", "server_defense", None, "FORTRESS server defense (default: on for fortress).")
_define("float", "sep_weight", None, "Server separation-loss weight.")
_define("float", "var_weight", None, "Server variance-loss weight.")

# Flags that only --task=sequential reads.
SEQ_ONLY_FLAGS = ("encoder", "max_len", "num_blocks", "dropout", "rec_loss", "seq_cl_weight",
                  "user_cl_weight", "item_cl_weight", "temporal_weight", "cl_tau",
                  "server_defense", "sep_weight", "var_weight")

_OBJECTIVE = {"rec_loss": "loss", "num_negatives": "num_negatives",
              "seq_cl_weight": "seq_weight", "user_cl_weight": "user_weight",
              "item_cl_weight": "item_weight", "temporal_weight": "temporal_weight",
              "cl_tau": "tau"}
_DEFENSE = {"server_defense": "enabled", "sep_weight": "sep_weight", "var_weight": "var_weight"}
_ENCODER = {"embed_dim": "embed_dim", "num_blocks": "num_blocks", "dropout": "dropout"}
_SERVER = {"server_optimizer": "optimizer", "server_lr": "lr"}


def _replace(obj, mapping):
  repl = {field: FLAGS[flag].value for flag, field in mapping.items()
          if FLAGS[flag].value is not None}
  return dataclasses.replace(obj, **repl) if repl else obj


def check_task_flags() -> str:
  """Checks `--method` and the task-only flags against `--task`; returns the method.

  Raises:
    flags_lib.UsageError: one line naming the flag.
  """
  method = flags_lib.method_from_flags()
  flags_lib.check_task_only_flags({"core": flags_lib.CORE_ONLY_FLAGS,
                                   "sequential": SEQ_ONLY_FLAGS})
  return method


def seq_config_from_flags(dataset) -> SeqConfig:
  """The method preset, overridden by every explicitly given flag."""
  try:
    method = check_task_flags()
    encoder = dataclasses.replace(_replace(SeqConfig().encoder, _ENCODER), name=FLAGS.encoder,
                                  max_len=FLAGS.max_len)
    base = method_config(method, SeqConfig(encoder=encoder))
    if not FLAGS["malicious_share"].present and FLAGS.num_malicious is None:
      FLAGS.malicious_share = SEQ_MALICIOUS_SHARE
    attack = flags_lib.attack_fields_from_flags(dataset)
    top = {f: FLAGS[f].value for f in ("epochs", "clients_per_round", "convention")
           if FLAGS[f].value is not None}
    return dataclasses.replace(
        base, objective=_replace(base.objective, _OBJECTIVE),
        defense=_replace(base.defense, _DEFENSE),
        server=_replace(ServerConfig(base.server.optimizer, base.server.lr), _SERVER),
        aggregator=FLAGS.aggregator, aggregator_kwargs=flags_lib.aggregator_kwargs_from_flags(),
        seed=FLAGS.seed, **attack, **top)
  except ValueError as e:
    raise flags_lib.UsageError(str(e)) from None


def seq_eval_config_from_flags() -> EvalConfig:
  config = flags_lib.eval_config_from_flags()
  if not FLAGS["topk"].present:
    config = dataclasses.replace(config, ks=SEQ_TOPK)
  return config

