"""Threat-model settings of a run: when the attack starts and how attackers join rounds.

A run's config (`task.RunConfig`) carries three fields, each a flag of the same name:

- `attack_start_epoch` (default 0): the first global epoch (0-based) in which attackers
  are dealt into rounds; before it they upload nothing. It must lie before the run's
  last epoch (an attack that never runs would be a silent no-op).
- `attack_schedule`: `shuffled` (the default) deals every attacker once per epoch like a
  benign client: uniform rounds shuffle the attackers in with the benign clients and cut
  the shuffle into rounds of `B`, stratified rounds place each attacker in a uniformly
  random round. `every_round` keeps the benign rounds of a run without attackers and adds
  `attackers_per_round` = K attackers to every round, drawn afresh each round without
  replacement from all attackers (1 <= K <= `num_malicious`).
- `attackers_per_round`: K of `every_round` (0, unset, otherwise).

The draws come from the epoch's generator after the benign rounds', so the default
settings deal exactly the rounds of a run before these settings existed. What each
attacker knows stays per attack (its `attack_kwargs`, e.g. FedRecAttack's known share).
"""

from __future__ import annotations

import numpy as np

from fedjax_rec import scheduling

SCHEDULES = ("shuffled", "every_round")


def check(config) -> None:
  """Refuses threat-model settings that cannot run, in one line naming the flag.

  Raises:
    ValueError: a bad `attack_start_epoch`, `attack_schedule` or `attackers_per_round`.
  """
  start, schedule = config.attack_start_epoch, config.attack_schedule
  k = config.attackers_per_round
  attackers = config.num_malicious if config.attack != "none" else 0
  if schedule not in SCHEDULES:
    raise ValueError(f"--attack_schedule must be {' or '.join(SCHEDULES)}, got {schedule!r}")
  if start < 0:
    raise ValueError(f"--attack_start_epoch={start}: expected an epoch >= 0")
  if start and attackers < 1:
    raise ValueError(f"--attack_start_epoch={start} needs an --attack with attackers")
  if start and start >= config.epochs:
    raise ValueError(f"--attack_start_epoch={start} must be < --epochs={config.epochs} "
                     "(epochs count from 0): the attack would never run")
  if schedule == "shuffled" and k:
    raise ValueError(f"--attackers_per_round={k} applies only to "
                     "--attack_schedule=every_round")
  if schedule == "every_round":
    if attackers < 1:
      raise ValueError("--attack_schedule=every_round needs an --attack with attackers "
                       "(--num_malicious >= 1)")
    if not 1 <= k <= attackers:
      raise ValueError(f"--attack_schedule=every_round needs --attackers_per_round in "
                       f"[1, --num_malicious={attackers}], got {k}")


def deal_rounds(num_rows: np.ndarray, round_assignment: str, num_attackers: int, config,
                epoch: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
  """`(benign ids, attacker ids)` of every round of global epoch `epoch`.

  Args:
    num_rows: [U] the benign clients' lengths.
    round_assignment: "stratified" (`scheduling.stratified_rounds`) or "uniform"
      (`scheduling.shuffle_rounds`).
    num_attackers: A, the run's attackers (0 without an attack).
    config: the run's `RunConfig` (`clients_per_round` and the settings above).
    epoch: the global epoch (0-based).
    rng: the epoch's generator.
  """
  n, b = len(num_rows), config.clients_per_round
  a = num_attackers if epoch >= config.attack_start_epoch else 0
  every_round = config.attack_schedule == "every_round"
  dealt = 0 if every_round else a  # attackers dealt like benign clients
  if round_assignment == "stratified":
    benign = scheduling.stratified_rounds(num_rows, b, rng)
    if every_round:
      return _every_round(benign, a, config.attackers_per_round, rng)
    where = rng.integers(0, len(benign), size=dealt)
    return [(u, np.flatnonzero(where == r)) for r, u in enumerate(benign)]
  chunks = scheduling.shuffle_rounds(n + dealt, b, rng)
  rounds = [(c[c < n], c[c >= n] - n) for c in chunks]
  if every_round:
    return _every_round([u for u, _ in rounds], a, config.attackers_per_round, rng)
  return rounds


def _every_round(benign: list[np.ndarray], num_attackers: int, k: int,
                 rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
  """Each round's benign clients with K distinct attackers drawn for it (none if A = 0)."""
  if num_attackers == 0:
    return [(u, np.zeros(0, np.int64)) for u in benign]
  return [(u, np.sort(rng.choice(num_attackers, size=k, replace=False))) for u in benign]
