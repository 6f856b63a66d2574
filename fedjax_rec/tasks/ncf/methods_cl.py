"""Contrastive methods: CL4FedRec, rCL4FedRec (Eqs. 3-13) and the paper's baselines.

Every `loss_fn` is written for ONE client (the simulator vmaps it) and returns
`L_rec` plus the method's term. Builders validate their hyper-parameters, whose
defaults are the paper's §5.4 values (docs/design.md). Registered in
`methods.METHODS`:

  cl4fedrec   L_rec + λ1 L_uc + λ2 L_ic (Eq. 10), synthetic users fitted each epoch.
  rcl4fedrec  cl4fedrec + the popularity regularizer (Eq. 13) after each epoch.
  simgcl      L_rec + λ2 L_ic with uniform-noise item views (Eq. 5 on item rows).
  union       L_rec + w · UNION term (one positive, 15 non-interacted negatives).
  poc         L_rec + α L_uni over the client's rows (Eqs. 11-12).

Item terms run over a client's positive rows only (see `positive_rows`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import optax
import jax.numpy as jnp
import numpy as np

from fedjax_rec import losses
from fedjax_rec.tasks.ncf import objective as methods
from fedjax_rec.tasks.ncf import regularizers
from fedjax_rec.tasks.ncf import synthetic_users as syn
from fedjax_rec.tasks.ncf.client import LocalConfig, LocalData
from fedjax_rec.models import ncf
from fedjax_rec.types import Array, PyTree


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ValueError(message)


def _check_common(tau: float, eta: float, max_positive_share: float) -> None:
  _check(tau > 0, f"tau must be > 0, got {tau}")
  _check(eta >= 0, f"eta must be >= 0, got {eta}")
  _check(0 < max_positive_share <= 1,
         f"max_positive_share must be in (0, 1], got {max_positive_share}")


def _rec(config: ncf.NCFConfig, reduction: str = "mean"):
  rec_fn = methods.rec_loss(config, reduction=reduction)  # checks `reduction`
  return lambda u, rows, mlp, data: rec_fn(u, rows, mlp, data, (), None)


def positive_rows(data: LocalData, max_positive_share: float = 1.0) -> tuple[Array, Array]:
  """The client's real positive rows (`data.positive`), as `P` slots.

  With `max_positive_share = 1` (the default, exact) the slots are the `L` rows
  themselves. Below 1, the positives are gathered to the front of
  `P = ceil(share · L)` slots, so that a `[P, P]` similarity matrix replaces the
  `[L, L]` one (`1/share²` cheaper); positives beyond `P` are left out of the term.
  Safe when every client has at most that share of positive rows (with `k`
  negatives per positive and no duplicate negatives, `1 / (1 + k)`).

  Returns:
    `(take, mask [P])`: `take(x)` picks the slots' rows of `x [L, ...]` (the identity
    at share 1); `mask` marks real positives.
  """
  if data.pos_mask is not None:
    # The simulator's layout: positives lead the rows, at most `P` of them.
    prefix = data.pos_mask.shape[0]
    return (lambda x: jnp.asarray(x)[:prefix]), data.pos_mask
  length = data.mask.shape[0]
  if max_positive_share >= 1:
    return (lambda x: x), data.positive
  order, real = positive_slots(data, max(1, int(np.ceil(max_positive_share * length))))
  return (lambda x: jnp.asarray(x)[order]), real


def positive_slots(data: LocalData, capacity: int | None = None) -> tuple[Array, Array]:
  """`(row [P], real [P])`: slot `j` holds the row of the client's `j`-th positive.

  In the simulator's layout (`data.pos_mask`) the slots are its leading `P` rows;
  otherwise the positives are ordered first (stably) and the first `capacity` slots
  kept (default `L`).
  """
  if data.pos_mask is not None:
    return jnp.arange(data.pos_mask.shape[0]), data.pos_mask
  capacity = data.mask.shape[0] if capacity is None else capacity
  order = jnp.argsort(jnp.logical_not(data.positive), stable=True)[:capacity]
  return order, jnp.arange(capacity) < jnp.sum(data.positive)


def gradient_item_views(config: ncf.NCFConfig, u1: Array, u2: Array, rows: Array, mlp: PyTree,
                        data: LocalData, step: float, take=None,
                        reduction: str = "mean") -> tuple[Array, Array]:
  """Eqs. 7-8: views `V − a ∇_V L_rec(u')` and `V − a ∇_V L_rec(u'')` of the taken rows.

  `L_rec` is the BCE over the client's samples (`methods.rec_loss`), averaged or, as in
  Eq. 1, summed (`reduction`): a sum of one term per row, so the gradient of a row is its
  own term's times its weight (divided by the total weight for the mean). The views of
  the rows that `take` keeps (`positive_rows`, the identity by default) cost those rows
  only, not the client's whole `L`. `Δ` is a constant, so gradients reach `V` only
  directly.

  Returns:
    `([P, d], [P, d])`: the views of `take(rows)`.
  """
  take = (lambda x: x) if take is None else take
  w = jnp.where(data.mask, data.weight, 0.0)
  total = 1.0 if reduction == "sum" else jnp.maximum(jnp.sum(w), 1e-12)
  coef = jax.lax.stop_gradient(take(w) / total)
  kept, label = take(rows), take(data.label)

  def rec_of_kept(u, r):
    logits = ncf.logits(config, mlp, jnp.broadcast_to(u, r.shape), r)
    return jnp.sum(coef * optax.sigmoid_binary_cross_entropy(logits, label))

  grad_kept = jax.grad(rec_of_kept, argnums=1)
  delta1 = -step * jax.lax.stop_gradient(grad_kept(u1, kept))
  delta2 = -step * jax.lax.stop_gradient(grad_kept(u2, kept))
  return kept + delta1, kept + delta2


def _no_aux(name: str, loss_fn, positive_term: bool = False) -> methods.Method:
  return methods.Method(name=name, loss_fn=loss_fn, init_aux=lambda key, params: (),
                        context=lambda aux: (),
                        epoch_end=lambda params, aux, key: (params, aux, {}),
                        positive_term=positive_term)


class CLAux(NamedTuple):
  """(r)CL4FedRec's server state: synthetic users (`()` without user CL), regularizer."""

  synthetic: PyTree
  reg_state: PyTree


