"""The aggregator interface and the FedAvg conventions shared by every aggregator.

An aggregator is a pair of pure functions, built like optax's `GradientTransformation`:

    agg = median(num_items, convention="sum")
    state = agg.init()
    aggregate, state, metrics = agg.apply(uploads, state)

`num_items` and the hyper-parameters are closed over by the builder; `state` is a pytree
(`()` for every aggregator here, all of them are memoryless) and `metrics` maps names to
jnp scalars that the host logs.

Conventions (docs/design.md). For an item row with accepted uploaders `U`
(`n = |U|`) and uploads `g_u`:

  * ``"sum"``:      `sum_u g_u` (the public A-hum code: `x[idx] += g`).
  * ``"mean"``:     `sum_u g_u / n`.
  * ``"weighted"``: `sum_u w_u g_u / sum_u w_u`, `w_u = client_weight[u]` (sample count).

The MLP is aggregated the same way over the round's accepted clients (sum, mean, weighted
mean). Rows nobody uploaded are untouched and zero.

Robust statistics (median, trimmed mean, Krum, and Krum's fallback mean) give one
*mean-like* value per row (an estimate of a typical upload). They are rescaled to the
convention so that a robust aggregator is a drop-in replacement for FedAvg under the same
server learning rate: for ``"sum"`` the value is multiplied by the row's uploader count `n`
(by the number of accepted clients for the MLP); for ``"mean"`` and ``"weighted"`` it is
left as is. Robust statistics never read `client_weight`: weights are self-reported sample
counts that an attacker could inflate, so ``"weighted"`` means the same as ``"mean"`` for
them.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedjax_rec.types import Aggregate, Array, PyTree, Uploads

AggregatorState = Any
Metrics = dict[str, Array]

CONVENTIONS = ("sum", "mean", "weighted")


class ServerView(NamedTuple):
  """What a rule that looks at the model reads besides the uploads (`needs_view`).

  Attributes:
    item_emb: [num_items, d] the public item table before the round's server step.
    lr: the server optimizer's learning rate (a Python float).
  """

  item_emb: Array
  lr: float


class Aggregator(NamedTuple):
  """A server aggregation rule as an `(init, apply)` pair.

  Attributes:
    init: `() -> state`.
    apply: `(uploads, state) -> (Aggregate, state, metrics)`; jittable, pure. With
      `needs_view`, `apply(uploads, state, view)` also takes a `ServerView` (the round
      passes it; without one the rule documents what it assumes).
    needs_view: whether `apply` reads a `ServerView` (the UNION filter does).
  """

  init: Callable[[], AggregatorState]
  apply: Callable[..., tuple[Aggregate, AggregatorState, Metrics]]
  needs_view: bool = False


def stateless(apply_fn: Callable[[Uploads], tuple[Aggregate, Metrics]]) -> Aggregator:
  """Wraps a stateless `uploads -> (aggregate, metrics)` function as an `Aggregator`."""

  def init():
    return ()

  def apply(uploads, state):
    aggregate, metrics = apply_fn(uploads)
    return aggregate, state, metrics

  return Aggregator(init=init, apply=apply)


def check_convention(convention: str) -> str:
  if convention not in CONVENTIONS:
    raise ValueError(f"Unknown FedAvg convention {convention!r}; expected one of {CONVENTIONS}.")
  return convention


def check_positive(name: str, value: float) -> float:
  if not value > 0:
    raise ValueError(f"{name} must be > 0, got {value!r}.")
  return value


def check_non_negative_int(name: str, value: int) -> int:
  if int(value) != value or value < 0:
    raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")
  return int(value)


def item_keys(uploads: Uploads, num_items: int) -> Array:
  """[M] int32 item id of each real row, `num_items` for padding rows (a spare segment)."""
  return jnp.where(uploads.row_mask, uploads.row_item, num_items).astype(jnp.int32)


def uploader_counts(uploads: Uploads, num_items: int) -> Array:
  """[num_items] int32 number of accepted uploaders of each item row."""
  counts = jax.ops.segment_sum(
      uploads.row_mask.astype(jnp.int32), item_keys(uploads, num_items),
      num_segments=num_items + 1)
  return counts[:num_items]


def client_index(uploads: Uploads) -> Array:
  """[M] row_client clipped into range, so padding rows can be gathered safely."""
  num_clients = uploads.client_mask.shape[0]
  return jnp.clip(jnp.where(uploads.row_mask, uploads.row_client, 0), 0, num_clients - 1)


def flatten_clients(mlp: PyTree, num_clients: int | None = None
                    ) -> tuple[Array, Callable[[Array], PyTree]]:
  """[C, P] concatenation of each client's MLP leaves, and the inverse for one [P] row.

  A network without parameters (MF) flattens to `[num_clients, 0]`.
  """
  leaves, treedef = jax.tree.flatten(mlp)
  shapes = [x.shape[1:] for x in leaves]
  sizes = [x[0].size for x in leaves]
  if leaves:
    flat = jnp.concatenate([x.reshape(x.shape[0], -1) for x in leaves], axis=-1)
  elif num_clients is None:
    raise ValueError("a network without parameters needs num_clients to flatten")
  else:
    flat = jnp.zeros((num_clients, 0), jnp.float32)

  def unflatten(row):
    parts, offset = [], 0
    for shape, size, leaf in zip(shapes, sizes, leaves):
      parts.append(row[offset:offset + size].reshape(shape).astype(leaf.dtype))
      offset += size
    return jax.tree.unflatten(treedef, parts)

  return flat, unflatten


def leaf_client_mask(mask: Array, leaf: Array) -> Array:
  """Broadcasts a [C] mask against a leaf of shape [C, ...]."""
  return mask.reshape(mask.shape + (1,) * (leaf.ndim - 1))


def rescale_rows(mean_like: Array, counts: Array, convention: str) -> Array:
  """Rescales a per-row mean-like statistic [num_items, d] to the convention."""
  if convention == "sum":
    return mean_like * counts[:, None].astype(mean_like.dtype)
  return mean_like


def rescale_mlp(mean_like: PyTree, num_clients: Array, convention: str) -> PyTree:
  """Rescales a mean-like MLP statistic to the convention (x number of clients for sum)."""
  if convention == "sum":
    return jax.tree.map(lambda x: x * num_clients.astype(x.dtype), mean_like)
  return mean_like


def finish_rows(item_grad: Array, counts: Array) -> tuple[Array, Array]:
  """Zeroes rows without uploaders; returns (item_grad, item_touched)."""
  touched = counts > 0
  return jnp.where(touched[:, None], item_grad, 0.0), touched


def base_metrics(num_rejected: Array, touched: Array) -> Metrics:
  return {
      "rejected": num_rejected.astype(jnp.int32),
      "touched_rows": jnp.sum(touched).astype(jnp.int32),
  }
