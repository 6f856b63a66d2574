"""PIECK-IPE and PIECK-UEA (Zhang et al., ICDE 2024), after the public code
(GitHub junzhang-zj/PIECK, `MF-FRS/attack.py` and `DL-FRS/attack.py`).

No prior knowledge: the attacker mines popular items from how the public item table
changes between its participations (once per global epoch under either round
assignment). Popular items are trained by many clients every round, so their rows move
the most: true under a server SGD step, whose row change grows with the summed gradient.
A server Adam normalises each row's step, and that signal fades (ML-100K, 10 attackers,
after 2 epochs: under `ahum-reference`'s SGD 78% of the mined items are among the 10 most
popular; under the `paper` preset's Adam none is among the 100 most popular).

**Popular item mining.** At each participation the attacker keeps the received item
table `V` (its state, `snapshot`). At its second participation it takes the change
`‖V_now[i] - V_snapshot[i]‖₂` of every row, targets excluded, and keeps the
`mined_items` (s = 10) items with the largest change, in decreasing order (`lax.top_k`,
ties to the lower id). The public code mines once (its `epoch == 2` branch) and keeps the
list for the rest of the run (`mining="once"`, the default); `mining="every"` re-mines at
every later participation from the change since the previous one.

**PIECK-IPE (item popularity enhancement)** aligns each target with the mined items. With
rank weights `w_k = (s - k) / Σ_j (s - j)` (k = 0 for the most changed item) and
`c_k = w_k · cos(V[p_k], v_t)`, the loss of target `t` is

    L_t = -τ · (mean of the c_k > 0  +  mean of the c_k <= 0)

(an empty group adds nothing), τ = 0.9 (the public code's value below 10% attackers;
0.5 (MF) or 0.2 (NCF) above). When the mined items are already aligned, mean_k
cos(V[p_k], v_t) > 0.95, the public NCF code replaces it by `-‖v_t‖` (the target grows
instead of taking vanishing gradients); kept here for both models. The loss is averaged
over targets; the attacker uploads its gradient for the target rows and a zero network
gradient (the public code uploads none).

**PIECK-UEA (user embedding approximation)** takes the mined items' embeddings as
stand-ins for user embeddings and promotes the targets for them: the mean over (mined
item k, target t) of `BCE(s(V[p_k], v_t), 1)` through the model's own interaction (`u · v`
for MF, the MLP for NCF), with respect to the target rows and the network (the public NCF
code uploads both). The stand-in users are constants.

Choices where the public code is silent or differs: before its first mining (its first
participation) the attacker uploads nothing (every `row_mask` False, zero network
gradient, sample count 0); the public code then uploads towards arbitrary items (`topk`
of zeros). The public NCF UEA mines the *least* changed items (`topk(-delta_norm)`), its
MF UEA and both IPE the most changed; here both take the most changed, as the paper
describes. The claimed sample count (`weight`, weighted FedAvg only) is T (IPE) or s·T
(UEA) once mined.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec.attacks.a_hum import (bce, check_count, check_positive, check_targets,
                                      check_targets_in_catalogue, pair_logits)
from fedjax_rec.attacks.base import Attack
from fedjax_rec.models import ncf
from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PublicParams, PyTree

ALIGNED_COS = 0.95  # the public NCF code's switch from alignment to growing the norm
MINING = ("once", "every")


class PIECKState(NamedTuple):
  """One attacker's state (every leaf with a leading attacker axis once stacked).

  Attributes:
    snapshot: [I, d] the item table received at its previous participation (A·I·d
      floats over the attackers).
    popular: [s] the mined popular items, most changed first (valid once `seen >= 1`).
    seen: [] int32 participations so far.
  """

  snapshot: Array
  popular: Array
  seen: Array


def mine_popular(old: Array, new: Array, targets: Array, k: int) -> Array:
  """`[k]` items with the largest row change `‖new - old‖₂`, targets excluded."""
  change = jnp.linalg.norm(new - old, axis=1)
  change = change.at[targets].set(-jnp.inf)
  return jax.lax.top_k(change, k)[1].astype(jnp.int32)


def rank_weights(k: int) -> Array:
  """`[k]` weights `(k - j) / Σ (k - j)`: the most changed item weighs most."""
  w = np.arange(k, 0, -1, dtype=np.float64)
  return jnp.asarray(w / w.sum(), jnp.float32)


def _norm(x: Array, axis=None, keepdims=False) -> Array:
  """L2 norm with a finite gradient at 0."""
  return jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=keepdims) + 1e-24)


def ipe_loss(target_rows: Array, popular_rows: Array, tau: float) -> Array:
  """PIECK-IPE's loss of `target_rows [T, d]` against `popular_rows [s, d]`, mean over T."""
  weights = rank_weights(popular_rows.shape[0])

  def one(v):
    unit_p = popular_rows / _norm(popular_rows, axis=1, keepdims=True)
    cos = unit_p @ v / _norm(v)
    c = weights * cos
    pos = c > 0
    n_pos, n_neg = jnp.sum(pos), jnp.sum(~pos)
    mean_pos = jnp.sum(jnp.where(pos, c, 0.0)) / jnp.maximum(n_pos, 1)
    mean_neg = jnp.sum(jnp.where(pos, 0.0, c)) / jnp.maximum(n_neg, 1)
    align = -tau * (mean_pos + mean_neg)
    return jnp.where(jnp.mean(cos) > ALIGNED_COS, -_norm(v), align)

  return jnp.mean(jax.vmap(one)(target_rows))


