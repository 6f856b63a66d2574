"""Bounds of the flags that size compiled arrays, checked before any data or compilation.

`check_flags` runs first (flags alone, milliseconds); `check_dataset_flags` once the
dataset is loaded (cut-offs and attacker counts against its item and user counts). Each
refusal is a `flags_lib.UsageError`: one line naming the flag and what was expected.
"""

from __future__ import annotations

from absl import flags

from experiments import flags_lib

FLAGS = flags.FLAGS

# flag -> smallest accepted value (a flag left unset is not checked).
_LOWER = {"clients_per_round": 1, "epochs": 0, "num_negatives": 0, "max_buckets": 1,
          "embed_dim": 1, "local_epochs": 1, "local_batch_size": 0, "num_synthetic_users": 0,
          "synthetic_items": 1, "min_uploaders": 1, "num_byzantine": 0, "num_malicious": 0,
          "mesh_shape": 0, "eval_every": 1, "num_processes": 1, "seed": 0, "max_len": 1,
          "num_blocks": 1}


def _set(name: str) -> bool:
  return name in FLAGS and FLAGS[name].value is not None


def clients_per_round() -> int:
  """`B` of the run: the flag, else the preset's (core) or `SeqConfig`'s (sequential)."""
  if FLAGS.clients_per_round is not None:
    return FLAGS.clients_per_round
  if FLAGS.task == "sequential":
    from fedjax_rec.tasks.sequential.config import SeqConfig  # pylint: disable=import-outside-toplevel
    return SeqConfig().clients_per_round
  from fedjax_rec.tasks.ncf.presets import get_preset  # pylint: disable=import-outside-toplevel
  return get_preset(FLAGS.preset).clients_per_round


def check_flags() -> None:
  """Lower bounds, widths, and the robust aggregators' `f` against clients per round.

  Raises:
    flags_lib.UsageError: naming the flag and the bound.
  """
  for name, low in _LOWER.items():
    if _set(name) and FLAGS[name].value < low:
      raise flags_lib.UsageError(f"--{name}={FLAGS[name].value}: expected an integer >= {low}")
  if FLAGS.hidden:
    try:
      widths = [int(x) for x in FLAGS.hidden if x != ""]
    except ValueError:
      raise flags_lib.UsageError(f"--hidden expects comma-separated integers, got "
                                 f"{','.join(FLAGS.hidden)}") from None
    if any(w < 1 for w in widths):
      raise flags_lib.UsageError(f"--hidden={','.join(FLAGS.hidden)}: expected widths >= 1")
  if not 0 <= FLAGS.valid_frac < 1:
    raise flags_lib.UsageError(f"--valid_frac={FLAGS.valid_frac}: expected a value in [0, 1)")
  if not 0 <= FLAGS.malicious_share < 1:
    raise flags_lib.UsageError(f"--malicious_share={FLAGS.malicious_share}: expected a value "
                               "in [0, 1)")
  if _set("inject_faults"):
    # pylint: disable-next=import-outside-toplevel
    from fedjax_rec.faults import FAULT_VALUES, parse_faults
    try:
      parse_faults(FLAGS.inject_faults)
    except ValueError:
      raise flags_lib.UsageError(f"--inject_faults={FLAGS.inject_faults}: expected none or "
                                 f"{'|'.join(FAULT_VALUES)}:K with K >= 1") from None
  b = clients_per_round()
  f = FLAGS.num_byzantine
  if f is not None and FLAGS.aggregator == "krum" and not b - f - 2 > 0:
    raise flags_lib.UsageError(
        f"--num_byzantine={f}: Krum needs n - f - 2 > 0 with n = --clients_per_round={b}, "
        f"so --num_byzantine <= {max(b - 3, 0)}" + (" (and --clients_per_round >= 3)"
                                                     if b < 3 else ""))
  if f is not None and FLAGS.aggregator == "trimmed_mean" and not 2 * f < b:
    raise flags_lib.UsageError(
        f"--num_byzantine={f}: trimmed mean needs 2f < --clients_per_round={b}, so "
        f"--num_byzantine <= {(b - 1) // 2}")


def check_dataset_flags(num_users: int, num_items: int, dataset: str) -> None:
  """`--topk` against the items, `--num_malicious` against the users.

  Raises:
    flags_lib.UsageError: naming the flag, the dataset and its size.
  """
  ks = [int(k) for k in FLAGS.topk] if FLAGS["topk"].present else []
  if ks and max(ks) > num_items:
    raise flags_lib.UsageError(f"--topk={','.join(FLAGS.topk)}: {dataset} has {num_items} "
                               f"items, so every K must be <= {num_items}")
  if FLAGS.num_malicious is not None and FLAGS.num_malicious > num_users:
    raise flags_lib.UsageError(f"--num_malicious={FLAGS.num_malicious}: expected at most the "
                               f"{num_users} benign users of {dataset}")


def zero_attackers_message(attack: str, num_users: int, dataset: str) -> str:
  """The refusal of an attack whose flags give no attacker."""
  if FLAGS.num_malicious is not None:
    return (f"--attack={attack} with --num_malicious={FLAGS.num_malicious} gives no attackers; "
            "set --num_malicious=N (>= 1) or --attack=none")
  share = FLAGS.malicious_share
  return (f"--attack={attack} with --malicious_share={share:g} gives int({share:g} x "
          f"{num_users}) = {int(share * num_users)} attackers on {dataset}; set "
          "--num_malicious=N (>= 1) or a larger --malicious_share")
