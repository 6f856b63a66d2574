"""FedAttack (Wu et al., RecSys 2022): poisoning by the globally hardest samples.

"FedAttack: Effective and Covert Poisoning Attack on Federated Recommendation via Hard
Sampling": a malicious client ranks the whole catalogue against its user embedding and
trains on inverted hard samples: the items it scores lowest (the farthest, its "hardest
positives") labelled 1, and the items it scores highest (the most relevant, its "hardest
negatives") labelled 0. After the authors' public code (GitHub wuch15/FedAttack): every
sample of a malicious user pairs the single lowest-ranked item of the catalogue with
its `npratio` = 1 top-ranked items, so by default `num_positives` = 1 and
`num_negatives` = 1 (negatives per positive). Here, every round, each attacker

1. scores every item with the model it received (`u · v` for MF; NCF's network for the
   MLP interaction, where the public code ranks by `u · v` of the raw embeddings);
2. takes the `num_positives` lowest-scored items as positives and the
   `num_positives · num_negatives` highest-scored other items as negatives (`lax.top_k`,
   ties to the lower id);
3. uploads the gradient of the benign objective's mean BCE over those samples with
   respect to their item rows and the network, unscaled (what a benign client uploads
   after one full-batch step of the `gradient` protocol).

Differences: the paper's malicious clients are compromised users whose embedding is
inferred from their real profile and trained on the poisoned samples; ours are extra
clients with no profile, so each keeps a fixed private user embedding drawn once from
the benign initialisation `N(0, embed_init_std² I)`. The loss is the simulator's BCE
where the public code uses a softmax over the positive and its negatives. The claimed
sample count (`weight`) is the number of samples, `P (1 + K)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rec.attacks.a_hum import bce, check_count, pair_logits
from fedjax_rec.attacks.base import Attack
from fedjax_rec.models import ncf
from fedjax_rec.task import ClientUpload
from fedjax_rec.types import Array, PublicParams, PyTree


def hard_samples(scores: Array, num_positives: int, num_negatives: int) -> tuple[Array, Array]:
  """`(positives [P], negatives [P·K])`: the lowest- and highest-scored items, disjoint."""
  positives = jax.lax.top_k(-scores, num_positives)[1]
  rest = scores.at[positives].set(-jnp.inf)
  negatives = jax.lax.top_k(rest, num_positives * num_negatives)[1]
  return positives.astype(jnp.int32), negatives.astype(jnp.int32)


def make_fedattack(model_config: ncf.NCFConfig, targets=None, *, num_positives: int = 1,
                   num_negatives: int = 1) -> Attack:
  """FedAttack (see the module docstring); `targets` are ignored (an untargeted attack).

  Args:
    num_positives: `P`, the lowest-scored items uploaded as positives.
    num_negatives: `K`, highest-scored items uploaded as negatives per positive.
  """
  del targets
  num_pos = check_count("num_positives", num_positives)
  num_neg = check_count("num_negatives", num_negatives)
  num_rows = num_pos * (1 + num_neg)
  labels = jnp.concatenate([jnp.ones((num_pos,)), jnp.zeros((num_pos * num_neg,))])

  def init(key: Array, num_attackers: int, public: PublicParams) -> PyTree:
    num_items = public.item_emb.shape[0]
    if num_rows > num_items:
      raise ValueError(f"fedattack: num_positives * (1 + num_negatives) = {num_rows} "
                       f"exceeds the {num_items} items")
    return ncf.init_user_emb(key, model_config, num_attackers)

  def loss(rows: Array, net: PyTree, user: Array) -> Array:
    logits = pair_logits(model_config, net, user[None], rows)[0]
    return jnp.mean(jnp.where(labels > 0, bce(logits, 1.0), bce(logits, 0.0)))

  def update(public: PublicParams, ctx: PyTree, state: Array, key: Array):
    del ctx, key
    scores = ncf.score_all(model_config, public.net, state[None], public.item_emb)[0]
    positives, negatives = hard_samples(scores, num_pos, num_neg)
    items = jnp.concatenate([positives, negatives])
    g_rows, g_net = jax.grad(loss, argnums=(0, 1))(public.item_emb[items], public.net, state)
    up = ClientUpload(row_item=items, row_grad=g_rows, row_mask=jnp.ones((num_rows,), bool),
                      net=g_net, weight=jnp.asarray(num_rows, jnp.float32))
    return state, up

  return Attack(name="fedattack", init=init, update=update, num_rows=num_rows)
