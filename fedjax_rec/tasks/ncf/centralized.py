"""The centralized reference: the same NCF on the same split, all data in one model.

It is the ceiling every table shows beside the federated rows: one user table, the
public item table and MLP, trained jointly with Adam on shuffled mini-batches of
(user, item, label) samples, 4 fresh negatives per positive each epoch.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_rec import metrics
from fedjax_rec.data.dataset import ImplicitDataset
from fedjax_rec.data.split import sample_negatives
from fedjax_rec.losses import bce_with_logits
from fedjax_rec.models import ncf
from fedjax_rec.tasks.ncf.task import score_fn
from fedjax_rec.types import Array, PublicParams


@dataclasses.dataclass(frozen=True)
class CentralConfig:
  """Attributes:
    epochs: passes over the training samples.
    batch_size: samples per Adam step.
    lr: Adam learning rate.
    num_negatives: negatives per positive, drawn afresh each epoch.
    seed: initialisation, shuffling and negatives.
  """

  epochs: int = 20
  batch_size: int = 1024
  lr: float = 0.001
  num_negatives: int = 4
  seed: int = 0

  def __post_init__(self):
    for name in ("epochs", "batch_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"centralized {name} must be >= 1, got {getattr(self, name)}")
    if self.lr <= 0:
      raise ValueError(f"centralized lr must be positive, got {self.lr}")


def _samples(dataset: ImplicitDataset, num_negatives: int, rng: np.random.Generator):
  """`(user, item, label)` arrays of one epoch: every positive plus fresh negatives."""
  train = dataset.train
  negs = sample_negatives(dataset.seen(), dataset.num_items, num_negatives, train, rng)
  users = np.concatenate([np.repeat(np.arange(train.num_users), train.lengths),
                          np.repeat(np.arange(negs.num_users), negs.lengths)])
  items = np.concatenate([train.items, negs.items])
  labels = np.concatenate([np.ones(train.nnz, np.float32), np.zeros(negs.nnz, np.float32)])
  return users.astype(np.int32), items.astype(np.int32), labels


def train(model: ncf.NCFConfig, dataset: ImplicitDataset, config: CentralConfig = CentralConfig(),
          on_epoch: Callable[[int, tuple[PublicParams, Array]], None] | None = None
          ) -> tuple[PublicParams, Array]:
  """Trains the centralized NCF.

  Args:
    model: the NCF shape (as the federated run's).
    dataset: the split dataset (its train part is used).
    config: optimisation settings.
    on_epoch: called as `on_epoch(epoch, (public, user_emb))` after each epoch
      (1-based), e.g. to evaluate.

  Returns:
    `(public, user_emb)`, scored by `simulation`'s score function like a federated state.
  """
  key_pub, key_user = jax.random.split(jax.random.key(config.seed))
  params = (ncf.init_public(key_pub, model, dataset.num_items),
            ncf.init_user_emb(key_user, model, dataset.num_users))
  tx = optax.adam(config.lr)
  opt_state = tx.init(params)
  bsz = config.batch_size

  def loss_fn(params, user, item, label, mask):
    public, user_emb = params
    logit = ncf.logits(model, public.net, user_emb[user], public.item_emb[item])
    return bce_with_logits(logit, label, mask.astype(jnp.float32), mask)

  @jax.jit
  def epoch_step(params, opt_state, user, item, label, mask):
    def step(carry, batch):
      params, opt_state = carry
      grads = jax.grad(loss_fn)(params, *batch)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    return jax.lax.scan(step, (params, opt_state), (user, item, label, mask))[0]

  rng = np.random.default_rng([config.seed, 31337])
  for epoch in range(config.epochs):
    user, item, label = _samples(dataset, config.num_negatives, rng)
    order = rng.permutation(len(user))
    num_batches = -(-len(order) // bsz)
    pad = num_batches * bsz - len(order)
    mask = np.concatenate([np.ones(len(order), bool), np.zeros(pad, bool)])
    order = np.concatenate([order, np.zeros(pad, order.dtype)])
    shape = (num_batches, bsz)
    params, opt_state = epoch_step(params, opt_state, user[order].reshape(shape),
                                   item[order].reshape(shape), label[order].reshape(shape),
                                   mask.reshape(shape))
    if on_epoch is not None:
      on_epoch(epoch + 1, params)
  return params


def reference_row(dataset: ImplicitDataset, model: ncf.NCFConfig, config: CentralConfig,
                  log: Callable[[str], None] = print) -> dict:
  """Trains the centralized NCF; returns the test metrics at the best validation epoch.

  Without a validation share, the last epoch's. Each epoch's metrics go to `log`.
  """
  score = score_fn(model)  # the federated runs' scorer (one compile)
  has_valid = dataset.valid.nnz > 0
  history = []

  def on_epoch(epoch, params):
    row = {"epoch": epoch,
           "test": metrics.ranking_metrics(score, params, dataset.seen(), dataset.test)}
    if has_valid:
      row["valid"] = metrics.ranking_metrics(score, params, dataset.train, dataset.valid)
    history.append(row)
    log(json.dumps(row))

  train(model, dataset, config, on_epoch)
  best = max(history, key=lambda r: r["valid"]["recall@20"]) if has_valid else history[-1]
  return {"epoch": best["epoch"], **best["test"]}
