"""The FORTRESS main table: methods x attack, HR@10 / NDCG@10 / ER@5 (library-callable).

`run_fortress_table(workdir)` trains every configuration with `runner.run` in
`<workdir>/<dataset>/<encoder>-<method>-<attack>/`, skips the finished ones (their
`summary.json` is read back), and writes `<workdir>/fortress_table.md` and
`fortress_table.csv` atomically after every configuration, so an interrupted table
resumes where it stopped. Rows: plain federated SASRec and GRU4Rec, CL only,
CL + temporal, full FORTRESS (SASRec), each without attack and under A-hum (the same
target items in both, so the clean runs give the baseline ER@5). "CL + temporal" and
"FORTRESS" differ only by the server-side defense: their A-hum rows are the defense
effect. ML-1M has no timestamps here and is reported as unavailable.
"""

from __future__ import annotations

import csv
import dataclasses
import io as pyio
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fedjax_rec import io
from fedjax_rec import metrics as metrics_lib
from fedjax_rec.attacks.targets import select_targets
from fedjax_rec.data.loaders import default_data_dir, popularity_all
from fedjax_rec.runner import EvalConfig, config_dict, run
from fedjax_rec.sequential.config import SeqConfig, method_config
from fedjax_rec.sequential.data import NoTimestampsError, load_seq_dataset
from fedjax_rec.sequential.simulation import SeqSimulator

# (label, encoder, method) of the table's rows.
METHOD_ROWS = (("FedSeq (SASRec)", "sasrec", "fedseq"),
               ("FedSeq (GRU4Rec)", "gru4rec", "fedseq"),
               ("CL (SASRec)", "sasrec", "cl"),
               ("CL + temporal (SASRec)", "sasrec", "cl_temporal"),
               ("FORTRESS (SASRec)", "sasrec", "fortress"))
DATASETS = ("ml-100k", "synthetic", "ml-1m")
ATTACKS = ("none", "a_hum")
EVAL = EvalConfig(every=10, ks=(10,), er_ks=(5,))
COLUMNS = ("dataset", "method", "encoder", "attack", "hr@10", "ndcg@10", "er@5", "epochs",
           "train_seconds", "status")


@dataclasses.dataclass(frozen=True)
class TableSettings:
  """Attributes:
    epochs: global epochs of every run (None: `SeqConfig`'s default).
    malicious_share: attackers as a share of the benign users.
    target: target spec (`attacks.targets.select_targets`).
    seed: root seed of every run.
  """

  epochs: int | None = None
  malicious_share: float = 0.01
  target: str = "least_popular"
  seed: int = 0


def _config(label_method: str, encoder: str, attack: str, dataset, settings: TableSettings):
  base = SeqConfig()
  base = dataclasses.replace(base, encoder=dataclasses.replace(base.encoder, name=encoder))
  targets = select_targets(popularity_all(dataset), settings.target, seed=settings.seed)
  over = dict(seed=settings.seed, targets=tuple(int(t) for t in targets), attack=attack,
              num_malicious=int(settings.malicious_share * dataset.num_users)
              if attack != "none" else 0)
  if settings.epochs is not None:
    over["epochs"] = settings.epochs
  return method_config(label_method, base, **over)


def _finished(wd: Path, config: SeqConfig, dataset_name: str) -> dict | None:
  """The summary of a finished run with this very configuration, else None."""
  try:
    same = json.loads((wd / "config.json").read_text()) == config_dict(config, dataset_name,
                                                                         EVAL)
    return json.loads((wd / "summary.json").read_text()) if same else None
  except (OSError, json.JSONDecodeError):
    return None


def _row(dataset: str, label: str, encoder: str, attack: str, summary: dict | None,
         status: str = "done") -> dict:
  final = (summary or {}).get("final", {})
  get = lambda k: final.get(f"test/{k}", float("nan"))
  return {"dataset": dataset, "method": label, "encoder": encoder, "attack": attack,
          "hr@10": get("hr@10"), "ndcg@10": get("ndcg@10"),
          "er@5": get("er@5"), "epochs": (summary or {}).get("epochs", 0),
          "train_seconds": float((summary or {}).get("train_seconds", float("nan"))),
          "status": status}


