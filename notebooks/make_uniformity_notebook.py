r"""Writes `notebooks/uniformity.ipynb` from the cells below (the reviewable source).

  python notebooks/make_uniformity_notebook.py            # regenerate the notebook
  UNIFORMITY_OUT=/tmp/out jupyter execute notebooks/uniformity.ipynb   # nbclient, no outputs kept

The notebook trains Original, CL4FedRec and rCL4FedRec under A-hum on a small
synthetic configuration and draws CL4FedRec Fig. 3 (item embeddings, hot items
highlighted), Fig. 4b (singular-value spectra), alignment/uniformity per epoch and
ER@5 per epoch. Its PNGs go to `$UNIFORMITY_OUT` (default `notebooks/out/`).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

CELLS: list[tuple[str, str]] = [
    ("md", """\
# Uniformity of embeddings and robustness to A-hum

CL4FedRec's §4.2 argues that contrastive learning spreads the item embeddings out
(uniformity), scattering the *hot* items among the others, so that an attacker can
disguise a target item as a popular one more easily. This notebook reproduces the
shape of that argument on a small synthetic configuration (CPU, a few minutes):

1. trains **Original**, **CL4FedRec** and **rCL4FedRec** under the A-hum attack,
2. plots the item embeddings in 2-D with the hot items highlighted (paper Fig. 3),
3. plots the sorted singular values of the item table (paper Fig. 4b),
4. tracks alignment and uniformity over epochs,
5. plots ER@5 of the target item per epoch for each method.

The attackers only push their target row, so the geometry of the other rows is
that of clean training; set `UNIFORMITY_CLEAN=1` to draw Figs. 3-4b from separate
clean runs instead (twice the time). PNGs go to `$UNIFORMITY_OUT`
(default `notebooks/out/`)."""),
    ("code", """\
import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from IPython.display import Image, display

import fedjax_rec
from fedjax_rec import diagnostics, geometry, plots
from fedjax_rec.attacks.targets import select_targets
from fedjax_rec.data.loaders import popularity_all
from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
from fedjax_rec.tasks.ncf.methods import METHODS
from fedjax_rec.models.ncf import NCFConfig
from fedjax_rec.tasks.ncf.presets import get_preset
from fedjax_rec.tasks.ncf.regularizers import hot_items

