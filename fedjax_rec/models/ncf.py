"""Neural collaborative filtering (He et al., 2017), the base recommender, and MF.

The model is split along the federated privacy boundary: the user embedding is a
client's private parameter, the item table `V` and the MLP `Θ` are public. The MLP
scores `concat(u, v)` with ReLU hidden layers and a linear output logit.

With `interaction="dot"` the model is matrix factorisation: the logit is `u · v`, there
is no MLP and `Θ` is the empty pytree `{}` (the protocol, aggregators and checkpoints
carry it unchanged).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fedjax_rec.types import Array, PublicParams, PyTree

INTERACTIONS = ("mlp", "dot")


@dataclasses.dataclass(frozen=True)
class NCFConfig:
  """NCF shape and initialisation.

  Attributes:
    embed_dim: user and item embedding size `d`.
    hidden: widths of the ReLU hidden layers on `concat(u, v)` (width `2d`).
    embed_init_std: std of the N(0, std²) initialisation of embeddings.
    mlp_init: "kaiming" (Kaiming-uniform, zero bias, as the public A-hum code) or
      "lecun" (Flax's default LeCun-normal, zero bias).
    interaction: "mlp" (NCF: the MLP on `concat(u, v)`) or "dot" (MF: `u · v`, no MLP;
      `hidden` must then be empty).
  """

  embed_dim: int = 32
  hidden: tuple[int, ...] = (64, 32, 16)
  embed_init_std: float = 0.01
  mlp_init: str = "kaiming"
  interaction: str = "mlp"

  def __post_init__(self):
    if self.embed_dim <= 0:
      raise ValueError(f"embed_dim must be positive, got {self.embed_dim}")
    if any(h <= 0 for h in self.hidden):
      raise ValueError(f"hidden widths must be positive, got {self.hidden}")
    if self.mlp_init not in ("kaiming", "lecun"):
      raise ValueError(f"mlp_init must be 'kaiming' or 'lecun', got {self.mlp_init!r}")
    if self.interaction not in INTERACTIONS:
      raise ValueError(f"interaction must be 'mlp' or 'dot', got {self.interaction!r}")
    if self.interaction == "dot" and self.hidden:
      raise ValueError(f"the dot interaction (MF) has no MLP: hidden must be empty, got "
                       f"{self.hidden}")

  @property
  def is_mf(self) -> bool:
    """Whether the model is matrix factorisation (`interaction="dot"`)."""
    return self.interaction == "dot"


class NCFMLP(nn.Module):
  """The interaction network `Θ`: logits for (user, item) embedding pairs."""

  hidden: Sequence[int]
  mlp_init: str = "kaiming"

  @nn.compact
  def __call__(self, u: Array, v: Array) -> Array:
    """Scores `u [..., d]` against `v [..., d]`; returns logits `[...]`."""
    init = (nn.initializers.he_uniform() if self.mlp_init == "kaiming"
            else nn.initializers.lecun_normal())
    x = jnp.concatenate([u, v], axis=-1)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, kernel_init=init, name=f"hidden_{i}")(x))
    return nn.Dense(1, kernel_init=init, name="out")(x)[..., 0]


def mlp_module(config: NCFConfig) -> NCFMLP:
  return NCFMLP(hidden=tuple(config.hidden), mlp_init=config.mlp_init)


def init_public(key: Array, config: NCFConfig, num_items: int) -> PublicParams:
  """Initialises the public parameters `(V, Θ)`."""
  key_v, key_mlp = jax.random.split(key)
  d = config.embed_dim
  item_emb = config.embed_init_std * jax.random.normal(key_v, (num_items, d))
  if config.is_mf:
    return PublicParams(item_emb=item_emb, net={})
  mlp = mlp_module(config).init(key_mlp, jnp.zeros((1, d)), jnp.zeros((1, d)))
  return PublicParams(item_emb=item_emb, net=mlp)


def init_user_emb(key: Array, config: NCFConfig, num_users: int) -> Array:
  """[num_users, d] private user embeddings, N(0, std²)."""
  return config.embed_init_std * jax.random.normal(key, (num_users, config.embed_dim))


def logits(config: NCFConfig, mlp: PyTree, u: Array, v: Array) -> Array:
  """Logits of `u [..., d]` against `v [..., d]`."""
  if config.is_mf:
    return jnp.sum(u * v, axis=-1)
  return mlp_module(config).apply(mlp, u, v)


def score_all(config: NCFConfig, mlp: PyTree, u: Array, item_emb: Array) -> Array:
  """Scores every user of `u [b, d]` against every item; returns `[b, num_items]`.

  The first layer is linear in `concat(u, v)`, so it is split into `u W_u` and
  `V W_v` and broadcast, instead of materialising `[b, num_items, 2d]` inputs. MF
  scores are the matmul `u Vᵀ`.
  """
  if config.is_mf:
    return u @ item_emb.T
  p = mlp["params"]
  d = config.embed_dim
  names = [f"hidden_{i}" for i in range(len(config.hidden))] + ["out"]
  first = p[names[0]]
  h = ((u @ first["kernel"][:d])[:, None, :]
       + (item_emb @ first["kernel"][d:])[None, :, :] + first["bias"])
  for name in names[1:]:
    h = nn.relu(h) @ p[name]["kernel"] + p[name]["bias"]
  return h[..., 0]
