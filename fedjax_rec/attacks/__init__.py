"""Model-poisoning attacks (docs/design.md): builders returning an `Attack`."""

from __future__ import annotations

from typing import Any, Callable

from fedjax_rec import hparams
from fedjax_rec.attacks.base import Attack

# name -> builder(model_config, targets, **kwargs) -> Attack; filled by the modules.
ATTACKS: dict[str, Callable[..., Attack]] = {}
# Attacks whose builder takes the training interactions (`train_csr`: the CSR `(indptr,
# items)` of the training pairs) and `num_items`; the task passes them at build time.
TAKES_TRAINING_DATA = frozenset({"fedrecattack", "pipattack"})
# Attacks whose builder takes `popularity` (the items' training counts).
TAKES_POPULARITY = frozenset({"popular_fake", "bandwagon_fake", "poisonfrs"})
# Attacks whose builder takes the task's benign local training (`benign`, a
# `fake_users.BenignTraining`): fake users that train like benign clients.
TAKES_BENIGN_TRAINING = frozenset({"random_fake", "popular_fake", "bandwagon_fake"})


def make_attack(name: str, model_config, targets, **kwargs: Any) -> Attack:
  if name not in ATTACKS:
    raise ValueError(f"unknown attack {name!r}; expected one of {sorted(ATTACKS) + ['none']}")
  return ATTACKS[name](model_config, targets, **kwargs)


# Registration (imported after ATTACKS exists).
from fedjax_rec.attacks import a_hum, fang, fang_krum, fedattack, fedrecattack, lie, psmu  # noqa: E402
from fedjax_rec.attacks import fake_users, poisonfrs  # noqa: E402
from fedjax_rec.attacks import pieck, pipattack  # noqa: E402
from fedjax_rec.attacks.targets import select_targets  # noqa: E402

ATTACKS["a_hum"] = a_hum.make_a_hum
ATTACKS["a_ra"] = a_hum.make_a_ra
ATTACKS["psmu"] = psmu.make_psmu
ATTACKS["fedrecattack"] = fedrecattack.make_fedrecattack
ATTACKS["random_fake"] = fake_users.make_random_fake
ATTACKS["popular_fake"] = fake_users.make_popular_fake
ATTACKS["bandwagon_fake"] = fake_users.make_bandwagon_fake
ATTACKS["poisonfrs"] = poisonfrs.make_poisonfrs
ATTACKS["fedattack"] = fedattack.make_fedattack
ATTACKS["lie"] = lie.make_lie
ATTACKS["fang"] = fang.make_fang
ATTACKS["fang_krum"] = fang_krum.make_fang_krum
ATTACKS["pipattack"] = pipattack.make_pipattack
ATTACKS["pieck_ipe"] = pieck.make_pieck_ipe
ATTACKS["pieck_uea"] = pieck.make_pieck_uea

# Each attack's typed hyper-parameters (`hparams.schema` of its builder).
PARAMS: dict[str, type] = {name: hparams.schema(b, name=name) for name, b in ATTACKS.items()}

__all__ = ["ATTACKS", "Attack", "PARAMS", "TAKES_BENIGN_TRAINING", "TAKES_POPULARITY",
           "TAKES_TRAINING_DATA", "make_attack", "select_targets"]
