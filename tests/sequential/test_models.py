"""SASRec and GRU4Rec: causality, padding invariance, no gradient into padding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec.models.encoders import EncoderConfig, lookup, make_encoder
from tests.sequential.conftest import FAST_COMPILE

L, D = 8, 16


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_causal_and_blind_to_padding(name):
  enc = make_encoder(EncoderConfig(name=name, embed_dim=D, max_len=L))  # 2 blocks, dropout
  params = enc.init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (3, L, D))
  mask = jnp.arange(L)[None, :] >= L - jnp.asarray([L, 5, 2])[:, None]  # left-padded
  # Row t of `changed` alters the item at position t.
  changed = x[None] + 3.0 * jax.nn.one_hot(jnp.arange(L), L)[:, None, :, None]
  noise = 5.0 * jax.random.normal(jax.random.key(3), x.shape) * (~mask)[..., None]
  rows = jax.random.normal(jax.random.key(4), (3 * L, D))
  idx = jnp.arange(3 * L).reshape(3, L)  # every position its own row

  def outputs(params):
    run = lambda x, key: enc.apply(params, x, mask, key)
    many = jax.vmap(run, in_axes=(0, None))
    loss = lambda r: jnp.sum(run(lookup(r, params["mask_token"], idx, mask), None) ** 2)
    return (run(x, None), many(changed, None), run(x, jax.random.key(7)),
            many(changed, jax.random.key(7)), run(x + noise, None), jax.grad(loss)(rows))

  outputs = jax.jit(outputs, compiler_options=FAST_COMPILE)
  h, h_changed, h_train, h_train_changed, h_noise, g = map(np.asarray, outputs(params))
  for base, alt in ((h, h_changed), (h_train, h_train_changed)):  # eval and dropout on
    for t in range(L):
      np.testing.assert_array_equal(alt[t][:, :t], base[:, :t])  # earlier outputs unchanged
      assert np.abs(alt[t][0, t] - base[0, t]).max() > 1e-4  # it does reach position t
  np.testing.assert_allclose(h_noise, h, rtol=1e-6, atol=1e-6)  # padding content is invisible
  assert np.all(h[~np.asarray(mask)] == 0)
  padded, real = np.asarray(idx)[~np.asarray(mask)], np.asarray(idx)[np.asarray(mask)]
  assert np.all(g[padded] == 0) and np.all(np.abs(g[real]).sum(-1) > 0)
