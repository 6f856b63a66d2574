"""FORTRESS server-side defense (SPEC §8, paper §3.4): surge flags, separation, variance.

Run after every round's FedAvg step, on the item table only. Our reading of the
formulas the extraction lost:

* Popularity, as the server can see it: `visibility[i]`, the cumulative number of
  uploads of row `i`. Popular items `P` = the `num_popular` most visible.
* Surges: an upload of row `i` *promotes* `i` when the server step it asks for,
  `−g`, points towards the popular centroid `ĉ` (normalised mean of `V[P]`), i.e. it
  makes `i` more like what users already like. `c_i` = promoting uploads this round,
  `C` = clients this round, `b_i` = the running promote rate (bias-corrected EMA,
  not updated on flagged rounds so a sustained attack stays visible). Row `i` is
  flagged when `c_i ≥ surge_min_count` and `(c_i − C b_i) / sqrt(C b_i + 1) > surge_z`
  (a Poisson z-score), after `warmup_rounds`. Flags decay (`suspicion`).
* Separation (margin between popular and suspicious or low-visibility items): for
  the selected items `S` (every suspicious item first, then a fresh random sample of
  items in the bottom `low_visibility_quantile` of visibility, `num_separate` in all),
  `L_sep = Σ_{j∈S} mean_{i∈P} max(0, cos(v_j, sg(v_i)) − margin)`.
* Variance (tight popular neighbourhoods): `N(i)` = the `num_neighbors` popular
  items nearest to popular `i` by cosine (itself included), `μ_i` their mean,
  `L_var = Σ_{i∈P} mean_{j∈N(i)} ‖v_j − μ_i‖²`.
* `steps` SGD steps of `sep_weight · L_sep + var_weight · L_var` on the rows of
  `P ∪ S`; every other row is left bit-identical.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedjax_rec.losses import normalize
from fedjax_rec.types import Array, Uploads


@dataclasses.dataclass(frozen=True)
class DefenseConfig:
  """Attributes: see the module docstring; `enabled` switches the defense on."""

  enabled: bool = False
  sep_weight: float = 1.0
  var_weight: float = 0.1
  margin: float = 0.0
  num_popular: int = 50
  num_separate: int = 100
  num_neighbors: int = 5
  low_visibility_quantile: float = 0.5
  surge_z: float = 3.0
  surge_min_count: int = 2
  baseline_rate: float = 0.05
  suspicion_decay: float = 0.8
  warmup_rounds: int = 8
  steps: int = 1
  lr: float = 0.5

  def __post_init__(self):
    if min(self.num_popular, self.num_separate, self.num_neighbors) < 1:
      raise ValueError("num_popular, num_separate and num_neighbors must be >= 1")
    if not 0 < self.low_visibility_quantile <= 1 or not 0 < self.baseline_rate <= 1:
      raise ValueError("low_visibility_quantile and baseline_rate must be in (0, 1]")
    if self.sep_weight < 0 or self.var_weight < 0 or self.lr <= 0 or self.steps < 0:
      raise ValueError("defense weights and steps must be >= 0, lr > 0")


class DefenseState(NamedTuple):
  """Attributes:
    visibility: [n] cumulative uploads per row.
    baseline: [n] running promote rate per client.
    suspicion: [n] decayed flag count.
    rounds: [] rounds seen.
  """

  visibility: Array
  baseline: Array
  suspicion: Array
  rounds: Array


def init_state(num_items: int) -> DefenseState:
  z = jnp.zeros(num_items, jnp.float32)
  return DefenseState(z, z, z, jnp.zeros((), jnp.int32))


def upload_counts(uploads: Uploads, centroid: Array, num_items: int) -> tuple[Array, Array]:
  """`(uploads [n], promoting uploads [n])` of the round's valid rows."""
  ok = uploads.row_mask & jnp.all(jnp.isfinite(uploads.row_grad), axis=-1)
  promote = ok & (uploads.row_grad @ centroid < 0)  # −g · ĉ > 0
  keys = jnp.where(ok, uploads.row_item, num_items)
  count = lambda m: jax.ops.segment_sum(m.astype(jnp.float32), keys, num_items + 1)[:num_items]
  return count(ok), count(promote)


def separation_loss(popular: Array, others: Array, others_mask: Array, margin: float) -> Array:
  """`Σ_j mean_i max(0, cos(v_j, sg(v_i)) − margin)` over the real `others`."""
  cos = normalize(others) @ normalize(jax.lax.stop_gradient(popular)).T  # [S, P]
  per_item = jnp.mean(jax.nn.relu(cos - margin), axis=1)
  return jnp.sum(jnp.where(others_mask, per_item, 0.0))


