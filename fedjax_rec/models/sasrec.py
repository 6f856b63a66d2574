"""SASRec (Kang & McAuley, 2018): causal self-attention over an item sequence.

The module maps already-looked-up item embeddings `x [..., L, d]` with a mask to
hidden states `[..., L, d]`; position `t` sees positions `<= t` only. Sequences are
LEFT-padded (the most recent item sits at `L - 1`), as in the reference code, so
the user representation is always the output at the last position and the
position embedding of the most recent item is always the same.

Block layout follows the reference PyTorch implementation (pmixer/SASRec.pytorch):
`Q = LN(x)`, `x = Q + MHA(Q, x, x)`, `x = x + FFN(LN(x))`, padded positions reset
to zero after every block, a final LayerNorm. Item embeddings are scaled by
`sqrt(d)` before the position embeddings are added.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fedjax_rec.types import Array


def causal_mask(mask: Array) -> Array:
  """`[..., 1, L, L]` attention mask: causal, real keys only, diagonal always on.

  The diagonal keeps every query row non-empty (a padded query attends to itself),
  so no softmax row is all `-inf`; padded outputs are zeroed afterwards anyway.

  Args:
    mask: [..., L] bool, real positions.
  """
  length = mask.shape[-1]
  causal = jnp.tril(jnp.ones((length, length), bool))
  eye = jnp.eye(length, dtype=bool)
  keys = mask[..., None, :] | eye
  return (causal & keys)[..., None, :, :]


class SASRec(nn.Module):
  """Causal self-attention encoder.

  Attributes:
    embed_dim: model width `d` (= item embedding size).
    max_len: number of position embeddings (the padded sequence length).
    num_blocks: self-attention blocks.
    num_heads: attention heads.
    dropout: dropout rate on embeddings, attention weights and the FFN.
  """

  embed_dim: int
  max_len: int
  num_blocks: int = 2
  num_heads: int = 1
  dropout: float = 0.2

  @nn.compact
  def __call__(self, x: Array, mask: Array, train: bool = False) -> Array:
    """Encodes `x [..., L, d]` (mask `[..., L]`); returns `[..., L, d]`."""
    length = x.shape[-2]
    pos = self.param("pos_emb", nn.initializers.normal(0.02), (self.max_len, self.embed_dim))
    keep = mask[..., None].astype(x.dtype)
    x = x * jnp.sqrt(float(self.embed_dim)) + pos[self.max_len - length:]
    x = nn.Dropout(self.dropout, deterministic=not train)(x) * keep
    attn_mask = causal_mask(mask)
    for b in range(self.num_blocks):
      q = nn.LayerNorm(epsilon=1e-8, name=f"attn_norm_{b}")(x)
      a = nn.MultiHeadDotProductAttention(
          num_heads=self.num_heads, qkv_features=self.embed_dim,
          out_features=self.embed_dim, dropout_rate=self.dropout,
          deterministic=not train, name=f"attn_{b}")(q, x, x, mask=attn_mask)
      x = q + a
      h = nn.LayerNorm(epsilon=1e-8, name=f"ffn_norm_{b}")(x)
      h = nn.Dense(self.embed_dim, name=f"ffn_in_{b}")(h)
      h = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(h))
      h = nn.Dense(self.embed_dim, name=f"ffn_out_{b}")(h)
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
      x = (x + h) * keep
    return nn.LayerNorm(epsilon=1e-8, name="final_norm")(x) * keep
