"""Seeds as a leading axis: stacked states and the round vmapped over replicas.

`simulation.Simulator(num_seeds=S)` keeps S runs' states as one pytree with a leading
`[S]` axis and runs each round as `jax.vmap` of the single run's round over it.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from fedjax_rec.types import PyTree


def stack(trees: list[PyTree]) -> PyTree:
  """Stacks same-shaped pytrees along a new leading axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def take(tree: PyTree, s: int) -> PyTree:
  """Replica `s` of a stacked pytree."""
  return jax.tree.map(lambda x: x[s], tree)


def replicate_round_step(round_step: Callable, vmap_size: int | None = None) -> Callable:
  """`round_step` over a leading replica axis of everything but the (static) shapes.

  Args:
    round_step: `rounds.make_round_step`'s function of one replica.
    vmap_size: replicas vmapped together; groups run in sequence (`lax.map`).
      None: all of them at once.
  """

  def step(server, clients, attackers, client_data, slots, attack_slots, key_data, lengths,
           pos_lengths):
    one = functools.partial(round_step, lengths=lengths, pos_lengths=pos_lengths)
    args = (server, clients, attackers, client_data, slots, attack_slots, key_data)
    if vmap_size is None or vmap_size >= len(key_data):
      return jax.vmap(one)(*args)
    return jax.lax.map(lambda xs: one(*xs), args, batch_size=vmap_size)

  return step
