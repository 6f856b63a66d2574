"""The defense flags (`--aggregator`'s hyper-parameters) and their translation.

`flags_lib` imports this module, so the flags exist wherever its flags do; errors are
`ValueError`s naming the flag, which `flags_lib` prints as one line.
"""

from __future__ import annotations

from absl import flags

from fedjax_rec.tasks.ncf.presets import get_preset

FLAGS = flags.FLAGS

flags.DEFINE_integer("num_byzantine", None, "Defense: assumed attackers `f` per row (Krum, "
                     "Trimmed Mean) or per round (Multi-Krum, Bulyan).")
flags.DEFINE_integer("num_selected", None, "Defense: Multi-Krum's kept clients m (n - f).")
flags.DEFINE_float("sim_lr", None, "Defense: UNION filter's simulated step lr (server's).")
flags.DEFINE_integer("union_max_rows", None, "Defense: UNION filter's rows per client (64).")
flags.DEFINE_integer("union_ref_items", None, "Defense: UNION filter's reference rows (256).")
flags.DEFINE_float("clip_norm", None, "Defense: NormBound L2 bound c for each uploaded row "
                   "and each client's MLP gradient (default 0.1).")
flags.DEFINE_float("clip_quantile", None, "Defense: NormBound adaptive bound instead of "
                   "--clip_norm: this quantile of the round's accepted norms, in (0, 1].")
flags.DEFINE_float("client_clip", None, "Defense: HiCS per-client clip.")
flags.DEFINE_float("row_clip", None, "Defense: HiCS per-row clip.")
flags.DEFINE_integer("min_uploaders", None, "Defense: HiCS rows need this many uploaders.")


def aggregator_from_flags() -> str:
  """`--aggregator` if given, else the core preset's."""
  if FLAGS["aggregator"].present or FLAGS.task != "core":
    return FLAGS.aggregator
  return get_preset(FLAGS.preset).aggregator


def aggregator_kwargs_from_flags() -> tuple[tuple[str, object], ...]:
  """The defense flags the chosen aggregator takes (none given: the core preset's own)."""
  name = aggregator_from_flags()
  taken = {"krum": {"num_byzantine": "num_byzantine"},
           "multi_krum": {"num_byzantine": "num_byzantine", "num_selected": "num_selected"},
           "bulyan": {"num_byzantine": "num_byzantine"},
           "union_filter": {"sim_lr": "sim_lr", "union_max_rows": "max_rows",
                            "union_ref_items": "ref_items"},
           "trimmed_mean": {"num_byzantine": "num_trim"},
           "norm_bound": {"clip_norm": "clip_norm", "clip_quantile": "clip_quantile"},
           "hics": {"client_clip": "client_clip", "row_clip": "row_clip",
                    "min_uploaders": "min_uploaders"}}.get(name, {})
  out = {}
  for flag in ("num_byzantine", "clip_norm", "clip_quantile", "client_clip", "row_clip",
               "min_uploaders", "num_selected", "sim_lr", "union_max_rows", "union_ref_items"):
    value = FLAGS[flag].value
    if value is None:
      continue
    if flag not in taken:
      raise ValueError(f"--{flag} does not apply to --aggregator={name}")
    out[taken[flag]] = value
  base = get_preset(FLAGS.preset)
  if FLAGS.task == "core" and not out and base.aggregator == name:  # the preset's own
    out = dict(base.aggregator_kwargs)
  if "clip_norm" in out and "clip_quantile" in out:
    raise ValueError("--clip_norm and --clip_quantile exclude each other (a fixed or an "
                     "adaptive NormBound bound)")
  from fedjax_rec.aggregators import make_aggregator  # pylint: disable=import-outside-toplevel
  try:  # checks the values now, so that a bad one is named by its flag
    make_aggregator(name, 1, **out)
  except ValueError as e:
    given = " ".join(f"--{f}={FLAGS[f].value}" for f in taken if FLAGS[f].value is not None)
    raise ValueError(f"--aggregator={name} {given}: {e}") from None
  return tuple(sorted(out.items()))
