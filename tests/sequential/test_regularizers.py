"""FORTRESS server defense: surge flags, separation and variance steps."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec.tasks.sequential import regularizers as reg
from tests.sequential.conftest import FAST_COMPILE
from fedjax_rec.types import Uploads

N, D = 30, 4


def _uploads(items, grads):
  m = len(items)
  return Uploads(row_client=jnp.arange(m, dtype=jnp.int32), row_item=jnp.asarray(items, jnp.int32),
                 row_grad=jnp.asarray(grads, jnp.float32), row_mask=jnp.ones(m, bool), net={},
                 client_weight=jnp.ones(m), client_mask=jnp.ones(m, bool),
                 client_malicious=jnp.zeros(m, bool))


def test_promotions_count_uploads_that_raise_the_item_for_typical_users():
  direction = jnp.asarray([1.0, 0, 0, 0])
  # A server step -g along the typical-user direction promotes; NaN rows are ignored.
  ups = _uploads([3, 3, 5, 5, 6], [[-1, 0, 0, 0], [-3, 0, 0, 0], [2, 1, 0, 0], [0, 1, 0, 0],
                                   [np.nan, 0, 0, 0]])
  promoted = reg.promotions(ups, direction, N)
  assert promoted[3] == 2 and promoted.sum() == 2


def test_predicted_exposure_is_the_probes_top_k_share_with_their_own_items_masked():
  item_emb = jnp.eye(N, D)  # item i < D scores 1 for probes along axis i, the rest 0
  probes = reg.Probes(ids=jnp.asarray([[0, 5], [7, 8], [9, 10]]),
                      hidden=jnp.asarray([[1.0, 2, 0, 0], [1.0, 2, 0, 0], [0, 0, 0, 3.0]]))
  exposure = reg.predicted_exposure(probes, item_emb, k=1)
  # Probe 0 holds item 0: its top-1 is item 1; probe 1 ranks item 1 first; probe 2 item 3.
  np.testing.assert_allclose(np.asarray(exposure)[[1, 3]], [2 / 3, 1 / 3])
  assert float(exposure.sum()) == 1.0


def test_items_exposed_widely_but_rarely_promoted_are_flagged_after_warmup():
  cfg = reg.DefenseConfig(enabled=True, warmup_rounds=2, surge_exposure=0.1,
                          low_visibility_quantile=0.5)
  # Items 0..9 are promoted a lot and widely exposed; item 25 is exposed to 20% of the
  # probes although (almost) nobody promotes it.
  promoted = jnp.concatenate([jnp.full(10, 20.0), jnp.ones(20)]).at[25].set(0.0)
  exposure = jnp.concatenate([jnp.full(10, 0.5), jnp.zeros(20)]).at[25].set(0.2)
  state = reg.init_state(N)
  for _ in range(2):  # warm-up rounds: never flagged
    flagged, state = reg.surge_step(cfg, state, promoted, exposure)
    assert not flagged.any()
  flagged, new = reg.surge_step(cfg, state, promoted, exposure)
  assert np.flatnonzero(flagged).tolist() == [25]
  assert new.suspicion[25] == 1.0 and new.visibility[0] == 60.0 and int(new.rounds) == 3
  flagged, _ = reg.surge_step(cfg, state, promoted, exposure.at[25].set(0.05))
  assert not flagged.any()


def test_defense_moves_only_popular_and_separated_rows_and_reduces_both_losses():
  cfg = reg.DefenseConfig(enabled=True, num_popular=5, num_separate=6, num_neighbors=3,
                          warmup_rounds=100, steps=20, lr=0.1, var_weight=1.0)
  key = jax.random.key(0)
  emb = jax.random.normal(key, (N, D))
  emb = emb.at[7].set(3.0 * emb[:5].mean(axis=0))  # reaches far where the probes look
  # Visibility: items 0..4 popular; 5..14 mid; 15..29 the low-visibility half.
  state = reg.init_state(N)._replace(visibility=jnp.concatenate(
      [jnp.full(5, 100.0), jnp.full(10, 20.0), jnp.arange(15.0)]))
  # A suspicious item among the mid ones, flagged before (no new flags: still warming up).
  state = state._replace(suspicion=state.suspicion.at[7].set(1.0), rounds=jnp.asarray(5))
  cfg = dataclasses.replace(cfg, num_separate=2, num_low_visibility=4)
  ups = _uploads([0], [[0.0, 0, 0, 0]])
  encode = lambda ids: emb[ids].mean(axis=1)  # a stand-in encoder
  defend = jax.jit(lambda *a: reg.apply_defense(cfg, *a, encode, jax.random.key(1)),
                   compiler_options=FAST_COMPILE)
  new, _, metrics, _ = defend(emb, state, ups)
  moved = np.flatnonzero(np.abs(np.asarray(new - emb)).sum(1) > 0)
  assert set(moved.tolist()) <= set(range(5)) | {7} | set(range(15, 30))
  assert 7 in moved.tolist() and int(metrics["defense/separated"]) == 1 + 4
  pop_new, pop_old = new[:5], emb[:5]
  assert float(metrics["defense/sep_loss"]) > 0
  # The separated rows reach less far along the probe users' directions.
  probes = reg.make_probes(encode, state.visibility, cfg.num_probes, cfg.probe_len,
                           jax.random.split(jax.random.key(1))[0]).hidden
  others = np.setdiff1d(moved, np.arange(5))
  sep = lambda e: reg.separation_loss(probes, e[others], jnp.ones(len(others), bool), 0.0)
  assert float(sep(new)) < float(sep(emb))
  assert float(reg.variance_loss(pop_new, 3)) < float(reg.variance_loss(pop_old, 3))
