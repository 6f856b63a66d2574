"""Threat-model settings: the attack's start epoch, how attackers join rounds, and what
config.json records of them (and of the target choice)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fedjax_rec import runner, scheduling
from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
from fedjax_rec.models.ncf import NCFConfig
from fedjax_rec.simulation import Simulator
from fedjax_rec.tasks.ncf.config import SimConfig
from tests.test_cli_bad_inputs import REPO, _LOG_LINE, _TEN_USERS, _cli, _u_data

SMALL = SyntheticConfig(num_users=48, num_items=40, num_clusters=4, mean_activity=8,
                        min_activity=3, max_activity=20)
ASSIGNMENTS = ("stratified", "uniform")


@pytest.fixture(scope="module")
def dataset():
  return load_synthetic(SMALL, seed=3)


def config(**kw):
  base = SimConfig(model=NCFConfig(embed_dim=4, hidden=(6, 3)), clients_per_round=16,
                   epochs=4, max_buckets=3, attack="a_ra", num_malicious=5, targets=(1,),
                   seed=7)
  return dataclasses.replace(base, **kw)


def todays_rounds(sim, epoch):
  """The rounds of `Simulator.epoch_rounds` before the threat-model settings existed."""
  host = sim.hosts[0]
  rng = np.random.default_rng([sim.seeds[0], 104729, epoch])
  n, a = sim.dataset.num_users, sim.config.num_malicious
  if host.round_assignment == "stratified":
    benign = scheduling.stratified_rounds(host.num_rows, sim.config.clients_per_round, rng)
    where = rng.integers(0, len(benign), size=a)
    return [(b, np.flatnonzero(where == r)) for r, b in enumerate(benign)]
  chunks = scheduling.shuffle_rounds(n + a, sim.config.clients_per_round, rng)
  return [(c[c < n], c[c >= n] - n) for c in chunks]


def same_rounds(got, want):
  return len(got) == len(want) and all(
      np.array_equal(gb, wb) and np.array_equal(ga, wa) for (gb, ga), (wb, wa) in zip(got, want))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_default_schedule_deals_todays_rounds(dataset, assignment):
  sim = Simulator(config(round_assignment=assignment), dataset)
  for epoch in range(3):
    got = sim.epoch_rounds(epoch)
    assert same_rounds(got, todays_rounds(sim, epoch))
    assert sorted(np.concatenate([a for _, a in got]).tolist()) == list(range(5))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_attackers_join_from_the_start_epoch(dataset, assignment):
  sim = Simulator(config(round_assignment=assignment, attack_start_epoch=2), dataset)
  for epoch in range(4):
    rounds = sim.epoch_rounds(epoch)
    benign = np.sort(np.concatenate([b for b, _ in rounds]))
    assert np.array_equal(benign, np.arange(dataset.num_users))
    attackers = np.sort(np.concatenate([a for _, a in rounds]))
    assert attackers.tolist() == ([] if epoch < 2 else list(range(5))), epoch
  # Before the start the benign rounds are those of a run without an attack.
  clean = Simulator(config(round_assignment=assignment, attack="none", num_malicious=0),
                    dataset)
  assert same_rounds(sim.epoch_rounds(1), clean.epoch_rounds(1))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_every_round_holds_k_distinct_attackers(dataset, assignment, k):
  sim = Simulator(config(round_assignment=assignment, attack_schedule="every_round",
                         attackers_per_round=k), dataset)
  clean = Simulator(config(round_assignment=assignment, attack="none", num_malicious=0),
                    dataset)
  for epoch in range(2):
    rounds = sim.epoch_rounds(epoch)
    assert len(rounds) > 1
    for _, attackers in rounds:
      assert len(attackers) == k and len(set(attackers.tolist())) == k
      assert attackers.min() >= 0 and attackers.max() < 5
    # The benign clients are dealt as without an attack.
    assert same_rounds([(b, np.zeros(0, np.int64)) for b, _ in rounds],
                       clean.epoch_rounds(epoch))
  draws = {tuple(a.tolist()) for ep in range(2) for _, a in sim.epoch_rounds(ep)}
  assert k == 5 or len(draws) > 1  # drawn afresh each round


def test_every_round_after_the_start_epoch(dataset):
  sim = Simulator(config(attack_schedule="every_round", attackers_per_round=2,
                         attack_start_epoch=1), dataset)
  assert all(len(a) == 0 for _, a in sim.epoch_rounds(0))
  assert all(len(a) == 2 for _, a in sim.epoch_rounds(1))


@pytest.mark.parametrize("kw, needle", [
    (dict(attack_start_epoch=4), "--attack_start_epoch=4 must be < --epochs=4"),
    (dict(attack_start_epoch=-1), "--attack_start_epoch=-1"),
    (dict(attack_start_epoch=1, attack="none", num_malicious=0), "needs an --attack"),
    (dict(attack_schedule="every_round"), r"--attackers_per_round in \[1, --num_malicious=5\]"),
    (dict(attack_schedule="every_round", attackers_per_round=6), "got 6"),
    (dict(attack_schedule="every_round", attackers_per_round=1, attack="none",
          num_malicious=0), "every_round needs an --attack"),
    (dict(attackers_per_round=2), "applies only to --attack_schedule=every_round"),
    (dict(attack_schedule="sometimes"), "--attack_schedule must be"),
])
def test_bad_settings_are_refused(kw, needle):
  with pytest.raises(ValueError, match=needle):
    config(**kw)


def test_config_json_records_the_settings_only_when_set():
  ev = runner.EvalConfig()
  default = runner.config_dict(config(), "synthetic", ev)
  for name in ("attack_start_epoch", "attack_schedule", "attackers_per_round",
               "target_choice"):
    assert name not in default["sim"]
  set_ = runner.config_dict(config(attack_start_epoch=2, attack_schedule="every_round",
                                   attackers_per_round=3, target_choice="band:0:50:1"),
                            "synthetic", ev)
  assert {k: set_["sim"].pop(k) for k in ("attack_start_epoch", "attack_schedule",
                                          "attackers_per_round", "target_choice")} == {
      "attack_start_epoch": 2, "attack_schedule": "every_round", "attackers_per_round": 3,
      "target_choice": "band:0:50:1"}
  assert set_ == default
  # What the attacker knows is recorded through its kwargs.
  known = runner.config_dict(config(attack="fedrecattack",
                                    attack_kwargs=(("known_share", 0.05),)), "synthetic", ev)
  assert known["sim"]["attack_kwargs"] == [["known_share", 0.05]]


def test_an_old_record_without_the_target_choice_resumes(tmp_path, dataset):
  ev = runner.EvalConfig()
  cfg = config(target_choice="items:1")
  new = runner.config_dict(cfg, "synthetic", ev)
  old = runner.config_dict(dataclasses.replace(cfg, target_choice=""), "synthetic", ev)
  (tmp_path / "config.json").write_text(json.dumps(old))
  runner.resume_workdir(tmp_path, new, None, None, print)  # no checkpoint: nothing restored
  other = runner.config_dict(dataclasses.replace(cfg, attack_start_epoch=1), "synthetic", ev)
  with pytest.raises(runner.WorkdirError, match="different configuration"):
    runner.resume_workdir(tmp_path, other, None, None, print)
  (tmp_path / "config.json").write_text(
      json.dumps(runner.config_dict(dataclasses.replace(cfg, target_choice="items:1,2"),
                                    "synthetic", ev)))
  with pytest.raises(runner.WorkdirError, match="different configuration"):
    runner.resume_workdir(tmp_path, new, None, None, print)


_FROM_FLAGS = """
import json, sys
from absl import flags
from experiments import flags_lib
from fedjax_rec import runner
from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
flags.FLAGS(["train", *sys.argv[1:]])
data = load_synthetic(SyntheticConfig(num_users=48, num_items=40, num_clusters=4,
                                      mean_activity=8, min_activity=3, max_activity=20))
