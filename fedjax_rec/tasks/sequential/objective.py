"""The FORTRESS client objective for ONE user (docs/design.md; paper §3.1-3.3).

    L = L_rec + w_seq L_seq + w_user L_user + w_item L_item + w_temp L_temp

* `L_rec`: next-item loss at every real position: BCE against sampled negatives
  (SASRec), sampled softmax, or full softmax over the catalogue.
* `L_seq` (sequence view): two augmentations of the local sequence (crop, mask or
  reorder), encoded; InfoNCE of the two last-position representations, symmetric.
* `L_user` (user view): two perturbations `u + ε`, `u + ε'` of the encoded user
  representation `u`, with the sign-aligned noise of Eq. 5 scaled to `η‖u‖`
  (encoder outputs are not unit-scale); InfoNCE as Eq. 6 with `u` as the anchor.
* `L_item` (item view): `Δ = −a ∇_V L_rec` evaluated twice with the hidden states
  perturbed as in the user view (encoder held fixed), `V' = V + Δ'`, `V'' = V + Δ''`
  (constants); Eq. 9 over the sequence's items.
* `L_temp`: `‖ẑ_old − ẑ_new‖²` between the normalised encodings of the older and
  newer halves of the input sequence (two adjacent subsequences), each encoded where
  it sits in the window: by causality the older half's encoding is the main
  forward's state at its last item, so the term costs one extra encoder pass.

Negatives of the three InfoNCE terms: the client's own sampled non-interacted items
(stop-gradient), so no other user's data is needed (our reading; the paper keeps
all views on-device). Every term with weight 0 is not computed at all.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedjax_rec.losses import (cosine_similarity, info_nce, item_contrastive_loss,
                               masked_mean, normalize, sign_aligned_noise)
from fedjax_rec.models.encoders import Encoder, last_hidden, lookup
from fedjax_rec.tasks.sequential import augment as aug
from fedjax_rec.types import Array, PyTree

REC_LOSSES = ("bce", "softmax", "full_softmax")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """Client objective. Weights of 0 switch a term off.

  Attributes:
    loss: "bce" (SASRec: positive vs each negative), "softmax" (sampled softmax over
      the positive and the negatives) or "full_softmax" (over every item).
    num_negatives: negatives per position (with full softmax: only the InfoNCE ones).
    seq_weight: weight of `L_seq`.
    user_weight: weight of `L_user`.
    item_weight: weight of `L_item`.
    temporal_weight: weight of `L_temp`.
    tau: InfoNCE temperature.
    user_noise: relative noise norm `η` of the user (and item-view) perturbations.
    item_step: step `a` of the item-view gradient perturbation.
    crop_ratio: kept share of the crop operator.
    mask_ratio: masking probability of the mask operator.
    reorder_ratio: shuffled share of the reorder operator.
  """

  loss: str = "bce"
  num_negatives: int = 1
  seq_weight: float = 0.0
  user_weight: float = 0.0
  item_weight: float = 0.0
  temporal_weight: float = 0.0
  tau: float = 0.2
  user_noise: float = 0.1
  item_step: float = 1.0
  crop_ratio: float = 0.6
  mask_ratio: float = 0.3
  reorder_ratio: float = 0.3

  def __post_init__(self):
    if self.loss not in REC_LOSSES:
      raise ValueError(f"loss must be one of {REC_LOSSES}, got {self.loss!r}")
    if self.num_negatives < (0 if self.loss == "full_softmax" else 1):
      raise ValueError(f"num_negatives must be >= 1 for {self.loss}, got {self.num_negatives}")
    weights = (self.seq_weight, self.user_weight, self.item_weight, self.temporal_weight)
    if min(weights) < 0 or self.tau <= 0:
      raise ValueError("term weights must be >= 0 and tau > 0")


class ClientInputs(NamedTuple):
  """One client's indices into its rows `[R, d]` (`R` = the mask token).

  Attributes:
    in_idx: [L] encoder inputs.
    tgt_idx: [L] next-item targets.
    pos_mask: [L] real (input, target) pairs.
    neg_idx: [L, K] sampled negatives.
    neg_mask: [L, K] usable negatives (real position, not an item of the user).
    seq_idx: [L] the local sequence (the most recent L items) for the views.
    seq_mask: [L] its real positions.
  """

  in_idx: Array
  tgt_idx: Array
  pos_mask: Array
  neg_idx: Array
  neg_mask: Array
  seq_idx: Array
  seq_mask: Array


def relative_noise(key: Array, x: Array, eta: float) -> Array:
  """Eq. 5's sign-aligned noise, rescaled to `η‖x‖` per row (a constant)."""
  scale = jax.lax.stop_gradient(jnp.linalg.norm(x, axis=-1, keepdims=True))
  return sign_aligned_noise(key, x, 1.0) * eta * scale


def rec_loss(loss: str, h: Array, rows: Array, inputs: ClientInputs) -> Array:
  """`L_rec` of hidden states `h [L, d]` against the rows; mean over real positions."""
  tgt = jnp.where(inputs.pos_mask[:, None], rows[inputs.tgt_idx], 0.0)
  pos = jnp.sum(h * tgt, axis=-1)  # [L]
  if loss == "full_softmax":
    per_pos = jax.nn.logsumexp(h @ rows.T, axis=-1) - pos
  else:
    neg = jnp.einsum("ld,lkd->lk", h, rows[inputs.neg_idx])
    if loss == "bce":
      per_pos = jax.nn.softplus(-pos) + masked_mean_last(jax.nn.softplus(neg), inputs.neg_mask)
    else:
      per_pos = info_nce(pos, neg, inputs.neg_mask)
  return masked_mean(per_pos, inputs.pos_mask)


