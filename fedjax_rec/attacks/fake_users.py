"""Data-poisoning baselines as fake users: Random, Popular and Bandwagon.

Each attacker is a fake user with a crafted profile: the targets plus `num_filler_items`
filler items, all positives. Every round it takes part in, it trains exactly like a benign
client on that profile: the task lends its own local update at build time
(`BenignTraining`: the same objective, optimizers, local epochs and upload), so the fake
user keeps a private state like a benign user's (its embedding and that embedding's
optimizer state) and uploads the benign `ClientUpload`. Its negatives follow the benign
rule (`data.split.sample_negatives`): `num_negatives` per profile item, drawn uniformly
with replacement from the items outside the profile, merged into weighted distinct rows
(positives first, by id; then each distinct negative once, by id, weighted by its draws).
They are redrawn at every participation when the task redraws the benign negatives every
epoch (a fake user takes part once per epoch), else drawn once at init.

The profiles follow the baselines of the public FedRecAttack code (GitHub
rdz98/FedRecAttack, `main.py`), whose fake users hold `items_limit // 2` = 30 items,
targets included (`items_limit` 60 counts the uploaded rows: one negative per positive):

- `random_fake`: fillers uniform without replacement over the non-target items, one draw
  per fake user.
- `popular_fake`: the most popular non-target items by training counts (ties: the lower
  id), the same profile for every fake user.
- `bandwagon_fake`: `int(popular_share · (T + N))` fillers (at least 1; the public code's
  `int(items_limit // 2 · 0.1)` = 3 of 30) drawn uniformly from the top tenth of the
  catalogue by training counts (targets excluded), the rest uniform over the remaining
  non-profile items, one draw per fake user. The 10% share keeps the public code's
  constant: a bandwagon profile looks like a random user's who also holds a few hits,
  which is what sets it apart from the Popular profile.

`num_filler_items` (N) defaults to `30 - T`, the public code's profile size.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec.attacks.a_hum import check_count, check_targets, check_targets_in_catalogue
from fedjax_rec.attacks.base import Attack
from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PublicParams, PyTree

PROFILE_SIZE = 30         # the public code's items_limit // 2, targets included
POPULAR_SHARE = 0.1       # bandwagon: share of the profile drawn from the popular pool
POPULAR_POOL_SHARE = 0.1  # bandwagon: the popular pool, the top tenth of the catalogue
PROFILES = ("random", "popular", "bandwagon")


class BenignTraining(NamedTuple):
  """A task's benign local training, lent to the fake-user attacks at build time.

  Attributes:
    init_private: `(key, n) -> private`: `n` fresh private client states (every leaf
      `[n, ...]`), as the task initialises its benign users.
    update: `(public, ctx, private, item [L], label [L], weight [L], mask [L], key) ->
      (private, ClientUpload)`: one client's local update on weighted distinct rows,
      positives first (the task's `client_update`).
    num_negatives: negatives drawn per positive.
    resample_negatives: whether the task redraws its negatives every epoch.
  """

  init_private: Callable[[Array, int], PyTree]
  update: Callable[..., tuple[PyTree, ClientUpload]]
  num_negatives: int
  resample_negatives: bool


class FakeUserState(NamedTuple):
  """One fake user's state (every leaf with a leading attacker axis once stacked)."""

  private: PyTree   # the task's private client state
  profile: Array    # [P] targets, then fillers
  key_neg: Array    # [2] uint32 key data of negatives drawn once (tasks that never redraw)


def draw_negatives(key: Array, profile: Array, num_items: int, per_positive: int) -> Array:
  """`[P · per_positive]` items drawn uniformly with replacement outside `profile`."""
  size = profile.shape[0]
  held = jnp.zeros((num_items,), bool).at[profile].set(True)
  outside = jnp.argsort(held, stable=True)[:num_items - size]
  return outside[jax.random.randint(key, (size * per_positive,), 0, num_items - size)]


def weighted_rows(profile: Array, negatives: Array):
  """`(item, label, weight, mask)`, each `[P + len(negatives)]`: the benign row layout.

  The profile's rows (weight 1) sorted by id, then each distinct negative once, sorted,
  weighted by its count, then padding (item 0, weight 0, mask False).
  """
  size, num_neg = profile.shape[0], negatives.shape[0]
  pos = jnp.sort(profile).astype(jnp.int32)
  if num_neg == 0:
    return pos, jnp.ones((size,)), jnp.ones((size,)), jnp.ones((size,), bool)
  neg = jnp.sort(negatives).astype(jnp.int32)
  first = jnp.concatenate([jnp.ones((1,), bool), neg[1:] != neg[:-1]])
  segment = jnp.cumsum(first) - 1
  counts = jax.ops.segment_sum(jnp.ones((num_neg,)), segment, num_segments=num_neg)
  ids = jnp.zeros((num_neg,), jnp.int32).at[segment].set(neg)
  real = jnp.arange(num_neg) < jnp.sum(first)
  item = jnp.concatenate([pos, jnp.where(real, ids, 0)])
  label = jnp.concatenate([jnp.ones((size,)), jnp.zeros((num_neg,))])
  weight = jnp.concatenate([jnp.ones((size,)), jnp.where(real, counts, 0.0)])
  return item, label, weight, jnp.concatenate([jnp.ones((size,), bool), real])


def popular_items(popularity: np.ndarray, exclude: np.ndarray, count: int) -> np.ndarray:
  """The `count` most popular items outside `exclude` (ties: the lower id), most popular
  first."""
  pop = np.asarray(popularity, np.float64).copy()
  pop[np.asarray(exclude)] = -np.inf
  return np.lexsort((np.arange(pop.size), -pop))[:count].astype(np.int32)


def uniform_fillers(key: Array, num_items: int, exclude: Array, count: int) -> Array:
  """`count` distinct items uniform over those outside `exclude` (top-k of uniform scores)."""
  scores = jax.random.uniform(key, (num_items,)).at[exclude].set(-1.0)
  return jax.lax.top_k(scores, count)[1].astype(jnp.int32)


def check_popularity(name: str, popularity, num_items: int | None = None) -> np.ndarray:
  if popularity is None:
    raise ValueError(f"{name} needs the training popularity (popularity: the items' "
                     "training counts)")
  pop = np.asarray(popularity)
  if pop.ndim != 1 or pop.size == 0 or not np.all(np.isfinite(pop)):
    raise ValueError(f"{name}: popularity must be a finite 1-D array, got shape {pop.shape}")
  if num_items is not None and pop.size != num_items:
    raise ValueError(f"{name}: popularity has {pop.size} items but V has {num_items} rows")
  return pop


def _make(profile_kind: str, model_config, targets, *, benign: BenignTraining | None,
          popularity, num_items: int | None, num_filler_items: int | None,
          popular_share: float) -> Attack:
  del model_config  # the lent local training carries the model
  name = f"{profile_kind}_fake"
  targets = check_targets(targets)
  num_targets = int(targets.size)
  if num_filler_items is None:
    if num_targets >= PROFILE_SIZE:
      raise ValueError(f"{name}: {num_targets} targets leave no filler of the default "
                       f"{PROFILE_SIZE}-item profile; set num_filler_items")
    num_filler_items = PROFILE_SIZE - num_targets
  num_filler = check_count("num_filler_items", num_filler_items)
  if benign is None:
    raise ValueError(f"{name} needs the task's benign local training (benign=...)")
  if not 0 < popular_share <= 1:
    raise ValueError(f"popular_share must be in (0, 1], got {popular_share!r}")
  pop = None if profile_kind == "random" else check_popularity(name, popularity)
  size = num_targets + num_filler
  num_popular = min(num_filler, max(1, int(popular_share * size)))
  target_ids = jnp.asarray(targets)

  def check_catalogue(n: int) -> None:
    if num_items is not None and n != num_items:
      raise ValueError(f"{name} was built for num_items={num_items} but V has {n} rows")
    check_targets_in_catalogue(targets, n)
    if pop is not None:
      check_popularity(name, pop, n)
    if size >= n:
      raise ValueError(f"num_filler_items={num_filler} with {num_targets} target(s) leaves "
                       f"no item outside the profile among the {n} items (negatives need one)")
    if profile_kind == "bandwagon":
      pool = max(int(POPULAR_POOL_SHARE * n), num_popular)
      if pool > n - num_targets:
        raise ValueError(f"bandwagon_fake: {num_popular} popular fillers exceed the "
                         f"{n - num_targets} non-target items")

  if num_items is not None:  # the catalogue is known at build time: check it now
    check_catalogue(check_count("num_items", num_items))

  def fillers(key: Array, n: int, num_attackers: int) -> Array:
    """`[num_attackers, N]` filler items (distinct, no targets)."""
    keys = jax.random.split(key, num_attackers)
    if profile_kind == "random":
      return jax.vmap(lambda k: uniform_fillers(k, n, target_ids, num_filler))(keys)
    if profile_kind == "popular":
      top = jnp.asarray(popular_items(pop, targets, num_filler))
      return jnp.broadcast_to(top, (num_attackers, num_filler))
    pool = jnp.asarray(popular_items(pop, targets, max(int(POPULAR_POOL_SHARE * n),
                                                        num_popular)))

    def one(k):
      key_pop, key_rest = jax.random.split(k)
      hits = pool[uniform_fillers(key_pop, pool.shape[0], jnp.zeros((0,), jnp.int32),
                                  num_popular)]
      rest = uniform_fillers(key_rest, n, jnp.concatenate([target_ids, hits]),
                             num_filler - num_popular)
      return jnp.concatenate([hits, rest])

    return jax.vmap(one)(keys)

  def init(key: Array, num_attackers: int, public: PublicParams) -> FakeUserState:
    n = public.item_emb.shape[0]
    check_catalogue(n)
    key_private, key_fill, key_neg = jax.random.split(key, 3)
    filler = fillers(key_fill, n, num_attackers)
    profile = jnp.concatenate([jnp.broadcast_to(target_ids, (num_attackers, num_targets)),
                               filler], axis=1).astype(jnp.int32)
    key_neg = jax.random.key_data(jax.random.split(key_neg, num_attackers))
    return FakeUserState(benign.init_private(key_private, num_attackers), profile, key_neg)

  def update(public: PublicParams, ctx: PyTree, state: FakeUserState, key: Array):
    n = public.item_emb.shape[0]
    check_catalogue(n)
    key_neg, key_train = jax.random.split(key)
    if not benign.resample_negatives:
      key_neg = jax.random.wrap_key_data(state.key_neg)
    negatives = draw_negatives(key_neg, state.profile, n, benign.num_negatives)
    item, label, weight, mask = weighted_rows(state.profile, negatives)
    private, up = benign.update(public, ctx, state.private, item, label, weight, mask,
                                key_train)
    return state._replace(private=private), up

  return Attack(name=name, init=init, update=update,
                num_rows=size * (1 + benign.num_negatives))


def make_random_fake(model_config, targets, *, benign: BenignTraining | None = None,
                     num_items: int | None = None,
                     num_filler_items: int | None = None) -> Attack:
  """Random fake users (see the module docstring).

  Args:
    benign: the task's benign local training (the task passes it,
      `attacks.TAKES_BENIGN_TRAINING`).
    num_items: catalogue size (optional: checked against `V` when given).
    num_filler_items: N fillers per profile (>= 1; default 30 - T).
  """
  return _make("random", model_config, targets, benign=benign, popularity=None,
               num_items=num_items, num_filler_items=num_filler_items,
               popular_share=POPULAR_SHARE)


def make_popular_fake(model_config, targets, *, benign: BenignTraining | None = None,
                      popularity=None, num_items: int | None = None,
                      num_filler_items: int | None = None) -> Attack:
  """Popular fake users: `popularity` is the items' training counts."""
  return _make("popular", model_config, targets, benign=benign, popularity=popularity,
               num_items=num_items, num_filler_items=num_filler_items,
               popular_share=POPULAR_SHARE)


def make_bandwagon_fake(model_config, targets, *, benign: BenignTraining | None = None,
                        popularity=None, num_items: int | None = None,
                        num_filler_items: int | None = None,
                        popular_share: float = POPULAR_SHARE) -> Attack:
  """Bandwagon fake users: `popular_share` of the profile from the popular tenth."""
  return _make("bandwagon", model_config, targets, benign=benign, popularity=popularity,
               num_items=num_items, num_filler_items=num_filler_items,
               popular_share=popular_share)
