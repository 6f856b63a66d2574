"""LIE, "A Little Is Enough" (Baruch et al., NeurIPS 2019), on sparse item rows.

A full-knowledge attack (`Attack.needs_benign`): every attacker of a round uploads, per
coordinate, `μ - z · σ`, the mean of the round's benign uploads less `z` standard
deviations, a shift small enough to stay inside the spread that robust aggregators
accept. Over sparse uploads `μ` and `σ` of an item row are taken over the benign clients
that uploaded that item in the round (`benign.BenignStats`; population `σ`), and the
attacker uploads a row for every such item (`num_rows` is the whole catalogue); the
network update likewise over the round's benign clients.

`z` (the paper's `z_max`, Algorithm 3) follows from the clients: with `n` clients of which
`m` are attackers, `s = ⌊n/2 + 1⌋ - m` benign clients must be "won over", and
`z = Φ⁻¹((n - s) / n)`. `z_counts="round"` (default) counts the round's clients
(benign with a finite upload, plus the round's attackers); `"item"` counts each item's
uploaders (its benign uploaders plus the round's attackers), the network keeping the
round's count. Where the attackers are a majority (`s < 1`) `s` is taken as 1, so `z`
stays finite. A fixed `z` overrides the rule. The claimed sample count (`weight`) is
the benign clients' mean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from fedjax_rec.attacks.a_hum import check_positive
from fedjax_rec.attacks.base import ALL_ITEMS, Attack
from fedjax_rec.attacks.benign import BenignStats, every_item_upload
from fedjax_rec.types import Array, PublicParams, PyTree

Z_COUNTS = ("round", "item")


def lie_z(num_clients: Array, num_attackers: Array) -> Array:
  """Baruch et al.'s `z_max` for `n` clients of which `m` attackers (broadcasts)."""
  n = jnp.asarray(num_clients, jnp.float32)
  m = jnp.asarray(num_attackers, jnp.float32)
  s = jnp.maximum(jnp.floor(n / 2 + 1) - m, 1.0)
  return ndtri(jnp.clip((n - s) / jnp.maximum(n, 1.0), 0.5, 1.0))


def make_lie(model_config, targets=None, *, z: float | None = None,
             z_counts: str = "round") -> Attack:
  """LIE (see the module docstring); `targets` are ignored (an untargeted attack).

  Args:
    z: a fixed number of standard deviations (> 0), or None for the paper's rule.
    z_counts: "round" or "item": whose clients the rule counts.
  """
  del model_config, targets
  if z is not None:
    z = check_positive("z", z)
  if z_counts not in Z_COUNTS:
    raise ValueError(f"z_counts must be one of {Z_COUNTS}, got {z_counts!r}")

  def init(key: Array, num_attackers: int, public: PublicParams) -> PyTree:
    del key, public
    return jnp.zeros((num_attackers,), jnp.float32)

  def update(public: PublicParams, ctx: PyTree, state: PyTree, key: Array,
             benign: BenignStats):
    del public, ctx, key
    round_z = lie_z(benign.num_benign + benign.num_attackers, benign.num_attackers)
    if z is not None:
      row_z = net_z = jnp.float32(z)
    elif z_counts == "item":
      row_z, net_z = lie_z(benign.count + benign.num_attackers, benign.num_attackers), round_z
      row_z = row_z[:, None]
    else:
      row_z = net_z = round_z
    rows = benign.rows.mean - row_z * benign.rows.std
    net = jax.tree.map(lambda mu, sd: mu - net_z * sd, benign.net.mean, benign.net.std)
    return state, every_item_upload(rows, benign.count > 0, net, benign.weight)

  return Attack(name="lie", init=init, update=update, num_rows=ALL_ITEMS, needs_benign=True)


def lie_z_numpy(num_clients: int, num_attackers: int) -> float:
  """`lie_z` in plain Python (for flags and tests)."""
  from statistics import NormalDist  # pylint: disable=import-outside-toplevel
  s = max(int(np.floor(num_clients / 2 + 1)) - num_attackers, 1)
  p = min(max((num_clients - s) / max(num_clients, 1), 0.5), 1.0)
  return float("inf") if p >= 1.0 else NormalDist().inv_cdf(p)
