"""The FORTRESS main table: methods x attacks x seeds, HR@10 / NDCG@10 / ER@5.

`run_fortress_table(workdir)` trains every (dataset, seed, method, attack) as a point
of the multi-run store in `workdir` (`results_store`: `results.csv` and
`points/<dataset>-<encoder>-<method>-<attack>-s<seed>-<digest>/`, the digest hashing
the run's whole configuration), so an interrupted table resumes where it stopped:
finished runs are read back, a cut run resumes from its last checkpoint, and a run
with other settings is another point. After every run it rewrites
`<workdir>/fortress_table.md` (mean ± std over the seeds that finished) and
`fortress_runs.csv` (one line per run) atomically.

Rows: plain federated training (FedSeq), CL only, CL + temporal and full FORTRESS,
per encoder. Columns: no attack, A-hum and PSMU, all with the same target items, so
the clean columns give the baseline ER@5. "CL + temporal" and "FORTRESS" differ only
by the server defense: their attacked columns are the defense off / on.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io as pyio
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fedjax_rec import checkpoints
from fedjax_rec import metrics as metrics_lib
from fedjax_rec.attacks.targets import select_targets
from fedjax_rec.data.loaders import default_data_dir, popularity_all
from fedjax_rec.results_store import STORE_NAME, ResultsStore, run_point
from fedjax_rec.runner import EvalConfig, config_dict
from fedjax_rec.tasks.sequential.config import SeqConfig, method_config
from fedjax_rec.tasks.sequential.data import NoTimestampsError, load_seq_dataset
from fedjax_rec.simulation import Simulator

# (label, method) of the table's rows; each is run once per encoder.
METHODS = (("FedSeq", "fedseq"), ("CL", "cl"), ("CL + temporal", "cl_temporal"),
           ("FORTRESS", "fortress"))
ENCODER_LABELS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec"}
DATASETS = ("ml-100k", "ml-1m")
ATTACKS = ("none", "a_hum", "psmu")
ATTACK_LABELS = {"none": "no attack", "a_hum": "A-hum", "psmu": "PSMU"}
METRICS = ("hr@10", "ndcg@10", "er@5")
EVAL = EvalConfig(every=10, ks=(10,), er_ks=(5,))
COLUMNS = ("dataset", "method", "encoder", "attack", "seed", *METRICS, "epochs",
           "train_seconds", "run_dir")
STORE_KEYS = ("dataset", "encoder", "method", "attack", "seed")


@dataclasses.dataclass(frozen=True)
class TableSettings:
  """Attributes:
    epochs: global epochs of every run (None: `SeqConfig`'s default).
    malicious_share: attackers as a share of the benign users.
    target: target spec (`attacks.targets.select_targets`).
    seeds: number of seeds; runs use seeds 0..seeds-1.
    encoders: encoders of the rows ("sasrec", "gru4rec").
  """

  epochs: int | None = None
  malicious_share: float = 0.01
  target: str = "least_popular"
  seeds: int = 1
  encoders: tuple[str, ...] = ("sasrec",)

  def __post_init__(self):
    if self.seeds < 1 or not 0 <= self.malicious_share < 1:
      raise ValueError(f"need seeds >= 1 and 0 <= malicious_share < 1, got {self.seeds} "
                       f"and {self.malicious_share}")
    unknown = set(self.encoders) - set(ENCODER_LABELS)
    if unknown or not self.encoders:
      raise ValueError(f"encoders must be among {', '.join(ENCODER_LABELS)}, got "
                       f"{', '.join(self.encoders) or 'none'}")


def row_label(method_label: str, encoder: str) -> str:
  return f"{method_label} ({ENCODER_LABELS[encoder]})"


def make_config(method: str, encoder: str, attack: str, dataset, seed: int,
                settings: TableSettings) -> SeqConfig:
  """The run of one table cell: the method preset with this encoder, attack and seed."""
  base = SeqConfig()
  base = dataclasses.replace(base, encoder=dataclasses.replace(base.encoder, name=encoder))
  targets = select_targets(popularity_all(dataset), settings.target, seed=seed)
  over = dict(seed=seed, targets=tuple(int(t) for t in targets), attack=attack,
              num_malicious=max(1, int(settings.malicious_share * dataset.num_users))
              if attack != "none" else 0)
  if settings.epochs is not None:
    over["epochs"] = settings.epochs
  return method_config(method, base, **over)


def point_name(dataset_name: str, config: SeqConfig) -> str:
  """`<dataset>-<encoder>-<method>-<attack>-s<seed>-<digest of the config>`."""
  key = json.dumps(config_dict(config, dataset_name, EVAL), sort_keys=True)
  digest = hashlib.sha256(key.encode()).hexdigest()[:10]
  return (f"{dataset_name}-{config.encoder.name}-{config.method}-{config.attack}"
          f"-s{config.seed}-{digest}")


def _run_row(dataset: str, label: str, config: SeqConfig, rows: list[dict], wd: Path) -> dict:
  final = rows[-1] if rows else {}
  row = {"dataset": dataset, "method": label, "encoder": config.encoder.name,
         "attack": config.attack, "seed": config.seed, "epochs": int(final.get("epoch", 0)),
         "train_seconds": float(sum(r.get("train/seconds", 0.0) for r in rows)),
         "run_dir": str(wd)}
  row.update({m: float(final.get(f"test/{m}", float("nan"))) for m in METRICS})
  return row


def mean_std(values: Sequence[float]) -> str:
  """"m ± s" over the finite values ("n/a" when none; no "±" for a single value)."""
  vals = np.asarray([v for v in values if np.isfinite(v)], float)
  if vals.size == 0:
    return "n/a"
  return f"{vals.mean():.4f}" if vals.size == 1 else f"{vals.mean():.4f} ± {vals.std():.4f}"


def to_markdown(rows: list[dict], notes: Sequence[str], attacks: Sequence[str] = ATTACKS,
                reference: dict | None = None) -> str:
  """The main table (mean ± std over seeds), then the defense-effect view.

  Args:
    rows: one dict per finished run (`COLUMNS`).
    notes: lines listed under the title.
    attacks: the attack columns, in order.
    reference: `{dataset: {"hr@10": x, "ndcg@10": y}}` of MostPop, shown as a row.
  """
  lines = ["# FORTRESS main table", "",
           "HR@10 / NDCG@10 of the held-out last item (full ranking, history masked); ER@5 "
           "of the target items among users who never interacted with them (docs/design.md). "
           "Mean ± std over seeds (population std); a single value is one seed.", ""]
  lines += [f"- {n}" for n in notes] + [""]
  header = ["dataset", "method", "seeds"] + [f"{ATTACK_LABELS.get(a, a)} {m.upper()}"
                                             for a in attacks for m in METRICS]
  lines += ["| " + " | ".join(header) + " |",
            "|---|---|---:|" + "---:|" * (len(header) - 3)]
  cells: dict[tuple, list[dict]] = {}
  for r in rows:
    cells.setdefault((r["dataset"], r["method"], r["attack"]), []).append(r)
  datasets = list(dict.fromkeys(r["dataset"] for r in rows))
  for ds in datasets:
    if reference and ds in reference:
      ref = reference[ds]
      vals = [_fmt(ref.get(m, float("nan"))) if a == "none" and m != "er@5" else ""
              for a in attacks for m in METRICS]
      lines.append("| " + " | ".join([ds, "MostPop", "-"] + vals) + " |")
    for method in dict.fromkeys(r["method"] for r in rows if r["dataset"] == ds):
      runs = [cells.get((ds, method, a), []) for a in attacks]
      seeds = max(len(c) for c in runs)
      vals = [mean_std([r[m] for r in c]) for c in runs for m in METRICS]
      lines.append("| " + " | ".join([ds, method, str(seeds)] + vals) + " |")
  attacked = [a for a in attacks if a != "none"]
  if attacked:
    lines += ["", "## Server defense under attack (CL + temporal = off, FORTRESS = on)", "",
              "| dataset | encoder | attack | defense | ER@5 | HR@10 |",
              "|---|---|---|---|---:|---:|"]
    for ds in datasets:
      for encoder in dict.fromkeys(r["encoder"] for r in rows if r["dataset"] == ds):
        for a in attacked:
          for name, defense in (("CL + temporal", "off"), ("FORTRESS", "on")):
            c = cells.get((ds, row_label(name, encoder), a), [])
            if c:
              lines.append(f"| {ds} | {ENCODER_LABELS[encoder]} | {ATTACK_LABELS.get(a, a)} | "
                           f"{defense} | {mean_std([r['er@5'] for r in c])} | "
                           f"{mean_std([r['hr@10'] for r in c])} |")
  return "\n".join(lines) + "\n"


def _fmt(x) -> str:
  return "n/a" if not np.isfinite(x) else f"{x:.4f}"


def to_csv(rows: list[dict]) -> str:
  buf = pyio.StringIO()
  writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  return buf.getvalue()


def run_fortress_table(workdir: str | Path, *, datasets: Sequence[str] = DATASETS,
                       data_root: str | Path | None = None,
                       settings: TableSettings = TableSettings(),
                       attacks: Sequence[str] = ATTACKS, methods=METHODS,
                       log: Callable[[str], None] = print) -> list[dict]:
  """Runs (or resumes) the table; returns one row per run and writes `.md` and `.csv`.

  Seeds are the outer loop, so a table cut short holds whole seeds.

  Args:
    workdir: root of every run's directory and of the table files.
    datasets: sequential dataset names; one whose data is missing or has no
      timestamps is listed as unavailable in the table's notes.
    data_root: folder holding `<dataset>/` raw data (default: the loaders' default).
    settings: budget, attack strength, target, seeds and encoders.
    attacks: "none" and/or sequential attack names.
    methods: `(label, method)` rows.
    log: progress lines.
  """
  root = Path(workdir)
  store = ResultsStore(root / STORE_NAME, STORE_KEYS)
  rows: list[dict] = []
  reference: dict[str, dict] = {}
  notes: list[str] = [f"Attacks: {settings.malicious_share:.1%} malicious clients (at least "
                      f"1), target `{settings.target}`; seeds 0..{settings.seeds - 1}."]
  write = lambda: (checkpoints.atomic_write_text(root / "fortress_table.md",
                                        to_markdown(rows, notes, attacks, reference)),
                   checkpoints.atomic_write_text(root / "fortress_runs.csv", to_csv(rows)))
  t_start = time.perf_counter()
  for name in datasets:
    data_dir = (Path(data_root) / name) if data_root is not None else default_data_dir(name)
    try:
      dataset = load_seq_dataset(name, None if name == "synthetic" else data_dir)
    except (NoTimestampsError, FileNotFoundError) as e:
      notes.append(f"{name}: unavailable ({e}).")
      log(f"{name}: unavailable: {e}")
      write()
      continue
    pop = metrics_lib.mostpop_metrics(dataset, ks=(10,))
    reference[name] = {"hr@10": pop["recall@10"], "ndcg@10": pop["ndcg@10"]}
    notes.append(f"{dataset.summary()}.")
    for seed in range(settings.seeds):
      for encoder in settings.encoders:
        for label, method in methods:
          for attack in attacks:
            config = make_config(method, encoder, attack, dataset, seed, settings)
            pid = point_name(name, config)
            log(f"== {name} / {row_label(label, encoder)} / {attack} / seed {seed} -> {pid}")
            t0 = time.perf_counter()
            point = {"dataset": name, "encoder": encoder, "method": method, "attack": attack,
                     "seed": seed}
            runs = run_point(store, pid, point, config, dataset, eval_config=EVAL, log=log,
                             simulator_factory=Simulator)
            log(f"   {time.perf_counter() - t0:.0f}s")
            rows.append(_run_row(name, row_label(label, encoder), config, runs,
                                 store.point_dir(pid)))
            write()
  notes.append(f"This invocation: {time.perf_counter() - t_start:.0f}s wall time; training "
               f"time of all runs {np.nansum([r['train_seconds'] for r in rows]):.0f}s.")
  write()
  log(to_markdown(rows, notes, attacks, reference))
  return rows
