"""The NCF training methods by name: Original, CL4FedRec, rCL4FedRec, SimGCL, UNION, PoC.

A `Method` (`objective.Method`) bundles what differs between them: the client loss,
the public context the server broadcasts with the model, and the server-side steps
after a global epoch (Algorithm 1, lines 15-16).
"""

from __future__ import annotations

from typing import Callable

from fedjax_rec.models import ncf
from fedjax_rec.tasks.ncf import methods_cl
from fedjax_rec.tasks.ncf.objective import Method, original, rec_logits, rec_loss

__all__ = ["METHODS", "Method", "TAKES_TRAINING_DATA", "make_method", "original",
           "rec_logits", "rec_loss"]

METHODS: dict[str, Callable[..., Method]] = {
    "original": original, "cl4fedrec": methods_cl.cl4fedrec,
    "rcl4fedrec": methods_cl.rcl4fedrec, "simgcl": methods_cl.simgcl,
    "union": methods_cl.union, "poc": methods_cl.poc}

# Methods whose builders take `popularity` (training counts) and `local_lr` from the
# run; the task supplies them unless the config sets them (`tasks.ncf.task`).
TAKES_TRAINING_DATA = frozenset({"cl4fedrec", "rcl4fedrec"})


def make_method(name: str, config: ncf.NCFConfig, **kwargs) -> Method:
  """The method `name` for the NCF shape `config`, with its hyper-parameters."""
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
  return METHODS[name](config, **kwargs)
