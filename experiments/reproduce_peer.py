r"""`python -m experiments.reproduce --peer=fedrecattack`: FedRecAttack's published log beside ours.

  python -m experiments.reproduce --peer=fedrecattack --epochs=30 --workdir=runs/repro

ML-100K (`--data_dir`, default ../shared/data/ml-100k), leave-one-out, the `fedrecattack`
preset (benign MF of the public code), FedRecAttack with ρ = 5% attackers
(int(0.05 · 943) = 47), κ = 60 rows, ξ = 1% known interactions, one target item drawn as
the public code's main.py does (`np.random.choice(num_items, 1)` after seeding NumPy with
20211111; seed s uses 20211111 + s), each attacker's surrogate trained one pass per round
of the epoch (`peer_config`). Our item ids follow first appearance in u.data, so
the draw names another movie than theirs (their log's target is their item 894).

Each epoch prints ER@5, ER@10 and NDCG@10 of the target (over the users who never
interacted with it, the items they interacted with masked) and sampled HR@10 (test item
against 99 fixed negatives), beside the public README's log. The runs are points of the
multi-run store `<workdir>/peer/` (resumable); the table goes to
`<workdir>/peer_fedrecattack.md`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from absl import flags

from fedjax_rec import checkpoints, plots
from fedjax_rec.data.loaders import load_dataset
from fedjax_rec.results_store import STORE_NAME, ResultsStore, run_point
from fedjax_rec.runner import EvalConfig, config_dict
from fedjax_rec.tasks.ncf.presets import get_preset

FLAGS = flags.FLAGS

PEERS = ("fedrecattack",)
DEFAULT_EPOCHS = 30
MALICIOUS_SHARE = 0.05   # parse.py --clients_limit
ATTACK_ROWS = 60         # parse.py --items_limit
KNOWN_SHARE = 0.01       # parse.py --part_percent=1 (train.part-1%.txt)
ATTACK_CLIP = 1.0        # parse.py --grad_limit
TARGET_SEED = 20211111   # main.py setup_seed
SURROGATE_BATCH = 256    # parse.py --attack_batch_size
DATASET = "ml-100k"

# The log printed in the README of GitHub rdz98/FedRecAttack ("Output"; ML-100K, ρ = 5%,
# κ = 60, ξ = 1%, target item 894): epoch -> (sampled HR@10, ER@5, ER@10, NDCG@10). The
# README shows epochs 0 (init) to 5 only.
PUBLISHED_SOURCE = "README.md of GitHub rdz98/FedRecAttack (section Output)"
PUBLISHED = {0: (0.0848, 0.0021, 0.0054, 0.0025), 1: (0.0732, 0.3869, 0.4019, 0.3799),
             2: (0.0764, 0.5198, 0.5220, 0.5133), 3: (0.0817, 0.6045, 0.6077, 0.6001),
             4: (0.1166, 0.7170, 0.7192, 0.7155), 5: (0.2174, 0.7814, 0.7824, 0.7809)}
COLUMNS = (("sampled_hr@10", "test/sampled_hr@10"), ("er@5", "test/er@5"),
           ("er@10", "test/er@10"), ("ndcg@10", "test/target_ndcg@10"))
STORE_KEYS = ("dataset", "attack", "seed")


def target_item(num_items: int, seed: int) -> int:
  """The public code's draw: the first `np.random.choice` after seeding (main.py)."""
  return int(np.random.RandomState(TARGET_SEED + seed).choice(num_items, 1, replace=False)[0])


def target_ndcg(user_emb, item_emb, interacted, targets, k: int = 10) -> float:
  """NDCG@k of the targets as the public code's eval: per user with at least one target
  it never interacted with, its top-k of the items it did not interact with (ties: lower
  id), DCG of those targets over the ideal DCG of min(#targets, k) hits; the user mean."""
  scores = np.array(jnp.asarray(user_emb) @ jnp.asarray(item_emb).T)
  users = np.repeat(np.arange(interacted.num_users), np.diff(interacted.indptr))
  scores[users, interacted.items] = -np.inf
  top = np.asarray(jax.lax.top_k(jnp.asarray(scores), k)[1])
  discount = 1.0 / np.log2(np.arange(k) + 2.0)
  targets = np.asarray(targets)
  values = []
  for u in range(scores.shape[0]):
    own = interacted.items[interacted.indptr[u]:interacted.indptr[u + 1]]
    mine = targets[~np.isin(targets, own)]
    if mine.size == 0:
      continue
    dcg = float(np.sum(discount[np.isin(top[u], mine)]))
    values.append(dcg / float(np.sum(discount[:min(mine.size, k)])))
  return float(np.mean(values)) if values else 0.0


