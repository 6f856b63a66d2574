r"""`python -m experiments.reproduce --paper=fortress`: the FORTRESS main table.

  python -m experiments.reproduce --paper=fortress --seeds=3
  python -m experiments.reproduce --paper=fortress --datasets=ml-100k --seeds=1 \
      --attacks=none,a_hum,psmu --encoder=sasrec,gru4rec --epochs=20

Shares `--workdir` (the table goes to `<workdir>/fortress/`), `--seeds` and `--epochs`
with the CL4FedRec tables and adds the flags below. Rerunning the same command
resumes: finished runs are read back, a cut run continues from its checkpoint.
Compiled rounds are cached under `<workdir>/fortress/.jax_cache`, so seeds after the
first skip most compilation.
"""

from __future__ import annotations

from pathlib import Path

import jax
from absl import app
from absl import flags

from experiments.fortress_table import (ATTACKS, DATASETS, ENCODER_LABELS, TableSettings,
                                        run_fortress_table)
from fedjax_rec.tasks.sequential.attacks import SEQ_ATTACKS
from fedjax_rec.tasks.sequential.data import SEQ_DATASETS

FLAGS = flags.FLAGS

SEQ_MALICIOUS_SHARE = 0.01


def _define(kind: str, name: str, default, help_text: str) -> None:
  """Defines a flag unless a module imported beside this one already did (tests)."""
  if name not in FLAGS:
    getattr(flags, f"DEFINE_{kind}")(name, default, help=help_text)


_define("list", "datasets", list(DATASETS), "--paper=fortress: sequential datasets "
        f"({', '.join(SEQ_DATASETS)}); one without timestamps is listed as unavailable.")
_define("string", "encoder", "sasrec", "--paper=fortress: encoders of the rows, "
        f"comma-separated ({', '.join(ENCODER_LABELS)}).")
_define("list", "attacks", list(ATTACKS), "--paper=fortress: attack columns (none, "
        f"{', '.join(SEQ_ATTACKS)}).")
_define("float", "malicious_share", SEQ_MALICIOUS_SHARE, "--paper=fortress: attackers as a "
        "share of the benign users (at least one).")
_define("string", "target", "least_popular", "--paper=fortress: target items "
        "(see attacks.targets).")
_define("string", "data_root", None, "--paper=fortress: folder holding <dataset>/ "
        "(default: $FEDJAX_REC_DATA, else ../shared/data).")


def _among(name: str, allowed) -> tuple[str, ...]:
  value = FLAGS[name].value
  values = tuple(v.strip() for v in (value.split(",") if isinstance(value, str) else value))
  if not values or any(v not in allowed for v in values):
    raise app.UsageError(f"--{name}={','.join(values)}: expected values among "
                         f"{', '.join(allowed)}")
  return values


def main() -> None:
  """Runs (or resumes) the table from the flags; called by `experiments.reproduce`."""
  if FLAGS.table or FLAGS.figure or FLAGS.dataset or FLAGS.preset:
    raise app.UsageError("--table/--figure/--dataset/--preset are CL4FedRec's; "
                         "--paper=fortress has one table")
  if FLAGS.data_dir:
    raise app.UsageError("--paper=fortress reads --data_root/<dataset>/, not --data_dir")
  datasets = _among("datasets", SEQ_DATASETS)
  encoders = _among("encoder", tuple(ENCODER_LABELS))
  attacks = _among("attacks", ("none",) + SEQ_ATTACKS)
  share = (FLAGS.malicious_share if FLAGS["malicious_share"].present
           else SEQ_MALICIOUS_SHARE)
  try:
    settings = TableSettings(epochs=FLAGS.epochs, malicious_share=share, target=FLAGS.target,
                             seeds=FLAGS.seeds, encoders=encoders)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  workdir = Path(FLAGS.workdir) / "fortress"
  jax.config.update("jax_compilation_cache_dir", str(workdir / ".jax_cache"))
  run_fortress_table(workdir, datasets=datasets, data_root=FLAGS.data_root,
                     settings=settings, attacks=attacks)
