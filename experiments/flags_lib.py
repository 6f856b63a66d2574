"""The absl flags of every task and their translation into typed configs.

Flags live only here and in the binaries; the library receives dataclasses. For
`--task=core` a `--preset` supplies defaults, for `--task=sequential` the `--method`'s
preset does; any flag given explicitly overrides them. `--method` and `--attack`
accept the names of both tasks; `check_task_flags` and `attack_fields_from_flags` say
which are valid for the chosen task, and a flag that only the other task reads is
refused in one line.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags

from experiments import flags_attack, flags_defense, flags_model
from experiments.flags_defense import aggregator_from_flags
from fedjax_rec.aggregators import AGGREGATORS
from fedjax_rec.data.loaders import DATASETS
from fedjax_rec.tasks.ncf.presets import PRESETS, get_preset
from fedjax_rec.runner import EvalConfig
from fedjax_rec.models.encoders import ENCODERS
from fedjax_rec.tasks.sequential.attacks import SEQ_ATTACKS
from fedjax_rec.tasks.sequential.config import METHODS as SEQ_METHODS
from fedjax_rec.tasks.sequential.config import SeqConfig, method_config
from fedjax_rec.tasks.sequential.objective import REC_LOSSES
from fedjax_rec.tasks.ncf.config import SimConfig

FLAGS = flags.FLAGS

# The names each task accepts; the flags take their union.
TASK_METHODS = {"core": ("original", "cl4fedrec", "rcl4fedrec", "simgcl", "union", "poc"),
                "sequential": SEQ_METHODS}
DEFAULT_METHOD = {"core": "original", "sequential": "fedseq"}
TASK_ATTACKS = {"core": ("none", "a_hum", "a_ra", "psmu", "fedrecattack",
                         "random_fake", "popular_fake", "bandwagon_fake", "poisonfrs",
                         "fedattack", "lie", "fang", "fang_krum",
                         "pipattack", "pieck_ipe", "pieck_uea"),
                "sequential": ("none",) + SEQ_ATTACKS}
# Flags that only the core task reads (with --task=sequential they would be ignored).
CORE_ONLY_FLAGS = ("preset", "hidden", "model", "split", "loss_reduction", "l2_reg",
                   "user_optimizer", "user_lr", "local_epochs", "local_batch_size", "local_lr",
                   "local_optimizer", "upload", "resample_negatives", "round_assignment",
                   "max_buckets", "lambda1", "lambda2", "tau", "eta", "num_synthetic_users",
                   "synthetic_items", "alpha", "valid_frac", "inject_faults")


def _union(names_by_task: dict) -> list[str]:
  return list(dict.fromkeys(n for names in names_by_task.values() for n in names))


def _per_task(names_by_task: dict) -> str:
  return "; ".join(f"--task={t}: {', '.join(n)}" for t, n in names_by_task.items())


flags.DEFINE_enum("task", "core", list(TASK_METHODS), "core: CL4FedRec-style NCF; "
                  "sequential: FORTRESS and its baselines (SASRec / GRU4Rec).")

flags.DEFINE_enum("dataset", "synthetic", DATASETS, "Dataset to train on.")
flags.DEFINE_string("data_dir", None, "Directory of the dataset's raw files (default: "
                    "$FEDJAX_REC_DATA/<dataset>, else ../shared/data/<dataset>).")
flags.DEFINE_enum("preset", "paper", sorted(PRESETS), "Configuration preset (docs/design.md).")
flags.DEFINE_integer("epochs", None, "Global epochs T.")
flags.DEFINE_integer("clients_per_round", None, "Clients per round B.")
flags.DEFINE_integer("seed", 0, "Root seed (init, negatives, shuffles, attacks).")
flags.DEFINE_string("workdir", None, "Where results and checkpoints go.")
flags.DEFINE_bool("resume", True, "Continue the run already in --workdir from its checkpoint "
                  "(--noresume refuses a --workdir that holds one; results are never "
                  "overwritten).")
flags.DEFINE_integer("embed_dim", None, "Embedding size d.")
flags.DEFINE_list("hidden", None, "Hidden layer widths of the MLP, e.g. 64,32,16.")
flags.DEFINE_enum("server_optimizer", None, ["sgd", "adam"], "Server optimizer.")
flags.DEFINE_float("server_lr", None, "Server learning rate.")
flags.DEFINE_enum("user_optimizer", None, ["sgd", "adam"], "Private embedding optimizer.")
flags.DEFINE_float("user_lr", None, "Private embedding learning rate.")
flags.DEFINE_integer("local_epochs", None, "Local epochs L.")
flags.DEFINE_integer("local_batch_size", None, "Local batch size (0: full batch).")
flags.DEFINE_float("local_lr", None, "Learning rate of the local copies of the public "
                   "parameters.")
flags.DEFINE_enum("local_optimizer", None, ["sgd", "adam"], "Optimizer of the local copies of "
                  "the public parameters (a fresh state every round).")
flags.DEFINE_enum("upload", None, ["gradient", "delta"], "What a client uploads: the sum of "
                  "its local public gradients, or received minus trained public parameters.")
flags.DEFINE_enum("convention", None, ["sum", "mean", "weighted"], "FedAvg convention.")
flags.DEFINE_integer("num_negatives", None, "Negatives per positive.")
flags.DEFINE_bool("resample_negatives", None, "Draw fresh negatives every epoch.")
flags.DEFINE_enum("round_assignment", None, ["stratified", "uniform"],
                  "How clients are dealt into rounds (README: Layout).")
flags.DEFINE_integer("max_buckets", None, "Most length buckets per round.")
flags.DEFINE_enum("aggregator", "fedavg", list(AGGREGATORS), "Server aggregation rule.")
flags.DEFINE_enum("method", None, _union(TASK_METHODS), "Training method ("
                  f"{_per_task(TASK_METHODS)}; default: the first of each).")
flags.DEFINE_float("lambda1", None, "CL4FedRec: weight of the user contrastive term (>= 0).")
flags.DEFINE_float("lambda2", None, "CL4FedRec/SimGCL: weight of the item term (>= 0).")
flags.DEFINE_float("tau", None, "Contrastive temperature (> 0).")
flags.DEFINE_float("eta", None, "Noise magnitude of the views (>= 0).")
flags.DEFINE_integer("num_synthetic_users", None, "CL4FedRec: |U_syn| (> 0 with user CL).")
flags.DEFINE_integer("synthetic_items", None, "CL4FedRec: items N per synthetic user.")
flags.DEFINE_float("alpha", None, "Proof of concept: strength of L_uni.")
flags.DEFINE_enum("attack", "none", _union(TASK_ATTACKS), "Poisoning attack ("
                  f"{_per_task(TASK_ATTACKS)}).")
flags.DEFINE_float("malicious_share", 0.001, "Attackers as a share of benign users "
                   "(count = int(share * N), the public A-hum code's rule).")
flags.DEFINE_integer("num_malicious", None, "Attacker count (overrides --malicious_share).")
flags.DEFINE_string("target", "least_popular", "Target items: least_popular, least_popular:K, "
                    "items:3,17,42 or band:LO:HI:K (popularity over train+valid+test; "
                    "band:0:50:K: K random unpopular items, drawn with --seed).")
flags.DEFINE_float("valid_frac", 0.1, "Validation share of each user's train items.")
flags.DEFINE_integer("mesh_shape", 0, "Devices to split each round's clients over "
                     "(0: all devices; 1: no sharding).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for a multi-host "
                    "run (jax.distributed); needs --num_processes and --process_id.")
flags.DEFINE_integer("num_processes", 1, "Processes of a multi-host run.")
flags.DEFINE_integer("process_id", 0, "This process's index in a multi-host run.")
flags.DEFINE_integer("distributed_timeout", 60, "Seconds to wait for the other processes.")
flags.DEFINE_integer("eval_every", 1, "Evaluate every N global epochs.")
flags.DEFINE_integer("eval_users", None, "Rank a fixed, seeded sample of N benign users "
                     "instead of all (faster, less precise; the standard error is reported "
                     "beside each metric as <metric>_se). Default: all users.")
flags.DEFINE_enum("eval_precision", "fp32", ["fp32", "tf32", "bf16"], "Matmul precision of "
                  "evaluation's scoring (tf32/bf16: faster on accelerators; top-K ties may "
                  "differ from fp32).")
flags.DEFINE_list("topk", ["20"], "Cut-offs K of Recall/NDCG/Precision.")
flags.DEFINE_list("er_ks", ["5", "10", "20"], "Cut-offs K of ER@K (runs with targets).")
flags.DEFINE_string("inject_faults", None, "Fault injection: nan:K, inf:K or huge:K makes the "
                    "first K benign clients of every round upload NaN, Inf or 1e30 "
                    "(fedjax_rec/faults.py).")

# --task=sequential only (the sequential task reuses the flags above where they mean the
# same thing; two defaults differ for sequences when the flag is not given: --topk is 10,
# HR@10 / NDCG@10, and --malicious_share 0.01, since 0.1% of ML-100K's 943 users is no
# attacker at all).
flags.DEFINE_enum("encoder", "sasrec", list(ENCODERS), "Sequential encoder.")
flags.DEFINE_integer("max_len", 50, "Sequential window: most recent items kept.")
flags.DEFINE_integer("num_blocks", None, "SASRec blocks (default 2).")
flags.DEFINE_float("dropout", None, "Encoder dropout (default 0.2).")
flags.DEFINE_enum("rec_loss", None,
                  list(dict.fromkeys(REC_LOSSES + flags_model.CORE_REC_LOSSES)),
                  f"Loss (default bce): --task=sequential: {', '.join(REC_LOSSES)}; "
                  f"--task=core (Original): {', '.join(flags_model.CORE_REC_LOSSES)}.")
flags.DEFINE_float("seq_cl_weight", None, "Weight of the sequence view (0: off).")
flags.DEFINE_float("user_cl_weight", None, "Weight of the user view (0: off).")
flags.DEFINE_float("item_cl_weight", None, "Weight of the item view (0: off).")
flags.DEFINE_float("temporal_weight", None, "Weight of the temporal regularizer (0: off).")
flags.DEFINE_float("cl_tau", None, "InfoNCE temperature of the views.")
flags.DEFINE_bool("server_defense", None, "FORTRESS server defense (default: on for fortress).")
flags.DEFINE_float("sep_weight", None, "Server separation-loss weight.")
flags.DEFINE_float("var_weight", None, "Server variance-loss weight.")
SEQ_ONLY_FLAGS = ("encoder", "max_len", "num_blocks", "dropout", "seq_cl_weight",
                  "user_cl_weight", "item_cl_weight", "temporal_weight", "cl_tau",
                  "server_defense", "sep_weight", "var_weight")
SEQ_MALICIOUS_SHARE = 0.01
SEQ_TOPK = (10,)

_SIM_FIELDS = ("epochs", "clients_per_round", "convention", "num_negatives",
               "resample_negatives", "round_assignment", "max_buckets", "inject_faults")
_LOCAL_FIELDS = {"local_epochs": "local_epochs", "local_batch_size": "batch_size",
                 "local_lr": "lr", "local_optimizer": "optimizer", "upload": "upload",
                 "user_optimizer": "user_optimizer", "user_lr": "user_lr"}
_SERVER_FIELDS = {"server_optimizer": "optimizer", "server_lr": "lr"}
_OBJECTIVE_FIELDS = {"rec_loss": "loss", "num_negatives": "num_negatives",
                     "seq_cl_weight": "seq_weight", "user_cl_weight": "user_weight",
                     "item_cl_weight": "item_weight", "temporal_weight": "temporal_weight",
                     "cl_tau": "tau"}
_DEFENSE_FIELDS = {"server_defense": "enabled", "sep_weight": "sep_weight",
                   "var_weight": "var_weight"}
_ENCODER_FIELDS = {"embed_dim": "embed_dim", "num_blocks": "num_blocks", "dropout": "dropout"}


class UsageError(ValueError):
  """A flag value the library rejects; printed as one line."""


def method_from_flags() -> str:
  """`--method`, or `--task`'s default; a method of the other task is a UsageError."""
  task = FLAGS.task
  method = FLAGS.method if FLAGS.method is not None else DEFAULT_METHOD[task]
  if method not in TASK_METHODS[task]:
    owner = next(t for t, names in TASK_METHODS.items() if method in names)
    raise UsageError(f"--method={method} needs --task={owner}; with --task={task} use one of "
                     f"{', '.join(TASK_METHODS[task])}")
  return method


