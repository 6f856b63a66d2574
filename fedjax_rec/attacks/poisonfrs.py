"""PoisonFRS (Yin et al., WWW 2024, "Poisoning Federated Recommender Systems with Fake
Users"), our reading: no public code, and the paper's text could not be checked here, so
the rule below and its constants are stated as this module does them.

Each attacker is a fake user that knows the public item table it receives and the items'
training popularity, nothing about any user. The idea: popular items are near the top of
most users' lists, so a target whose row is a scaled mean of popular rows is scored high
by most users (for MF exactly: `u · λ v̄ = λ · mean_j u · v_j`). Every round it takes part
in, it

1. averages the received rows of the `num_popular` (P = 10) most popular non-target items
   by training counts (ties: the lower id): `v̄ = mean_(j in Pop) v_j`;
2. uploads, for every target `t`, the row `v_t - λ v̄` (`target_scale` λ = 5): the
   received row minus the wanted one, a benign `delta` upload's shape. The server applies
   `params - lr · aggregate`, so one uploader under FedAvg (server SGD lr 1, the `mean`
   convention) puts the row onto `λ v̄`; under other servers the row moves that way;
3. uploads `num_filler_items` (N = 30 - T, the fake-user baselines' 30-item profile,
   `attacks.fake_users`) filler rows, uniform non-target items drawn once per fake user
   and kept, each a fresh uniformly random direction with the mean norm of its target
   rows, so that no uploaded row stands out by its norm.

The network update is zero (a fake user with no data has no reason to move it); the
claimed sample count (`weight`, weighted FedAvg only) is the number of rows, T + N.
Constants: P = 10 and λ = 5 are this module's choices (λ > 1 because a mean of P rows is
shorter than its rows); the upload is the whole displacement, not a step of it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedjax_rec.attacks.a_hum import (catalogue_check, check_count, check_positive, check_targets,
                                      check_targets_in_catalogue)
from fedjax_rec.attacks.base import Attack
from fedjax_rec.attacks.fake_users import (PROFILE_SIZE, check_popularity, popular_items,
                                           uniform_fillers)
from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PublicParams, PyTree

NUM_POPULAR = 10
TARGET_SCALE = 5.0


class PoisonFRSState(NamedTuple):
  """Attributes:
    filler_items: [num_attackers, N] each fake user's filler items (distinct, no targets).
  """

  filler_items: Array


def target_rows(item_emb: Array, targets: Array, popular: Array, scale: float) -> Array:
  """`[T, d]` uploads `v_t - scale · mean_(j in popular) v_j`."""
  goal = scale * jnp.mean(item_emb[popular], axis=0)
  return item_emb[targets] - goal[None, :]


def filler_rows(key: Array, num_rows: int, dim: int, norm: Array) -> Array:
  """`[N, d]` uniformly random directions of L2 norm `norm`."""
  z = jax.random.normal(key, (num_rows, dim))
  return z * (norm / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-30))


def make_poisonfrs(model_config, targets, *, popularity=None,
                   num_filler_items: int | None = None, num_popular: int = NUM_POPULAR,
                   target_scale: float = TARGET_SCALE) -> Attack:
  """PoisonFRS (see the module docstring).

  Args:
    popularity: `[num_items]` training counts (the task passes them,
      `attacks.TAKES_POPULARITY`).
    num_filler_items: N filler rows per upload (>= 0; default 30 - T).
    num_popular: P popular rows averaged.
    target_scale: λ, the scale of their mean.
  """
  targets = check_targets(targets)
  num_targets = int(targets.size)
  if num_filler_items is None:
    num_filler_items = max(PROFILE_SIZE - num_targets, 0)
  num_filler = check_count("num_filler_items", num_filler_items, minimum=0)
  num_popular = check_count("num_popular", num_popular)
  scale = check_positive("target_scale", target_scale)
  pop = check_popularity("poisonfrs", popularity)
  num_items = pop.size
  check_targets_in_catalogue(targets, num_items)
  if num_popular > num_items - num_targets:
    raise ValueError(f"num_popular={num_popular} exceeds the {num_items - num_targets} "
                     "non-target items")
  if num_filler > num_items - num_targets:
    raise ValueError(f"num_filler_items={num_filler} exceeds the {num_items - num_targets} "
                     "non-target items")
  popular = jnp.asarray(popular_items(pop, targets, num_popular))
  target_ids = jnp.asarray(targets)
  dim = model_config.embed_dim
  num_rows = num_targets + num_filler

  check_catalogue = catalogue_check("poisonfrs", num_items, targets)

  def init(key: Array, num_attackers: int, public: PublicParams) -> PoisonFRSState:
    check_catalogue(public.item_emb.shape[0])
    keys = jax.random.split(key, num_attackers)
    fillers = jax.vmap(lambda k: uniform_fillers(k, num_items, target_ids, num_filler))(keys)
    return PoisonFRSState(filler_items=fillers.reshape(num_attackers, num_filler))

  def update(public: PublicParams, ctx: PyTree, state: PoisonFRSState, key: Array):
    del ctx
    check_catalogue(public.item_emb.shape[0])
    item_emb = jax.lax.stop_gradient(public.item_emb)
    rows_t = target_rows(item_emb, target_ids, popular, scale)
    norm = jnp.mean(jnp.linalg.norm(rows_t, axis=1))
    rows_f = filler_rows(key, num_filler, dim, norm)
    up = ClientUpload(row_item=jnp.concatenate([target_ids, state.filler_items]),
                      row_grad=jnp.concatenate([rows_t, rows_f]),
                      row_mask=jnp.ones((num_rows,), bool),
                      net=jax.tree.map(jnp.zeros_like, public.net),
                      weight=jnp.asarray(num_rows, jnp.float32))
    return state, up

  return Attack(name="poisonfrs", init=init, update=update, num_rows=num_rows)
