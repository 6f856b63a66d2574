"""GRU4Rec (Hidasi et al., 2016): a GRU over the item sequence.

Same contract as `sasrec.SASRec`: item embeddings `x [..., L, d]` (LEFT-padded,
mask `[..., L]`) in, hidden states `[..., L, d]` out, position `t` depending on
positions `<= t` only. Padded steps leave the carry unchanged and output zeros, so
left padding is invisible to the recurrence. The hidden size is `d` so that the
output scores items by a dot product with their embeddings.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fedjax_rec.types import Array


class _MaskedGRUStep(nn.Module):
  features: int

  @nn.compact
  def __call__(self, carry: Array, xs: tuple[Array, Array]) -> tuple[Array, Array]:
    x, m = xs
    new, _ = nn.GRUCell(self.features, name="cell")(carry, x)
    carry = jnp.where(m[..., None], new, carry)
    return carry, jnp.where(m[..., None], carry, 0.0)


class GRU4Rec(nn.Module):
  """Attributes:
    embed_dim: hidden size `d` (= item embedding size).
    dropout: dropout rate on the input embeddings and on the outputs.
  """

  embed_dim: int
  dropout: float = 0.2

  @nn.compact
  def __call__(self, x: Array, mask: Array, train: bool = False) -> Array:
    """Encodes `x [..., L, d]` (mask `[..., L]`); returns `[..., L, d]`."""
    keep = mask[..., None].astype(x.dtype)
    x = nn.Dropout(self.dropout, deterministic=not train)(x) * keep
    scan = nn.scan(_MaskedGRUStep, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=0, out_axes=0)
    xs = (jnp.moveaxis(x, -2, 0), jnp.moveaxis(mask, -1, 0))
    carry = jnp.zeros(x.shape[:-2] + (self.embed_dim,), x.dtype)
    _, h = scan(self.embed_dim, name="gru")(carry, xs)
    h = jnp.moveaxis(h, 0, -2)
    return nn.Dropout(self.dropout, deterministic=not train)(h) * keep