def check_task_flags() -> str:
  """Checks `--method` and the task-only flags against `--task`; returns the method.

  Raises:
    UsageError: one line naming the flag.
  """
  method = method_from_flags()
  for task, names in (("core", CORE_ONLY_FLAGS), ("sequential", SEQ_ONLY_FLAGS)):
    for name in names:
      if task != FLAGS.task and FLAGS[name].present:
        raise UsageError(f"--{name} applies only to --task={task}")
  return method


def config_from_flags(dataset):
  """The run's config for `--task`: `SimConfig` (core) or `SeqConfig` (sequential)."""
  if FLAGS.task == "sequential":
    return seq_config_from_flags(dataset)
  config = sim_config_from_flags(**attack_fields_from_flags(dataset))
  try:
    return flags_attack.with_attack_kwargs(config, dataset)
  except ValueError as e:
    raise UsageError(str(e)) from None


def seq_config_from_flags(dataset) -> SeqConfig:
  """The sequential method's preset, overridden by every explicitly given flag."""
  try:
    method = check_task_flags()
    encoder = dataclasses.replace(_overrides(_ENCODER_FIELDS, SeqConfig().encoder),
                                  name=FLAGS.encoder, max_len=FLAGS.max_len)
    base = method_config(method, SeqConfig(encoder=encoder))
    if not FLAGS["malicious_share"].present and FLAGS.num_malicious is None:
      FLAGS.malicious_share = SEQ_MALICIOUS_SHARE
    attack = attack_fields_from_flags(dataset)
    flags_attack.attack_kwargs_from_flags(FLAGS.attack)  # none applies to a sequential attack
    top = {f: FLAGS[f].value for f in ("epochs", "clients_per_round", "convention")
           if FLAGS[f].value is not None}
    return dataclasses.replace(
        base, objective=_overrides(_OBJECTIVE_FIELDS, base.objective),
        defense=_overrides(_DEFENSE_FIELDS, base.defense),
        server=_overrides(_SERVER_FIELDS, base.server), aggregator=FLAGS.aggregator,
        aggregator_kwargs=aggregator_kwargs_from_flags(), seed=FLAGS.seed, **attack, **top)
  except ValueError as e:
    raise UsageError(str(e)) from None