def cl4fedrec(config: ncf.NCFConfig, *,
              popularity: np.ndarray | tuple[int, ...] | None = None,
              lambda1: float = 0.5, lambda2: float = 0.5, tau: float = 0.2,
              eta: float = 0.1, num_synthetic_users: int = 60, synthetic_items: int = 30,
              synthetic_negatives: int = 4, synthetic_steps: int = 20,
              synthetic_lr: float = 0.01, synthetic_optimizer: str = "adam",
              synthetic_sampling: str = "popularity", item_view: str = "gradient",
              item_view_step: float | None = None, local_lr: float = LocalConfig.lr,
              use_user_cl: bool = True, use_item_cl: bool = True,
              use_regularizer: bool = False, num_hot: int = 100, num_sparse: int = 500,
              reg_steps: int = 10, reg_lr: float = 0.001, reg_optimizer: str = "adam",
              reg_tau: float | None = None, max_positive_share: float = 1.0,
              loss_reduction: str = "mean", name: str = "cl4fedrec") -> methods.Method:
  """CL4FedRec (§4.1, Eq. 10); with `use_regularizer`, rCL4FedRec (§4.2.3).

  Args:
    config: NCF shape.
    popularity: [num_items] training interaction counts; needed for popularity-based
      synthetic users (Eq. 3) and for the regularizer's hot items.
    lambda1, lambda2: weights of `L_uc` and `L_ic` (Eq. 10).
    tau, eta: temperature of `L_uc` and `L_ic`; norm of the view noise (Eq. 5).
    num_synthetic_users: `|U_syn|`. synthetic_items: `N`. synthetic_negatives:
      uniform negatives per synthetic positive, drawn once.
    synthetic_steps, synthetic_lr, synthetic_optimizer: the fit of Eq. 4, run in
      `init_aux` and after every global epoch (fresh optimizer state each time).
    synthetic_sampling: "popularity" (Eq. 3) or "uniform" (Table 5 ablation).
    item_view: "gradient" (Eqs. 7-8) or "simgcl" (Eq. 5 noise on item rows, Table 5).
    item_view_step: the step `a` of `Δ = −a ∇_V L_rec`; None means `local_lr`
      (docs/design.md). With the paper's lr 0.001 the two views differ little; raise it to sharpen.
    local_lr: the clients' local learning rate (`LocalConfig.lr`).
    use_user_cl, use_item_cl, use_regularizer: ablation switches (Table 4).
    num_hot, num_sparse, reg_steps, reg_lr, reg_optimizer: Eq. 13's hot-item count,
      `|V_sp|` (capped at the non-hot items), and its optimizer.
    reg_tau: temperature of Eq. 13 (None: `tau`).
    max_positive_share: bound on a client's share of positive rows; below 1 it makes
      `L_ic` cheaper (see `positive_rows`).
    loss_reduction: "mean": `L_rec` averaged over the samples and `L_ic` over the
      positives; "sum": both summed, as Eqs. 1 and 9 write them (`L_uc` is one term
      either way), which weighs the contrastive terms far less (docs/design.md).
    name: the method's name.
  """
  _check(lambda1 >= 0, f"lambda1 must be >= 0, got {lambda1}")
  _check(lambda2 >= 0, f"lambda2 must be >= 0, got {lambda2}")
  _check_common(tau, eta, max_positive_share)
  _check(synthetic_sampling in ("popularity", "uniform"),
         f"synthetic_sampling must be 'popularity' or 'uniform', got {synthetic_sampling!r}")
  _check(item_view in ("gradient", "simgcl"),
         f"item_view must be 'gradient' or 'simgcl', got {item_view!r}")
  step_a = local_lr if item_view_step is None else item_view_step
  _check(step_a >= 0, f"item_view_step must be >= 0, got {step_a}")
  user_cl = use_user_cl and lambda1 > 0
  item_cl = use_item_cl and lambda2 > 0
  _check(num_synthetic_users >= (1 if user_cl else 0),
         f"num_synthetic_users must be >= 1 with user contrastive learning, "
         f"got {num_synthetic_users}")
  syn_tx = syn.check_and_make_optimizer(synthetic_items, synthetic_negatives,
                                        synthetic_steps, synthetic_lr, synthetic_optimizer)
  pop = None
  if (user_cl and synthetic_sampling == "popularity") or use_regularizer:
    pop = syn.check_popularity(popularity)
    _check(not user_cl or synthetic_items < len(pop),
           f"synthetic_items must be < num_items ({len(pop)}), got {synthetic_items}")
  reg = None
  if use_regularizer:
    reg = regularizers.popularity_regularizer(
        regularizers.hot_items(pop, num_hot), num_sparse, reg_steps, reg_lr,
        tau if reg_tau is None else reg_tau, reg_optimizer)
  rec = _rec(config, loss_reduction)

  def loss_fn(u, rows, mlp, data: LocalData, ctx, key):
    key_uview, key_iview = jax.random.split(key)
    total = rec(u, rows, mlp, data)
    u1, u2 = losses.two_views(key_uview, u, eta)  # Eq. 5
    if user_cl:
      total = total + lambda1 * losses.user_contrastive_loss(u, u1, u2, ctx, tau)
    if item_cl:
      take, pos_mask = positive_rows(data, max_positive_share)
      if item_view == "gradient":
        v1, v2 = gradient_item_views(config, u1, u2, rows, mlp, data, step_a, take,
                                     loss_reduction)
      else:
        v1, v2 = losses.two_views(key_iview, take(rows), eta)
      total = total + lambda2 * losses.item_contrastive_loss(v1, v2, pos_mask, tau,
                                                             loss_reduction)
    return total

  def init_aux(key, params):
    synthetic = ()
    if user_cl:
      num_items = params.item_emb.shape[0]
      _check(synthetic_items < num_items,
             f"synthetic_items must be < num_items ({num_items}), got {synthetic_items}")
      log_w = jnp.asarray(syn.item_log_weights(pop, num_items, synthetic_sampling))
      synthetic = syn.init_synthetic_users(key, config, params, log_w,
                                           num_synthetic_users, synthetic_items,
                                           synthetic_negatives)
      # Fitted once already, so that the first epoch's negatives are meaningful.
      synthetic, _ = syn.fit(config, synthetic, params, synthetic_steps, syn_tx)
    return CLAux(synthetic, reg.init() if reg is not None else ())

  def context(aux: CLAux):
    return aux.synthetic.emb if user_cl else ()

  def epoch_end(params, aux: CLAux, key):
    metrics = {}
    reg_state = aux.reg_state
    if reg is not None:  # Algorithm 1, line 15
      item_emb, reg_state, reg_metrics = reg.apply(params.item_emb, reg_state, key)
      params = params._replace(item_emb=item_emb)
      metrics.update(reg_metrics)
    synthetic = aux.synthetic
    if user_cl:  # line 16, on the calibrated table
      synthetic, syn_metrics = syn.fit(config, synthetic, params, synthetic_steps, syn_tx)
      metrics.update(syn_metrics)
    return params, CLAux(synthetic, reg_state), metrics

  return methods.Method(name=name, loss_fn=loss_fn, init_aux=init_aux, context=context,
                        epoch_end=epoch_end, positive_term=use_item_cl)


