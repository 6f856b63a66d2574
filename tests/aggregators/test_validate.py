"""`validate` and `make_aggregator`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec import aggregators as agg_lib
from fedjax_rec.types import Uploads


def _round():
  # Client 0: rows 0, 1; client 1: row 2 (NaN); client 2: row 3 (1e30, only with a bound);
  # client 3 is padding with a NaN MLP; row 4 is a padding row with NaN.
  nan = np.nan
  return Uploads(
      row_client=jnp.asarray([0, 0, 1, 2, 0], jnp.int32),
      row_item=jnp.asarray([0, 1, 0, 1, 2], jnp.int32),
      row_grad=jnp.asarray([[1.0, 2.0], [3.0, 4.0], [nan, 0.0], [1e30, 0.0], [nan, nan]]),
      row_mask=jnp.asarray([True, True, True, True, False]),
      net={"w": jnp.asarray([[1.0], [2.0], [3.0], [nan]])},
      client_weight=jnp.asarray([1.0, 2.0, 3.0, 0.0]),
      client_mask=jnp.asarray([True, True, True, False]),
      client_malicious=jnp.zeros((4,), bool),
  )


def test_validate_rejects_and_zeroes():
  cleaned, num_rejected = jax.jit(agg_lib.validate)(_round())
  assert int(num_rejected) == 2
  assert np.asarray(cleaned.client_mask).tolist() == [True, False, False, False]
  assert np.asarray(cleaned.row_mask).tolist() == [True, True, False, False, False]
  np.testing.assert_array_equal(np.asarray(cleaned.row_grad),
                                [[1, 2], [3, 4], [0, 0], [0, 0], [0, 0]])
  np.testing.assert_array_equal(np.asarray(cleaned.net["w"]), [[1], [0], [0], [0]])
  np.testing.assert_array_equal(np.asarray(cleaned.client_weight), [1, 0, 0, 0])


def test_validate_without_bound_keeps_large_finite():
  cleaned, num_rejected = jax.jit(agg_lib.validate, static_argnums=1)(_round(), None)
  assert int(num_rejected) == 1
  assert np.asarray(cleaned.client_mask).tolist() == [True, False, True, False]


def test_make_aggregator_defaults_and_names():
  for name in agg_lib.AGGREGATORS:
    agg = agg_lib.make_aggregator(name, 3, "mean")
    assert agg.init() == ()
  assert agg_lib.DEFAULTS["krum"]["num_byzantine"] == 1
  assert agg_lib.DEFAULTS["trimmed_mean"]["num_trim"] == 1
  assert agg_lib.DEFAULTS["hics"]["min_uploaders"] == 2


@pytest.mark.parametrize("name,kwargs,match", [
    ("zeno", {}, "unknown aggregator"),
    ("multi_krum", {"num_selected": 0}, "num_selected"),
    ("bulyan", {"num_byzantine": -1}, "num_byzantine"),
    ("union_filter", {"sim_lr": 0.0}, "sim_lr"),
    ("union_filter", {"max_rows": 0}, "max_rows"),
    ("union_filter", {"ref_items": 1}, "ref_items"),
    ("median", {"num_trim": 1}, "unknown hyper-parameter"),
    ("trimmed_mean", {"num_trim": -1}, "num_trim"),
    ("krum", {"num_byzantine": -2}, "num_byzantine"),
    ("krum", {"num_byzantine": 1.5}, "num_byzantine"),
    ("norm_bound", {"clip_norm": 0.0}, "clip_norm"),
    ("hics", {"client_clip": -1.0}, "client_clip"),
    ("hics", {"row_clip": 0.0}, "row_clip"),
    ("hics", {"min_uploaders": 0}, "min_uploaders"),
])
def test_make_aggregator_errors(name, kwargs, match):
  with pytest.raises(ValueError, match=match):
    agg_lib.make_aggregator(name, 3, "sum", **kwargs)


def test_unknown_convention():
  with pytest.raises(ValueError, match="convention"):
    agg_lib.make_aggregator("median", 3, "average")