def _overrides(mapping, config_obj):
  repl = {}
  for flag, field in mapping.items():
    value = FLAGS[flag].value
    if value is None:
      continue
    repl[field] = value
  return dataclasses.replace(config_obj, **repl) if repl else config_obj


def sim_config_from_flags(**extra) -> SimConfig:
  """The preset, overridden by every explicitly given flag and `extra` fields."""
  try:
    base = get_preset(FLAGS.preset)
    model = flags_model.model_from_flags(base.model)
    local = _overrides(_LOCAL_FIELDS, base.local)
    server = _overrides(_SERVER_FIELDS, base.server)
    top = {f: FLAGS[f].value for f in _SIM_FIELDS if FLAGS[f].value is not None}
    method, aggregator = method_from_flags(), aggregator_from_flags()
    return dataclasses.replace(base, model=model, local=local, server=server,
                               aggregator=aggregator, method=method,
                               method_kwargs=method_kwargs_from_flags(),
                               aggregator_kwargs=aggregator_kwargs_from_flags(),
                               seed=FLAGS.seed, **top, **extra)
  except ValueError as e:
    raise UsageError(str(e)) from None


_METHOD_FLAGS = {
    "cl4fedrec": ("lambda1", "lambda2", "tau", "eta", "num_synthetic_users", "synthetic_items"),
    "rcl4fedrec": ("lambda1", "lambda2", "tau", "eta", "num_synthetic_users",
                   "synthetic_items"),
    "simgcl": ("lambda2", "tau", "eta"), "poc": ("alpha",), "union": (),
    "original": flags_model.LOSS_FLAGS}


