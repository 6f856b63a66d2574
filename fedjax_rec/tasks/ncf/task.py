"""The NCF task: a private user embedding, the public item table and MLP.

`build_task(config, dataset)` bundles the method's client objective and server steps
(`methods`), the local training (`client`) and the NCF scorer into a `Task`, and lays
out the clients' rows (positives then their sampled negatives) for the driver.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec import scheduling
from fedjax_rec.attacks import TAKES_BENIGN_TRAINING as ATTACK_TAKES_BENIGN_TRAINING
from fedjax_rec.attacks import TAKES_POPULARITY as ATTACK_TAKES_POPULARITY
from fedjax_rec.attacks import TAKES_TRAINING_DATA as ATTACK_TAKES_TRAINING_DATA
from fedjax_rec.attacks import make_attack
from fedjax_rec.attacks.fake_users import BenignTraining
from fedjax_rec.tasks.ncf.client import LocalData, make_client_update, user_optimizer
from fedjax_rec.data import clients as clients_lib
from fedjax_rec.data.dataset import ImplicitDataset
from fedjax_rec.data.split import sample_negatives
from fedjax_rec.tasks.ncf import positive_classes
from fedjax_rec.tasks.ncf.methods import TAKES_TRAINING_DATA, Method, make_method
from fedjax_rec.models import ncf
from fedjax_rec.task import Task, TaskBundle, TaskData
from fedjax_rec.types import ClientStates


# Bounds on a class's positives under fresh negatives are multiples of this (`pos_lengths`).
POS_GRAIN = 8


@dataclasses.dataclass
class NCFData(TaskData):
  """The NCF task's host side: each client's rows and its sampled negatives.

  Attributes:
    client_data: the clients' rows (`data.clients.ClientData`).
    negatives: the sampled negatives (`UserItems`).
  """

  client_data: clients_lib.ClientData | None = None
  negatives: object = None
  config: object = None
  capacity: int = 0
  positive_term: bool = False  # the method's (`Method.positive_term`)
  cuts: dict = dataclasses.field(default_factory=dict)  # `positive_classes.choose_cuts`
  _pos_cache: dict = dataclasses.field(default_factory=dict)

  def pos_lengths(self, lengths: tuple[int, ...]) -> tuple[int, ...]:
    """Per-class bound on positives of the current draw (cached per draw).

    The bound of a class of length `l` is the most positives of any client whose rows
    fit `l` (`ClientData.positive_capacity`). With fresh negatives every epoch
    (`resample_negatives`, `refresh`) the draw changes a client's rows, so the bound is
    taken of each epoch's draw and rounded up to a multiple of `POS_GRAIN` (at most
    `l`). It is a function of the draw alone, so a resumed run uses the same bounds as
    an unbroken one; the padding it adds is masked, so it changes no value beyond float
    order. Rounds use the static bounds of `arrange`; this one is their fallback, and
    methods without a positive term get the lengths (the bound is unused).
    """
    if not self.positive_term:
      return lengths  # unused: a bound that moved with the draw would only recompile
    if lengths not in self._pos_cache:
      bound = self.client_data.positive_capacity
      if self.config.resample_negatives:
        bound = lambda l: min(l, -(-self.client_data.positive_capacity(l) // POS_GRAIN)
                              * POS_GRAIN)
      self._pos_cache[lengths] = tuple(bound(l) for l in lengths)
    return self._pos_cache[lengths]

  def arrange(self, slots: tuple, lengths: tuple[int, ...]):
    """The plan's classes with static bounds on positives, the heavy ones cut by them
    (`positive_classes`)."""
    bounds = self.pos_lengths(lengths)
    if not self.cuts:
      return slots, lengths, bounds
    return positive_classes.arrange(slots, lengths, bounds, self.cuts,
                                    self.client_data.num_positives)

  def refresh(self, epoch: int) -> bool:
    """Draws fresh negatives for `epoch` if the config asks (`resample_negatives`)."""
    if not (self.config.resample_negatives and epoch > 0):
      return False
    self.negatives, self.client_data = client_rows(self.config, self.dataset, epoch)
    self._pos_cache.clear()
    self.device_data = clients_lib.to_device(self.client_data, self.capacity)
    self.num_rows = self.client_data.num_rows
    return True


def client_rows(config, dataset: ImplicitDataset, epoch: int):
  """`(negatives, ClientData)` of global epoch `epoch` (seeded by `config.seed`)."""
  rng = np.random.default_rng([config.seed, 7919, epoch])
  negatives = sample_negatives(dataset.seen(), dataset.num_items, config.num_negatives,
                               dataset.train, rng)
  return negatives, clients_lib.build_client_data(dataset.train, negatives, dataset.num_items)


def method_kwargs(config, dataset: ImplicitDataset) -> dict:
  """The config's method kwargs, plus what a method needs from the data.

  Training popularity (never test) and the local learning rate go to the methods
  that take them (`methods.TAKES_TRAINING_DATA`), unless the config sets them.
  """
  kwargs = dict(config.method_kwargs)
  if config.method in TAKES_TRAINING_DATA:
    kwargs.setdefault("popularity", np.bincount(dataset.train.items,
                                                minlength=dataset.num_items))
    kwargs.setdefault("local_lr", config.local.lr)
  return kwargs


def attack_kwargs(config, dataset: ImplicitDataset, method: Method | None = None) -> dict:
  """The config's attack kwargs, plus what an attack needs from the data and the task:
  the training interactions and the catalogue size (`attacks.TAKES_TRAINING_DATA`), the
  training popularity (`attacks.TAKES_POPULARITY`) and the benign local training of
  `method` (`attacks.TAKES_BENIGN_TRAINING`; built from the config when None)."""
  kwargs = dict(config.attack_kwargs)
  if config.attack in ATTACK_TAKES_TRAINING_DATA:
    kwargs.setdefault("train_csr", (dataset.train.indptr, dataset.train.items))
    kwargs.setdefault("num_items", dataset.num_items)
  if config.attack in ATTACK_TAKES_POPULARITY:
    kwargs.setdefault("popularity", np.bincount(dataset.train.items,
                                                minlength=dataset.num_items))
  if config.attack in ATTACK_TAKES_BENIGN_TRAINING:
    kwargs.setdefault("num_items", dataset.num_items)
  if config.attack in ATTACK_TAKES_BENIGN_TRAINING and "benign" not in kwargs:
    if method is None:
      method = make_method(config.method, config.model, **method_kwargs(config, dataset))
    kwargs["benign"] = benign_training(config, method)
  return kwargs


def benign_training(config, method: Method) -> BenignTraining:
  """The benign local training of `method`, lent to fake users (`attacks.fake_users`)."""
  local_update = make_client_update(method.loss_fn, config.local)
  user_tx = user_optimizer(config.local)

  def init_private(key, n: int) -> ClientStates:
    user_emb = ncf.init_user_emb(key, config.model, n)
    opt_state = user_tx.init(user_emb[0])
    return ClientStates(user_emb, jax.tree.map(
        lambda x: jnp.broadcast_to(x, (n,) + x.shape).copy(), opt_state))

  def update(public, ctx, private: ClientStates, item, label, weight, mask, key):
    # Every row may be a positive: the positives' prefix is the whole layout.
    data = LocalData(item, label, weight, mask, pos_mask=mask & (label > 0.5))
    u, opt, up = local_update(public, ctx, private.user_emb, private.opt_state, data, key)
    return ClientStates(u, opt), up

  return BenignTraining(init_private, update, config.num_negatives,
                        bool(config.resample_negatives))


def make_task(config, method: Method, num_users: int, num_items: int) -> Task:
  """The NCF `Task` of `method` (pure functions; no data)."""
  local_update = make_client_update(method.loss_fn, config.local)

  def init(key):
    key_pub, key_user, key_aux, key_attack = jax.random.split(key, 4)
    params = ncf.init_public(key_pub, config.model, num_items)
    aux = method.init_aux(key_aux, params)
    user_emb = ncf.init_user_emb(key_user, config.model, num_users)
    opt_state = user_optimizer(config.local).init(user_emb[0])
    opt_state = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_users,) + x.shape).copy(),
                             opt_state)
    return params, ClientStates(user_emb, opt_state), aux, key_attack

  def gather(client_data, slot_user, length, pos_length):
    _, item, label, weight, mask, pos_mask = clients_lib.gather_local(
        client_data, slot_user, length, pos_length)
    return LocalData(item, label, weight, mask, pos_mask)

  def client_update(public, ctx, private: ClientStates, data: LocalData, key):
    u, opt, up = local_update(public, ctx, private.user_emb, private.opt_state, data, key)
    return ClientStates(u, opt), up, {}

  def round_keys(key):
    key_clients, key_attack = jax.random.split(key)
    return key_clients, key_attack, None

  return Task(name=f"ncf/{method.name}", init=init, context=method.context, gather=gather,
              client_update=client_update, round_keys=round_keys, after_round=None,
              epoch_end=method.epoch_end,
              eval_params=lambda public, private: (public, private.user_emb),
              score=score_fn(config.model))


@functools.lru_cache(maxsize=None)
def score_fn(model: ncf.NCFConfig):
  """One score function per model shape: runs of it (seeds, replicas) share its compilation."""

  def score(params, user_ids):
    public, user_emb = params
    return ncf.score_all(model, public.net, user_emb[user_ids], public.item_emb)

  return score


def row_bound(rows: clients_lib.ClientData, dataset: ImplicitDataset) -> np.ndarray:
  """[U] the most distinct rows any draw of negatives can give each client.

  A client's rows are its positives and its distinct negatives; these number at most
  its draws (`num_negatives` per positive) and at most the items it has not seen, so a
  heavy user's bound is the catalogue, not its draws.
  """
  positives = rows.num_positives.astype(np.int64)
  unseen = dataset.num_items - dataset.seen().lengths.astype(np.int64)
  return np.minimum(rows.num_samples.astype(np.int64), positives + unseen)


def build_task(config, dataset: ImplicitDataset) -> TaskBundle:
  """The NCF task of `config` on `dataset`, with its host side for `config.seed`."""
  method = make_method(config.method, config.model, **method_kwargs(config, dataset))
  attack = None
  if config.attack != "none" and config.num_malicious > 0:
    attack = make_attack(config.attack, config.model, np.asarray(config.targets),
                         **attack_kwargs(config, dataset, method))
  negatives, rows = client_rows(config, dataset, epoch=0)
  # Rows never outnumber samples: a fixed capacity keeps shapes when negatives change.
  capacity = int(dataset.train.nnz * (1 + config.num_negatives))
  # With fresh negatives every epoch, a client's rows change with the draw: the plan is
  # sized for the most rows any draw can give (`row_bound`), so every draw fits it and a
  # run still compiles its round once.
  lengths = row_bound(rows, dataset) if config.resample_negatives else rows.num_rows
  if config.round_assignment == "stratified":
    plan = scheduling.stratified_plan(lengths, config.clients_per_round,
                                      max_buckets=config.max_buckets)
  else:
    plan = scheduling.plan_buckets(lengths, config.clients_per_round, seed=config.seed)
  data = NCFData(device_data=clients_lib.to_device(rows, capacity), num_rows=rows.num_rows,
                 plan=plan, round_assignment=config.round_assignment, dataset=dataset,
                 hit_rate=dataset.eval_negatives is not None, row_dim=config.model.embed_dim,
                 plan_lengths=lengths, max_buckets=config.max_buckets,
                 client_data=rows, negatives=negatives, config=config,
                 capacity=capacity)
  data.positive_term = method.positive_term
  if method.positive_term:
    data.cuts = positive_classes.choose_cuts(
        rows.num_rows, rows.num_positives, plan, data.pos_lengths(plan.lengths),
        config.clients_per_round, config.round_assignment, POS_GRAIN, config.seed)
  task = make_task(config, method, dataset.num_users, dataset.num_items)
  return TaskBundle(task, data, attack)
