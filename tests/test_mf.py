"""MF (the dot interaction of the NCF task): the round against the per-client reference,
a network without parameters through every aggregator and the server, learning, and the
`fedrecattack` preset and MF flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rec.aggregators import AGGREGATORS, make_aggregator
from fedjax_rec.data.synthetic import load_synthetic
from fedjax_rec.models import ncf
from fedjax_rec.rounds import make_client_phase, uploads_from_parts
from fedjax_rec.runner import run
from fedjax_rec.server import ServerConfig
from fedjax_rec.simulation import Simulator
from fedjax_rec.tasks.ncf.client import LocalConfig
from fedjax_rec.tasks.ncf.config import SimConfig
from tests import reference
from tests import test_simulation as ts

MF = ncf.NCFConfig(embed_dim=4, hidden=(), embed_init_std=0.1, interaction="dot")
LOSSES = {"bce-mean": (), "bpr-sum-l2": (("l2_reg", 0.1), ("loss_reduction", "sum"),
                                         ("rec_loss", "bpr")),
          "bce-sum-l2": (("l2_reg", 0.3), ("loss_reduction", "sum")),
          "bpr-mean": (("rec_loss", "bpr"),)}


@pytest.fixture(scope="module")
def dataset():
  return load_synthetic(ts.SMALL, seed=3)


def mf_config(loss="bpr-sum-l2", **kw):
  return ts.small_config(**{"model": MF, "method_kwargs": LOSSES[loss], "num_negatives": 2,
                            **kw})


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_mf_round_equals_reference_loop(dataset, loss):
  sim = Simulator(mf_config(loss), dataset)
  state = sim.init()
  assert state.server.params.net == {}
  users, _ = sim.epoch_rounds(0)[0]
  slots, plan = sim.round_slots(users)
  phase = jax.jit(make_client_phase(sim.task, dataset.num_users), static_argnames=("lengths",))
  clients, parts, _ = phase(state.server.params, (), state.clients, sim.device_data, slots,
                            lengths=plan.lengths, key=jax.random.key(0))
  by_client = ts._uploads_by_client  # pylint: disable=protected-access
  got = by_client(uploads_from_parts(parts), np.concatenate(slots))
  ref_rows = []
  for user in users:  # the oracle loops over clients on purpose
    u, rows = reference.mf_reference(
        state.server.params, state.clients.user_emb[user], sim.config.local.user_lr,
        sim.dataset.train.row(user), sim.data.negatives.row(user), **dict(LOSSES[loss]))
    assert sorted(got[int(user)]) == sorted(rows)
    for item, g in rows.items():
      np.testing.assert_allclose(got[int(user)][item], g, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(clients.user_emb[user], u, rtol=1e-5, atol=1e-6)
    ref_rows.append(rows)
  # The whole round: FedAvg-sum then server SGD.
  (server, _, _, _), _ = sim.apply_round(state.server, state.clients, (), users)
  grad, _, _ = reference.fedavg_sum_reference(ref_rows, [{}] * len(users), dataset.num_items,
                                              MF.embed_dim)
  np.testing.assert_allclose(server.params.item_emb,
                             np.asarray(state.server.params.item_emb) - 0.1 * grad,
                             rtol=1e-5, atol=1e-6)
  assert server.params.net == {}


@pytest.fixture(scope="module")
def mf_uploads(dataset):
  sim = Simulator(mf_config(), dataset)
  state = sim.init()
  users, _ = sim.epoch_rounds(0)[0]
  slots, plan = sim.round_slots(users)
  phase = jax.jit(make_client_phase(sim.task, dataset.num_users), static_argnames=("lengths",))
  _, parts, _ = phase(state.server.params, (), state.clients, sim.device_data, slots,
                      lengths=plan.lengths, key=jax.random.key(0))
  return uploads_from_parts(parts)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_every_aggregator_takes_a_network_without_parameters(dataset, mf_uploads, name):
  """Every aggregator runs on an MF round's uploads (`net == {}`); where the network's
  norm enters the item rows (NormBound, HiCS) they equal those with a zero leaf."""
  agg = make_aggregator(name, dataset.num_items, "sum")
  apply = jax.jit(agg.apply)
  got, _, metrics = apply(mf_uploads, agg.init())
  assert got.net == {}
  assert np.isfinite(np.asarray(got.item_grad)).all() and np.asarray(got.item_touched).any()
  assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
  if name in ("norm_bound", "hics", "fedavg"):
    num_clients = mf_uploads.client_mask.shape[0]
    want, _, _ = apply(mf_uploads._replace(net={"w": jnp.zeros((num_clients, 1))}),
                       agg.init())
    np.testing.assert_allclose(got.item_grad, want.item_grad, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got.item_touched, want.item_touched)


@pytest.mark.parametrize("server", ["adam", "sgd"])
def test_mf_trains_with_server_adam_or_sgd(dataset, server):
  cfg = mf_config(server=ServerConfig(optimizer=server, lr=0.05), epochs=1)
  sim = Simulator(cfg, dataset)
  state, _ = sim.run_epoch(sim.init())
  assert state.server.params.net == {}
  assert np.isfinite(np.asarray(state.server.params.item_emb)).all()
  assert not np.allclose(state.server.params.item_emb, sim.init().server.params.item_emb)


def test_mf_learns_beyond_mostpop():
  """MF with BPR on the default synthetic data beats MostPop within 4 epochs."""
  cfg = SimConfig(model=ncf.NCFConfig(embed_dim=32, hidden=(), interaction="dot"),
                  local=LocalConfig(user_optimizer="adam", user_lr=0.1, lr=0.01),
                  server=ServerConfig(optimizer="adam", lr=0.01),
                  method_kwargs=(("rec_loss", "bpr"),), num_negatives=1, epochs=4)
  summary = run(cfg, load_synthetic(), log=lambda line: None, progress=False)
  assert summary["final"]["test/recall@20"] > summary["mostpop"]["recall@20"] + 0.05


def test_model_validation():
  with pytest.raises(ValueError, match="hidden must be empty"):
    ncf.NCFConfig(hidden=(8,), interaction="dot")
  with pytest.raises(ValueError, match="interaction"):
    ncf.NCFConfig(interaction="cosine")
  with pytest.raises(ValueError, match="num_negatives must be >= 1"):
    mf_config(num_negatives=0)
  u, v = jnp.ones((3, 4)), jnp.arange(20.0).reshape(5, 4)
  np.testing.assert_allclose(ncf.score_all(MF, {}, u, v)[1],
                             ncf.logits(MF, {}, jnp.broadcast_to(u[1], v.shape), v))


def test_mf_flags_translate():
  # In a fresh process: the flag checks parse `experiments.flags_lib`'s flags, which
  # other programs imported by the suite (`experiments.reproduce`) also define.
  out = subprocess.run([sys.executable, "-m", "tests.mf_flag_checks"], capture_output=True,
                       text=True, cwd=Path(__file__).resolve().parents[1])
  assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
