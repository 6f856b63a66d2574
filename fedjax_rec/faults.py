"""Fault injection: benign clients whose uploads are NaN, Inf or absurdly large.

`SimConfig.inject_faults` is `"none"` or `"KIND:K"` with KIND one of `FAULT_VALUES`: in
every round the first `K` real benign client slots (the round's slot order, so the choice
is deterministic) upload that value in every uploaded row and MLP entry. They train and
keep their private state as usual; only what reaches the server is corrupted.

What the aggregators do with them (`aggregators/validate.py`): NaN and Inf are rejected by
every aggregator, so a faulty round equals a round without those clients, and the
rejections are counted in the round metric `rejected`. `huge` (1e30) is finite: the robust
aggregators (norm_bound, median, trimmed_mean, krum, hics) reject it through their
`max_abs` = 1e6 bound, while plain FedAvg (`max_abs` = None) aggregates it; the run then
stops as soon as the state turns non-finite (`runner.NonFiniteError`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec.types import Uploads

FAULT_VALUES = {"nan": float("nan"), "inf": float("inf"), "huge": 1e30}


def parse_faults(spec: str) -> tuple[str, int] | None:
  """`"none"` -> None; `"nan:2"` -> `("nan", 2)`.

  Raises:
    ValueError: anything else (the message names `inject_faults`).
  """
  if spec in ("none", ""):
    return None
  kind, sep, count = spec.partition(":")
  expected = f"inject_faults expects none or {'|'.join(FAULT_VALUES)}:K with K >= 1"
  if not sep or kind not in FAULT_VALUES:
    raise ValueError(f"{expected}, got {spec!r}")
  try:
    k = int(count)
  except ValueError:
    raise ValueError(f"{expected}, got {spec!r}") from None
  if k < 1:
    raise ValueError(f"{expected}, got {spec!r}")
  return kind, k


def inject_faults(uploads: Uploads, kind: str, k: int) -> tuple[Uploads, jax.Array]:
  """Overwrites the uploads of the first `k` real benign slots with `FAULT_VALUES[kind]`.

  Client-side (it runs before the server phase): the server only sees the result.

  Returns:
    `(uploads', count)`: the corrupted uploads and how many clients were corrupted.
  """
  value = FAULT_VALUES[kind]
  benign = uploads.client_mask & ~uploads.client_malicious
  hit = benign & (jnp.cumsum(benign.astype(jnp.int32)) <= k)
  rows = (hit[uploads.row_client] & uploads.row_mask)[:, None]
  mlp = jax.tree.map(
      lambda x: jnp.where(hit.reshape(hit.shape + (1,) * (x.ndim - 1)), value, x),
      uploads.net)
  return (uploads._replace(row_grad=jnp.where(rows, value, uploads.row_grad), net=mlp),
          jnp.sum(hit).astype(jnp.int32))
