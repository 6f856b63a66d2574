"""SASRec and GRU4Rec: causality and padding invariance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec.models.encoders import EncoderConfig, lookup, make_encoder
from tests.sequential.conftest import FAST_COMPILE

L, D = 8, 16


def _inputs(num_real):
  x = jax.random.normal(jax.random.key(1), (3, L, D))
  mask = jnp.arange(L)[None, :] >= L - jnp.asarray(num_real)[:, None]
  return x, mask


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
@pytest.mark.parametrize("train", [False, True])
def test_changing_a_future_item_leaves_earlier_outputs_unchanged(name, train):
  enc = make_encoder(EncoderConfig(name=name, embed_dim=D, max_len=L))
  params = enc.init(jax.random.key(0))
  x, mask = _inputs([L, 5, 2])
  key = jax.random.key(7) if train else None
  # Row t of the batch changes the item at position t (one compiled call for all t).
  changed = x[None] + 3.0 * jax.nn.one_hot(jnp.arange(L), L)[:, None, :, None]
  apply = jax.jit(jax.vmap(lambda x: enc.apply(params, x, mask, key)),
                  compiler_options=FAST_COMPILE)
  h, h2 = apply(x[None])[0], apply(changed)
  h, h2 = np.asarray(h), np.asarray(h2)
  for t in range(L):
    np.testing.assert_array_equal(h2[t][:, :t], h[:, :t])
    assert np.abs(h2[t][0, t] - h[0, t]).max() > 1e-4  # it does reach its own position


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_padding_content_is_invisible_and_gets_no_gradient(name):
  enc = make_encoder(EncoderConfig(name=name, embed_dim=D, max_len=L))
  params = enc.init(jax.random.key(0))
  x, mask = _inputs([L, 5, 2])
  noise = jax.random.normal(jax.random.key(3), x.shape) * (~mask)[..., None]
  apply = jax.jit(lambda x: enc.apply(params, x, mask), compiler_options=FAST_COMPILE)
  h = apply(x)
  np.testing.assert_allclose(np.asarray(apply(x + 5 * noise)), np.asarray(h), rtol=1e-6,
                             atol=1e-6)
  assert np.all(np.asarray(h)[~np.asarray(mask)] == 0)
  rows = jax.random.normal(jax.random.key(4), (3 * L, D))
  idx = jnp.arange(3 * L).reshape(3, L)  # every position its own row

  def loss(rows):
    return jnp.sum(enc.apply(params, lookup(rows, params["mask_token"], idx, mask), mask) ** 2)

  g = np.asarray(jax.jit(jax.grad(loss), compiler_options=FAST_COMPILE)(rows))
  padded = np.asarray(idx)[~np.asarray(mask)]
  real = np.asarray(idx)[np.asarray(mask)]
  assert np.all(g[padded] == 0) and np.all(np.abs(g[real]).sum(-1) > 0)