def rcl4fedrec(config: ncf.NCFConfig, **kwargs) -> methods.Method:
  """rCL4FedRec: `cl4fedrec` with the popularity regularizer (Eq. 13) on by default."""
  kwargs.setdefault("use_regularizer", True)
  kwargs.setdefault("name", "rcl4fedrec")
  return cl4fedrec(config, **kwargs)


def simgcl(config: ncf.NCFConfig, *, lambda2: float = 0.5, tau: float = 0.2,
           eta: float = 0.1, max_positive_share: float = 1.0,
           loss_reduction: str = "mean") -> methods.Method:
  """SimGCL baseline: `L_rec + λ2 L_ic` with item views `v + ε` (Eq. 5 per row).

  `loss_reduction` as `cl4fedrec`'s (both terms averaged, or summed as Eqs. 1 and 9).
  """
  _check(lambda2 >= 0, f"lambda2 must be >= 0, got {lambda2}")
  _check_common(tau, eta, max_positive_share)
  rec = _rec(config, loss_reduction)

  def loss_fn(u, rows, mlp, data: LocalData, ctx, key):
    del ctx
    take, pos_mask = positive_rows(data, max_positive_share)
    v1, v2 = losses.two_views(key, take(rows), eta)  # key_iview
    return rec(u, rows, mlp, data) + lambda2 * losses.item_contrastive_loss(
        v1, v2, pos_mask, tau, loss_reduction)

  return _no_aux("simgcl", loss_fn, positive_term=True)


