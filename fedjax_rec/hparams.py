"""Typed hyper-parameters of the named components: aggregators, attacks, methods.

A component is named in a config (`aggregator="krum"`) and built by a builder function
whose keyword parameters, with their annotations and defaults, are its hyper-parameters.
`schema(builder)` turns them into a frozen dataclass, so each component has one typed
record of its hyper-parameters whose source is the builder itself (nothing to keep in
step by hand):

    >>> from fedjax_rec.aggregators import PARAMS
    >>> PARAMS["krum"](num_byzantine=2)
    krum(num_byzantine=2, max_abs=1000000.0, block_items=None)

A config takes a component's hyper-parameters as that dataclass, a dict, or `(name,
value)` pairs, and holds them as sorted pairs (`canonical`): the form `config.json`
records and run directories are hashed on, so a record names exactly the values that
were set (a dataclass sets all of its fields). The config checks them when it is made
(`canonical` raises on an unknown name or a value of the wrong type, naming the
component and what it takes); the builder checks the ranges when the run is built.

Parameters that the task supplies from the data (`popularity`, `train_csr`,
`num_items`, `benign`) or that the registry fixes (`name`; an aggregator's
`convention`) are not hyper-parameters, with one exception: a method's `popularity`
may be set, as the sweep does to record the counts a point trained with.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import types
import typing
from typing import Any, Callable, Mapping

# Builder parameters that are not hyper-parameters: supplied by the task from the data,
# or fixed by the registry / the protocol.
NOT_HPARAMS = frozenset({"popularity", "train_csr", "num_items", "benign", "name"})

Pairs = tuple[tuple[str, Any], ...]


def _hint(annotation, module_globals) -> Any:
  """The annotation as a type (`from __future__ import annotations` leaves strings)."""
  if annotation is inspect.Parameter.empty:
    return Any
  if isinstance(annotation, str):
    try:
      return eval(annotation, dict(module_globals))  # pylint: disable=eval-used
    except Exception:  # pylint: disable=broad-except  (a name only imported for typing)
      return Any
  return annotation


def schema(builder: Callable, name: str | None = None, skip: frozenset = NOT_HPARAMS,
           base: Callable | None = None) -> type:
  """The frozen dataclass of `builder`'s hyper-parameters.

  Args:
    builder: the component's builder; its parameters with a default, less `skip`, are
      the fields (annotation as type, default as default).
    name: the dataclass's name (default: the builder's).
    skip: the parameters that are not hyper-parameters.
    base: a builder whose parameters `builder` forwards through `**kwargs` (e.g.
      rCL4FedRec's, which are CL4FedRec's); its fields come first.
  """
  fields = []
  for fn in ([base] if base is not None else []) + [builder]:
    for p in inspect.signature(fn).parameters.values():
      if (p.default is inspect.Parameter.empty or p.name in skip
          or any(f[0] == p.name for f in fields)):
        continue
      fields.append((p.name, _hint(p.annotation, fn.__globals__),
                     dataclasses.field(default=p.default)))
  return dataclasses.make_dataclass(name or builder.__name__, fields, frozen=True)


def defaults(params_type: type) -> dict[str, Any]:
  """`{name: default}` of a `schema` dataclass."""
  return {f.name: f.default for f in dataclasses.fields(params_type)}


def _fits(value: Any, hint: Any) -> bool:
  """Whether `value` is of the annotated type (ints pass as floats; bools only as bools)."""
  if hint is Any:
    return True
  if hint is None or hint is type(None):
    return value is None
  origin = typing.get_origin(hint)
  if origin in (typing.Union, types.UnionType):
    return any(_fits(value, a) for a in typing.get_args(hint))
  if hint is bool:
    return isinstance(value, bool)
  if hint is int:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
  if hint is float:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
  if hint is str:
    return isinstance(value, str)
  try:
    return isinstance(value, origin or hint)
  except TypeError:  # a parameterised generic: left to the builder
    return True


def _type_name(hint: Any) -> str:
  return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def canonical(kind: str, name: str, given, params: Mapping[str, type]) -> Pairs:
  """`given` (a `schema` dataclass, a dict or pairs) as sorted pairs, checked.

  Args:
    kind: "aggregator", "attack" or "method" (for the message).
    name: the component's name.
    given: its hyper-parameters.
    params: the registry's `{name: schema dataclass}`.

  Raises:
    ValueError: an unknown component, a dataclass of another component, an unknown
      hyper-parameter, or a value of the wrong type.
  """
  if name not in params:
    raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(params)}")
  expected = params[name]
  if dataclasses.is_dataclass(given) and not isinstance(given, type):
    if type(given) is not expected:
      raise ValueError(f"{kind} {name!r} takes {expected.__name__} hyper-parameters, "
                       f"got {type(given).__name__}")
    items = dataclasses.asdict(given).items()
  else:
    items = dict(given).items()
  fields = {f.name: f.type for f in dataclasses.fields(expected)}
  for key, value in items:
    if key not in fields:
      raise ValueError(f"{kind} {name!r} got unknown hyper-parameter {key!r}; it takes "
                       f"{', '.join(sorted(fields)) or 'none'}")
    if not _fits(value, fields[key]):
      raise ValueError(f"{kind} {name!r}: {key} must be {_type_name(fields[key])}, got "
                       f"{value!r}")
  return tuple(sorted(items))


def without_defaults(pairs: Pairs, params_type: type) -> Pairs:
  """`pairs` less those that equal their field's default (a bool only equals a bool).

  Two configs that differ only in spelling a default out then make one record
  (`experiments.reproduce` names its points by it). As for a value not given, a later
  change of the default is then not seen in the record.
  """
  defaults_ = defaults(params_type)
  same = lambda k, v: (k in defaults_ and isinstance(v, bool) == isinstance(defaults_[k], bool)
                       and v == defaults_[k])
  return tuple((k, v) for k, v in pairs if not same(k, v))


def typed(name: str, pairs, params: Mapping[str, type]):
  """The `schema` dataclass of `name` holding `pairs`, the other fields at defaults."""
  return params[name](**dict(pairs))
