"""FORTRESS server-side defense (docs/design.md, paper §3.4): surge flags, separation, variance.

Run after every round's FedAvg step, on the item table only, with public parameters
and the round's uploads only. Our reading of the formulas the extraction lost:

* Typical users, as the server can probe them: the encoder's outputs `h_m` for
  `num_probes` sequences of `probe_len` distinct items drawn by observed popularity
  (fresh each round); `μ̂` their normalised mean.
* Observed popularity (`visibility`): an upload `g` of row `i` *promotes* `i` when
  the server step it asks for raises `i` for typical users (`−g · μ̂ > 0`: a benign
  positive does, a sampled negative does not). `visibility[i]` counts promotions
  over all rounds; popular items `P` = the `num_popular` most visible.
* Predicted exposure: the share of probes whose top-`surge_k` (their own items
  masked, as in evaluation) contains the item: the model's own ER@K of it.
* Promotion surges: an item is flagged when its predicted exposure reaches
  `surge_exposure` while its observed popularity lies in the bottom
  `low_visibility_quantile` (after `warmup_rounds`): the model is pushing to many
  users an item that almost nobody promotes. Flags decay (`suspicion_decay`); an item
  flagged in the last few rounds is *suspicious*.
* Separation (margin between popular and suspicious or low-visibility items): for
  the selected items `S` (the suspicious ones, up to `num_separate`, then a fresh
  random sample of `num_low_visibility` low-visibility items),
  `L_sep = Σ_{j∈S} mean_m max(0, v_j · sg(ĥ_m) − margin)`: the popular side is seen
  through the probe users `h_m` built from popular items, so the margin is on the
  scores that rank items for such users (popular item embeddings themselves need not
  point where users look), and a reach (not a cosine) cannot be escaped by growing
  `‖v_j‖`.
* Variance (tight popular neighbourhoods): `N(i)` = the `num_neighbors` popular
  items nearest to popular `i` by cosine (itself included), `μ_i` their mean,
  `L_var = Σ_{i∈P} mean_{j∈N(i)} ‖v_j − μ_i‖²`.
* `steps` SGD steps of `sep_weight · L_sep + var_weight · L_var` on the rows of
  `P ∪ S`; every other row is left bit-identical.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedjax_rec.losses import normalize
from fedjax_rec.types import Array, Uploads


@dataclasses.dataclass(frozen=True)
class DefenseConfig:
  """Attributes: see the module docstring; `enabled` switches the defense on."""

  enabled: bool = False
  sep_weight: float = 1.0
  var_weight: float = 0.01
  margin: float = 0.0
  num_popular: int = 50
  num_separate: int = 50
  num_low_visibility: int = 20
  num_neighbors: int = 5
  low_visibility_quantile: float = 0.5
  surge_k: int = 10
  surge_exposure: float = 0.05
  num_probes: int = 64
  probe_len: int = 50
  suspicion_decay: float = 0.9
  warmup_rounds: int = 4
  steps: int = 3
  lr: float = 0.5

  def __post_init__(self):
    if min(self.num_popular, self.num_separate, self.num_neighbors) < 1:
      raise ValueError("num_popular, num_separate and num_neighbors must be >= 1")
    if self.num_low_visibility < 0 or not 0 < self.low_visibility_quantile <= 1:
      raise ValueError("num_low_visibility must be >= 0, low_visibility_quantile in (0, 1]")
    if not 0 < self.surge_exposure <= 1 or min(self.num_probes, self.probe_len,
                                                self.surge_k) < 1:
      raise ValueError("surge_exposure must be in (0, 1], num_probes, probe_len, surge_k >= 1")
    if self.sep_weight < 0 or self.var_weight < 0 or self.lr <= 0 or self.steps < 0:
      raise ValueError("defense weights and steps must be >= 0, lr > 0")


class DefenseState(NamedTuple):
  """Attributes:
    visibility: [n] cumulative promoting uploads per row (observed popularity).
    suspicion: [n] decayed flag count.
    rounds: [] rounds seen.
  """

  visibility: Array
  suspicion: Array
  rounds: Array


def init_state(num_items: int) -> DefenseState:
  z = jnp.zeros(num_items, jnp.float32)
  return DefenseState(z, z, jnp.zeros((), jnp.int32))


def promotions(uploads: Uploads, direction: Array, num_items: int) -> Array:
  """[n] the round's promoting uploads per row: valid rows with `−g · direction > 0`."""
  ok = uploads.row_mask & jnp.all(jnp.isfinite(uploads.row_grad), axis=-1)
  promote = ok & (uploads.row_grad @ direction < 0)
  keys = jnp.where(promote, uploads.row_item, num_items)
  return jax.ops.segment_sum(promote.astype(jnp.float32), keys, num_items + 1)[:num_items]


