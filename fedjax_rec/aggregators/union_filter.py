"""A UNION-style uniformity filter, then FedAvg of the clients it keeps.

docs/design.md. Reference: Yu et al., "Untargeted Attack against Federated Recommendation
Systems via Poisonous Item Embeddings and the Defense" (AAAI 2023), the server side of
UNION: the server simulates, for each client, the item table its gradients would produce,
measures that table's uniformity, splits the clients' scores into two clusters with the
gap statistic and drops the smaller cluster when two clusters are found.

What follows the paper and its public code: a per-client simulated step of the item
table; a uniformity score; the gap statistic with k in {1, 2} on the 1-D scores
(`gap_split.py`); dropping the smaller cluster; FedAvg (any convention) of the rest.

Choices made here (uploads are sparse, and the code must be jittable and bounded):

* Uniformity is Wang & Isola's `L_uni = log mean_{pairs} exp(-2 |v_i - v_j|^2)` over
  L2-normalized rows (the authors' code uses the mean pairwise distance instead).
* The simulated step is plain SGD, `v - lr g` with `lr = sim_lr` or the server's
  learning rate (the authors replay the server's Adam step).
* The table a client is scored on is `S ∪ T_c`: `S` is a fixed reference set of
  `ref_items` item rows and `T_c` the client's uploaded rows (at most `max_rows` of
  them). The score is the *shift* `L_uni(after) - L_uni(before)` of that table under the
  client's step: clients touch different items, and the shift removes what the item
  sets alone would contribute. A client uploading a single row still gets a score.
  Computed pair by pair as `G_before * expm1(-2 (d_after^2 - d_before^2))`, so small
  steps keep their precision in float32.
* `S` and the rows kept from a large client come from one fixed permutation of the item
  ids (`item_order`): `S` is its first `ref_items` items, a client keeps its rows first
  in that order. Both are the same every round (the authors redraw their item sample).
* The authors also drop the smaller cluster when it is no larger than the known number
  of attackers per round; that needs an oracle and is not done here.

Clients without rows are not scored and never dropped. Without a `ServerView` (a direct
call) the table is taken as zero, so the score measures the client's own row directions.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from fedjax_rec.aggregators.base import (
    Aggregator, ServerView, base_metrics, check_convention, check_positive)
from fedjax_rec.aggregators.detection import detection_metrics
from fedjax_rec.aggregators.fedavg import fedavg_aggregate
from fedjax_rec.aggregators.gap_split import gap_split
from fedjax_rec.aggregators.item_blocks import group_rows
from fedjax_rec.aggregators.validate import keep_clients, validate
from fedjax_rec.types import Array, Uploads

_EPS = 1e-8
_T = 2.0  # the temperature of L_uni


def item_order(num_items: int) -> np.ndarray:
  """[num_items] rank of each item in a fixed permutation, `(i * a) mod num_items`."""
  a = max(int(0.6180339887 * num_items), 1) | 1
  while math.gcd(a, num_items) != 1:
    a += 1
  return (np.arange(num_items, dtype=np.int64) * a % num_items).astype(np.int32)


def _normalize(x: Array) -> Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def _dot(a, b, spec):
  return jnp.einsum(spec, a, b, precision=lax.Precision.HIGHEST)


def client_rows(uploads: Uploads, num_items: int, max_rows: int) -> tuple[Array, Array]:
  """`(index [C, K], present [C, K])`: each client's first `K` rows in `item_order`."""
  num_rows = uploads.row_mask.shape[0]
  num_clients = uploads.client_mask.shape[0]
  rank = jnp.asarray(item_order(num_items))[jnp.clip(uploads.row_item, 0, num_items - 1)]
  # Rows grouped by client (as "items"), each client's rows ordered by item rank.
  swapped = uploads._replace(row_item=uploads.row_client, row_client=rank,
                             client_mask=jnp.ones((num_items,), bool))
  groups = group_rows(swapped, num_clients)
  k = min(max_rows, num_rows)
  present = jnp.arange(k)[None, :] < jnp.minimum(groups.counts, k)[:, None]
  pos = groups.start[:num_clients, None] + jnp.arange(k)[None, :]
  index = jnp.where(present, groups.rows.at[pos].get(mode="fill", fill_value=num_rows),
                    num_rows)
  return index, present


