"""The core task's model, loss and split flags, and their translation.

`--model` picks NCF or MF (`NCFConfig.interaction`), `--rec_loss`, `--loss_reduction` and
`--l2_reg` are Original's loss (method kwargs), `--split=loo` the leave-one-out split
and its evaluation (`data.loo`, `metrics_loo`). `flags_lib` imports this module, so the
flags exist wherever its flags do; errors are `ValueError`s, which `flags_lib` prints
as one line.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from fedjax_rec.data.loo import SPLITS
from fedjax_rec.models.ncf import NCFConfig

FLAGS = flags.FLAGS

MODELS = {"ncf": "mlp", "mf": "dot"}
# Original's loss flags; `--rec_loss` is shared with the sequential task (its values
# differ per task: each task's config refuses the other's).
CORE_REC_LOSSES = ("bce", "bpr")
LOSS_FLAGS = ("rec_loss", "loss_reduction", "l2_reg")
# --split=loo's defaults when the flag is not given (the NCF leave-one-out protocol).
LOO_TOPK = (10,)
LOO_VALID_FRAC = 0.0

flags.DEFINE_enum("model", None, list(MODELS), "Core model: ncf (MLP on concat(u, v)) or "
                  "mf (matrix factorisation, u·v, no MLP). Default: the preset's.")
flags.DEFINE_enum("split", "random", list(SPLITS), "random: the per-user random split "
                  "(pre-split files as given); loo: each user's last interaction (by "
                  "timestamp, else file order) is its test item, ranked over all items and "
                  "against 99 fixed sampled negatives (HR@K, NDCG@K; default --topk=10, "
                  "--valid_frac=0).")
flags.DEFINE_enum("loss_reduction", None, ["mean", "sum"], "Original: the loss averaged "
                  "or summed over a client's samples (BCE) or pairs (BPR).")
flags.DEFINE_float("l2_reg", None, "Original: weight of l2/2 (|u|^2 + sum |v|^2) over the "
                   "user and each sampled item row (>= 0).")


def model_from_flags(base: NCFConfig) -> NCFConfig:
  """`base` with `--model`, `--embed_dim` and `--hidden` applied.

  `--model=mf` drops the MLP; `--model=ncf` on an MF preset takes the default MLP unless
  `--hidden` is given. `--hidden` with MF is refused.
  """
  interaction = MODELS[FLAGS.model] if FLAGS.model is not None else base.interaction
  repl = {"interaction": interaction}
  if FLAGS.embed_dim is not None:
    repl["embed_dim"] = FLAGS.embed_dim
  if interaction == "dot":
    if FLAGS.hidden is not None:
      raise ValueError("--hidden does not apply to --model=mf (matrix factorisation has no "
                       "MLP)")
    repl["hidden"] = ()
  elif FLAGS.hidden is not None:
    try:
      repl["hidden"] = tuple(int(x) for x in FLAGS.hidden if x != "")
    except ValueError:
      raise ValueError(f"--hidden expects comma-separated integers, got "
                       f"{','.join(FLAGS.hidden)}") from None
  elif not base.hidden:
    repl["hidden"] = NCFConfig().hidden
  return dataclasses.replace(base, **repl)


def valid_frac() -> float:
  """`--valid_frac`, or 0 with `--split=loo` when it is not given."""
  if FLAGS.split == "loo" and not FLAGS["valid_frac"].present:
    return LOO_VALID_FRAC
  return FLAGS.valid_frac


def topk_default(ks: tuple[int, ...]) -> tuple[int, ...]:
  """`ks`, or HR@10 / NDCG@10 with `--split=loo` when `--topk` is not given."""
  return LOO_TOPK if FLAGS.split == "loo" and not FLAGS["topk"].present else ks


def merged_kwargs(preset_kwargs, flag_kwargs, same: bool) -> tuple[tuple[str, object], ...]:
  """The flags' kwargs over the preset's (kept only when the flags name the preset's
  method or aggregator, `same`), as sorted pairs."""
  return tuple(sorted({**(dict(preset_kwargs) if same else {}), **dict(flag_kwargs)}.items()))
