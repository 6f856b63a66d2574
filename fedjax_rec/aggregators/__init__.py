"""Server aggregation rules over sparse uploads (docs/design.md).

Every builder returns an `Aggregator(init, apply)`; `apply(uploads, state)` returns
`(Aggregate, state, metrics)`, is jittable and calls `validate` first (metric `rejected`).
See `base.py` for the FedAvg conventions and how robust statistics are rescaled to them.
Client-level rules (Multi-Krum, Bulyan, the UNION filter, and HiCS / NormBound clipping)
report which clients they flagged against the attacker slots (`detection.py`).

Default hyper-parameters (the builders' own; `PARAMS` holds them typed, `DEFAULTS` as dicts):

* `num_trim` / `num_byzantine` (`f`) = 1. Statistics are per item row over that row's
  uploaders, and `f` bounds the attackers *per row per round*. With the papers' malicious
  share of 0.1% of users and rounds of 256 clients, a round holds about 0.26 attackers on
  average, so more than one attacker uploading the same target row in one round is rare;
  `f = 1` keeps the trimming/selection as mild as possible for benign rows.
* `clip_norm` = 0.1 (NormBound): measured on ML-1M under both presets, see `norm_bound.py`;
  `clip_quantile` makes NormBound's bound adaptive instead (off by default).
* `client_clip`, `row_clip` = 1.0 (HiCS). The BCE gradient of one item row is
  `(sigmoid(s) - y) * ds/dv` with `|sigmoid(s) - y| <= 1` and a Jacobian of unit scale for
  the presets' initialisations, so 1.0 sits at the upper end of benign row norms: it seldom
  binds on benign rows but caps each attacker's row (and, for HiCS, its whole upload). The
  right value depends on the model and loss scale; sweep it per preset.
* Multi-Krum and Bulyan (`num_byzantine` = `f` = 1) compare *whole clients* (all their
  rows plus the MLP), so there `f` bounds the attackers per round: at the papers' 0.1%
  malicious share a round of 256 holds about 0.26 attackers, and `f = 1` drops as few
  benign clients as possible (Multi-Krum keeps `m = n - f` by default, `num_selected`;
  Bulyan selects `n - 2f`, then trims `f` per end of each coordinate).
* UNION filter: `sim_lr` = None (the server's lr: the simulated step is the one the
  server would take with that client alone), `max_rows` = 64 rows scored per client and
  `ref_items` = 256 reference rows: the score's work is `C * 64 * (256 + 64)` pairs per
  round, small beside local training; clients with more rows are scored on a fixed
  subset of them (`union_filter.py`).
* `min_uploaders` = 2: a row moves only when at least two accepted clients uploaded it in
  the round, so a single attacker cannot move a row alone.
* `max_abs` = 1e6 for the robust aggregators (keeps squared norms and Krum distances finite
  in float32), `None` for plain FedAvg (which still rejects NaN/Inf).
"""

from __future__ import annotations

from typing import Any

from fedjax_rec import hparams
from fedjax_rec.aggregators.base import CONVENTIONS, Aggregator, ServerView
from fedjax_rec.aggregators.bulyan import bulyan
from fedjax_rec.aggregators.fedavg import fedavg
from fedjax_rec.aggregators.hics import hics
from fedjax_rec.aggregators.krum import krum
from fedjax_rec.aggregators.median import median
from fedjax_rec.aggregators.multi_krum import multi_krum
from fedjax_rec.aggregators.norm_bound import norm_bound
from fedjax_rec.aggregators.trimmed_mean import trimmed_mean
from fedjax_rec.aggregators.union_filter import union_filter
from fedjax_rec.aggregators.validate import validate

_BUILDERS = {
    "fedavg": fedavg,
    "norm_bound": norm_bound,
    "median": median,
    "trimmed_mean": trimmed_mean,
    "krum": krum,
    "hics": hics,
    "multi_krum": multi_krum,
    "bulyan": bulyan,
    "union_filter": union_filter,
}

# Each name's typed hyper-parameters (`hparams.schema`: the builder's keyword
# parameters, less `num_items` and `convention`), and their defaults.
PARAMS: dict[str, type] = {name: hparams.schema(b, name=name,
                                                 skip=hparams.NOT_HPARAMS | {"convention"})
                           for name, b in _BUILDERS.items()}
DEFAULTS: dict[str, dict[str, Any]] = {name: hparams.defaults(p) for name, p in PARAMS.items()}

AGGREGATORS = tuple(_BUILDERS)


def resolve_kwargs(name: str, kwargs) -> tuple[tuple[str, Any], ...]:
  """`kwargs` (pairs or a dict) with the defaults filled in, as sorted pairs.

  Run records store this form, so a run records the values it used: a default changed
  in a later version cannot silently resume (or reuse) a run made under the old one.
  Unknown names are left for `make_aggregator` to reject.
  """
  return tuple(sorted({**DEFAULTS.get(name, {}), **dict(kwargs)}.items()))


def make_aggregator(name: str, num_items: int, convention: str = "sum",
                    **kwargs: Any) -> Aggregator:
  """Builds an aggregator by name.

  Args:
    name: one of `AGGREGATORS`.
    num_items: number of item rows (static).
    convention: ``"sum"``, ``"mean"`` or ``"weighted"``.
    **kwargs: hyper-parameters of that aggregator (its `PARAMS` fields; names and types
      checked); missing ones take the documented defaults.

  Raises:
    ValueError: unknown name, unknown hyper-parameter, or an invalid value (negative `f`,
      non-positive clip norm, `min_uploaders < 1`, unknown convention).
  """
  hparams.canonical("aggregator", name, kwargs, PARAMS)
  return _BUILDERS[name](num_items, convention=convention, **kwargs)


__all__ = [
    "AGGREGATORS", "Aggregator", "CONVENTIONS", "DEFAULTS", "PARAMS", "ServerView", "bulyan",
    "fedavg", "hics", "krum", "make_aggregator", "median", "multi_krum", "norm_bound",
    "resolve_kwargs", "trimmed_mean", "union_filter", "validate",
]
