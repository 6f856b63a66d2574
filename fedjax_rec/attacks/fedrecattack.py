"""FedRecAttack (Rong et al., ICDE 2022), after the public code (GitHub rdz98/FedRecAttack).

The attacker knows a share ξ of the public interactions: of each user's training items,
`ceil(ξ · n_u)` drawn once without replacement (the public code's `train.part-1%.txt`,
`data.sample_part_of_dataset`; here with the fixed seed `KNOWN_SEED`). With them it
keeps a surrogate, one embedding per known user, and every time it takes part in a round

1. trains the surrogate against the received item table `V` (frozen): `surrogate_steps`
   Adam steps (lr 0.01, the public `attack_lr`), each on a batch of 256 known users
   (`attack_batch_size`; default one shuffled pass over the users), of the BPR loss summed
   over the batch's known pairs, one negative per pair drawn uniformly from the items the
   user is not known to hold, fresh every step;
2. ranks, for each surrogate user, the items outside its known items and the targets, and
   pairs the j-th target the user is not known to hold with the user's (10 - j)-th ranked
   item (the public code pops its top-10 list from the end);
3. takes the gradient `g = ∂L/∂V` of the promotion loss summed over those (user, target,
   negative) triples, `l = s(u, v_neg) - s(u, v_target)`, `L = Σ (l if l >= 0 else e^l - 1)`;
4. uploads `num_rows` (κ = 60, `items_limit`) rows of `g`: the targets plus κ - T rows
   chosen at its first round, without replacement with probability proportional to
   `‖g_i + ε‖` (targets excluded; ε ~ N(0, 1e-7 I), the public code's noise), and kept
   for the rest of the run (`row_selection="top"`: the κ - T largest norms instead).
   Each row gets fresh noise ε and is clipped to L2 norm `clip` (`grad_limit` = 1).

Differences from the public code: there, one surrogate is shared by all attackers and
retrained once per round in which any attacker takes part; here each attacker (a vmapped
slot) keeps its own surrogate, trained when it takes part (once per global epoch under
the uniform round assignment). There, the attackers of a round split the surrogate
gradient between them (each subtracts what it uploaded from the shared gradient); here
each uploads the clipped gradient itself. There, the noise is added after clipping;
here before, so every uploaded row has norm <= `clip`. The claimed sample count
(`weight`, weighted FedAvg only) is κ. Only MF (`interaction="dot"`), as the public code.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_rec.attacks.a_hum import (catalogue_check, check_count, check_positive, check_targets,
                                      check_targets_in_catalogue)
from fedjax_rec.attacks.base import Attack
from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PublicParams, PyTree

KNOWN_SEED = 20211111  # the public code's seed (main.setup_seed)
TOP_K = 10             # negatives come from each surrogate user's top-10
NOISE_VAR = 1e-7       # the public code's noise variance (`noise(shape, std=1e-7)` as a covariance)
SURROGATE_STD = 0.01   # N(0, 0.01²) surrogate users
ROW_SELECTIONS = ("sample", "top")


class Known(NamedTuple):
  """The attacker's prior knowledge: known (surrogate user, item) pairs.

  Attributes:
    pair_user: [P] surrogate user index of each pair (0 .. num_users - 1).
    pair_item: [P] its item.
    user_items: [num_users, K] each surrogate user's known items, padded with `num_items`.
  """

  pair_user: np.ndarray
  pair_item: np.ndarray
  user_items: np.ndarray


class FedRecAttackState(NamedTuple):
  """One attacker's state (every leaf with a leading attacker axis once stacked)."""

  users: Array        # [S, d] surrogate user embeddings
  opt_state: PyTree   # their Adam state
  rows: Array         # [κ] the uploaded items (targets first)
  chosen: Array       # [] whether `rows` were chosen