def masked_mean_last(x: Array, mask: Array) -> Array:
  """Mean over the last axis of the entries where `mask` (0 if none)."""
  return jnp.sum(jnp.where(mask, x, 0.0), -1) / jnp.maximum(jnp.sum(mask, -1), 1)


def _nce(anchor: Array, positive: Array, negatives: Array, neg_mask: Array,
         tau: float) -> Array:
  pos = cosine_similarity(anchor, positive) / tau
  neg = cosine_similarity(anchor[None, :], negatives) / tau
  return info_nce(pos, neg, neg_mask)


def make_objective(config: ObjectiveConfig, encoder: Encoder):
  """Builds `objective(rows, enc_params, inputs, key) -> (loss, aux)` for one user.

  `aux` holds `u` (the user representation, [d]) and every term's value.
  """
  c = config

  def objective(rows: Array, enc_params: PyTree, inputs: ClientInputs, key: Array):
    key_drop, key_views, key_user, key_item, key_view_drop = jax.random.split(key, 5)
    mask_token = enc_params["mask_token"]
    x = lookup(rows, mask_token, inputs.in_idx, inputs.pos_mask)
    h = encoder.apply(enc_params, x, inputs.pos_mask, key_drop)  # [L, d]
    u = last_hidden(h)
    terms = {"rec": rec_loss(c.loss, h, rows, inputs)}
    negatives = jax.lax.stop_gradient(rows[inputs.neg_idx]).reshape(-1, rows.shape[-1])
    neg_mask = inputs.neg_mask.reshape(-1)

    views = []  # (idx [L], mask [L]) sequences to encode in one batched call
    if c.seq_weight > 0:
      k1, k2 = jax.random.split(key_views)
      kw = dict(mask_id=rows.shape[0], crop_ratio=c.crop_ratio, mask_ratio=c.mask_ratio,
                reorder_ratio=c.reorder_ratio)
      views += [aug.augment(k1, inputs.seq_idx, inputs.seq_mask, **kw),
                aug.augment(k2, inputs.seq_idx, inputs.seq_mask, **kw)]
    if c.temporal_weight > 0:
      older_end, newer_mask = aug.split_adjacent(inputs.pos_mask)
      views.append((inputs.in_idx, newer_mask))
    if views:
      idx = jnp.stack([v[0] for v in views])
      vmask = jnp.stack([v[1] for v in views])
      z = last_hidden(encoder.apply(enc_params, lookup(rows, mask_token, idx, vmask), vmask,
                                    key_view_drop))  # [V, d]
    if c.seq_weight > 0:
      terms["seq_cl"] = 0.5 * (_nce(z[0], z[1], negatives, neg_mask, c.tau)
                               + _nce(z[1], z[0], negatives, neg_mask, c.tau))
    if c.temporal_weight > 0:
      z_old = h[jnp.clip(older_end, 0, h.shape[0] - 1)]
      gap = jnp.sum((normalize(z_old) - normalize(z[-1])) ** 2)
      terms["temporal"] = jnp.where(jnp.sum(inputs.pos_mask) >= 2, gap, 0.0)
    if c.user_weight > 0:
      k1, k2 = jax.random.split(key_user)
      u1 = u + relative_noise(k1, u, c.user_noise)
      u2 = u + relative_noise(k2, u, c.user_noise)
      terms["user_cl"] = _nce_anchor(u, u1, u2, negatives, neg_mask, c.tau)
    if c.item_weight > 0:
      terms["item_cl"] = _item_view(c, key_item, rows, h, inputs)

    weights = {"rec": 1.0, "seq_cl": c.seq_weight, "user_cl": c.user_weight,
               "item_cl": c.item_weight, "temporal": c.temporal_weight}
    total = sum(weights[k] * v for k, v in terms.items())
    return total, {"u": jax.lax.stop_gradient(u), **terms}

  return objective


def _nce_anchor(u: Array, u1: Array, u2: Array, negatives: Array, neg_mask: Array,
                tau: float) -> Array:
  """Eq. 6: positive pair `(u', u'')`, negatives scored against the anchor `u`."""
  pos = cosine_similarity(u1, u2) / tau
  neg = cosine_similarity(u[None, :], negatives) / tau
  return info_nce(pos, neg, neg_mask)


def _item_view(c: ObjectiveConfig, key: Array, rows: Array, h: Array,
               inputs: ClientInputs) -> Array:
  """Eq. 9 on gradient-perturbed views of the sequence's item rows."""
  h_const = jax.lax.stop_gradient(h)
  rows_const = jax.lax.stop_gradient(rows)
  idx = jnp.clip(inputs.seq_idx, 0, rows.shape[0] - 1)  # the mask id never reaches here

  def delta(k):  # Δ = −a ∇_V L_rec under one noisy view of the hidden states
    noisy = h_const + relative_noise(k, h_const, c.user_noise)
    g = jax.grad(lambda r: rec_loss(c.loss, noisy, r, inputs))(rows_const)
    return jax.lax.stop_gradient(-c.item_step * g[idx])

  k1, k2 = jax.random.split(key)
  v = rows[idx]
  return item_contrastive_loss(v + delta(k1), v + delta(k2), inputs.seq_mask, c.tau)
