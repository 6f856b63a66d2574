"""PipAttack (Zhang et al., WSDM 2022), our reading (there is no public code).

The attacker knows each item's popularity (its training interaction count; the task
passes the training pairs, `attacks.TAKES_TRAINING_DATA`) and cuts the catalogue into
`num_levels` (3) equal-size popularity levels: items sorted by count (ties by id), the
j-th of `n` in level `floor(j · L / n)`, so level L - 1 holds the most popular items.
Each malicious client keeps, across rounds, a user embedding `u` (N(0, std²), the
model's init) and a popularity classifier `f` (one ReLU hidden layer of
`classifier_hidden` (32) units, then L logits; Kaiming-uniform weights, zero biases) with
its Adam state. Every time it takes part in a round it

1. trains `f` on the received item table `V` (frozen): `classifier_steps` (20) full-batch
   Adam steps of lr `classifier_lr` (0.01) on the mean cross-entropy of every item's
   level;
2. starting from the received target rows `v_t`, takes `local_steps` (5) plain SGD steps
   on a local copy `ṽ_t` (lr `lr`, 0.01) and on `u` (lr `user_lr`, 0.01) of

       L = L_exp + α · L_pop + γ · L_dis
       L_exp = mean_t BCE(s(u, ṽ_t), 1)             (explicit boosting / promotion)
       L_pop = mean_t CE(f(ṽ_t), L - 1)             (classified as popular)
       L_dis = mean_t ‖ṽ_t - v_t‖²                  (distance constraint)

   with α = `pop_weight` (1) and γ = `dist_weight` (1); the model's public network
   (the NCF MLP, nothing for MF) stays at the received values;
3. uploads, like a benign client's summed-gradient upload, the sum over its local steps
   of the gradients of `L` with respect to the target rows (so `(v_t - ṽ_t) / lr`) and to
   the network.

Our reading where the paper leaves it open: the distance constraint bounds the drift of the
attacker's local copy of the targets from the received rows (it has no gradient at the
received rows, so it acts from the second local step on); the three terms are means over
targets; the level cut, the classifier's shape and schedule, and every rate above are
ours. `u` plays the malicious user of explicit boosting: it is updated on `L_exp` only
(the other terms do not depend on it). The claimed sample count (`weight`, weighted
FedAvg only) is T.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_rec.attacks.a_hum import (bce, catalogue_check, check_count, check_positive,
                                      check_targets, check_targets_in_catalogue)
from fedjax_rec.attacks.base import Attack
from fedjax_rec.models import ncf
from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PublicParams, PyTree


class PipAttackState(NamedTuple):
  """One attacker's state (every leaf with a leading attacker axis once stacked).

  Attributes:
    user_emb: [d] the malicious user's embedding.
    classifier: the popularity classifier's parameters (`init_classifier`).
    classifier_opt: their Adam state.
  """

  user_emb: Array
  classifier: PyTree
  classifier_opt: PyTree


def popularity_levels(counts: np.ndarray, num_levels: int) -> np.ndarray:
  """`[n]` level of every item: equal-size levels by count (ties by id), L - 1 = most popular."""
  counts = np.asarray(counts)
  n = counts.size
  order = np.lexsort((np.arange(n), counts))  # least popular first, ties by id
  rank = np.empty(n, np.int64)
  rank[order] = np.arange(n)
  return (rank * num_levels // n).astype(np.int32)


def init_classifier(key: Array, dim: int, hidden: int, num_levels: int) -> dict:
  """`{w1 [d, h], b1 [h], w2 [h, L], b2 [L]}`: Kaiming-uniform weights, zero biases."""
  k1, k2 = jax.random.split(key)
  uniform = lambda k, fan_in, shape: jax.random.uniform(
      k, shape, minval=-np.sqrt(6.0 / fan_in), maxval=np.sqrt(6.0 / fan_in))
  return {"w1": uniform(k1, dim, (dim, hidden)), "b1": jnp.zeros((hidden,)),
          "w2": uniform(k2, hidden, (hidden, num_levels)), "b2": jnp.zeros((num_levels,))}


def classifier_logits(params: dict, v: Array) -> Array:
  """`[..., L]` popularity logits of item embeddings `v [..., d]`."""
  return jax.nn.relu(v @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def classifier_loss(params: dict, item_emb: Array, levels: Array) -> Array:
  """Mean cross-entropy of every item's popularity level."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      classifier_logits(params, item_emb), levels))


def attack_loss(model_config: ncf.NCFConfig, rows: Array, user: Array, net: PyTree,
                classifier: dict, received: Array, pop_weight: float,
                dist_weight: float) -> Array:
  """`L_exp + α L_pop + γ L_dis` of the local target rows `rows [T, d]` (module docstring)."""
  logits = ncf.logits(model_config, net, jnp.broadcast_to(user, rows.shape), rows)
  l_exp = jnp.mean(bce(logits, 1.0))
  pop = classifier_logits(classifier, rows)
  top = jnp.full((rows.shape[0],), pop.shape[-1] - 1)
  l_pop = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(pop, top))
  l_dis = jnp.mean(jnp.sum(jnp.square(rows - received), axis=-1))
  return l_exp + pop_weight * l_pop + dist_weight * l_dis