class Probes(NamedTuple):
  """Attributes:
    ids: [M, k] the probe sequences' items.
    hidden: [M, d] their user representations.
  """

  ids: Array
  hidden: Array


def make_probes(encode: Callable[[Array], Array], visibility: Array, num_probes: int,
                probe_len: int, key: Array) -> Probes:
  """Probe users: sequences of distinct items drawn by observed popularity.

  Args:
    encode: `ids [M, k] -> [M, d]`, the user representations of `M` sequences.
    visibility: [n] observed popularity; each probe holds `probe_len` distinct items
      drawn with probability proportional to `visibility + 1` (Gumbel top-k), in
      random order.
    num_probes: `M`.
    probe_len: items per probe.
    key: PRNG key.
  """
  n = visibility.shape[0]
  gumbel = jax.random.gumbel(key, (num_probes, n))
  _, picks = jax.lax.top_k(jnp.log(visibility + 1.0)[None, :] + gumbel, min(probe_len, n))
  return Probes(picks, encode(picks))


def predicted_exposure(probes: Probes, item_emb: Array, k: int) -> Array:
  """[n] share of probes whose top-k (own items masked) holds each item."""
  num, n = probes.ids.shape[0], item_emb.shape[0]
  scores = probes.hidden @ item_emb.T
  scores = scores.at[jnp.arange(num)[:, None], probes.ids].set(-jnp.inf)
  _, top = jax.lax.top_k(scores, min(k, n))
  return jnp.zeros(n).at[top.reshape(-1)].add(1.0) / num


def surge_step(config: DefenseConfig, state: DefenseState, promoted: Array,
               exposure: Array) -> tuple[Array, DefenseState]:
  """Flags this round's surges and updates the running statistics.

  Args:
    config: thresholds.
    state: statistics before the round.
    promoted: [n] this round's promoting uploads.
    exposure: [n] predicted exposure after the round's step.
  """
  n = exposure.shape[0]
  visibility = state.visibility + promoted
  low_cut = jnp.sort(visibility)[int(config.low_visibility_quantile * (n - 1))]
  flagged = ((exposure >= config.surge_exposure) & (visibility <= low_cut)
             & (state.rounds >= config.warmup_rounds))
  return flagged, DefenseState(visibility=visibility,
                               suspicion=config.suspicion_decay * state.suspicion + flagged,
                               rounds=state.rounds + 1)


def separation_loss(anchors: Array, others: Array, others_mask: Array, margin: float) -> Array:
  """`Σ_j mean_a max(0, v_j · sg(â) − margin)` over the real `others`.

  `v_j · â` is how far item `j` reaches along anchor direction `a` (a probe user
  built from popular items), which is what such a user scores `j` by. Unlike a
  cosine, its gradient does not shrink as `‖v_j‖` grows, so a target whose norm an
  attack inflates cannot outrun it.
  """
  reach = others @ normalize(jax.lax.stop_gradient(anchors)).T  # [S, A]
  per_item = jnp.mean(jax.nn.relu(reach - margin), axis=1)
  return jnp.sum(jnp.where(others_mask, per_item, 0.0))


