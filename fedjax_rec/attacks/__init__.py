"""Model-poisoning attacks (docs/design.md): builders returning an `Attack`."""

from __future__ import annotations

from typing import Any, Callable

from fedjax_rec.attacks.base import Attack

# name -> builder(model_config, targets, **kwargs) -> Attack; filled by the modules.
ATTACKS: dict[str, Callable[..., Attack]] = {}
# Attacks whose builder takes the training interactions (`train_csr`: the CSR `(indptr,
# items)` of the training pairs) and `num_items`; the task passes them at build time.
TAKES_TRAINING_DATA = frozenset({"fedrecattack", "pipattack"})


def make_attack(name: str, model_config, targets, **kwargs: Any) -> Attack:
  if name not in ATTACKS:
    raise ValueError(f"unknown attack {name!r}; expected one of {sorted(ATTACKS) + ['none']}")
  return ATTACKS[name](model_config, targets, **kwargs)


# Registration (imported after ATTACKS exists).
from fedjax_rec.attacks import a_hum, fedrecattack, pieck, pipattack, psmu  # noqa: E402
from fedjax_rec.attacks.targets import select_targets  # noqa: E402

ATTACKS["a_hum"] = a_hum.make_a_hum
ATTACKS["a_ra"] = a_hum.make_a_ra
ATTACKS["psmu"] = psmu.make_psmu
ATTACKS["fedrecattack"] = fedrecattack.make_fedrecattack
ATTACKS["pipattack"] = pipattack.make_pipattack
ATTACKS["pieck_ipe"] = pieck.make_pieck_ipe
ATTACKS["pieck_uea"] = pieck.make_pieck_uea

__all__ = ["ATTACKS", "Attack", "TAKES_TRAINING_DATA", "make_attack", "select_targets"]
