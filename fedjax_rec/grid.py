"""Sweep grids: `key=v1,v2;key=v1` specs -> an ordered list of points.

A point is a dict with every key of `GRID_KEYS` resolved (defaults filled in,
`epochs` and `clients_per_round` from the point's preset). Points come out in
`itertools.product` order over the keys as written, the last key varying fastest.

Values are checked against the names registered at call time (methods,
aggregators, attacks, datasets, presets), so a typo fails before any training.
In `target=`, a bare integer continues the `items:` spec before it, so
`target=least_popular,items:3,17` is two values: `least_popular` and `items:3,17`.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from typing import Any, Callable

import numpy as np

from fedjax_rec.aggregators import AGGREGATORS
from fedjax_rec.attacks import ATTACKS
from fedjax_rec.attacks.targets import select_targets
from fedjax_rec.data.loaders import DATASETS
from fedjax_rec.tasks.ncf.methods import METHODS
from fedjax_rec.tasks.ncf.presets import PRESETS

GRID_KEYS = ("dataset", "method", "attack", "defense", "seed", "preset", "epochs",
             "clients_per_round", "malicious_share", "target")

# `None` means "the preset's value" (resolved per point).
DEFAULTS: dict[str, Any] = {
    "dataset": "synthetic", "method": "original", "attack": "none", "defense": "none",
    "seed": 0, "preset": "paper", "epochs": None, "clients_per_round": None,
    "malicious_share": 0.001, "target": "least_popular",
}

# Always in a point id, in this order (seed last); other keys only when not default.
_ID_ALWAYS = ("dataset", "method", "attack", "defense")
_ID_ORDER = ("dataset", "method", "attack", "defense", "preset", "epochs",
             "clients_per_round", "malicious_share", "target", "seed")


class GridError(ValueError):
  """A malformed grid spec; the message names the offending token."""


def _names(key: str) -> tuple[str, ...]:
  """The registered names a key accepts, read now (registries are mutable dicts)."""
  return {
      "dataset": lambda: tuple(DATASETS),
      "method": lambda: tuple(METHODS),
      "attack": lambda: ("none",) + tuple(ATTACKS),
      "defense": lambda: ("none",) + tuple(a for a in AGGREGATORS if a != "fedavg"),
      "preset": lambda: tuple(PRESETS),
  }[key]()


def _int(lo: int) -> Callable[[str], int]:
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise ValueError("is not an integer") from None
    if value < lo:
      raise ValueError(f"must be >= {lo}")
    return value
  return parse


def _share(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise ValueError("is not a number") from None
  if not 0 <= value < 1:
    raise ValueError("must be in [0, 1)")
  return value


def _target(text: str) -> str:
  try:  # syntax only: ids and counts are checked against the real catalogue later
    select_targets(np.arange(1, 1 << 16), text)
  except ValueError as e:
    raise ValueError(f"is not a target spec ({e})") from None
  return text


_PARSERS: dict[str, Callable[[str], Any]] = {
    "seed": _int(0), "epochs": _int(1), "clients_per_round": _int(1),
    "malicious_share": _share, "target": _target,
}


def _parse_value(key: str, text: str, token: str) -> Any:
  if key in _PARSERS:
    try:
      return _PARSERS[key](text)
    except ValueError as e:
      raise GridError(f"grid token {token!r}: {key} value {text!r} {e}") from None
  names = _names(key)
  if key == "defense" and text == "fedavg":
    text = "none"  # the same run: "none" is the canonical spelling
  if text not in names:
    raise GridError(f"grid token {token!r}: unknown {key} {text!r}; expected one of "
                    f"{', '.join(names)}")
  return text


def _split_values(key: str, body: str) -> list[str]:
  values = [v.strip() for v in body.split(",")]
  if key != "target":
    return values
  merged: list[str] = []
  for v in values:
    if merged and re.fullmatch(r"\d+", v) and merged[-1].startswith("items:"):
      merged[-1] += "," + v
    else:
      merged.append(v)
  return merged


def parse_grid(spec: str) -> list[dict[str, Any]]:
  """Parses `key=v1,v2;key=...` into the list of resolved points, in run order.

  Raises:
    GridError: a token that is not `key=values`, an unknown key, an empty or
      repeated value, a key given twice, or a value that does not parse or name
      a registered component; the message quotes the token.
  """
  axes: dict[str, list[Any]] = {}
  for token in (t.strip() for t in spec.replace("\n", ";").split(";")):
    if not token:
      continue
    key, sep, body = (s.strip() for s in token.partition("="))
    if not sep or not key:
      raise GridError(f"grid token {token!r} is not key=value[,value...]")
    if key not in GRID_KEYS:
      raise GridError(f"grid token {token!r}: unknown key {key!r}; expected one of "
                      f"{', '.join(GRID_KEYS)}")
    if key in axes:
      raise GridError(f"grid token {token!r}: key {key!r} is given twice")
    values = []
    for text in _split_values(key, body):
      if not text:
        raise GridError(f"grid token {token!r}: empty value")
      value = _parse_value(key, text, token)
      if value in values:
        raise GridError(f"grid token {token!r}: value {text!r} is repeated")
      values.append(value)
    axes[key] = values
  if not axes:
    raise GridError("the grid is empty; expected e.g. 'method=original;seed=0,1'")
  keys = list(axes)
  return [resolve(dict(zip(keys, combo))) for combo in itertools.product(*axes.values())]


def resolve(partial: dict[str, Any]) -> dict[str, Any]:
  """Fills defaults; `epochs` and `clients_per_round` default to the preset's."""
  point = {**DEFAULTS, **partial}
  preset = PRESETS[point["preset"]]
  if point["epochs"] is None:
    point["epochs"] = preset.epochs
  if point["clients_per_round"] is None:
    point["clients_per_round"] = preset.clients_per_round
  return {k: point[k] for k in GRID_KEYS}


def _is_default(point: dict[str, Any], key: str) -> bool:
  if key in ("epochs", "clients_per_round"):
    return point[key] == getattr(PRESETS[point["preset"]], key)
  return point[key] == DEFAULTS[key]


def point_id(point: dict[str, Any]) -> str:
  """A stable label: `dataset=..,method=..,attack=..,defense=..[,other=..],seed=..`.

  Keys other than dataset, method, attack, defense and seed appear only when they
  differ from their default, so adding a default-valued key to a grid keeps ids.
  """
  keys = [k for k in _ID_ORDER if k in _ID_ALWAYS or k == "seed" or not _is_default(point, k)]
  return ",".join(f"{k}={point[k]}" for k in keys)


def point_dirname(point: dict[str, Any]) -> str:
  """A file-system-safe directory name, unique per point id."""
  pid = point_id(point)
  slug = re.sub(r"[^A-Za-z0-9._-]+", "_", pid.replace("=", "-"))[:120]
  return f"{slug}-{hashlib.sha1(pid.encode()).hexdigest()[:8]}"
