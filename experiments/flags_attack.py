"""The attack flags (`--attack`'s hyper-parameters) and their translation.

`flags_lib` imports this module, so the flags exist wherever its flags do; errors are
`ValueError`s naming the flag, which `flags_lib` prints as one line.
"""

from __future__ import annotations

import dataclasses
import math

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_float("known_share", None, "FedRecAttack: share ξ of each user's training "
                   "items the attacker knows, in (0, 1] (default 0.01).")
flags.DEFINE_integer("attack_rows", None, "FedRecAttack: item rows κ each attacker uploads, "
                     "targets included (default 60).")
flags.DEFINE_float("attack_clip", None, "FedRecAttack: L2 bound of each uploaded row "
                   "(default 1, the benign clients' grad_limit).")
FAKE_USERS = ("random_fake", "popular_fake", "bandwagon_fake")
flags.DEFINE_integer("filler_items", None, "Fake users (random_fake, popular_fake, "
                     "bandwagon_fake): filler items per profile, >= 1; poisonfrs: filler rows "
                     "per upload, >= 0 (default 30 minus the number of targets).")
flags.DEFINE_integer("poisonfrs_popular", None, "PoisonFRS: popular items whose mean row the "
                     "targets are moved to (default 10).")
flags.DEFINE_float("poisonfrs_scale", None, "PoisonFRS: scale λ of that mean (default 5).")
flags.DEFINE_float("lie_z", None, "LIE: a fixed z (standard deviations below the benign "
                   "mean, > 0); default: Baruch et al.'s z_max from the client counts.")
flags.DEFINE_enum("lie_z_counts", None, ["round", "item"], "LIE: z_max from the round's "
                  "clients (default) or from each item's uploaders.")
flags.DEFINE_float("fang_scale", None, "Fang: largest factor b > 1 beyond the benign extreme "
                   "(default 2).")
flags.DEFINE_integer("hard_positives", None, "FedAttack: lowest-scored items uploaded as "
                     "positives (default 1).")
flags.DEFINE_integer("hard_negatives", None, "FedAttack: highest-scored items uploaded as "
                     "negatives per positive (default 1).")

flags.DEFINE_integer("pop_levels", None, "PipAttack: popularity levels L of its classifier, "
                     ">= 2 (default 3).")
flags.DEFINE_float("pop_weight", None, "PipAttack: weight α of the popularity term, >= 0 "
                   "(default 1).")
flags.DEFINE_float("dist_weight", None, "PipAttack: weight γ of the distance constraint, >= 0 "
                   "(default 1).")
flags.DEFINE_integer("mined_items", None, "PIECK: popular items s mined from the item table's "
                     "change, >= 1 (default 10).")
flags.DEFINE_float("ipe_tau", None, "PIECK-IPE: scale τ of the alignment loss, > 0 "
                   "(default 0.9).")
flags.DEFINE_enum("pieck_mining", None, ["once", "every"], "PIECK: mine once, at the "
                  "attacker's second participation (default), or at every later one.")

flags.DEFINE_integer("attack_start_epoch", None, "First global epoch (0-based) in which the "
                     "attackers join rounds; before it they upload nothing (default 0; must "
                     "be < --epochs).")
flags.DEFINE_enum("attack_schedule", None, ["shuffled", "every_round"], "How attackers join "
                  "rounds: shuffled (default: each once per epoch, dealt like a benign client) "
                  "or every_round (--attackers_per_round of them in every round, drawn "
                  "afresh each round).")
flags.DEFINE_integer("attackers_per_round", None, "--attack_schedule=every_round: attackers "
                     "K in every round, 1 <= K <= --num_malicious.")
# Flags of the same name as their config field (`fedjax_rec.threat`).
THREAT_FLAGS = ("attack_start_epoch", "attack_schedule", "attackers_per_round")

_PIECK = ("pieck_ipe", "pieck_uea")
# flag -> (builder kwarg, the attacks that take it)
ATTACK_FLAGS = {"known_share": ("known_share", ("fedrecattack",)),
                "attack_rows": ("num_rows", ("fedrecattack",)),
                "attack_clip": ("clip", ("fedrecattack",)),
                "filler_items": ("num_filler_items", FAKE_USERS + ("poisonfrs",)),
                "poisonfrs_popular": ("num_popular", ("poisonfrs",)),
                "poisonfrs_scale": ("target_scale", ("poisonfrs",)),
                "lie_z": ("z", ("lie",)), "lie_z_counts": ("z_counts", ("lie",)),
                "fang_scale": ("scale", ("fang",)),
                "hard_positives": ("num_positives", ("fedattack",)),
                "hard_negatives": ("num_negatives", ("fedattack",)),
                "pop_levels": ("num_levels", ("pipattack",)),
                "pop_weight": ("pop_weight", ("pipattack",)),
                "dist_weight": ("dist_weight", ("pipattack",)),
                "mined_items": ("mined_items", _PIECK),
                "ipe_tau": ("tau", ("pieck_ipe",)),
                "pieck_mining": ("mining", _PIECK)}


