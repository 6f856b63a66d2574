"""Fang et al.'s full-knowledge attack on Krum (USENIX Security 2020, §4.2).

"Local Model Poisoning Attacks to Byzantine-Robust Federated Learning". The `c`
attackers of a round upload identical copies of

    x = -λ · s,        s = sign(mean of the benign uploads)

over the item rows some benign client uploaded and the network update: the change
opposite to the benign direction (uploads are gradient-like; the server subtracts them,
as in `fang.py`). λ starts at the paper's bound

    λ0 = min_i Σ_{j ∈ Γ(i)} D(g_i, g_j) / ((n - 2c - 1) √d)  +  max_i D(g_i, 0) / √d

(`D` the Euclidean distance between whole uploads, `Γ(i)` the `n - c - 2` benign uploads
nearest `g_i`, `n` the round's benign clients plus `c`, `d = |s|²` the nonzero signs, and
"no change", 0, the reference point), and is halved until Krum over the benign uploads
and the `c` copies, with `f = c` assumed byzantine, scores a copy strictly below every
benign client (a tie would go to the benign slot, which comes first), at most `steps`
times; if none is selected the last λ is uploaded. Krum here is over whole uploads, as
in the paper (`multi_krum` with one selected, and Bulyan's selection); the per-item
`krum` aggregator sees the same rows item by item.

Krum's scores are computed from the round's geometry (`benign.KrumView`) without
building the copies: `D(x, g_i)² = λ² d + 2 λ s·g_i + |g_i|²`, copies are 0 apart.
The attacker's state records the λ it uploaded and whether Krum selected it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from fedjax_rec.attacks.base import ALL_ITEMS, Attack
from fedjax_rec.attacks.benign import BenignStats, KrumView, every_item_upload
from fedjax_rec.types import Array, PublicParams, PyTree


def _finite_prefix(sorted_x: Array) -> Array:
  """[..., w + 1] prefix sums of ascending rows, `inf` entries (absent) counted as 0."""
  x = jnp.where(jnp.isfinite(sorted_x), sorted_x, 0.0)
  return jnp.concatenate([jnp.zeros_like(x[..., :1]), jnp.cumsum(x, axis=-1)], axis=-1)


def _sorted_others(view: KrumView) -> Array:
  """[C, C] each client's squared distances to the other clients, ascending (`inf` last:
  itself and the absent). Independent of λ: sorted once per round."""
  eye = jnp.eye(view.dist.shape[0], dtype=bool)
  return jnp.sort(jnp.where(eye, jnp.inf, view.dist), 1)


def copy_wins(view: KrumView, others: Array, num_attackers: Array, lam: Array) -> Array:
  """Whether Krum over the benign uploads and `c` copies of `-λ s` scores a copy lowest.

  `others` is `_sorted_others(view)`.
  """
  c = num_attackers
  b = jnp.sum(view.mask)
  k = jnp.maximum(b - 2, 0)  # neighbours: n - f - 2 with n = b + c, f = c
  delta = jnp.maximum(lam ** 2 * view.num_signs + 2 * lam * view.sign_dot + view.sq_norm, 0.0)
  delta = jnp.where(view.mask, delta, jnp.inf)
  # A copy: the other c - 1 copies at 0, then the nearest benign uploads.
  zeros = jnp.clip(c - 1, 0, k)
  copy = _finite_prefix(jnp.sort(delta))[k - zeros]
  # Benign i: its k smallest of the other benign distances and c copies of delta_i.
  below = jax.vmap(jnp.searchsorted)(others, delta)
  a = jnp.minimum(below, k)
  t = jnp.minimum(c, k - a)
  r = k - a - t
  benign = jnp.take_along_axis(_finite_prefix(others), (a + r)[:, None], 1)[:, 0] + t * delta
  benign = jnp.where(view.mask, benign, jnp.inf)
  return (b >= 1) & (copy < jnp.min(benign))


def lambda_bound(view: KrumView, others: Array, num_attackers: Array) -> Array:
  """The paper's starting λ (module docstring); `others` is `_sorted_others(view)`."""
  c = num_attackers
  b = jnp.sum(view.mask)
  near = jnp.maximum(b - 2, 0)  # the n - c - 2 nearest benign uploads
  spread = _finite_prefix(jnp.sqrt(others))[:, near]
  spread = jnp.min(jnp.where(view.mask, spread, jnp.inf))
  root_d = jnp.sqrt(jnp.maximum(view.num_signs, 1.0))
  far = jnp.max(jnp.where(view.mask, jnp.sqrt(view.sq_norm), 0.0))
  lam = spread / (jnp.maximum(b - c - 1, 1) * root_d) + far / root_d  # n - 2c - 1
  return jnp.where(jnp.isfinite(lam), lam, 0.0)


def search_lambda(view: KrumView, num_attackers: Array, steps: int) -> tuple[Array, Array]:
  """`(λ, selected)`: the first of `λ0, λ0/2, ...` (`steps` of them) Krum selects, else
  the last."""
  others = _sorted_others(view)

  def step(_, state):
    lam, found = state
    keep = found | copy_wins(view, others, num_attackers, lam)
    return jnp.where(keep, lam, lam * 0.5), keep

  lam, found = lax.fori_loop(0, steps - 1, step, (lambda_bound(view, others, num_attackers),
                                                  jnp.asarray(False)))
  return lam, found | copy_wins(view, others, num_attackers, lam)


def make_fang_krum(model_config, targets=None, *, steps: int = 20) -> Attack:
  """Fang's Krum attack (see the module docstring); `targets` are ignored.

  Args:
    steps: most values of λ tried (halving from the paper's bound).
  """
  del model_config, targets
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"steps must be an int >= 1, got {steps!r}")

  def init(key: Array, num_attackers: int, public: PublicParams) -> PyTree:
    del key, public
    return jnp.zeros((num_attackers, 2), jnp.float32)  # (λ uploaded, selected)

  def update(public: PublicParams, ctx: PyTree, state: PyTree, key: Array,
             benign: BenignStats):
    del public, ctx, state, key
    lam, found = search_lambda(benign.krum, benign.num_attackers, steps)
    rows = -lam * jnp.sign(benign.rows.mean)
    net = jax.tree.map(lambda m: -lam * jnp.sign(m), benign.net.mean)
    upload = every_item_upload(rows, benign.count > 0, net, benign.weight)
    return jnp.stack([lam, found.astype(jnp.float32)]), upload

  return Attack(name="fang_krum", init=init, update=update, num_rows=ALL_ITEMS,
                needs_benign=True, needs_distances=True)