def uniformity_shift(uploads: Uploads, view: ServerView | None, num_items: int,
                     sim_lr: float | None, max_rows: int,
                     ref_items: int) -> tuple[Array, Array]:
  """[C] shift of `L_uni` of each client's table `S ∪ T_c` under its step, and [C] scored."""
  dim = uploads.row_grad.shape[1]
  if view is None:
    table = jnp.zeros((num_items, dim), uploads.row_grad.dtype)
    lr = 1.0 if sim_lr is None else sim_lr
  else:
    table = view.item_emb
    lr = view.lr if sim_lr is None else sim_lr
  index, present = client_rows(uploads, num_items, max_rows)
  items = uploads.row_item.at[index].get(mode="fill", fill_value=0)
  grad = uploads.row_grad.at[index].get(mode="fill", fill_value=0.0)
  grad = jnp.where(present[:, :, None], grad, 0.0)
  before = _normalize(table[items])  # [C, K, d]
  after = _normalize(table[items] - lr * grad)
  moved = jnp.where(present[:, :, None], after - before, 0.0)
  sq_b = jnp.sum(before * before, -1)
  sq_a = jnp.sum(after * after, -1)

  num_ref = min(ref_items, num_items)
  ref_ids = jnp.asarray(np.argsort(item_order(num_items))[:num_ref].astype(np.int32))
  ref = _normalize(table[ref_ids])  # [R, d]
  sq_r = jnp.sum(ref * ref, -1)
  # Reference items the client uploaded are represented by its (moving) rows instead.
  own_ref = jnp.any(present[:, :, None] & (items[:, :, None] == ref_ids[None, None, :]), 1)
  ref_gram = _dot(ref, ref, "rd,sd->rs")
  ref_pot = jnp.exp(-_T * jnp.maximum(sq_r[:, None] + sq_r[None, :] - 2 * ref_gram, 0.0))
  ref_pot = jnp.where(jnp.eye(num_ref, dtype=bool), 0.0, ref_pot)
  keep = (~own_ref).astype(ref_pot.dtype)  # [C, R]
  pot_ref = 0.5 * jnp.sum(_dot(keep, ref_pot, "cr,rs->cs") * keep, -1)

  # Pairs (client row, reference row).
  cross_b = jnp.maximum(sq_b[:, :, None] + sq_r[None, None, :]
                        - 2 * _dot(before, ref, "ckd,rd->ckr"), 0.0)
  change = (sq_a - sq_b)[:, :, None] - 2 * _dot(moved, ref, "ckd,rd->ckr")
  pair = present[:, :, None] & ~own_ref[:, None, :]
  pot_b = jnp.exp(-_T * cross_b)
  cross_pot = jnp.sum(jnp.where(pair, pot_b, 0.0), (1, 2))
  cross_delta = jnp.sum(jnp.where(pair, pot_b * jnp.expm1(-_T * change), 0.0), (1, 2))

  # Pairs of the client's own rows (both move).
  gram_b = _dot(before, before, "ckd,cld->ckl")
  own_b = jnp.maximum(sq_b[:, :, None] + sq_b[:, None, :] - 2 * gram_b, 0.0)
  dot_change = _dot(moved, after, "ckd,cld->ckl") + _dot(before, moved, "ckd,cld->ckl")
  own_change = (sq_a - sq_b)[:, :, None] + (sq_a - sq_b)[:, None, :] - 2 * dot_change
  width = present.shape[1]
  upper = present[:, :, None] & present[:, None, :] & (
      jnp.arange(width)[:, None] < jnp.arange(width)[None, :])
  own_pot_b = jnp.exp(-_T * own_b)
  own_pot = jnp.sum(jnp.where(upper, own_pot_b, 0.0), (1, 2))
  own_delta = jnp.sum(jnp.where(upper, own_pot_b * jnp.expm1(-_T * own_change), 0.0), (1, 2))

  total = pot_ref + cross_pot + own_pot
  scored = uploads.client_mask & jnp.any(present, 1) & (total > 0)
  shift = jnp.log1p((cross_delta + own_delta) / jnp.where(scored, total, 1.0))
  return jnp.where(scored, shift, 0.0), scored


def union_filter(num_items: int, sim_lr: float | None = None, max_rows: int = 64,
                 ref_items: int = 256, convention: str = "sum",
                 max_abs: float | None = 1e6) -> Aggregator:
  """The UNION-style uniformity filter.

  Args:
    num_items: number of item rows (static).
    sim_lr: learning rate of the simulated SGD step (`None`: the server's).
    max_rows: most rows of one client scored (static; bounds work and memory at
      `C * max_rows * (ref_items + max_rows)` pairs).
    ref_items: size of the fixed reference set of item rows (static, >= 2).
    convention: FedAvg convention over the kept clients.
    max_abs: validation magnitude bound (`None`: only non-finite rejection).

  Returns:
    An `Aggregator` with `needs_view`; metrics `rejected`, `touched_rows`,
    `union_split` (1 if the gap test found two clusters), `union_dropped` (clients
    dropped), `union_scored` (clients scored), and the detection metrics
    (`detection.py`: flagged = rejected or dropped).
  """
  check_convention(convention)
  if sim_lr is not None:
    check_positive("sim_lr", sim_lr)
  for name, value, low in (("max_rows", max_rows, 1), ("ref_items", ref_items, 2)):
    if int(value) != value or value < low:
      raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")

  def init():
    return ()

  def apply(uploads, state, view: ServerView | None = None):
    cleaned, num_rejected = validate(uploads, max_abs)
    shift, scored = uniformity_shift(cleaned, view, num_items, sim_lr, int(max_rows),
                                     int(ref_items))
    split, high, _ = gap_split(shift, scored)
    num_high = jnp.sum(high)
    num_low = jnp.sum(scored) - num_high
    drop = split & jnp.where(num_high < num_low, high,
                             jnp.where(num_low < num_high, scored & ~high, False))
    aggregate = fedavg_aggregate(keep_clients(cleaned, ~drop), num_items, convention)
    metrics = base_metrics(num_rejected, aggregate.item_touched)
    metrics["union_split"] = split.astype(jnp.int32)
    metrics["union_dropped"] = jnp.sum(drop).astype(jnp.int32)
    metrics["union_scored"] = jnp.sum(scored).astype(jnp.int32)
    metrics.update(detection_metrics(~(cleaned.client_mask & ~drop), uploads))
    return aggregate, state, metrics

  return Aggregator(init=init, apply=apply, needs_view=True)
