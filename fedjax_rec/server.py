"""Server side: state, optimizer, and the update from an `Aggregate`.

Nothing here takes `ClientStates`: the server only ever sees `Uploads` (through
an aggregator) and its own `ServerState`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_rec.types import Aggregate, Array, PublicParams, PyTree


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  """Server optimizer on the aggregated public gradient.

  Attributes:
    optimizer: "sgd" (public A-hum code) or "adam" (paper §5.4).
    lr: learning rate.
  """

  optimizer: str = "adam"
  lr: float = 0.001

  def __post_init__(self):
    if self.optimizer not in ("sgd", "adam"):
      raise ValueError(f"server optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
    if self.lr <= 0:
      raise ValueError(f"server lr must be positive, got {self.lr}")


class ServerState(NamedTuple):
  """Everything the server carries between rounds.

  Attributes:
    params: public parameters `(V, Θ)`.
    opt_state: server optimizer state.
    agg_state: aggregator state.
    aux: method-specific server state (e.g. synthetic users), a pytree.
  """

  params: PublicParams
  opt_state: PyTree
  agg_state: PyTree
  aux: PyTree


def server_optimizer(config: ServerConfig) -> optax.GradientTransformation:
  if config.optimizer == "adam":
    return optax.adam(config.lr)
  return optax.sgd(config.lr)


def init_server(params: PublicParams, config: ServerConfig, agg_state: PyTree = (),
                aux: PyTree = ()) -> ServerState:
  return ServerState(params, server_optimizer(config).init(params), agg_state, aux)


def apply_aggregate(state: ServerState, agg: Aggregate, config: ServerConfig) -> ServerState:
  """One server optimizer step. Rows no client touched keep their values."""
  tx = server_optimizer(config)
  grads = PublicParams(item_emb=agg.item_grad, net=agg.net)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  updates = updates._replace(
      item_emb=jnp.where(agg.item_touched[:, None], updates.item_emb, 0.0))
  params = optax.apply_updates(state.params, updates)
  return state._replace(params=params, opt_state=opt_state)


def update_norms(before: PublicParams, after: PublicParams) -> dict[str, Array]:
  """Per-round diagnostics: L2 norm of the change of `V` and of `Θ`."""
  dv = after.item_emb - before.item_emb
  dm = jax.tree.map(jnp.subtract, after.net, before.net)
  return {"item_update_norm": jnp.linalg.norm(dv), "mlp_update_norm": optax.tree.norm(dm)}
