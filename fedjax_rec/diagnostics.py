"""Embedding geometry over training: the numbers behind CL4FedRec Figs. 3-4.

`train_tracked` runs a simulation epoch by epoch and records, after each epoch,
the test metrics and the geometry of the embeddings (`embedding_geometry`):

- `alignment`: Wang & Isola's alignment of (user, positive train item) pairs, i.e.
  of the user embedding with the item embeddings it interacted with (DirectAU's
  reading for recommenders); lower is more aligned.
- `uniformity_items`, `uniformity_users`: Wang & Isola's uniformity; lower is more
  uniform.
- `l_uni`: Eq. 11's correlation norm of the item table.
- `hot_cosine_distance`: mean pairwise cosine distance of the hot items (Fig. 3).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec import geometry
from fedjax_rec.data.dataset import ImplicitDataset, UserItems
from fedjax_rec import runner
from fedjax_rec.simulation import SimState


def train_pairs(train: UserItems, max_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Up to `max_pairs` (user, item) training pairs, sampled without replacement."""
  users = np.repeat(np.arange(train.num_users), train.lengths)
  items = np.asarray(train.items)
  if len(users) > max_pairs:
    pick = np.random.default_rng(seed).choice(len(users), max_pairs, replace=False)
    users, items = users[pick], items[pick]
  return users, items


@jax.jit
def _geometry(item_emb: jax.Array, user_emb: jax.Array, users: jax.Array, items: jax.Array,
              hot_ids: jax.Array) -> dict[str, jax.Array]:
  return {
      "alignment": geometry.alignment(user_emb[users], item_emb[items]),
      "uniformity_items": geometry.uniformity(item_emb),
      "uniformity_users": geometry.uniformity(user_emb),
      "l_uni": geometry.l_uni(item_emb),
      "hot_cosine_distance": geometry.hot_item_dispersion(
          item_emb, hot_ids)["mean_cosine_distance"],
  }


def embedding_geometry(item_emb: jax.Array, user_emb: jax.Array, pairs: tuple[np.ndarray,
                       np.ndarray], hot_ids: np.ndarray) -> dict[str, float]:
  """Alignment, uniformity, L_uni and hot-item dispersion of one model (see module doc).

  Args:
    item_emb: [num_items, d] item table.
    user_emb: [num_users, d] user table.
    pairs: `(users [P], items [P])` positive pairs for alignment.
    hot_ids: [h] hot item ids, h >= 2.
  """
  users, items = pairs
  out = _geometry(item_emb, user_emb, jnp.asarray(users), jnp.asarray(items),
                  jnp.asarray(hot_ids))
  return {k: float(v) for k, v in jax.device_get(out).items()}


def train_tracked(config, dataset: ImplicitDataset, hot_ids: np.ndarray, *,
                  ks: tuple[int, ...] = (20,), er_ks: tuple[int, ...] = (5,),
                  max_pairs: int = 4096,
                  log: Callable[[str], None] | None = None) -> tuple[SimState, list[dict]]:
  """Trains `config.epochs` epochs (`runner.run`), recording metrics and geometry after
  each one.

  Args:
    config: the run (its `targets`, when any, give ER@K).
    dataset: the split dataset.
    hot_ids: ids of the hot items.
    ks, er_ks: cut-offs of Recall/NDCG and ER@K.
    max_pairs: (user, item) pairs used for alignment.
    log: optional progress sink, one line per epoch.

  Returns:
    The final state and one row per epoch (epoch 0 is the initial model's geometry).
  """
  pairs = train_pairs(dataset.train, max_pairs, seed=config.seed)
  rows: list[dict] = []
  final: list[SimState] = []

  def record(state: SimState, new: list[dict] | None) -> None:
    geo = embedding_geometry(state.server.params.item_emb, state.clients.user_emb, pairs,
                             hot_ids)
    extra = {}
    if new is not None:
      (row,) = new
      extra = {"seconds": row["train/seconds"],
               **{k.removeprefix("test/"): v for k, v in row.items() if k.startswith("test/")}}
    rows.append({"method": config.method, "attack": config.attack,
                 "epoch": int(state.epoch), **extra, **geo})
    final[:] = [state]
    if log is not None and new is not None:
      log(f"{config.method} {config.attack} epoch {int(state.epoch)}: " + " ".join(
          f"{k}={v:.4f}" for k, v in rows[-1].items() if isinstance(v, float)))

  runner.run(config, dataset, eval_config=runner.EvalConfig(every=1, ks=ks, er_ks=er_ks),
             log=lambda line: None, progress=False, on_epoch=record)
  return final[0], rows
