"""Sequence encoders as `(init, apply)` pure functions, and the public parameters.

For sequential models `PublicParams(item_emb, mlp)` holds the item table
`V [num_items, d]` and, in the `mlp` field, the encoder parameters
`{"net": <flax variables>, "mask_token": [d]}`. The mask token (the embedding
that the `mask` augmentation substitutes) is an encoder parameter, public and
aggregated with the encoder, so that the item table keeps exactly `num_items`
rows and every aggregator, metric and attack sees the same table as for NCF.

Item ids inside encoder inputs are row indices into some `rows [R, d]` (the
whole table, or a client's touched rows); index `R` (one past the end) stands
for the mask token, see `lookup`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedjax_rec.models.gru4rec import GRU4Rec
from fedjax_rec.models.sasrec import SASRec
from fedjax_rec.types import Array, PublicParams, PyTree

ENCODERS = ("sasrec", "gru4rec")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Shape of a sequential recommender.

  Attributes:
    name: "sasrec" or "gru4rec".
    embed_dim: item embedding size and model width `d`.
    max_len: padded sequence length `L` (the most recent items kept).
    num_blocks: SASRec self-attention blocks.
    num_heads: SASRec attention heads.
    dropout: dropout rate (both encoders).
    embed_init_std: std of the N(0, std²) item embeddings and mask token.
  """

  name: str = "sasrec"
  embed_dim: int = 64
  max_len: int = 50
  num_blocks: int = 2
  num_heads: int = 1
  dropout: float = 0.2
  embed_init_std: float = 0.1

  def __post_init__(self):
    if self.name not in ENCODERS:
      raise ValueError(f"encoder must be one of {ENCODERS}, got {self.name!r}")
    if self.embed_dim <= 0 or self.max_len <= 0:
      raise ValueError("embed_dim and max_len must be positive, got "
                       f"{self.embed_dim} and {self.max_len}")
    if self.embed_dim % self.num_heads:
      raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads "
                       f"{self.num_heads}")
    if not 0 <= self.dropout < 1:
      raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class Encoder(NamedTuple):
  """Attributes:
    init: `key -> params` (the `mlp` field of `PublicParams`).
    apply: `(params, x [..., L, d], mask [..., L], key | None) -> [..., L, d]`;
      a key turns dropout on (training), None is deterministic (evaluation).
  """

  init: Callable[[Array], PyTree]
  apply: Callable[[PyTree, Array, Array, Array | None], Array]


def _module(config: EncoderConfig):
  if config.name == "sasrec":
    return SASRec(embed_dim=config.embed_dim, max_len=config.max_len,
                  num_blocks=config.num_blocks, num_heads=config.num_heads,
                  dropout=config.dropout)
  return GRU4Rec(embed_dim=config.embed_dim, dropout=config.dropout)


def make_encoder(config: EncoderConfig) -> Encoder:
  """Builds the encoder named by `config.name`."""
  module = _module(config)
  d, length = config.embed_dim, config.max_len

  def init(key: Array) -> PyTree:
    key_net, key_mask = jax.random.split(key)
    net = module.init(key_net, jnp.zeros((1, length, d)), jnp.ones((1, length), bool))
    mask_token = config.embed_init_std * jax.random.normal(key_mask, (d,))
    return {"net": net, "mask_token": mask_token}

  def apply(params: PyTree, x: Array, mask: Array, key: Array | None = None) -> Array:
    if key is None:
      return module.apply(params["net"], x, mask, train=False)
    return module.apply(params["net"], x, mask, train=True, rngs={"dropout": key})

  return Encoder(init, apply)


def init_public(key: Array, config: EncoderConfig, num_items: int) -> PublicParams:
  """`PublicParams(V [num_items, d] ~ N(0, std²), encoder params)`."""
  key_v, key_enc = jax.random.split(key)
  item_emb = config.embed_init_std * jax.random.normal(key_v, (num_items, config.embed_dim))
  return PublicParams(item_emb=item_emb, net=make_encoder(config).init(key_enc))


def lookup(rows: Array, mask_token: Array, idx: Array, mask: Array) -> Array:
  """Embeds row indices: `rows[idx]`, the mask token where `idx == R`, 0 on padding.

  `where` (not a product) keeps padded positions out of the gradient of `rows`
  whatever index they hold.

  Args:
    rows: [R, d] item rows.
    mask_token: [d] the mask token embedding.
    idx: [...] int indices in `[0, R]`.
    mask: [...] bool, real positions.

  Returns:
    [..., d] embeddings.
  """
  num_rows = rows.shape[0]
  emb = rows[jnp.clip(idx, 0, num_rows - 1)]
  emb = jnp.where((idx == num_rows)[..., None], mask_token, emb)
  return jnp.where(mask[..., None], emb, 0.0)


def last_hidden(h: Array) -> Array:
  """The user representation: the output at the last (most recent) position."""
  return h[..., -1, :]