REPO = Path(fedjax_rec.__file__).resolve().parents[1]
OUT = Path(os.environ.get("UNIFORMITY_OUT") or REPO / "notebooks" / "out")
OUT.mkdir(parents=True, exist_ok=True)
CLEAN = os.environ.get("UNIFORMITY_CLEAN", "0") == "1"
# rCL4FedRec's round is CL4FedRec's (its regularizer runs after the epoch): with a
# compilation cache the second one loads the first one's executable instead of compiling.
CACHE = os.environ.get("JAX_COMPILATION_CACHE_DIR")
if not CACHE:
  CACHE = tempfile.mkdtemp(prefix="uniformity-jax-cache-")
  atexit.register(shutil.rmtree, CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
T0 = time.perf_counter()
print("figures ->", OUT)"""),
    ("md", """\
## The small configuration

400 synthetic users and 200 items with planted taste clusters; the `paper` preset
(Adam, lr 0.001, sum aggregation) with a smaller model (d = 16, MLP 32-16); 5 global
epochs of 100 clients per round; A-hum with 2 attackers (0.5%) against the least
popular item. CL4FedRec's synthetic users and rCL4FedRec's regularizer are scaled
down with the catalogue (10 synthetic users of 10 items; 20 hot items)."""),
    ("code", """\
METHOD_NAMES = ["original", "cl4fedrec", "rcl4fedrec"]
missing = [m for m in METHOD_NAMES if m not in METHODS]
assert not missing, f"methods not registered: {missing}"

dataset = load_synthetic(SyntheticConfig(num_users=400, num_items=200, max_activity=100),
                         seed=0)
popularity = dataset.item_popularity()
HOT = hot_items(popularity, 20)
TARGETS = tuple(int(t) for t in select_targets(popularity_all(dataset), "least_popular"))
CL = dict(popularity=tuple(int(c) for c in popularity), num_synthetic_users=10,
          synthetic_items=10)
METHOD_KWARGS = {"original": {}, "cl4fedrec": CL,
                 "rcl4fedrec": {**CL, "num_hot": 20, "num_sparse": 100}}


def config_for(method, attack="a_hum", epochs=5):
  return get_preset(
      "paper", model=NCFConfig(embed_dim=16, hidden=(32, 16), embed_init_std=0.01,
                               mlp_init="kaiming"),
      method=method, method_kwargs=tuple(sorted(METHOD_KWARGS[method].items())),
      epochs=epochs, clients_per_round=100, max_buckets=1, attack=attack,
      num_malicious=2 if attack != "none" else 0, targets=TARGETS, seed=0)


print(dataset.summary())
print("target item", TARGETS, "popularity", popularity_all(dataset)[list(TARGETS)])"""),
    ("code", """\
attacked, history = {}, []
for m in METHOD_NAMES:
  t = time.perf_counter()
  state, rows = diagnostics.train_tracked(config_for(m), dataset, HOT, er_ks=(5,))
  attacked[m] = state
  history += rows
  print(f"{m:>10}: {time.perf_counter() - t:5.1f}s  recall@20={rows[-1]['recall@20']:.4f}  "
        f"er@5={rows[-1]['er@5']:.4f}")
history = pd.DataFrame(history)
geometry_states = attacked
if CLEAN:
  geometry_states = {m: diagnostics.train_tracked(config_for(m, attack="none"), dataset,
                                                  HOT)[0] for m in METHOD_NAMES}"""),
    ("md", """\
## Fig. 3: item embeddings, hot items highlighted

First two principal components of each method's item table; red: the 20 most
popular items; black star: the attack's target."""),
    ("code", """\
fig, axes = plots.new_figure(ncols=len(METHOD_NAMES), size=(4.0, 3.6))
for ax, m in zip(axes, METHOD_NAMES):
  plots.plot_item_embeddings(ax, np.asarray(geometry_states[m].server.params.item_emb), HOT,
                             title=m, target_ids=TARGETS)
display(Image(filename=str(plots.save_figure(fig, OUT / "fig3_item_embeddings.png"))))"""),
    ("md", "## Fig. 4b: singular values of the item embedding table"),
    ("code", """\
spectra = {m: np.asarray(geometry.singular_values(geometry_states[m].server.params.item_emb))
           for m in METHOD_NAMES}
fig, axes = plots.new_figure()
plots.plot_singular_values(axes[0], spectra)
display(Image(filename=str(plots.save_figure(fig, OUT / "fig4b_singular_values.png"))))"""),
    ("md", """\
## Alignment and uniformity over epochs

Alignment of (user, train item) pairs and uniformity of the item and user tables
(Wang & Isola, 2020; lower is better for both), and the hot items' mean cosine
distance (larger: more scattered)."""),
    ("code", """\
panels = ["alignment", "uniformity_items", "uniformity_users", "hot_cosine_distance"]
fig, axes = plots.new_figure(ncols=len(panels), size=(3.6, 3.2))
for ax, col in zip(axes, panels):
  for m, rows in history.groupby("method", sort=False):
    ax.plot(rows["epoch"], rows[col], marker="o", ms=3, label=m)
  ax.set(title=col)
  plots.epoch_axis(ax)
axes[0].legend(fontsize="small")
display(Image(filename=str(plots.save_figure(fig, OUT / "alignment_uniformity.png"))))"""),
    ("md", "## ER@5 of the target item under A-hum"),
    ("code", """\
fig, axes = plots.new_figure()
for m, rows in history[history["epoch"] > 0].groupby("method", sort=False):
  axes[0].plot(rows["epoch"], rows["er@5"], marker="o", label=m)
axes[0].set(ylabel="ER@5", title="A-hum, least popular target")
plots.epoch_axis(axes[0])
axes[0].legend(fontsize="small")
display(Image(filename=str(plots.save_figure(fig, OUT / "er5_ahum.png"))))"""),
    ("code", """\
final = history[history["epoch"] == history["epoch"].max()].set_index("method")
display(final[["recall@20", "ndcg@20", "er@5", "alignment", "uniformity_items", "l_uni",
               "hot_cosine_distance"]].round(4))
print(f"notebook ran in {time.perf_counter() - T0:.0f}s")"""),
]


def build() -> nbformat.NotebookNode:
  """The notebook object (no outputs)."""
  cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src)
           for kind, src in CELLS]
  for i, cell in enumerate(cells):  # stable ids: regenerating gives no diff
    cell["id"] = f"cell-{i:02d}"
  nb = new_notebook(cells=cells)
  nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                               "language": "python"}
  nb.metadata["language_info"] = {"name": "python"}
  return nb


def main(path: Path = HERE / "uniformity.ipynb") -> Path:
  nb = build()
  nbformat.validate(nb)
  path.write_text(nbformat.writes(nb), encoding="utf-8")
  return path


if __name__ == "__main__":
  print(main())