def _check_value(flag: str, value, attack: str = "") -> None:
  if flag == "filler_items" and value < (1 if attack in FAKE_USERS else 0):
    raise ValueError(f"--filler_items must be >= {1 if attack in FAKE_USERS else 0} for "
                     f"--attack={attack}, got {value}")
  if flag == "poisonfrs_popular" and value < 1:
    raise ValueError(f"--poisonfrs_popular must be >= 1, got {value}")
  if flag == "poisonfrs_scale" and not (math.isfinite(value) and value > 0):
    raise ValueError(f"--poisonfrs_scale must be a finite positive number, got {value:g}")
  if flag == "known_share" and not (math.isfinite(value) and 0 < value <= 1):
    raise ValueError(f"--known_share must be in (0, 1], got {value:g}")
  if flag == "attack_rows" and value < 1:
    raise ValueError(f"--attack_rows must be >= 1, got {value}")
  if flag == "attack_clip" and not (math.isfinite(value) and value > 0):
    raise ValueError(f"--attack_clip must be a finite positive number, got {value:g}")
  if flag == "lie_z" and not (math.isfinite(value) and value > 0):
    raise ValueError(f"--lie_z must be a finite positive number, got {value:g}")
  if flag == "fang_scale" and not (math.isfinite(value) and value > 1):
    raise ValueError(f"--fang_scale must be a finite number > 1, got {value:g}")
  if flag in ("hard_positives", "hard_negatives") and value < 1:
    raise ValueError(f"--{flag} must be >= 1, got {value}")
  if flag == "pop_levels" and value < 2:
    raise ValueError(f"--pop_levels must be >= 2, got {value}")
  if flag in ("pop_weight", "dist_weight") and not (math.isfinite(value) and value >= 0):
    raise ValueError(f"--{flag} must be a finite number >= 0, got {value:g}")
  if flag == "mined_items" and value < 1:
    raise ValueError(f"--mined_items must be >= 1, got {value}")
  if flag == "ipe_tau" and not (math.isfinite(value) and value > 0):
    raise ValueError(f"--ipe_tau must be a finite positive number, got {value:g}")


def threat_fields_from_flags() -> dict:
  """The threat-model fields the flags set (`fedjax_rec.threat`; checked by the config)."""
  return {name: FLAGS[name].value for name in THREAT_FLAGS if FLAGS[name].value is not None}


def attack_kwargs_from_flags(attack: str) -> tuple[tuple[str, object], ...]:
  """The attack flags `attack` takes, as sorted `(kwarg, value)` pairs (checked)."""
  out = {}
  for flag, (kwarg, takers) in ATTACK_FLAGS.items():
    value = FLAGS[flag].value
    if value is None:
      continue
    if attack not in takers:
      raise ValueError(f"--{flag} does not apply to --attack={attack} (it is "
                       f"{', '.join(takers)}'s)")
    _check_value(flag, value, attack)
    out[kwarg] = value
  return tuple(sorted(out.items()))


# Attacks built once by `with_attack_kwargs` to check their flags against the data.
# Attacks built once at flag time, so that a bad combination is named by its flags.
BUILT_TO_CHECK = ("fedrecattack", "poisonfrs", "fedattack", "lie", "fang",
                  "pipattack") + FAKE_USERS + _PIECK


def with_attack_kwargs(config, dataset):
  """`config` with the attack flags' kwargs, the attack built once on `dataset` to check
  them (a bad combination is named by the flags that gave it)."""
  kwargs = attack_kwargs_from_flags(config.attack)
  config = dataclasses.replace(config, attack_kwargs=kwargs) if kwargs else config
  if config.attack in BUILT_TO_CHECK and config.num_malicious > 0:
    # pylint: disable-next=import-outside-toplevel
    from fedjax_rec.attacks import make_attack
    from fedjax_rec.tasks.ncf.task import attack_kwargs  # pylint: disable=import-outside-toplevel
    kwargs = attack_kwargs(config, dataset)
    if config.attack in _PIECK:  # checks mined_items against the catalogue
      kwargs.setdefault("num_items", dataset.num_items)
    try:
      attack = make_attack(config.attack, config.model, list(config.targets),
                           **kwargs)
      if (attack.num_rows or 0) > dataset.num_items:
        raise ValueError(f"its {attack.num_rows} rows per attacker exceed the "
                         f"{dataset.num_items} items")
    except ValueError as e:
      given = " ".join(f"--{f}={FLAGS[f].value}" for f in ATTACK_FLAGS
                       if FLAGS[f].value is not None)
      raise ValueError(f"--attack={config.attack} {given}".rstrip() + f": {e}") from None
  return config
