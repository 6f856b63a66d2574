"""Client objectives. Every reduction is masked and divided by the mask's count."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from fedjax_rec.types import Array


def masked_mean(x: Array, mask: Array) -> Array:
  # `where`, not a product: padded positions may hold anything, NaN included.
  total = jnp.sum(jnp.where(mask, x, 0.0))
  return total / jnp.maximum(jnp.sum(mask).astype(x.dtype), 1.0)


def bce_with_logits(logits: Array, labels: Array, mask: Array) -> Array:
  """Eq. 1, averaged over the real samples."""
  return masked_mean(optax.sigmoid_binary_cross_entropy(logits, labels), mask)