def _fmt(x) -> str:
  return "n/a" if isinstance(x, float) and np.isnan(x) else (
      f"{x:.4f}" if isinstance(x, float) else str(x))


def to_markdown(rows: list[dict], notes: Sequence[str]) -> str:
  """The main table, then the defense-effect view (ER@5 under A-hum, HR@10 beside)."""
  lines = ["# FORTRESS main table", "",
           "HR@10 / NDCG@10 of the held-out next item (full ranking, history masked); "
           "ER@5 of the target items among users who never interacted with them "
           "(SPEC §4). Written by `experiments.fortress_table`.", ""]
  lines += [f"- {n}" for n in notes] + [""]
  lines += ["| dataset | method | attack | HR@10 | NDCG@10 | ER@5 | epochs | train s |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['dataset']} | {r['method']} | {r['attack']} | {_fmt(r['hr@10'])} | "
                 f"{_fmt(r['ndcg@10'])} | {_fmt(r['er@5'])} | {r['epochs']} | "
                 f"{_fmt(r['train_seconds'])} |")
  lines += ["", "## Defense effect under A-hum", "",
            "| dataset | server defense | ER@5 | HR@10 |", "|---|---|---:|---:|"]
  for r in rows:
    if r["attack"] == "a_hum" and r["method"] in ("CL + temporal (SASRec)",
                                                  "FORTRESS (SASRec)"):
      defended = "on (FORTRESS)" if r["method"].startswith("FORTRESS") else "off (CL + temporal)"
      lines.append(f"| {r['dataset']} | {defended} | {_fmt(r['er@5'])} | {_fmt(r['hr@10'])} |")
  return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
  buf = pyio.StringIO()
  writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  return buf.getvalue()


def run_fortress_table(workdir: str | Path, *, datasets: Sequence[str] = DATASETS,
                       data_root: str | Path | None = None,
                       settings: TableSettings = TableSettings(),
                       method_rows=METHOD_ROWS, attacks: Sequence[str] = ATTACKS,
                       log: Callable[[str], None] = print) -> list[dict]:
  """Runs (or resumes) the table; returns its rows and writes `.md` and `.csv`.

  Args:
    workdir: root of every run's workdir and of the table files.
    datasets: sequential dataset names ("ml-1m" is reported as unavailable here).
    data_root: folder holding `<dataset>/` raw data (default: the loaders' default).
    settings: budget, attack strength, target and seed.
    method_rows: `(label, encoder, method)` rows.
    attacks: "none" and/or attack names.
    log: progress lines.
  """
  root = Path(workdir)
  rows: list[dict] = []
  notes: list[str] = [f"Attack: {settings.malicious_share:.1%} malicious clients, "
                      f"target `{settings.target}`; seed {settings.seed}."]

  def write():
    io.atomic_write_text(root / "fortress_table.md", to_markdown(rows, notes))
    io.atomic_write_text(root / "fortress_table.csv", to_csv(rows))

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
    notes.append(f"{dataset.summary()}; MostPop HR@10 {pop['recall@10']:.4f}, "
                 f"NDCG@10 {pop['ndcg@10']:.4f}.")
    for label, encoder, method in method_rows:
      for attack in attacks:
        config = _config(method, encoder, attack, dataset, settings)
        wd = root / name / f"{encoder}-{method}-{attack}"
        summary = _finished(wd, config, dataset.name)
        if summary is None:
          log(f"== {name} / {label} / attack={attack} -> {wd}")
          t0 = time.perf_counter()
          summary = run(config, dataset, workdir=wd, eval_config=EVAL, log=log,
                        simulator_factory=SeqSimulator)
          log(f"   done in {time.perf_counter() - t0:.0f}s")
        else:
          log(f"== {name} / {label} / attack={attack}: finished, skipped")
        summary = dict(summary, train_seconds=_train_seconds(wd))
        rows.append(_row(name, label, encoder, attack, summary))
        write()
  log(to_markdown(rows, notes))
  return rows


def _train_seconds(wd: Path) -> float:
  try:
    return float(sum(r.get("train/seconds", 0.0) for r in io.read_jsonl(wd / "metrics.jsonl")))
  except OSError:
    return float("nan")
