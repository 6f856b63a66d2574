"""Runs a few rounds of each task on one device and on an 8-device CPU mesh; prints max diffs.

Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8; an
optional argument names the cases (comma-separated; default: all).
"""

from __future__ import annotations

import dataclasses
import json
import sys

import jax
import numpy as np

from fedjax_rec import sharding
from fedjax_rec.tasks.ncf.client import LocalConfig
from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
from fedjax_rec.tasks.ncf.methods import METHODS
from fedjax_rec.models.ncf import NCFConfig
from fedjax_rec.server import ServerConfig
from fedjax_rec.simulation import Simulator
from fedjax_rec.tasks.ncf.config import SimConfig
from fedjax_rec.models.encoders import EncoderConfig
from fedjax_rec.tasks.sequential.config import SeqConfig, method_config
from fedjax_rec.tasks.sequential.data import load_seq_dataset
from fedjax_rec.tasks.sequential.synthetic import SeqSyntheticConfig


def main():
  assert jax.device_count() == 8, jax.devices()
  ds = load_synthetic(SyntheticConfig(num_users=150, num_items=60, num_clusters=3,
                                      mean_activity=10, min_activity=3, max_activity=30))
  base = SimConfig(model=NCFConfig(embed_dim=8, hidden=(8, 4)),
                   local=LocalConfig(user_optimizer="sgd", user_lr=0.05),
                   server=ServerConfig(optimizer="adam", lr=0.01), clients_per_round=40,
                   epochs=2, max_buckets=3)
  cases = {"fedavg": base, "median": dataclasses.replace(base, aggregator="median")}
  if "cl4fedrec" in METHODS:
    pop = ds.item_popularity()
    cases["cl4fedrec"] = dataclasses.replace(
        base, method="cl4fedrec",
        method_kwargs=(("num_synthetic_users", 5), ("popularity", tuple(int(p) for p in pop)),
                       ("synthetic_items", 5)))
  data = {name: ds for name in cases}
  # The sequential task on the same mesh: every view and the temporal term. The FORTRESS
  # server defense is left out: its top-k selections flip on float-level ties between
  # meshes (measured: 0.02 apart after 2 epochs, docs/design.md).
  data["sequential"] = load_seq_dataset(
      "synthetic", max_len=10, seed=1,
      synthetic=SeqSyntheticConfig(num_users=60, num_items=48, num_clusters=4,
                                   num_successors=2, mean_length=8.0, min_length=3,
                                   max_length=24))
  cases["sequential"] = method_config("cl_temporal", SeqConfig(
      encoder=EncoderConfig(embed_dim=8, max_len=10, num_blocks=1), clients_per_round=24,
      epochs=2))
  only = sys.argv[1].split(",") if len(sys.argv) > 1 else list(cases)
  out = {}
  for name in only:
    cfg = cases[name]
    results = []
    for mesh in (None, sharding.make_mesh(8)):
      sim = Simulator(cfg, data[name], mesh=mesh)
      state = sim.init()
      for _ in range(cfg.epochs):
        state, _ = sim.run_epoch(state)
      if name == "sequential":
        # The attention's key bias has an identically zero gradient (softmax ignores a
        # constant shift); server Adam turns its float noise into +-lr steps that change
        # no output. Compared: the item table, every user's representation, the metrics.
        results.append((sharding.fetch((state.server.params.item_emb, state.clients)),
                        sim.evaluate(state, ks=(10,))))
      else:
        results.append(sharding.fetch((state.server.params, state.clients)))
    diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), *results)
    out[name] = max(jax.tree.leaves(diffs))
  json.dump(out, sys.stdout)


if __name__ == "__main__":
  main()