cfg = flags_lib.config_from_flags(data)
print(json.dumps(runner.config_dict(cfg, "synthetic", runner.EvalConfig())["sim"]))
"""


def _sim_from_flags(*args):
  proc = subprocess.run([sys.executable, "-c", _FROM_FLAGS, *args], cwd=REPO, text=True,
                        capture_output=True, timeout=120,
                        env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert proc.returncode == 0, proc.stderr
  return json.loads(proc.stdout.splitlines()[-1])


def test_flags_set_the_recorded_fields():
  plain = _sim_from_flags("--attack=a_ra", "--num_malicious=3")
  assert not {"attack_start_epoch", "attack_schedule", "attackers_per_round",
              "target_choice"} & set(plain)
  sim = _sim_from_flags("--attack=a_ra", "--num_malicious=3", "--epochs=5",
                        "--attack_start_epoch=2", "--attack_schedule=every_round",
                        "--attackers_per_round=2", "--target=band:0:50:2")
  assert (sim["attack_start_epoch"], sim["attack_schedule"], sim["attackers_per_round"],
          sim["target_choice"]) == (2, "every_round", 2, "band:0:50:2")
  assert len(sim["targets"]) == 2


_CLI_CASES = [
    (["--epochs=2", "--attack_start_epoch=2"], "--attack_start_epoch=2 must be < --epochs=2"),
    (["--attack_schedule=every_round", "--attackers_per_round=0"],
     "--attackers_per_round in [1, --num_malicious=2], got 0"),
    (["--attack_schedule=every_round", "--attackers_per_round=3"],
     "--attackers_per_round in [1, --num_malicious=2], got 3"),
    (["--attack=none", "--attack_schedule=every_round", "--attackers_per_round=1"],
     "--attack_schedule=every_round needs an --attack with attackers"),
]


@pytest.mark.parametrize("args, needle", _CLI_CASES, ids=["start", "k0", "k_big", "no_attack"])
def test_bad_flags_give_one_line(tmp_path, args, needle):
  ten = _u_data(tmp_path, _TEN_USERS)
  proc = _cli("experiments.train", "--dataset=ml-100k", f"--data_dir={ten}", "--attack=a_ra",
              "--num_malicious=2", "--topk=2", *args)
  out = proc.stdout + proc.stderr
  assert proc.returncode == 2 and "Traceback" not in out, out
  lines = [l for l in proc.stderr.splitlines()
           if l.strip() and not _LOG_LINE.match(l) and "tpu" not in l.lower()]
  assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], out



def test_no_upload_before_the_start_epoch(dataset):
  """Until the start epoch a run trains as one without an attack; from it the attack acts."""
  small = dict(clients_per_round=24, round_assignment="uniform")
  late = Simulator(config(attack_start_epoch=1, attack_schedule="every_round",
                          attackers_per_round=2, **small), dataset)
  clean = Simulator(config(attack="none", num_malicious=0, **small), dataset)
  (a, _), (b, _) = late.run_epoch(late.init()), clean.run_epoch(clean.init())
  items = lambda s: np.asarray(s.server.params.item_emb)
  np.testing.assert_allclose(items(a), items(b), atol=1e-6)
  (a, _), (b, _) = late.run_epoch(a), clean.run_epoch(b)
  assert np.abs(items(a) - items(b))[1].max() > 1e-3  # the target's row moved
