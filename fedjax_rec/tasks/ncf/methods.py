"""The NCF training methods by name: Original, CL4FedRec, rCL4FedRec, SimGCL, UNION, PoC.

A `Method` (`objective.Method`) bundles what differs between them: the client loss,
the public context the server broadcasts with the model, and the server-side steps
after a global epoch (Algorithm 1, lines 15-16).
"""

from __future__ import annotations

from typing import Callable

from fedjax_rec import hparams
from fedjax_rec.models import ncf
from fedjax_rec.tasks.ncf import methods_cl
from fedjax_rec.tasks.ncf.objective import Method, original, rec_logits, rec_loss

__all__ = ["METHODS", "Method", "PARAMS", "TAKES_TRAINING_DATA", "make_method", "original",
           "rec_logits", "rec_loss"]

METHODS: dict[str, Callable[..., Method]] = {
    "original": original, "cl4fedrec": methods_cl.cl4fedrec,
    "rcl4fedrec": methods_cl.rcl4fedrec, "simgcl": methods_cl.simgcl,
    "union": methods_cl.union, "poc": methods_cl.poc}

# Each method's typed hyper-parameters (`hparams.schema`); rCL4FedRec takes CL4FedRec's,
# and `use_regularizer` is what the two names choose. `popularity` may be set (the sweep
# records the counts a point trained with); the task supplies it otherwise.
_SKIP = (hparams.NOT_HPARAMS - {"popularity"}) | {"use_regularizer"}
PARAMS: dict[str, type] = {
    name: hparams.schema(builder, name=name, skip=_SKIP,
                         base=methods_cl.cl4fedrec if name == "rcl4fedrec" else None)
    for name, builder in METHODS.items()}

# Methods whose builders take `popularity` (training counts) and `local_lr` from the
# run; the task supplies them unless the config sets them (`tasks.ncf.task`).
TAKES_TRAINING_DATA = frozenset({"cl4fedrec", "rcl4fedrec"})


def make_method(name: str, config: ncf.NCFConfig, **kwargs) -> Method:
  """The method `name` for the NCF shape `config`, with its hyper-parameters."""
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
  return METHODS[name](config, **kwargs)