def uea_loss(model_config: ncf.NCFConfig, target_rows: Array, net: PyTree,
             popular_rows: Array) -> Array:
  """PIECK-UEA's loss: mean BCE towards 1 of every (mined item as user, target) pair."""
  users = jax.lax.stop_gradient(popular_rows)
  return jnp.mean(bce(pair_logits(model_config, net, users, target_rows), 1.0))


def _make(name: str, model_config: ncf.NCFConfig, targets, *, num_items: int | None,
          mined_items: int, mining: str, tau: float | None) -> Attack:
  targets = check_targets(targets)
  k = check_count("mined_items", mined_items)
  if mining not in MINING:
    raise ValueError(f"mining must be one of {MINING}, got {mining!r}")
  if num_items is not None:
    num_items = check_count("num_items", num_items)
    check_targets_in_catalogue(targets, num_items)
  num_targets = int(targets.size)
  target_ids = jnp.asarray(targets)

  def check_catalogue(n: int) -> None:
    if num_items is not None and n != num_items:
      raise ValueError(f"{name} was built for num_items={num_items} but V has {n} rows")
    check_targets_in_catalogue(targets, n)
    if k > n - num_targets:
      raise ValueError(f"mined_items={k} exceeds the {n - num_targets} non-target items")

  if num_items is not None:
    check_catalogue(num_items)

  def init(key: Array, num_attackers: int, public: PublicParams) -> PIECKState:
    del key
    n, d = public.item_emb.shape
    check_catalogue(n)
    return PIECKState(snapshot=jnp.zeros((num_attackers, n, d), public.item_emb.dtype),
                      popular=jnp.zeros((num_attackers, k), jnp.int32),
                      seen=jnp.zeros((num_attackers,), jnp.int32))

  def grads(item_emb: Array, net: PyTree, popular: Array):
    rows, pop_rows = item_emb[target_ids], item_emb[popular]
    if tau is not None:  # IPE: the target rows only
      return jax.grad(ipe_loss)(rows, pop_rows, tau), jax.tree.map(jnp.zeros_like, net)
    return jax.grad(lambda r, m: uea_loss(model_config, r, m, pop_rows),
                    argnums=(0, 1))(rows, net)

  def update(public: PublicParams, ctx: PyTree, state: PIECKState, key: Array):
    del ctx, key
    check_catalogue(public.item_emb.shape[0])
    item_emb = jax.lax.stop_gradient(public.item_emb)
    fresh = mine_popular(state.snapshot, item_emb, target_ids, k)
    remine = state.seen == 1 if mining == "once" else state.seen >= 1
    popular = jnp.where(remine, fresh, state.popular)
    mined = state.seen >= 1
    g_rows, g_net = grads(item_emb, public.net, popular)
    g_rows = jnp.where(mined, g_rows, 0.0)
    g_net = jax.tree.map(lambda g: jnp.where(mined, g, 0.0), g_net)
    claimed = num_targets if tau is not None else k * num_targets
    up = ClientUpload(row_item=target_ids, row_grad=g_rows,
                      row_mask=jnp.broadcast_to(mined, (num_targets,)), net=g_net,
                      weight=jnp.where(mined, jnp.float32(claimed), 0.0))
    return PIECKState(snapshot=item_emb, popular=popular, seen=state.seen + 1), up

  return Attack(name=name, init=init, update=update, num_rows=num_targets)


def make_pieck_ipe(model_config: ncf.NCFConfig, targets, *, num_items: int | None = None,
                   mined_items: int = 10, tau: float = 0.9, mining: str = "once") -> Attack:
  """PIECK-IPE (see the module docstring).

  Args:
    num_items: catalogue size. Optional: the size of `V` is used when absent; when
      given it is checked against `V`, the targets and `mined_items`.
    mined_items: s, popular items mined (>= 1, at most the non-target items).
    tau: τ > 0, the scale of the alignment loss.
    mining: "once" (at the second participation, the public code) or "every".
  """
  return _make("pieck_ipe", model_config, targets, num_items=num_items,
               mined_items=mined_items, mining=mining, tau=check_positive("tau", tau))


def make_pieck_uea(model_config: ncf.NCFConfig, targets, *, num_items: int | None = None,
                   mined_items: int = 10, mining: str = "once") -> Attack:
  """PIECK-UEA (see the module docstring; arguments as `make_pieck_ipe`)."""
  return _make("pieck_uea", model_config, targets, num_items=num_items,
               mined_items=mined_items, mining=mining, tau=None)
