"""A-ra and A-hum (Rong et al., 2022), as the public code does them (docs/design.md).

Every round, each malicious client draws `num_users` (10) fresh users
`u ~ N(0, user_std² I)` (user_std 0.01). A-hum then turns each into a "hard
user": `hard_steps` (30) plain SGD steps of lr `hard_lr` (0.001) on the user
alone, minimising the mean BCE towards label 0 on the targets with the public
parameters frozen. A-ra skips that step (random users). The poisoning loss is the
mean BCE towards label 1 over all (user, target) pairs; the attacker uploads its
gradients with respect to the target rows of `V` and the MLP `Θ`, unscaled.

Public-code details kept: each user's hard steps use the gradient of its own mean
over targets (the users are independent); the users are re-drawn every round, so
the attacker has no persistent state (its state is a dummy `[num_attackers]`
array, there only so that the state has a leading attacker axis).

The claimed sample count (`weight`, used only by weighted FedAvg) is the number of
(user, target) pairs of the poisoning loss, `num_users · T`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_rec.attacks.base import Attack
from fedjax_rec.task import ClientUpload
from fedjax_rec.models import ncf
from fedjax_rec.types import Array, PublicParams, PyTree


# ---- helpers shared with the other attack modules ----------------------------------
def check_targets(targets) -> np.ndarray:
  """Validates target ids (1-D, non-empty, non-negative, distinct); returns int32."""
  arr = np.asarray(targets)
  if arr.ndim != 1 or arr.size == 0:
    raise ValueError(f"targets must be a non-empty 1-D list of item ids, got shape {arr.shape}")
  if not np.issubdtype(arr.dtype, np.integer):
    raise ValueError(f"targets must be integer item ids, got dtype {arr.dtype}")
  if arr.min() < 0:
    raise ValueError(f"targets must be non-negative item ids, got {int(arr.min())}")
  if np.unique(arr).size != arr.size:
    raise ValueError(f"targets must be distinct, got {arr.tolist()}")
  return arr.astype(np.int32)


def check_targets_in_catalogue(targets: np.ndarray, num_items: int) -> None:
  if int(targets.max()) >= num_items:
    raise ValueError(f"target item {int(targets.max())} is out of range for a catalogue "
                     f"of {num_items} items")


def catalogue_check(name: str, num_items: int | None, targets: np.ndarray):
  """`check(n)`: refuses an item table of `n` rows unlike the `num_items` an attack was
  built for (None: any), or one the targets fall outside of."""
  def check(n: int) -> None:
    if num_items is not None and n != num_items:
      raise ValueError(f"{name} was built for num_items={num_items} but V has {n} rows")
    check_targets_in_catalogue(targets, n)
  return check


def check_count(name: str, value, minimum: int = 1) -> int:
  """An integer hyper-parameter `>= minimum`, else a ValueError naming it."""
  ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum
  if not ok:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def check_positive(name: str, value) -> float:
  """A finite positive number, else a ValueError naming it."""
  ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        and np.isfinite(value) and value > 0)
  if not ok:
    raise ValueError(f"{name} must be a finite positive number, got {value!r}")
  return float(value)


def pair_logits(model_config: ncf.NCFConfig, mlp: PyTree, u: Array, v: Array) -> Array:
  """Logits of every user `u [n, d]` against every row `v [T, d]`: `[n, T]`."""
  shape = (u.shape[0], v.shape[0], u.shape[-1])
  return ncf.logits(model_config, mlp, jnp.broadcast_to(u[:, None, :], shape),
                    jnp.broadcast_to(v[None, :, :], shape))


def bce(logits: Array, label: float) -> Array:
  """Element-wise BCE of logits against a constant label."""
  return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label))


# ---- A-ra / A-hum --------------------------------------------------------------------
def draw_users(key: Array, num_users: int, dim: int, user_std: float) -> Array:
  """The round's random users `[num_users, d]` (A-ra's users, A-hum's starting point)."""
  return user_std * jax.random.normal(key, (num_users, dim))


def hard_users(model_config: ncf.NCFConfig, mlp: PyTree, target_rows: Array, users: Array,
               steps: int, lr: float) -> Array:
  """`steps` SGD steps of each user towards label 0 on the targets, public params frozen."""

  def loss(u):
    # Sum over users of each user's mean over targets: per-user gradients.
    return jnp.sum(jnp.mean(bce(pair_logits(model_config, mlp, u, target_rows), 0.0), axis=1))

  grad = jax.grad(loss)
  return jax.lax.fori_loop(0, steps, lambda _, u: u - lr * grad(u), users)


def poison_loss(model_config: ncf.NCFConfig, users: Array, target_rows: Array,
                mlp: PyTree) -> Array:
  """Mean BCE towards label 1 over all (user, target) pairs."""
  return jnp.mean(bce(pair_logits(model_config, mlp, users, target_rows), 1.0))


def _make(name: str, model_config: ncf.NCFConfig, targets, *, num_users: int, user_std: float,
          hard_steps: int, hard_lr: float) -> Attack:
  targets = check_targets(targets)
  num_targets = int(targets.size)
  dim = model_config.embed_dim
  target_ids = jnp.asarray(targets)

  def init(key: Array, num_attackers: int, public: PublicParams) -> PyTree:
    del key
    check_targets_in_catalogue(targets, public.item_emb.shape[0])
    return jnp.zeros((num_attackers,), jnp.float32)

  def update(public: PublicParams, ctx: PyTree, state: PyTree, key: Array):
    del ctx
    key_users, _ = jax.random.split(key)
    target_rows = public.item_emb[target_ids]
    users = draw_users(key_users, num_users, dim, user_std)
    if hard_steps > 0:
      users = hard_users(model_config, public.net, target_rows, users, hard_steps, hard_lr)
    users = jax.lax.stop_gradient(users)
    g_rows, g_mlp = jax.grad(lambda r, m: poison_loss(model_config, users, r, m),
                             argnums=(0, 1))(target_rows, public.net)
    up = ClientUpload(row_item=target_ids, row_grad=g_rows,
                      row_mask=jnp.ones((num_targets,), bool), net=g_mlp,
                      weight=jnp.asarray(num_users * num_targets, jnp.float32))
    return state, up

  return Attack(name=name, init=init, update=update)


def make_a_hum(model_config: ncf.NCFConfig, targets, *, num_users: int = 10,
               user_std: float = 0.01, hard_steps: int = 30, hard_lr: float = 0.001) -> Attack:
  """A-hum: hard users (see the module docstring)."""
  return _make("a_hum", model_config, targets,
               num_users=check_count("num_users", num_users),
               user_std=check_positive("user_std", user_std),
               hard_steps=check_count("hard_steps", hard_steps),
               hard_lr=check_positive("hard_lr", hard_lr))


def make_a_ra(model_config: ncf.NCFConfig, targets, *, num_users: int = 10,
              user_std: float = 0.01) -> Attack:
  """A-ra: random users, no hard-user steps."""
  return _make("a_ra", model_config, targets,
               num_users=check_count("num_users", num_users),
               user_std=check_positive("user_std", user_std), hard_steps=0, hard_lr=0.0)
