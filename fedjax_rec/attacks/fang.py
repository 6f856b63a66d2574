"""Fang et al.'s full-knowledge attack on trimmed mean and median (USENIX Security 2020).

"Local Model Poisoning Attacks to Byzantine-Robust Federated Learning", §4: the
attackers push every coordinate against the direction the benign clients move it. On
uploads (the server applies `params - lr · aggregate`), as the authors' code applies it
to gradients: with `s_j = sign(Σ benign g_j)` the benign direction of coordinate `j`,
the attackers take its benign extreme on the far side, `e_j = min_j` where `s_j > 0`
and `max_j` where `s_j < 0` (0 where `s_j = 0`), and each attacker uploads

    e_j / r_j   if s_j · e_j > 0,        e_j · r_j   otherwise,

`r_j ~ U(1, b)` drawn per attacker and coordinate (`b = 2`, the paper's), i.e. a value
beyond the benign extreme by a factor up to `b` (towards zero where the extreme has the
benign sign). This is the attack the paper derives for trimmed mean and median; its
Krum variant (a search for the largest deviation that Krum still selects) is
`fang_krum.py`.

Over sparse uploads the sums and extremes of an item row are over the benign clients that
uploaded it in the round (`benign.BenignStats`), and the attacker uploads a row for every
such item (`num_rows` is the whole catalogue); the network update likewise over the
round's benign clients. The claimed sample count (`weight`) is the benign clients' mean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec.attacks.base import ALL_ITEMS, Attack
from fedjax_rec.attacks.benign import BenignStats, Moments, every_item_upload
from fedjax_rec.types import Array, PublicParams, PyTree


def directed_deviation(mean: Array, lo: Array, hi: Array, r: Array) -> Array:
  """The crafted values from the benign mean, min and max and the factors `r >= 1`."""
  direction = jnp.sign(mean)
  extreme = jnp.where(direction > 0, lo, jnp.where(direction < 0, hi, 0.0))
  return jnp.where(direction * extreme > 0, extreme / r, extreme * r)


def make_fang(model_config, targets=None, *, scale: float = 2.0) -> Attack:
  """Fang's directed deviation (see the module docstring); `targets` are ignored.

  Args:
    scale: `b > 1`, the largest factor beyond the benign extreme.
  """
  del model_config, targets
  ok = isinstance(scale, (int, float, np.number)) and not isinstance(scale, bool)
  if not (ok and np.isfinite(scale) and scale > 1):
    raise ValueError(f"scale must be a finite number > 1, got {scale!r}")
  scale = float(scale)

  def init(key: Array, num_attackers: int, public: PublicParams) -> PyTree:
    del key, public
    return jnp.zeros((num_attackers,), jnp.float32)

  def craft(m: Moments, key: Array):
    leaves, treedef = jax.tree.flatten(m.mean)
    keys = jax.random.split(key, max(len(leaves), 1))
    factors = [jax.random.uniform(k, x.shape, x.dtype, 1.0, scale) for k, x in zip(keys, leaves)]
    r = jax.tree.unflatten(treedef, factors)
    return jax.tree.map(directed_deviation, m.mean, m.min, m.max, r)

  def update(public: PublicParams, ctx: PyTree, state: PyTree, key: Array,
             benign: BenignStats):
    del public, ctx
    key_rows, key_net = jax.random.split(key)
    rows = craft(benign.rows, key_rows)
    net = craft(benign.net, key_net)
    return state, every_item_upload(rows, benign.count > 0, net, benign.weight)

  return Attack(name="fang", init=init, update=update, num_rows=ALL_ITEMS, needs_benign=True)
