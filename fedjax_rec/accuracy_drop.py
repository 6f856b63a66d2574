"""The accuracy drop of an untargeted attack: an attacked run against its baseline.

An untargeted attack is scored by how much it lowers the recommender's accuracy. The
baseline is the same run without attackers: a workdir (`runner.run`) whose
`config.json` equals the attacked run's in everything but the attack (`attack`,
`attack_kwargs`, `num_malicious`; `targets`, chosen for ER@K, may differ too) and which
has no attacker. For every epoch (and seed) both runs evaluated, and every ranking
metric both report (`recall@K`, `ndcg@K`, `hr@K` and the sampled leave-one-out ones), the
drop is `baseline - attacked`, and the relative drop `(baseline - attacked) / baseline`
(positive when the attack hurts; NaN where the baseline is 0).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from fedjax_rec.runner import WorkdirError, read_metrics

# `config.json` fields of `sim` that belong to the attack.
ATTACK_FIELDS = ("attack", "attack_kwargs", "num_malicious", "targets")
# Metric names (before `@K`) whose drop is reported.
RANKING_METRICS = ("recall", "ndcg", "hr", "sampled_hr", "sampled_ndcg")


class BaselineMismatch(ValueError):
  """The baseline is not the attacked run without its attackers."""


def load_run(workdir: str | Path) -> tuple[dict, list[dict]]:
  """`(config, metric rows)` of a run's workdir.

  Raises:
    WorkdirError: a missing or unreadable `config.json` or `metrics.jsonl`.
  """
  wd = Path(workdir)
  for name in ("config.json", "metrics.jsonl"):
    if not (wd / name).is_file():
      raise WorkdirError(f"{wd} holds no {name}: point at a finished run's --workdir")
  try:
    config = json.loads((wd / "config.json").read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise WorkdirError(f"{wd / 'config.json'}: not a run config ({e})") from None
  return config, read_metrics(wd / "metrics.jsonl")


def _differences(a, b, path: str = "") -> list[tuple[str, object, object]]:
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for key in sorted(set(a) | set(b), key=str):
      sub = f"{path}.{key}" if path else str(key)
      if path == "sim" and key in ATTACK_FIELDS:
        continue
      out += _differences(a.get(key), b.get(key), sub)
    return out
  return [] if a == b else [(path, a, b)]


def check_baseline(config: dict, baseline: dict) -> None:
  """Raises `BaselineMismatch` (one line) unless `baseline` is `config` without attackers."""
  sim = baseline.get("sim", {})
  if sim.get("attack", "none") != "none" and sim.get("num_malicious", 0) > 0:
    raise BaselineMismatch(f"the baseline has attackers (attack={sim['attack']}, "
                           f"num_malicious={sim['num_malicious']}): point at the same run "
                           "with --attack=none")
  diff = _differences(config, baseline)
  if diff:
    path, ours, theirs = diff[0]
    more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
    raise BaselineMismatch(f"the baseline differs in {path}: {theirs!r} against the run's "
                           f"{ours!r}{more}; only the attack may differ")


def _ranking_keys(row: dict) -> list[str]:
  return [k for k in row if k.startswith("test/") and "@" in k and not k.endswith("_se")
          and k[len("test/"):].split("@")[0] in RANKING_METRICS]


def drop_rows(rows: list[dict], baseline_rows: list[dict]) -> list[dict]:
  """Per (epoch, seed) both runs evaluated: each ranking metric's attacked and baseline
  values, drop and relative drop (`<metric>`, `baseline/<metric>`, `drop/<metric>`,
  `rel_drop/<metric>`, names without `test/`)."""
  index = {(r.get("epoch"), r.get("seed")): r for r in baseline_rows}
  out = []
  for row in rows:
    base = index.get((row.get("epoch"), row.get("seed")))
    keys = [k for k in _ranking_keys(row) if base is not None and k in base]
    if not keys:
      continue
    new = {"epoch": row.get("epoch"), **({"seed": row["seed"]} if "seed" in row else {})}
    for key in keys:
      name, ours, theirs = key[len("test/"):], float(row[key]), float(base[key])
      new[name] = ours
      new[f"baseline/{name}"] = theirs
      new[f"drop/{name}"] = theirs - ours
      new[f"rel_drop/{name}"] = (theirs - ours) / theirs if theirs else math.nan
    out.append(new)
  return out


def accuracy_drop(workdir: str | Path, baseline_workdir: str | Path) -> list[dict]:
  """The drops of the run in `workdir` against the run in `baseline_workdir`.

  Raises:
    BaselineMismatch: the baseline is not this run without attackers, or the two runs
      share no evaluated epoch.
    WorkdirError: a workdir without a readable config or metrics.
  """
  config, rows = load_run(workdir)
  baseline, baseline_rows = load_run(baseline_workdir)
  check_baseline(config, baseline)
  out = drop_rows(rows, baseline_rows)
  if not out:
    raise BaselineMismatch(f"{workdir} and {baseline_workdir} share no evaluated epoch")
  return out
