"""The configurations behind each reproduced table and figure (ML-1M pre-split by default)."""

from __future__ import annotations

from typing import NamedTuple


class Experiment(NamedTuple):
  name: str
  title: str
  rows: list  # (label, SimConfig overrides, {metric: paper value})
  metrics: tuple = ("recall@20", "ndcg@20")
  preset: str = "paper"
  dataset: str = "ml-1m-presplit"  # `--dataset=ml-1m`: the random split
  malicious_share: float = 0.001
  x_axis: str = ""
  spectra: bool = False  # also plot the singular values of the final V (Figure 4b)


def _kw(**kw):
  return tuple(sorted(kw.items()))


T2 = {"original": (0.04444, 0.06372), "simgcl": (0.04619, 0.06252),
      "union": (0.03334, 0.05606), "cl4fedrec": (0.04656, 0.06842),
      "rcl4fedrec": (0.04836, 0.07103)}
_P = lambda r, n: {"recall@20": r, "ndcg@20": n}
DEFENSES = ("krum", "median", "trimmed_mean", "hics")

EXPERIMENTS = {
    "table2": Experiment("table2", "Table 2: recommendation effectiveness (ML-1M)", [
        (m, {"method": m}, _P(*T2[m])) for m in T2]),
    "table3": Experiment("table3", "Table 3: CL4FedRec with each defense (ML-1M)", [
        ("CL4FedRec", {"method": "cl4fedrec"}, _P(0.04656, 0.06842)),
        ("+Krum", {"method": "cl4fedrec", "aggregator": "krum"}, _P(0.02794, 0.05004)),
        ("+Median", {"method": "cl4fedrec", "aggregator": "median"}, _P(0.02772, 0.05062)),
        ("+Trimmed Mean", {"method": "cl4fedrec", "aggregator": "trimmed_mean"},
         _P(0.04308, 0.06743)),
        ("+HiCS", {"method": "cl4fedrec", "aggregator": "hics"}, _P(0.04437, 0.06984)),
        ("+Regularizer", {"method": "rcl4fedrec"}, _P(0.04836, 0.07103))]),
    "table4": Experiment("table4", "Table 4: ablation of rCL4FedRec's components (ML-1M)", [
        ("rCL4FedRec", {"method": "rcl4fedrec"}, _P(0.04836, 0.07103)),
        ("-regularizer", {"method": "cl4fedrec"}, _P(0.04656, 0.06842)),
        ("-user contrastive learning", {"method": "rcl4fedrec",
                                        "method_kwargs": _kw(use_user_cl=False)},
         _P(0.04793, 0.06923)),
        ("-item contrastive learning", {"method": "rcl4fedrec",
                                        "method_kwargs": _kw(use_item_cl=False)},
         _P(0.04637, 0.06656))]),
    "table5": Experiment("table5", "Table 5: user and item view constructions (ML-1M)", [
        ("rCL4FedRec", {"method": "rcl4fedrec"}, _P(0.04836, 0.07103)),
        ("Random synthetic users", {"method": "rcl4fedrec",
                                    "method_kwargs": _kw(synthetic_sampling="uniform")},
         _P(0.04629, 0.06902)),
        ("SimGCL-based item views", {"method": "rcl4fedrec",
                                     "method_kwargs": _kw(item_view="simgcl")},
         _P(0.04679, 0.06365))]),
    "figure6": Experiment("figure6", "Figure 6: Recall@20 vs |U_syn| (rCL4FedRec, ML-1M)", [
        (f"|U_syn|={n}", {"method": "rcl4fedrec",
                          "method_kwargs": _kw(num_synthetic_users=n)}, {})
        for n in (10, 20, 40, 60, 80, 100)], x_axis="|U_syn|"),
    "figure2": Experiment("figure2", "Figure 2: ER@5 under A-hum (ML-1M)", [
        (m, {"method": m, "attack": "a_hum"}, {})
        for m in ("original", "simgcl", "union", "cl4fedrec")],
        metrics=("er@5", "recall@20")),
    "figure4": Experiment("figure4", "Figure 4a: ER@5 under A-hum vs alpha of L_uni (ML-1M)", [
        (f"alpha={a}", {"method": "poc", "method_kwargs": _kw(alpha=a), "attack": "a_hum"}, {})
        for a in (0.0, 0.5, 1.0, 2.0, 5.0)], metrics=("er@5", "recall@20"), spectra=True),
    "figure5": Experiment("figure5", "Figure 5: ER@5 of CL4FedRec under A-hum and PSMU", [
        (f"{atk} / {d}", {"method": "cl4fedrec", "attack": atk,
                          **({} if d == "none" else {"aggregator": d})}, {})
        for atk in ("a_hum", "psmu") for d in ("none",) + DEFENSES] + [
        (f"{atk} / regularizer", {"method": "rcl4fedrec", "attack": atk}, {})
        for atk in ("a_hum", "psmu")], metrics=("er@5", "recall@20")),
    "figureefficacy": Experiment(
        "figureefficacy", "A-hum efficacy, ahum-reference preset, pre-split ML-1M", [
            (d, {"attack": "a_hum", "epochs": 12,
                 **({} if d == "none" else {"aggregator": d})}, {})
            for d in ("none", "norm_bound", "median", "hics")] + [
            (label, {"attack": "a_hum", "epochs": 12, "aggregator": "norm_bound",
                     "aggregator_kwargs": kw}, {})
            for label, kw in (("norm_bound c=1", _kw(clip_norm=1.0)),
                              ("norm_bound q=0.9", _kw(clip_quantile=0.9)))] + [
            ("no attack", {"epochs": 12}, {})],
        metrics=("er@5", "recall@20"), preset="ahum-reference", dataset="ml-1m-presplit"),
}