def variance_loss(popular: Array, num_neighbors: int) -> Array:
  """`Σ_i mean_{j∈N(i)} ‖v_j − μ_i‖²` over popular neighbourhoods (cosine kNN)."""
  unit = jax.lax.stop_gradient(normalize(popular))
  k = min(num_neighbors, popular.shape[0])
  _, nbr = jax.lax.top_k(unit @ unit.T, k)  # [P, k], itself first
  group = popular[nbr]  # [P, k, d]
  mu = jnp.mean(group, axis=1, keepdims=True)
  return jnp.sum(jnp.mean(jnp.sum((group - mu) ** 2, -1), -1))


def apply_defense(config: DefenseConfig, item_emb: Array, state: DefenseState,
                  uploads: Uploads, encode: Callable[[Array], Array], key: Array):
  """One round of the defense.

  Args:
    config: defense settings.
    item_emb: [n, d] the table after this round's FedAvg step.
    state: running statistics.
    uploads: the round's uploads.
    encode: `ids [M, k] -> [M, d]`: the public encoder's user representations of `M`
      sequences of `k` items (the probes), at the round's parameters.
    key: PRNG key of the probes and of the low-visibility sample.

  Returns:
    `(item_emb, state, metrics, flagged [n] bool)`.
  """
  n = item_emb.shape[0]
  key_probe, key_low = jax.random.split(key)
  num_pop = min(config.num_popular, n - 1)
  probes = make_probes(encode, state.visibility, config.num_probes, config.probe_len,
                       key_probe)
  direction = normalize(jnp.mean(probes.hidden, axis=0))
  flagged, state = surge_step(config, state, promotions(uploads, direction, n),
                              predicted_exposure(probes, item_emb, config.surge_k))
  _, popular = jax.lax.top_k(state.visibility, num_pop)
  is_pop = jnp.zeros(n, bool).at[popular].set(True)
  suspicious = (state.suspicion >= 0.5) & ~is_pop
  cutoff = jnp.sort(state.visibility)[int(config.low_visibility_quantile * (n - 1))]
  low = (state.visibility <= cutoff) & ~is_pop
  # Suspicious items by decreasing suspicion, then a random low-visibility sample.
  num_sus = min(config.num_separate, n - num_pop)
  top_sus, sus_ids = jax.lax.top_k(jnp.where(suspicious, state.suspicion, -1.0), num_sus)
  num_low = min(config.num_low_visibility, n - num_pop - num_sus)
  noise = jax.random.uniform(key_low, (n,))
  taken = is_pop.at[sus_ids].set(True)
  top_low, low_ids = jax.lax.top_k(jnp.where(low & ~taken, noise, -1.0), num_low)
  selected = jnp.concatenate([sus_ids, low_ids])
  sel_mask = jnp.concatenate([top_sus > 0, top_low >= 0])
  ids = jnp.concatenate([popular, selected]).astype(jnp.int32)

  def loss(sub):
    sep = separation_loss(probes.hidden, sub[num_pop:], sel_mask, config.margin)
    var = variance_loss(sub[:num_pop], config.num_neighbors)
    return config.sep_weight * sep + config.var_weight * var, (sep, var)

  sub0 = item_emb[ids]
  _, (sep0, var0) = loss(sub0)
  grad = jax.grad(lambda s: loss(s)[0])
  sub = jax.lax.fori_loop(0, config.steps, lambda _, s: s - config.lr * grad(s), sub0)
  metrics = {"defense/flagged": jnp.sum(flagged), "defense/suspicious": jnp.sum(suspicious),
             "defense/separated": jnp.sum(sel_mask), "defense/sep_loss": sep0,
             "defense/var_loss": var0}
  # Filler slots (not selected) may repeat a row; they add nothing.
  moved = jnp.concatenate([jnp.ones(num_pop, bool), sel_mask])
  return item_emb.at[ids].add(jnp.where(moved[:, None], sub - sub0, 0.0)), state, metrics, flagged
