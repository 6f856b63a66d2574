r"""Speed of the sequential simulator: seconds per global epoch against a floor.

  python -m experiments.benchmark_seq                     # ML-100K, three configurations
  python -m experiments.benchmark_seq --seq_bench_epochs=3

`seq_benchmark_rows()` is what the main benchmark merges: for each configuration the
median seconds of timed global epochs (after one warm-up epoch that compiles), client
updates per second, and the floor: ONE fused forward + backward of the same encoder
and next-item loss over all of the epoch's training windows in a single batch (the
same sampled negatives per position, no contrastive views, no aggregation). The
ratio epoch / floor is what the federated protocol and the FORTRESS terms cost.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from experiments.bench_lib import Row
from experiments.eval_floor import eval_seconds
from fedjax_rec.data.loaders import default_data_dir
from fedjax_rec.models.encoders import EncoderConfig, init_public, lookup, make_encoder
from fedjax_rec.tasks.sequential.config import SeqConfig, method_config
from fedjax_rec.tasks.sequential.data import SeqDataset, load_seq_dataset, train_windows
from fedjax_rec.simulation import Simulator


def floor_seconds(encoder_config: EncoderConfig, dataset: SeqDataset, num_negatives: int = 1,
                  reps: int = 3) -> float:
  """One fused forward + backward of encoder and BCE loss over every window at once."""
  window, mask = (jnp.asarray(x) for x in train_windows(dataset))
  enc = make_encoder(encoder_config)
  public = init_public(jax.random.key(0), encoder_config, dataset.num_items)
  inputs, targets, pos_mask = window[:, :-1], window[:, 1:], mask[:, :-1]

  @jax.jit
  def step(public, key):
    key_neg, key_drop = jax.random.split(key)
    neg = jax.random.randint(key_neg, inputs.shape + (num_negatives,), 0, dataset.num_items)

    def loss(public):
      x = lookup(public.item_emb, public.net["mask_token"], inputs, pos_mask)
      h = enc.apply(public.net, x, pos_mask, key_drop)
      tgt = jnp.where(pos_mask[..., None], public.item_emb[targets], 0.0)
      pos = jnp.sum(h * tgt, -1)
      negs = jnp.einsum("uld,ulkd->ulk", h, public.item_emb[neg])
      per = jax.nn.softplus(-pos) + jnp.mean(jax.nn.softplus(negs), -1)
      return jnp.sum(jnp.where(pos_mask, per, 0.0)) / jnp.sum(pos_mask)

    return jax.grad(loss)(public)

  jax.block_until_ready(step(public, jax.random.key(1)))
  times = []
  for r in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(step(public, jax.random.key(2 + r)))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def bench(name: str, config: SeqConfig, dataset: SeqDataset, epochs: int, floor_s: float,
          note: str = "") -> Row:
  t0 = time.perf_counter()
  sim = Simulator(config, dataset)
  state = sim.init()
  state, _ = sim.run_epoch(state)  # compiles
  compile_s = time.perf_counter() - t0
  secs = []
  for _ in range(epochs):
    state, m = sim.run_epoch(state)
    secs.append(m["seconds"])
  epoch_s = float(np.median(secs))
  mask = np.asarray(sim.data.windows.mask)[:, :-1]
  clients = dataset.num_users + (config.num_malicious if config.attack != "none" else 0)
  eval_s, eval_floor_s = eval_seconds(sim, state)
  row = Row(name, dataset.name, epoch_s, clients / epoch_s, float(mask.mean()), floor_s,
            compile_s, note, eval_s, eval_floor_s)
  print(f"{name:44s} epoch {epoch_s:7.3f}s  floor {floor_s:7.3f}s  ratio {row.ratio:6.2f}  "
        f"eval {eval_s:6.3f}s / floor {eval_floor_s:6.3f}s  "
        f"{row.updates_per_s:8.0f} updates/s  (setup+compile {compile_s:.1f}s)", flush=True)
  return row


def seq_benchmark_rows(epochs: int = 3, data_dir=None, only=()) -> list[Row]:
  """Times the sequential configurations on ML-100K (sequential split).

  Args:
    epochs: timed epochs per configuration (after one warm-up epoch).
    data_dir: the ML-100K folder (default: the loaders' default).
    only: run only the configurations whose name contains one of these.

  Returns:
    One `bench_lib.Row` per configuration.
  """
  dataset = load_seq_dataset("ml-100k", data_dir or default_data_dir("ml-100k"))
  configs = [
      ("seq fedseq / SASRec / fedavg", method_config("fedseq"), ""),
      ("seq fedseq / GRU4Rec / fedavg",
       method_config("fedseq", SeqConfig(encoder=dataclasses.replace(SeqConfig().encoder,
                                                                     name="gru4rec"))), ""),
      ("seq fortress / SASRec / fedavg + defense", method_config("fortress"),
       "4 encoder passes per client (views, temporal)"),
  ]
  floors: dict[str, float] = {}
  rows = []
  for name, config, note in configs:
    if only and not any(o in name for o in only):
      continue
    enc = config.encoder
    if enc.name not in floors:
      floors[enc.name] = floor_seconds(enc, dataset, config.objective.num_negatives)
    rows.append(bench(name, config, dataset, epochs, floors[enc.name], note))
  return rows


def _define(kind: str, name: str, default, help_text: str) -> None:
  if name not in flags.FLAGS:
    getattr(flags, f"DEFINE_{kind}")(name, default, help=help_text)


_define("integer", "seq_bench_epochs", 3, "Timed epochs per configuration.")
_define("list", "seq_bench_only", [], "Only configurations whose name contains one of these.")
_define("string", "seq_bench_data_dir", None, "ML-100K folder.")


def main(argv):
  del argv
  rows = seq_benchmark_rows(flags.FLAGS.seq_bench_epochs, flags.FLAGS.seq_bench_data_dir,
                            tuple(flags.FLAGS.seq_bench_only))
  print("| configuration | data | s / epoch | client updates / s | floor s | epoch / floor |")
  print("|---|---|---:|---:|---:|---:|")
  for r in rows:
    print(f"| {r.name} | {r.dataset} | {r.epoch_s:.3f} | {r.updates_per_s:,.0f} | "
          f"{r.floor_s:.3f} | {r.ratio:.2f} |")


if __name__ == "__main__":
  app.run(main)
