"""The `Method` type, the recommendation loss and Original.

A `Method` bundles what differs between Original, CL4FedRec, SimGCL, ... :
the client loss, the public context the server broadcasts with the model, and
the server-side steps after a global epoch (Algorithm 1, lines 15-16).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

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
    positive_term: whether the objective has a term over a client's positive rows
      (`methods_cl.positive_rows`; quadratic in them for the contrastive terms, `K`
      negatives each for UNION's); the driver then bounds the positives of each length
      class and cuts the heavy classes by them (`positive_classes`).
  """

  name: str
  loss_fn: LossFn
  init_aux: Callable[[Array, PublicParams], PyTree]
  context: Callable[[PyTree], PyTree]
  epoch_end: Callable[[PublicParams, PyTree, Array], tuple[PublicParams, PyTree, dict]]
  positive_term: bool = False


def rec_logits(config: ncf.NCFConfig, u: Array, rows: Array, mlp: PyTree,
               data: LocalData) -> Array:
  """[L] logits of the client's rows."""
  del data
  return ncf.logits(config, mlp, jnp.broadcast_to(u, rows.shape), rows)


REC_LOSSES = ("bce", "bpr")
REDUCTIONS = ("mean", "sum")


def bpr_sum(logits: Array, data: LocalData) -> tuple[Array, Array]:
  """`(Σ, count)`: BPR, `−log σ(s_p − s_n)`, over a client's (positive, negative) pairs.

  Every positive is paired with every negative sample, and its terms are averaged over
  the positives: `Σ_n w_n · mean_p −log σ(s_p − s_n)`. That is the expectation of one
  negative per positive paired at random (a client's negatives are i.i.d. draws), over
  `count = Σ_n w_n` pairs, without the variance of one fixed pairing. With the
  simulator's layout (`data.pos_mask`) only the leading `P` rows are paired as positives.
  """
  neg = data.mask & (data.label <= 0.5)
  w_neg = jnp.where(neg, data.weight, 0.0)
  if data.pos_mask is not None:
    prefix = data.pos_mask.shape[0]
    s_pos, w_pos = logits[:prefix], jnp.where(data.pos_mask, data.weight[:prefix], 0.0)
  else:
    s_pos, w_pos = logits, jnp.where(data.positive, data.weight, 0.0)
  pair_w = w_pos[:, None] * w_neg[None, :]  # [P, L]
  terms = jax.nn.softplus(logits[None, :] - s_pos[:, None])  # −log σ(s_p − s_n)
  total = jnp.sum(jnp.where(pair_w > 0, terms, 0.0) * pair_w) / jnp.maximum(jnp.sum(w_pos),
                                                                            1e-12)
  return total, jnp.sum(w_neg)


def rec_loss(config: ncf.NCFConfig, rec: str = "bce", reduction: str = "mean",
             l2_reg: float = 0.0) -> LossFn:
  """`L_rec` (Eq. 1): BCE over positives and sampled negatives, or BPR over pairs.

  Args:
    config: the model.
    rec: "bce" (Eq. 1) or "bpr" (`bpr_sum`).
    reduction: "mean" over the samples (BCE) or pairs (BPR), or their "sum".
    l2_reg: weight `λ` of `λ/2 (‖u‖² + Σ_i ‖v_i‖²)` over the user and the item row of
      every sample (a row of weight w counts w times); reduced like the loss.
  """
  if rec not in REC_LOSSES:
    raise ValueError(f"rec_loss must be one of {', '.join(REC_LOSSES)}, got {rec!r}")
  if reduction not in REDUCTIONS:
    raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {reduction!r}")
  if not l2_reg >= 0:
    raise ValueError(f"l2_reg must be >= 0, got {l2_reg}")
  if rec == "bce" and reduction == "mean" and l2_reg == 0:
    def loss_fn(u, rows, mlp, data, ctx, key):
      del ctx, key
      return bce_with_logits(rec_logits(config, u, rows, mlp, data), data.label, data.weight,
                             data.mask)

    return loss_fn

  def summed_loss_fn(u, rows, mlp, data, ctx, key):
    del ctx, key
    logits = rec_logits(config, u, rows, mlp, data)
    w = jnp.where(data.mask, data.weight, 0.0)
    if rec == "bce":
      per = optax.sigmoid_binary_cross_entropy(logits, data.label)
      total, count = jnp.sum(jnp.where(data.mask, per, 0.0) * w), jnp.sum(w)
    else:
      total, count = bpr_sum(logits, data)
    if l2_reg:
      total = total + 0.5 * l2_reg * (jnp.sum(u * u) + jnp.sum(w * jnp.sum(rows * rows, -1)))
    return total if reduction == "sum" else total / jnp.maximum(count, 1e-12)

  return summed_loss_fn


_rec_loss = rec_loss  # `original`'s keyword `rec_loss` shadows it


def original(config: ncf.NCFConfig, *, rec_loss: str = "bce", loss_reduction: str = "mean",
             l2_reg: float = 0.0) -> Method:
  """Plain federated NCF (or MF): no contrastive term.

  Args:
    config: the model.
    rec_loss: "bce" or "bpr" (see `rec_loss`).
    loss_reduction: "mean" or "sum" over the samples or pairs.
    l2_reg: L2 weight on the user and the sampled item rows.
  """
  return Method(
      name="original",
      loss_fn=_rec_loss(config, rec_loss, loss_reduction, l2_reg),
      init_aux=lambda key, params: (),
      context=lambda aux: (),
      epoch_end=lambda params, aux, key: (params, aux, {}))