def known_interactions(indptr: np.ndarray, items: np.ndarray, share: float, num_items: int,
                       seed: int = KNOWN_SEED) -> Known:
  """`ceil(share · n_u)` of each user's training items, drawn once with `seed`.

  Users without training items have no surrogate; surrogate users keep the users' order.
  """
  indptr = np.asarray(indptr, np.int64)
  items = np.asarray(items, np.int64)
  rng = np.random.default_rng(seed)
  per_user = []
  for u in range(len(indptr) - 1):
    own = items[indptr[u]:indptr[u + 1]]
    if own.size:
      per_user.append(np.sort(rng.choice(own, math.ceil(own.size * share), replace=False)))
  if not per_user:
    raise ValueError("fedrecattack: the training data holds no interaction to know")
  # The draws above stay one per user, in order (the fixed seed's stream); the layout is
  # vectorised: surrogate s's known items fill row s of `user_items`, padded with num_items.
  sizes = np.fromiter(map(len, per_user), np.int64, len(per_user))
  flat = np.concatenate(per_user).astype(np.int32)
  pair_user = np.repeat(np.arange(len(per_user), dtype=np.int32), sizes)
  column = np.arange(flat.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
  user_items = np.full((len(per_user), int(sizes.max())), num_items, np.int32)
  user_items[pair_user, column] = flat
  return Known(pair_user, flat, user_items)


def surrogate_loss(users: Array, item_emb: Array, pair_user: Array, pair_item: Array,
                   pair_neg: Array, pair_mask: Array) -> Array:
  """BPR `-log σ(s_p - s_n)` summed over the masked known pairs."""
  u = users[pair_user]
  diff = jnp.sum(u * (item_emb[pair_item] - item_emb[pair_neg]), axis=-1)
  return -jnp.sum(jnp.where(pair_mask, jax.nn.log_sigmoid(diff), 0.0))


def promotion_triples(users: Array, item_emb: Array, user_items: Array, targets: Array):
  """`(target_ok [S, T], negatives [S, T])`: which targets each surrogate user is not known
  to hold, and the ranked item each is paired with (the j-th such target: the (10-j)-th)."""
  scores = users @ item_emb.T
  rows = jnp.arange(users.shape[0])[:, None]
  scores = scores.at[rows, user_items].set(-jnp.inf, mode="drop")
  scores = scores.at[:, targets].set(-jnp.inf)
  top = jax.lax.top_k(scores, TOP_K)[1]                                      # [S, 10]
  held = jnp.any(user_items[:, :, None] == targets[None, None, :], axis=1)   # [S, T]
  ok = ~held
  slot = TOP_K - jnp.cumsum(ok, axis=1)                                      # 9, 8, ...
  negatives = jnp.take_along_axis(top, jnp.clip(slot, 0, TOP_K - 1), axis=1)
  return ok, negatives


def promotion_loss(item_emb: Array, users: Array, targets: Array, ok: Array,
                   negatives: Array) -> Array:
  """`Σ (l if l >= 0 else e^l - 1)`, `l = s(u, v_neg) - s(u, v_target)`, over `ok` pairs."""
  s_pos = users @ item_emb[targets].T                                        # [S, T]
  s_neg = jnp.sum(users[:, None, :] * item_emb[negatives], axis=-1)          # [S, T]
  l = s_neg - s_pos
  l = jnp.where(l >= 0, l, jnp.expm1(jnp.minimum(l, 0.0)))
  return jnp.sum(jnp.where(ok, l, 0.0))


def clip_rows(rows: Array, clip: float) -> Array:
  """Each row scaled down to L2 norm <= `clip` (rows within it unchanged)."""
  norm = jnp.linalg.norm(rows, axis=-1, keepdims=True)
  return rows * jnp.minimum(1.0, clip / jnp.maximum(norm, 1e-30))


def select_rows(key: Array, grad: Array, targets: Array, num_rows: int, how: str) -> Array:
  """`[κ]` items: the targets, then κ - T others by the norm of `grad + noise`."""
  key_noise, key_pick = jax.random.split(key)
  noisy = grad + math.sqrt(NOISE_VAR) * jax.random.normal(key_noise, grad.shape)
  norm = jnp.linalg.norm(noisy, axis=-1)
  extra = num_rows - targets.shape[0]
  if how == "top":
    score = norm
  else:  # without replacement, probability ∝ norm: Gumbel top-k of log-norms
    score = jnp.log(jnp.maximum(norm, 1e-30)) + jax.random.gumbel(key_pick, norm.shape)
  score = score.at[targets].set(-jnp.inf)
  chosen = jax.lax.top_k(score, extra)[1] if extra > 0 else jnp.zeros((0,), jnp.int32)
  return jnp.concatenate([targets, chosen.astype(jnp.int32)])


def make_fedrecattack(model_config, targets, *, train_csr=None, num_items: int | None = None,
                      known_share: float = 0.01, num_rows: int = 60, clip: float = 1.0,
                      surrogate_steps: int | None = None, surrogate_batch: int = 256,
                      surrogate_lr: float = 0.01, row_selection: str = "sample") -> Attack:
  """FedRecAttack (see the module docstring).

  Args:
    train_csr: `(indptr, items)` of the training interactions, from which the known
      share is drawn (the task passes it, `attacks.TAKES_TRAINING_DATA`).
    num_items: catalogue size (default: the largest training item + 1; checked against `V`).
    known_share: ξ in (0, 1].
    num_rows: κ, rows uploaded per attacker (>= the number of targets).
    clip: the per-row L2 bound of the uploads.
    surrogate_steps: Adam steps per round taken part in (default: one pass over the known
      users in batches of `surrogate_batch`).
  """
  if getattr(model_config, "interaction", "mlp") != "dot":
    raise ValueError("fedrecattack needs matrix factorisation (--model=mf, the dot "
                     "interaction): its surrogate and promotion loss score u · v")
  targets = check_targets(targets)
  if targets.size > TOP_K:
    raise ValueError(f"fedrecattack pairs each target with one of a user's top {TOP_K} "
                     f"items: at most {TOP_K} targets, got {targets.size}")
  ok = isinstance(known_share, (int, float, np.number)) and not isinstance(known_share, bool)
  if not (ok and 0 < known_share <= 1):
    raise ValueError(f"known_share must be in (0, 1], got {known_share!r}")
  num_rows = check_count("num_rows", num_rows)
  if num_rows < targets.size:
    raise ValueError(f"num_rows={num_rows} is below the {targets.size} target(s) it must "
                     "upload")
  clip = check_positive("clip", clip)
  surrogate_batch = check_count("surrogate_batch", surrogate_batch)
  surrogate_lr = check_positive("surrogate_lr", surrogate_lr)
  if row_selection not in ROW_SELECTIONS:
    raise ValueError(f"row_selection must be one of {ROW_SELECTIONS}, got {row_selection!r}")
  if train_csr is None:
    raise ValueError("fedrecattack needs the training interactions (train_csr) to draw its "
                     "known share from")
  indptr, items = (np.asarray(a) for a in train_csr)
  if num_items is None:
    num_items = int(items.max()) + 1 if items.size else 0
  num_items = check_count("num_items", num_items)
  check_targets_in_catalogue(targets, num_items)
  if num_rows > num_items:
    raise ValueError(f"num_rows={num_rows} exceeds the {num_items} items")
  known = known_interactions(indptr, items, float(known_share), num_items)
  num_surrogate = known.user_items.shape[0]
  num_batches = -(-num_surrogate // surrogate_batch)
  steps = num_batches if surrogate_steps is None else check_count("surrogate_steps",
                                                                 surrogate_steps)
  dim = model_config.embed_dim
  target_ids = jnp.asarray(targets)
  pair_user, pair_item = jnp.asarray(known.pair_user), jnp.asarray(known.pair_item)
  user_items = jnp.asarray(known.user_items)
  opt = optax.adam(surrogate_lr)

  check_catalogue = catalogue_check("fedrecattack", num_items, targets)

  def init(key: Array, num_attackers: int, public: PublicParams) -> FedRecAttackState:
    check_catalogue(public.item_emb.shape[0])
    users = SURROGATE_STD * jax.random.normal(key, (num_attackers, num_surrogate, dim))
    opt_state = jax.vmap(opt.init)(users)
    rows = jnp.broadcast_to(jnp.pad(target_ids, (0, num_rows - targets.size)),
                            (num_attackers, num_rows)).astype(jnp.int32)
    return FedRecAttackState(users, opt_state, rows, jnp.zeros((num_attackers,), bool))

  def negatives(key: Array) -> Array:
    """One uniform negative per known pair, outside the user's known items (4 tries)."""
    draws = jax.random.randint(key, (pair_user.shape[0], 4), 0, num_items)
    known_of = user_items[pair_user]                                         # [P, K]
    bad = jnp.any(draws[:, :, None] == known_of[:, None, :], axis=-1)        # [P, 4]
    first = jnp.argmin(bad, axis=1)
    return jnp.take_along_axis(draws, first[:, None], axis=1)[:, 0]

  def train_surrogate(users, opt_state, item_emb, key):
    key_perm, key_neg = jax.random.split(key)
    grad = jax.grad(surrogate_loss)

    def step(j, carry):
      users, opt_state = carry
      # Each pass over the users shuffles them afresh and cuts them into batches.
      perm = jax.random.permutation(jax.random.fold_in(key_perm, j // num_batches),
                                    num_surrogate)
      batch_of_pair = (jnp.argsort(perm) // surrogate_batch)[pair_user]
      neg = negatives(jax.random.fold_in(key_neg, j))
      mask = batch_of_pair == (j % num_batches)
      g = grad(users, item_emb, pair_user, pair_item, neg, mask)
      updates, opt_state = opt.update(g, opt_state, users)
      return optax.apply_updates(users, updates), opt_state

    return jax.lax.fori_loop(0, steps, step, (users, opt_state))

  def update(public: PublicParams, ctx: PyTree, state: FedRecAttackState, key: Array):
    del ctx
    check_catalogue(public.item_emb.shape[0])
    key_train, key_rows, key_noise = jax.random.split(key, 3)
    item_emb = jax.lax.stop_gradient(public.item_emb)
    users, opt_state = train_surrogate(state.users, state.opt_state, item_emb, key_train)
    ok, neg = promotion_triples(users, item_emb, user_items, target_ids)
    grad = jax.grad(promotion_loss)(item_emb, users, target_ids, ok, neg)
    rows = jnp.where(state.chosen, state.rows,
                     select_rows(key_rows, grad, target_ids, num_rows, row_selection))
    noise = math.sqrt(NOISE_VAR) * jax.random.normal(key_noise, (num_rows, dim))
    up = ClientUpload(row_item=rows, row_grad=clip_rows(grad[rows] + noise, clip),
                      row_mask=jnp.ones((num_rows,), bool),
                      net=jax.tree.map(jnp.zeros_like, public.net),
                      weight=jnp.asarray(num_rows, jnp.float32))
    return FedRecAttackState(users, opt_state, rows, jnp.ones((), bool)), up

  return Attack(name="fedrecattack", init=init, update=update, num_rows=num_rows)
