"""The `Method` type, the recommendation loss and Original.

A `Method` bundles what differs between Original, CL4FedRec, SimGCL, ... :
the client loss, the public context the server broadcasts with the model, and
the server-side steps after a global epoch (Algorithm 1, lines 15-16).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp

from fedjax_rec.tasks.ncf.client import LocalData, LossFn
from fedjax_rec.losses import bce_with_logits
from fedjax_rec.models import ncf
from fedjax_rec.types import Array, PublicParams, PyTree


class Method(NamedTuple):
  """Attributes:
    name: the method's name.
    loss_fn: the client objective (see `client.LossFn`).
    init_aux: `(key, params) -> aux`, the method's server state.
    context: `aux -> ctx`, the public part of `aux` sent to clients.
    epoch_end: `(params, aux, key) -> (params, aux, metrics)`, server steps after
      each global epoch.
  """

  name: str
  loss_fn: LossFn
  init_aux: Callable[[Array, PublicParams], PyTree]
  context: Callable[[PyTree], PyTree]
  epoch_end: Callable[[PublicParams, PyTree, Array], tuple[PublicParams, PyTree, dict]]


def rec_logits(config: ncf.NCFConfig, u: Array, rows: Array, mlp: PyTree,
               data: LocalData) -> Array:
  """[L] logits of the client's rows."""
  del data
  return ncf.logits(config, mlp, jnp.broadcast_to(u, rows.shape), rows)


def rec_loss(config: ncf.NCFConfig) -> LossFn:
  """`L_rec` (Eq. 1): BCE over positives and sampled negatives."""

  def loss_fn(u, rows, mlp, data, ctx, key):
    del ctx, key
    return bce_with_logits(rec_logits(config, u, rows, mlp, data), data.label, data.weight,
                           data.mask)

  return loss_fn


def original(config: ncf.NCFConfig) -> Method:
  """Plain federated NCF: no contrastive term."""
  return Method(
      name="original",
      loss_fn=rec_loss(config),
      init_aux=lambda key, params: (),
      context=lambda aux: (),
      epoch_end=lambda params, aux, key: (params, aux, {}))