def union_term(rows: Array, data: LocalData, key: Array, num_union_negatives: int) -> Array:
  """UNION's client term (docs/design.md) for one client.

  For each positive row: one other positive of the client, uniformly, as the
  positive, and `num_union_negatives` draws with replacement from the client's
  sampled negatives (a row of weight w is w samples) as negatives. Positives of a
  client with a single positive, or with no negatives, do not count.

  The term runs over the positives' slots only (`P` of them in the simulator's layout,
  where the positives lead the rows: `data.pos_mask`), not over all `L` rows; row `k`'s
  draws are the `k`-th row of one `[L, 1 + K]` uniform draw in either layout, so the
  value does not depend on the layout beyond float order.
  """
  length = data.mask.shape[0]
  slot_row, slot_real = positive_slots(data)
  num_pos = jnp.sum(slot_real)
  rank = jnp.arange(slot_row.shape[0])  # slot j holds the j-th positive
  # One uniform draw: column 0 picks the other positive, the rest the negatives.
  draw = jax.random.uniform(key, (length, 1 + num_union_negatives))[slot_row]
  r = jnp.floor(draw[:, 0] * jnp.maximum(num_pos - 1, 1)).astype(jnp.int32)
  r = jnp.minimum(r, jnp.maximum(num_pos - 2, 0))  # float rounding may reach n − 1
  # The r-th of the other positives: slot r, or r + 1 past its own (never itself).
  other = slot_row[jnp.minimum(jnp.where(r >= rank, r + 1, r), slot_row.shape[0] - 1)]
  # Inverse CDF over the negatives' (integer) sample weights: sample j of the total.
  cdf = jnp.cumsum(jnp.where(data.mask & (data.label <= 0.5), data.weight, 0.0))
  j = jnp.minimum(jnp.floor(draw[:, 1:] * cdf[-1]), cdf[-1] - 1)
  neg = jnp.minimum(jnp.searchsorted(cdf, j, side="right"), length - 1)
  valid = slot_real & (num_pos >= 2) & (cdf[-1] > 0)
  return losses.union_loss(rows[slot_row], rows[other], rows[neg], valid)


def union(config: ncf.NCFConfig, *, union_weight: float = 1.0,
          union_negatives: int = 15) -> methods.Method:
  """UNION baseline: `L_rec + union_weight · union_term`."""
  _check(union_weight >= 0, f"union_weight must be >= 0, got {union_weight}")
  _check(union_negatives >= 1, f"union_negatives must be >= 1, got {union_negatives}")
  rec = _rec(config)

  def loss_fn(u, rows, mlp, data: LocalData, ctx, key):
    del ctx
    return rec(u, rows, mlp, data) + union_weight * union_term(rows, data, key,
                                                               union_negatives)

  return _no_aux("union", loss_fn, positive_term=True)


def poc(config: ncf.NCFConfig, *, alpha: float = 0.0) -> methods.Method:
  """Proof of concept (Eq. 12): `L_rec + α L_uni` over the client's real rows."""
  _check(alpha >= 0, f"alpha must be >= 0, got {alpha}")
  rec = _rec(config)

  def loss_fn(u, rows, mlp, data: LocalData, ctx, key):
    del ctx, key
    loss = rec(u, rows, mlp, data)
    if alpha:  # static: α = 0 is exactly Original
      loss = loss + alpha * losses.masked_l_uni(rows, data.mask)
    return loss

  return _no_aux("poc", loss_fn)
