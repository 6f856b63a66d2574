"""Fang's Krum attack against a NumPy oracle that builds the copies and runs Krum on
dense whole uploads, and end to end against whole-upload Krum (Multi-Krum, one kept)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec.attacks import make_attack
from fedjax_rec.attacks.benign import benign_stats
from fedjax_rec.types import PublicParams, Uploads
from tests.attacks.test_untargeted import _run_epoch, tiny  # noqa: F401 (fixture)

NUM_ITEMS, DIM, NET = 9, 3, (2, 2)


def _case(seed: int, num_benign: int, spread: float):
  """Ragged benign uploads around a common direction, then a NaN client (real, rejected,
  left out of the statistics) and a padded slot."""
  rng = np.random.default_rng(seed)
  center = rng.normal(size=(NUM_ITEMS, DIM))
  clients = []
  for _ in range(num_benign + 2):
    items = rng.choice(NUM_ITEMS, size=int(rng.integers(3, NUM_ITEMS)), replace=False)
    rows = {int(i): (center[i] + spread * rng.normal(size=DIM)).astype(np.float32)
            for i in items}
    clients.append((rows, (1 + spread * rng.normal(size=NET)).astype(np.float32)))
  clients[num_benign][0][next(iter(clients[num_benign][0]))][0] = np.nan
  real = [True] * (num_benign + 1) + [False]
  return clients, real, list(range(num_benign))


def _uploads(clients, real) -> Uploads:
  row_client, row_item, row_grad, row_mask = [], [], [], []
  for c, (rows, _) in enumerate(clients):
    for i, g in rows.items():
      row_client.append(c), row_item.append(i), row_grad.append(g), row_mask.append(real[c])
    row_client.append(c), row_item.append(0), row_grad.append(np.full(DIM, 1e9, np.float32))
    row_mask.append(False)
  n = len(clients)
  return Uploads(row_client=jnp.asarray(row_client, jnp.int32),
                 row_item=jnp.asarray(row_item, jnp.int32), row_grad=jnp.asarray(row_grad),
                 row_mask=jnp.asarray(row_mask),
                 net={"w": jnp.asarray(np.stack([net for _, net in clients]))},
                 client_weight=jnp.ones(n), client_mask=jnp.asarray(real),
                 client_malicious=jnp.zeros(n, bool))


def _oracle(clients, good, c, steps):
  """`(λ, selected, s)` by the paper's procedure on dense vectors (loops on purpose)."""
  dense = []
  for k in good:
    rows, net = clients[k]
    v = np.zeros((NUM_ITEMS, DIM))
    for i, g in rows.items():
      v[i] = g
    dense.append(np.concatenate([v.ravel(), net.ravel()]))
  dense = np.asarray(dense, np.float64)
  mean_rows = np.zeros((NUM_ITEMS, DIM))
  for i in range(NUM_ITEMS):
    up = [clients[k][0][i] for k in good if i in clients[k][0]]
    if up:
      mean_rows[i] = np.mean(up, axis=0)
  mean_net = np.mean([clients[k][1] for k in good], axis=0)
  s = np.concatenate([np.sign(mean_rows).ravel(), np.sign(mean_net).ravel()])
  b, n = len(good), len(good) + c
  dist = np.sqrt(((dense[:, None] - dense[None]) ** 2).sum(-1))
  near = [np.sort(np.delete(dist[i], i))[:n - c - 2].sum() for i in range(b)]
  d = np.count_nonzero(s)
  lam = min(near) / ((n - 2 * c - 1) * np.sqrt(d)) + np.linalg.norm(dense, axis=1).max() / np.sqrt(d)
  for t in range(steps):
    points = np.concatenate([dense, np.repeat((-lam * s)[None], c, 0)])
    sq = ((points[:, None] - points[None]) ** 2).sum(-1)
    scores = [np.sort(np.delete(sq[i], i))[:n - c - 2].sum() for i in range(n)]
    if int(np.argmin(scores)) >= b:  # a copy (benign slots come first and win ties)
      return lam, True, s
    if t < steps - 1:
      lam *= 0.5
  return lam, False, s


@pytest.mark.parametrize("seed, num_benign, c, spread", [
    (0, 8, 2, 0.3), (1, 10, 3, 1.0), (2, 6, 1, 0.1), (3, 12, 4, 2.0), (4, 7, 2, 0.05)])
def test_against_numpy(seed, num_benign, c, spread):
  clients, real, good = _case(seed, num_benign, spread)
  steps = 20
  stats = jax.jit(benign_stats, static_argnums=(1, 3))(_uploads(clients, real), NUM_ITEMS,
                                                       jnp.int32(c), True)
  attack = make_attack("fang_krum", None, None, steps=steps)
  public = PublicParams(item_emb=jnp.zeros((NUM_ITEMS, DIM)), net={"w": jnp.zeros(NET)})
  state = attack.init(jax.random.key(0), c, public)
  new_state, up = jax.jit(attack.update)(public, (), state[0], jax.random.key(1), stats)
  lam, found, s = _oracle(clients, good, c, steps)
  assert bool(new_state[1]) == found
  np.testing.assert_allclose(float(new_state[0]), lam, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(up.row_grad).ravel(), -lam * s[:NUM_ITEMS * DIM],
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(up.net["w"]).ravel(), -lam * s[NUM_ITEMS * DIM:],
                             rtol=1e-4)


def test_some_cases_are_selected_and_some_are_not():
  # The oracle cases above cover both outcomes (else the comparison would be one-sided).
  outcomes = set()
  for seed, num_benign, c, spread in [(0, 8, 2, 0.3), (3, 12, 4, 2.0), (4, 7, 2, 0.05)]:
    clients, _, good = _case(seed, num_benign, spread)
    outcomes.add(_oracle(clients, good, c, 20)[1])
  assert outcomes == {True, False}


@pytest.mark.parametrize("aggregator, kwargs", [
    ("multi_krum", (("num_selected", 1),)), ("fedavg", ())])
def test_end_to_end(tiny, aggregator, kwargs):  # noqa: F811
  ds, config = tiny
  kw = dict(aggregator=aggregator, aggregator_kwargs=kwargs)
  benign, _ = _run_epoch(ds, config(**kw))
  # Under FedAvg one step keeps the paper's bound λ0 (Krum's search would shrink it).
  steps = (("steps", 1),) if aggregator == "fedavg" else ()
  state, summary = _run_epoch(ds, config(attack="fang_krum", num_malicious=3,
                                         attack_kwargs=steps, **kw))
  assert summary["num_malicious"] > 0 and summary["rejected"] == 0
  assert np.all(np.isfinite(state.server.params.item_emb))
  lam = np.asarray(state.attackers)[:, 0]
  assert np.all(np.isfinite(lam)) and np.all(lam > 0)  # every attacker uploaded a λ
  if aggregator == "fedavg":  # FedAvg takes every upload in
    assert not np.allclose(state.server.params.item_emb, benign.server.params.item_emb)