def _check_weight(name: str, value) -> float:
  ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        and np.isfinite(value) and value >= 0)
  if not ok:
    raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
  return float(value)


def make_pipattack(model_config: ncf.NCFConfig, targets, *, train_csr=None,
                   num_items: int | None = None, num_levels: int = 3,
                   pop_weight: float = 1.0, dist_weight: float = 1.0, local_steps: int = 5,
                   lr: float = 0.01, user_lr: float = 0.01, classifier_steps: int = 20,
                   classifier_lr: float = 0.01, classifier_hidden: int = 32) -> Attack:
  """PipAttack (see the module docstring).

  Args:
    train_csr: `(indptr, items)` of the training interactions: the popularity the
      attacker knows (the task passes it, `attacks.TAKES_TRAINING_DATA`).
    num_items: catalogue size (default: the largest training item + 1; checked against `V`).
    num_levels: L >= 2 popularity levels.
    pop_weight, dist_weight: α and γ, >= 0.
  """
  targets = check_targets(targets)
  num_levels = check_count("num_levels", num_levels, minimum=2)
  pop_weight = _check_weight("pop_weight", pop_weight)
  dist_weight = _check_weight("dist_weight", dist_weight)
  local_steps = check_count("local_steps", local_steps)
  lr = check_positive("lr", lr)
  user_lr = check_positive("user_lr", user_lr)
  classifier_steps = check_count("classifier_steps", classifier_steps)
  classifier_lr = check_positive("classifier_lr", classifier_lr)
  classifier_hidden = check_count("classifier_hidden", classifier_hidden)
  if train_csr is None:
    raise ValueError("pipattack needs the training interactions (train_csr) for the item "
                     "popularity it knows")
  items = np.asarray(train_csr[1])
  if num_items is None:
    num_items = int(items.max()) + 1 if items.size else 0
  num_items = check_count("num_items", num_items)
  check_targets_in_catalogue(targets, num_items)
  if num_levels > num_items:
    raise ValueError(f"num_levels={num_levels} exceeds the {num_items} items")
  levels = jnp.asarray(popularity_levels(np.bincount(items, minlength=num_items), num_levels))
  num_targets = int(targets.size)
  target_ids = jnp.asarray(targets)
  dim = model_config.embed_dim
  opt = optax.adam(classifier_lr)

  check_catalogue = catalogue_check("pipattack", num_items, targets)

  def init(key: Array, num_attackers: int, public: PublicParams) -> PipAttackState:
    check_catalogue(public.item_emb.shape[0])
    key_user, key_clf = jax.random.split(key)
    user = model_config.embed_init_std * jax.random.normal(key_user, (num_attackers, dim))
    clf = jax.vmap(lambda k: init_classifier(k, dim, classifier_hidden, num_levels))(
        jax.random.split(key_clf, num_attackers))
    return PipAttackState(user, clf, jax.vmap(opt.init)(clf))

  def train_classifier(clf, clf_opt, item_emb):
    grad = jax.grad(classifier_loss)

    def step(_, carry):
      clf, clf_opt = carry
      updates, clf_opt = opt.update(grad(clf, item_emb, levels), clf_opt, clf)
      return optax.apply_updates(clf, updates), clf_opt

    return jax.lax.fori_loop(0, classifier_steps, step, (clf, clf_opt))

  def update(public: PublicParams, ctx: PyTree, state: PipAttackState, key: Array):
    del ctx, key
    check_catalogue(public.item_emb.shape[0])
    item_emb = jax.lax.stop_gradient(public.item_emb)
    clf, clf_opt = train_classifier(state.classifier, state.classifier_opt, item_emb)
    received = item_emb[target_ids]
    grad = jax.grad(lambda r, u, m: attack_loss(model_config, r, u, m, clf, received,
                                                pop_weight, dist_weight), argnums=(0, 1, 2))

    def step(_, carry):
      rows, user, acc_rows, acc_net = carry
      g_rows, g_user, g_net = grad(rows, user, public.net)
      return (rows - lr * g_rows, user - user_lr * g_user, acc_rows + g_rows,
              jax.tree.map(jnp.add, acc_net, g_net))

    zeros_net = jax.tree.map(jnp.zeros_like, public.net)
    _, user, g_rows, g_net = jax.lax.fori_loop(
        0, local_steps, step, (received, state.user_emb, jnp.zeros_like(received), zeros_net))
    up = ClientUpload(row_item=target_ids, row_grad=g_rows,
                      row_mask=jnp.ones((num_targets,), bool), net=g_net,
                      weight=jnp.asarray(num_targets, jnp.float32))
    return PipAttackState(user, clf, clf_opt), up

  return Attack(name="pipattack", init=init, update=update, num_rows=num_targets)