def peer_config(dataset, seed: int, epochs: int):
  """The run of seed `seed`: the `fedrecattack` preset under FedRecAttack.

  The public code's one surrogate trains one pass over its users (batches of 256) in every
  round; here each attacker keeps its own and trains when it takes part (once per epoch),
  so it takes one pass per round of the epoch: as many Adam steps per epoch as theirs.
  """
  base = get_preset("fedrecattack")
  num_malicious = int(MALICIOUS_SHARE * dataset.num_users)
  rounds = -(-(dataset.num_users + num_malicious) // base.clients_per_round)
  passes = -(-dataset.num_users // SURROGATE_BATCH)
  return get_preset(
      "fedrecattack", seed=seed, epochs=epochs, attack="fedrecattack",
      num_malicious=num_malicious, targets=(target_item(dataset.num_items, seed),),
      attack_kwargs=(("clip", ATTACK_CLIP), ("known_share", KNOWN_SHARE),
                     ("num_rows", ATTACK_ROWS), ("surrogate_steps", rounds * passes)))


def _with_target_ndcg(dataset, targets):
  """An `on_epoch` hook adding `test/target_ndcg@10` to each epoch's rows."""
  interacted = dataset.interacted()

  def hook(state, rows):
    if rows:
      value = target_ndcg(state.clients.user_emb, state.server.params.item_emb, interacted,
                          targets)
      for row in rows:
        row["test/target_ndcg@10"] = value
  return hook


def _fmt(value) -> str:
  return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.4f}"


def comparison(frame: pd.DataFrame, epochs: int) -> pd.DataFrame:
  """One row per epoch: ours (mean over seeds) beside the published log."""
  mean = frame.groupby("epoch").mean(numeric_only=True)
  out = []
  for epoch in range(0, epochs + 1):
    row = {"epoch": epoch}
    for i, (name, col) in enumerate(COLUMNS):
      ours = mean.at[epoch, col] if (epoch in mean.index and col in mean) else None
      row[f"{name} (ours)"] = _fmt(ours)
      row[f"{name} (published)"] = _fmt(PUBLISHED[epoch][i]) if epoch in PUBLISHED else ""
    out.append(row)
  return pd.DataFrame(out)


def run_fedrecattack(workdir: Path, data_dir: str | None, seeds: int, epochs: int,
                     log=print) -> pd.DataFrame:
  """Runs (or resumes) every seed; returns the comparison table (also written as Markdown)."""
  dataset = load_dataset(DATASET, data_dir, seed=0, valid_frac=0.0, split="loo")
  eval_config = EvalConfig(every=1, ks=(10,), er_ks=(5, 10))
  store = ResultsStore(workdir / "peer" / STORE_NAME, STORE_KEYS)
  frames = []
  for seed in range(seeds):
    cfg = peer_config(dataset, seed, epochs)
    record = json.dumps(config_dict(cfg, f"{DATASET}-loo", eval_config), sort_keys=True)
    pid = f"{DATASET}-loo-fedrecattack-s{seed}-{hashlib.sha256(record.encode()).hexdigest()[:12]}"
    prefix = f"[{seed + 1}/{seeds}] fedrecattack seed {seed} target {cfg.targets[0]}"
    rows = run_point(store, pid, {"dataset": f"{DATASET}-loo", "attack": "fedrecattack",
                                  "seed": seed}, cfg, dataset, eval_config=eval_config,
                     log=lambda line, p=prefix: log(f"{p} | {line}"),
                     on_epoch=_with_target_ndcg(dataset, cfg.targets))
    frame = pd.DataFrame(rows)
    frame = frame[frame.epoch <= epochs]
    for _, r in frame.sort_values("epoch").iterrows():
      log(f"{prefix} | epoch {int(r.epoch):3d} ours " + " ".join(
          f"{n}={r.get(c, np.nan):.4f}" for n, c in COLUMNS) + _published_line(int(r.epoch)))
    frames.append(frame)
  table = comparison(pd.concat(frames, ignore_index=True), epochs)
  title = (f"### FedRecAttack on ML-100K (leave-one-out): ours ({seeds} seed(s), mean) and "
           "the published log\n\nρ = 5% attackers, κ = 60, ξ = 1%, one target; published: "
           f"{PUBLISHED_SOURCE} (epochs 0-5 only; epoch 0 is before training).\n\n")
  md = title + plots.markdown_table(table) + "\n"
  checkpoints.atomic_write_text(workdir / "peer_fedrecattack.md", md)
  log(md)
  log(f"wrote {workdir / 'peer_fedrecattack.md'}")
  return table


def _published_line(epoch: int) -> str:
  if epoch not in PUBLISHED:
    return ""
  return " | published " + " ".join(f"{n}={v:.4f}" for (n, _), v in
                                    zip(COLUMNS, PUBLISHED[epoch]))


def main() -> None:
  """Called by `experiments.reproduce` with `--peer`."""
  from absl import app  # pylint: disable=import-outside-toplevel
  if (FLAGS.table or FLAGS.figure or FLAGS.dataset or FLAGS.preset
      or FLAGS.paper != "cl4fedrec"):
    raise app.UsageError("--peer runs its own comparison: drop --table, --figure, "
                         "--dataset, --preset and --paper")
  if FLAGS.peer not in PEERS:
    raise app.UsageError(f"--peer={FLAGS.peer}: expected one of {', '.join(PEERS)}")
  seeds = FLAGS.seeds if FLAGS["seeds"].present else 1
  epochs = FLAGS.epochs if FLAGS.epochs is not None else DEFAULT_EPOCHS
  if epochs < 1:
    raise app.UsageError(f"--epochs must be >= 1 for --peer, got {epochs}")
  run_fedrecattack(Path(FLAGS.workdir), FLAGS.data_dir, seeds, epochs)


__all__ = ["PUBLISHED", "comparison", "peer_config", "run_fedrecattack", "target_item",
           "target_ndcg"]