def method_kwargs_from_flags() -> tuple[tuple[str, object], ...]:
  """The method flags the chosen method takes over the preset's (for the preset's
  method), validated by its builder."""
  from fedjax_rec.tasks.ncf.methods import make_method  # pylint: disable=import-outside-toplevel
  name, base = method_from_flags(), get_preset(FLAGS.preset)
  out = {}
  for flag in sorted({f for fs in _METHOD_FLAGS.values() for f in fs}):
    if FLAGS[flag].value is None:
      continue
    if flag not in _METHOD_FLAGS[name]:
      raise UsageError(f"--{flag} does not apply to --method={name}")
    out[flag] = FLAGS[flag].value
  out = dict(flags_model.merged_kwargs(base.method_kwargs, out, base.method == name))
  try:  # the builder checks the values; popularity is a stand-in (the data's size is
    # checked when the run is built), long enough for any sensible synthetic user size
    extra = ({"popularity": [1] * 100_000} if name in ("cl4fedrec", "rcl4fedrec") else {})
    make_method(name, base.model, **out, **extra)
  except (ValueError, TypeError) as e:
    raise UsageError(f"--method={name}: {e}") from None
  return tuple(sorted(out.items()))


def aggregator_kwargs_from_flags() -> tuple[tuple[str, object], ...]:
  """The defense flags the chosen aggregator takes (`flags_defense`)."""
  try:
    return flags_defense.aggregator_kwargs_from_flags()
  except ValueError as e:
    raise UsageError(str(e)) from None


