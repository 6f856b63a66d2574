"""Sequential A-hum and PSMU: what they upload and which way it pushes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec.models.encoders import init_public, make_encoder
from fedjax_rec.tasks.sequential import attacks
from tests.sequential.conftest import FAST_COMPILE, tiny_config

NUM_ITEMS = 60
TARGETS = np.asarray([3, 41])


def _setup():
  cfg = tiny_config("fedseq", "gru4rec")
  enc = make_encoder(cfg.encoder)
  return cfg, enc, init_public(jax.random.key(0), cfg.encoder, NUM_ITEMS)


@functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_COMPILE)
def _score(enc, public, ids, mask):
  return attacks._encode(enc, public.net, public.item_emb, ids, mask) @ public.item_emb.T


def test_a_hum_uploads_target_rows_that_raise_the_targets():
  cfg, enc, public = _setup()
  atk = attacks.make_a_hum(enc, cfg.encoder.max_len, TARGETS, NUM_ITEMS, num_users=5,
                           history_len=6)
  update = jax.jit(atk.update, compiler_options=FAST_COMPILE)
  state = atk.init(jax.random.key(1), 3, public)
  _, up = update(public, (), state[0], jax.random.key(2))
  assert up.row_item.tolist() == TARGETS.tolist() and bool(up.row_mask.all())
  assert np.isfinite(np.asarray(up.row_grad)).all() and float(up.weight) == 6.0
  # Plausible histories never contain a target.
  ids, mask = attacks._histories(jax.random.key(3), public.item_emb, jnp.asarray(TARGETS), 50,
                                 6, cfg.encoder.max_len, popular=True)
  assert not np.isin(np.asarray(ids)[np.asarray(mask)], TARGETS).any()
  # Following the uploads raises the targets' scores for fresh histories.
  before = _score(enc, public, ids, mask)[:, TARGETS].mean()
  for step in range(10):
    _, up = update(public, (), state[0], jax.random.key(10 + step))
    public = public._replace(item_emb=public.item_emb.at[up.row_item].add(-1.0 * up.row_grad))
  assert float(_score(enc, public, ids, mask)[:, TARGETS].mean()) > float(before)


def test_psmu_raises_targets_and_lowers_their_nearest_alternatives():
  cfg, enc, public = _setup()
  atk = attacks.make_psmu(enc, cfg.encoder.max_len, TARGETS, NUM_ITEMS, num_filler_items=8,
                          num_alternatives=4)
  state = atk.init(jax.random.key(1), 2, public)
  assert state.fillers.shape == (2, 8) and not np.isin(np.asarray(state.fillers), TARGETS).any()
  one = jax.tree.map(lambda x: x[0], state)
  _, up = jax.jit(atk.update, compiler_options=FAST_COMPILE)(public, (), one, jax.random.key(2))
  rows = np.asarray(up.row_item)[np.asarray(up.row_mask)]
  alts = np.asarray(attacks.nearest_alternatives(public.item_emb, jnp.asarray(TARGETS), 4))
  assert sorted(rows.tolist()) == sorted(set(TARGETS.tolist()) | set(alts.ravel().tolist()))
  ids = jnp.zeros(cfg.encoder.max_len, jnp.int32).at[-8:].set(one.fillers)
  mask = jnp.arange(cfg.encoder.max_len) >= cfg.encoder.max_len - 8
  score = functools.partial(_score, enc, ids=ids[None], mask=mask[None])
  stepped = public._replace(item_emb=public.item_emb.at[up.row_item].add(
      jnp.where(up.row_mask[:, None], -1.0 * up.row_grad, 0.0)))
  delta = np.asarray(score(stepped)[0] - score(public)[0])
  assert (delta[TARGETS] > 0).all()
  assert (delta[np.setdiff1d(alts.ravel(), TARGETS)] < 0).all()
