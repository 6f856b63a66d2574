"""What evaluation costs against its floor: shared by the benchmarks (no flags).

The floor of an evaluation is one jitted pass of the model over every (user, item)
pair, in the same user batches, with a top-20 per user and nothing else.
"""

from __future__ import annotations

import functools
import time

import jax
import numpy as np

from fedjax_rec import metrics
from fedjax_rec.eval_batches import batch_users


@functools.partial(jax.jit, static_argnames=("score_fn",))
def _top20(score_fn: metrics.ScoreFn, params, user_ids: jax.Array) -> jax.Array:
  return jax.lax.map(lambda uids: jax.lax.top_k(score_fn(params, uids), 20)[1], user_ids)


def floor_pass(score_fn: metrics.ScoreFn, params, num_users: int,
               batch_size: int = 256) -> jax.Array:
  """Top-20 item ids `[nb, b, 20]` of every user, in evaluation's user batches."""
  user_ids, _, _ = batch_users(np.arange(num_users), batch_size)
  return jax.block_until_ready(_top20(score_fn, params, user_ids))


def eval_seconds(sim, state, reps: int = 3) -> tuple[float, float]:
  """`(evaluation s, scoring floor s)`: medians after a warm-up call of each.

  The evaluation is the run's own (`Simulator.evaluate`: Recall/NDCG/Precision@20, and
  ER@5/10/20 of the config's targets); the floor one jitted pass of the model over every
  (user, item) pair in the same user batches, with a top-20 per user.
  """
  targets = np.asarray(sim.config.targets) if sim.config.targets else None
  params = sim.eval_params(state)
  calls = (lambda: sim.evaluate(state, targets=targets),
           lambda: floor_pass(sim.task.score, params, sim.dataset.num_users))
  out = []
  for call in calls:
    call()
    times = []
    for _ in range(reps):
      t0 = time.perf_counter()
      call()
      times.append(time.perf_counter() - t0)
    out.append(float(np.median(times)))
  return out[0], out[1]