def attack_fields_from_flags(dataset) -> dict:
  """`attack`, `num_malicious`, `targets` (and the `--target` spec, `target_choice`) and
  the threat-model fields for the run's config, from the attack flags."""
  from fedjax_rec.attacks import select_targets  # pylint: disable=import-outside-toplevel
  from fedjax_rec.data.loaders import popularity_all  # pylint: disable=import-outside-toplevel
  from fedjax_rec.tasks.ncf.config import default_num_malicious  # pylint: disable=import-outside-toplevel
  if FLAGS.attack not in TASK_ATTACKS[FLAGS.task]:
    raise UsageError(f"--attack={FLAGS.attack} has no --task={FLAGS.task} version; use one of "
                     f"{', '.join(TASK_ATTACKS[FLAGS.task])}")
  try:
    targets = select_targets(popularity_all(dataset), FLAGS.target, seed=FLAGS.seed)
    if FLAGS.num_malicious is not None:
      if FLAGS.num_malicious < 0:
        raise ValueError(f"--num_malicious must be >= 0, got {FLAGS.num_malicious}")
      num_malicious = FLAGS.num_malicious
    else:
      num_malicious = default_num_malicious(dataset.num_users, FLAGS.malicious_share)
  except ValueError as e:
    raise UsageError(f"--target/--malicious_share: {e}") from None
  if FLAGS.attack != "none" and num_malicious < 1:
    # pylint: disable-next=import-outside-toplevel
    from experiments.flag_checks import zero_attackers_message
    raise UsageError(zero_attackers_message(FLAGS.attack, dataset.num_users, dataset.name))
  choice = "" if FLAGS.target == "least_popular" else FLAGS.target  # the default: unrecorded
  return dict(attack=FLAGS.attack, num_malicious=num_malicious if FLAGS.attack != "none" else 0,
              targets=tuple(int(t) for t in targets), target_choice=choice,
              **flags_attack.threat_fields_from_flags())


def eval_config_from_flags() -> EvalConfig:
  parsed = {}
  for name in ("topk", "er_ks"):
    try:
      values = tuple(int(k) for k in FLAGS[name].value)
    except ValueError:
      raise UsageError(f"--{name} expects comma-separated integers, got "
                       f"{','.join(FLAGS[name].value)}") from None
    if not values or any(k <= 0 for k in values):
      raise UsageError(f"--{name} values must be positive integers")
    parsed[name] = values
  ks, er_ks = parsed["topk"], parsed["er_ks"]
  if FLAGS.eval_every <= 0:
    raise UsageError("--topk values and --eval_every must be positive")
  if FLAGS.eval_users is not None and FLAGS.eval_users < 1:
    raise UsageError(f"--eval_users must be a positive number of users, got {FLAGS.eval_users}")
  if FLAGS.task == "sequential" and not FLAGS["topk"].present:
    ks = SEQ_TOPK
  ks = flags_model.topk_default(ks) if FLAGS.task == "core" else ks
  return EvalConfig(every=FLAGS.eval_every, ks=ks, er_ks=er_ks, users=FLAGS.eval_users,
                    precision=FLAGS.eval_precision)


def setup_devices():
  """Joins a multi-host run if asked, then builds the client mesh (or None)."""
  from fedjax_rec import sharding  # pylint: disable=import-outside-toplevel
  try:
    if FLAGS.coordinator_address:
      sharding.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                      FLAGS.process_id, FLAGS.distributed_timeout)
    elif FLAGS.num_processes != 1:
      raise ValueError("--num_processes > 1 needs --coordinator_address")
    return sharding.make_mesh(FLAGS.mesh_shape)
  except (ValueError, RuntimeError) as e:
    raise UsageError(str(e)) from None


def fail(message: str, code: int = 2):
  """One line on stderr and a non-zero exit: no traceback wall for bad input."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def check_resume() -> None:
  """`--noresume` with a --workdir that already holds a run: refuse, never overwrite."""
  wd = FLAGS.workdir
  if wd and not FLAGS.resume and any(
      os.path.exists(os.path.join(wd, name))
      for name in ("config.json", "checkpoint.msgpack", "checkpoint.prev.msgpack",
                   "metrics.jsonl")):
    raise UsageError(f"--workdir={wd} already holds a run and --noresume was given: pass "
                     "--resume to continue it, or choose another --workdir")
