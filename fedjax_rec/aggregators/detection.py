"""Detection rates of client-level defenses: which attacker slots a rule caught.

A rule *flags* a real client when it rejects it (validation included), drops it from the
aggregate, or clips / down-weights its whole upload. Against the attacker slots
(`Uploads.client_malicious`, read for metrics only) the round reports:

* `detect_flagged_malicious`, `detect_flagged_benign`: counts of flagged attacker and
  benign real clients;
* `detect_tpr` = flagged attackers / attackers, and `detect_fpr` = flagged benign /
  benign clients, over the round's real slots. A round without attackers has
  `detect_tpr` 0 and one without benign clients `detect_fpr` 0 (nothing to catch, or to
  wrongly catch, counts as 0, never NaN).

Most rounds hold no attacker, so a mean of per-round rates would mostly average those
zeros. The epoch's rates are therefore pooled over its rounds (`pooled_rates`, used by
`simulation.epoch_summary`): flagged attackers over all attackers dealt in the epoch, and
flagged benign over all benign clients.
"""

from __future__ import annotations

import jax.numpy as jnp

from fedjax_rec.types import Array, Uploads

DETECT_KEYS = ("detect_tpr", "detect_fpr", "detect_flagged_malicious", "detect_flagged_benign")


def detection_metrics(flagged: Array, uploads: Uploads) -> dict[str, Array]:
  """The round's detection metrics for `flagged` [C] bool (padded slots are ignored).

  Args:
    flagged: clients the rule rejected, dropped or clipped.
    uploads: the round's uploads as received (before validation): `client_mask` marks the
      real slots, `client_malicious` the attackers.
  """
  real = uploads.client_mask
  malicious = real & uploads.client_malicious
  benign = real & ~uploads.client_malicious
  caught = jnp.sum(flagged & malicious).astype(jnp.int32)
  wrong = jnp.sum(flagged & benign).astype(jnp.int32)
  num_malicious = jnp.sum(malicious)
  num_benign = jnp.sum(benign)
  return {
      "detect_tpr": caught / jnp.maximum(num_malicious, 1).astype(jnp.float32),
      "detect_fpr": wrong / jnp.maximum(num_benign, 1).astype(jnp.float32),
      "detect_flagged_malicious": caught,
      "detect_flagged_benign": wrong,
  }


def pooled_rates(summary: dict[str, float]) -> dict[str, float]:
  """The epoch's pooled `detect_tpr` / `detect_fpr` from the means of the round counts.

  `summary` holds the means over the epoch's rounds of `detect_flagged_*`,
  `num_malicious` and `num_clients` (the ratio of two means is the ratio of the sums).
  Returns `{}` when the rule reports no detection.
  """
  if "detect_flagged_malicious" not in summary:
    return {}
  malicious = summary.get("num_malicious", 0.0)
  benign = summary.get("num_clients", 0.0) - malicious
  return {"detect_tpr": summary["detect_flagged_malicious"] / malicious if malicious > 0
          else 0.0,
          "detect_fpr": summary["detect_flagged_benign"] / benign if benign > 0 else 0.0}