def variance_loss(popular: Array, num_neighbors: int) -> Array:
  """`Σ_i mean_{j∈N(i)} ‖v_j − μ_i‖²` over popular neighbourhoods (cosine kNN)."""
  unit = jax.lax.stop_gradient(normalize(popular))
  k = min(num_neighbors, popular.shape[0])
  _, nbr = jax.lax.top_k(unit @ unit.T, k)  # [P, k], itself first
  group = popular[nbr]  # [P, k, d]
  mu = jnp.mean(group, axis=1, keepdims=True)
  return jnp.sum(jnp.mean(jnp.sum((group - mu) ** 2, -1), -1))


def surge_step(config: DefenseConfig, state: DefenseState, uploads_n: Array,
               promote: Array, num_clients: Array) -> tuple[Array, DefenseState]:
  """Flags this round's surges and updates the running statistics."""
  expected = num_clients * state.baseline
  z = (promote - expected) / jnp.sqrt(expected + 1.0)
  flagged = ((z > config.surge_z) & (promote >= config.surge_min_count)
             & (state.rounds >= config.warmup_rounds))
  rate = jnp.maximum(config.baseline_rate, 1.0 / (state.rounds + 1.0))
  new_base = (1 - rate) * state.baseline + rate * promote / jnp.maximum(num_clients, 1.0)
  return flagged, DefenseState(
      visibility=state.visibility + uploads_n,
      baseline=jnp.where(flagged, state.baseline, new_base),
      suspicion=config.suspicion_decay * state.suspicion + flagged,
      rounds=state.rounds + 1)


def apply_defense(config: DefenseConfig, item_emb: Array, state: DefenseState,
                  uploads: Uploads, item_emb_before: Array, key: Array):
  """One round of the defense.

  Args:
    config: defense settings.
    item_emb: [n, d] the table after this round's FedAvg step.
    state: running statistics.
    uploads: the round's uploads (surge detection).
    item_emb_before: [n, d] the table the clients trained on (promote direction).
    key: PRNG key of the low-visibility sample.

  Returns:
    `(item_emb, state, metrics, flagged [n] bool)`.
  """
  n = item_emb.shape[0]
  num_pop = min(config.num_popular, n - 1)
  _, popular = jax.lax.top_k(state.visibility, num_pop)
  centroid = normalize(jnp.mean(item_emb_before[popular], axis=0))
  uploads_n, promote = upload_counts(uploads, centroid, n)
  flagged, state = surge_step(config, state, uploads_n, promote,
                              jnp.sum(uploads.client_mask).astype(jnp.float32))
  _, popular = jax.lax.top_k(state.visibility, num_pop)
  is_pop = jnp.zeros(n, bool).at[popular].set(True)
  suspicious = (state.suspicion >= 0.5) & ~is_pop
  cutoff = jnp.sort(state.visibility)[int(config.low_visibility_quantile * (n - 1))]
  low = (state.visibility <= cutoff) & ~is_pop
  noise = jax.random.uniform(key, (n,))
  priority = jnp.where(suspicious, 2.0 + state.suspicion, jnp.where(low, 1.0 + noise, -1.0))
  priority = jnp.where(is_pop, -2.0, priority)  # never selected: num_sep <= n - num_pop
  num_sep = min(config.num_separate, n - num_pop)
  top, selected = jax.lax.top_k(priority, num_sep)
  sel_mask = top > 0
  ids = jnp.concatenate([popular, selected]).astype(jnp.int32)

  def loss(sub):
    sep = separation_loss(sub[:num_pop], sub[num_pop:], sel_mask, config.margin)
    var = variance_loss(sub[:num_pop], config.num_neighbors)
    return config.sep_weight * sep + config.var_weight * var, (sep, var)

  sub0 = item_emb[ids]
  _, (sep0, var0) = loss(sub0)
  grad = jax.grad(lambda s: loss(s)[0])
  sub = jax.lax.fori_loop(0, config.steps, lambda _, s: s - config.lr * grad(s), sub0)
  metrics = {"defense/flagged": jnp.sum(flagged), "defense/suspicious": jnp.sum(suspicious),
             "defense/separated": jnp.sum(sel_mask), "defense/sep_loss": sep0,
             "defense/var_loss": var0}
  return item_emb.at[ids].set(sub), state, metrics, flagged
