"""Figures and tables: results-store plots and the embedding figures of CL4FedRec.

Figures are `matplotlib.figure.Figure`s drawn on the Agg canvas (no pyplot state, no
display needed) and written atomically as PNG by `save_figure`.

- `standard_plots(frame, out_dir)`: every `test/` metric per epoch, one line per
  configuration (mean over seeds, ± one std shaded), one panel per dataset; ER@K
  are among them. Plus `summary.md`: the final-epoch table as Markdown.
- `plot_item_embeddings`: item embeddings in 2-D (first two principal components)
  with the hot items highlighted (CL4FedRec Fig. 3, which uses the 100 most popular
  items; the paper's projection is not stated, PCA is ours).
- `plot_singular_values`: sorted, normalised singular values (CL4FedRec Fig. 4b).
"""

from __future__ import annotations

import io as _io
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fedjax_rec import checkpoints
from fedjax_rec.grid import GRID_KEYS
from fedjax_rec.sweep import format_summary, summarize


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (4.5, 3.5)):
  """A `(Figure, axes[nrows * ncols])` pair on an Agg canvas."""
  fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
  return fig, axes


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
  """Writes `fig` as a PNG, atomically; returns the path."""
  buf = _io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  checkpoints.atomic_write_bytes(path, buf.getvalue())
  return Path(path)


_LINESTYLES = ("-", "--", ":", "-.")


def line_style(k: int) -> dict:
  """Colour and dash of the `k`-th line of a panel: ten colours, then the next dash, so up
  to 40 lines stay distinct (matplotlib's default cycle repeats colours after ten)."""
  return {"color": f"C{k % 10}", "linestyle": _LINESTYLES[(k // 10) % len(_LINESTYLES)]}


def epoch_axis(ax: Axes) -> None:
  """Integer ticks and a label for a global-epoch x axis."""
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_xlabel("global epoch")
  ax.grid(alpha=0.3)


def config_labels(frame: pd.DataFrame) -> pd.Series:
  """A label per row from the grid keys (but seed and dataset) that vary in `frame`."""
  keys = [k for k in GRID_KEYS if k not in ("seed", "dataset") and k in frame
          and frame[k].nunique(dropna=False) > 1]
  if not keys:
    return pd.Series(frame["method"].astype(str), index=frame.index)
  return frame[keys].astype(str).agg(" / ".join, axis=1)


def mean_curve(ax: Axes, rows: pd.DataFrame, metric: str, label: str, style: dict,
               band: bool = True, bounds: tuple[float, float] | None = None) -> None:
  """`metric` of `rows` against epoch: the mean over seeds, ± one std shaded (`band`),
  the shading clipped to `bounds` (a share's 0-1)."""
  stats = rows.groupby("epoch")[metric].agg(["mean", "std"]).fillna({"std": 0.0})
  ax.plot(stats.index, stats["mean"], marker="o", ms=3, label=label, **style)
  if band:
    low, high = stats["mean"] - stats["std"], stats["mean"] + stats["std"]
    if bounds is not None:
      low, high = low.clip(lower=bounds[0]), high.clip(upper=bounds[1])
    ax.fill_between(stats.index, low, high, alpha=0.2, color=style["color"])


def plot_metric_per_epoch(frame: pd.DataFrame, metric: str) -> Figure:
  """`metric` against epoch: a panel per dataset, a line per configuration."""
  data = frame.dropna(subset=[metric]).assign(_label=config_labels(frame))
  datasets = list(dict.fromkeys(data["dataset"]))
  fig, axes = new_figure(ncols=max(len(datasets), 1))
  for ax, name in zip(axes, datasets):
    part = data[data["dataset"] == name]
    for k, (label, rows) in enumerate(part.groupby("_label", sort=False)):
      mean_curve(ax, rows, metric, label, line_style(k))
    ax.set(title=name, ylabel=metric.removeprefix("test/"))
    epoch_axis(ax)
    ax.legend(fontsize="small")
  return fig


def markdown_table(table: pd.DataFrame) -> str:
  """A pipe table of `table` (index included), without extra dependencies."""
  flat = table.reset_index() if any(n is not None for n in table.index.names) else table
  header = [str(c) for c in flat.columns]
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  for row in flat.itertuples(index=False):
    lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
  return "\n".join(lines) + "\n"


def _slug(metric: str) -> str:
  return re.sub(r"[^A-Za-z0-9@._-]+", "_", metric.removeprefix("test/"))


def standard_plots(frame: pd.DataFrame, out_dir: str | Path,
                   metrics: Sequence[str] | None = None) -> list[Path]:
  """Writes `<metric>.png` per test metric and `summary.md`; returns the paths.

  Args:
    frame: results-store rows (`ResultsStore.frame()`).
    out_dir: where the files go.
    metrics: `test/...` columns to plot (None: every one with data).
  """
  if frame.empty:
    raise ValueError("the results store has no rows yet: nothing to plot")
  out = Path(out_dir)
  if metrics is None:
    metrics = [c for c in frame.columns if c.startswith("test/") and frame[c].notna().any()]
  paths = [save_figure(plot_metric_per_epoch(frame, m), out / f"{_slug(m)}.png")
           for m in metrics]
  summary = format_summary(summarize(frame))
  text = "# Final-epoch metrics (mean ± std over seeds)\n\n" + markdown_table(summary)
  checkpoints.atomic_write_text(out / "summary.md", text)
  return paths + [out / "summary.md"]


# ---------------------------------------------------------------- embedding figures


def pca_2d(x: np.ndarray) -> np.ndarray:
  """[n, 2] coordinates of the rows of `x` on its first two principal components."""
  x = np.asarray(x, np.float64)
  centered = x - x.mean(axis=0, keepdims=True)
  _, _, vt = np.linalg.svd(centered, full_matrices=False)
  return centered @ vt[:2].T


def plot_item_embeddings(ax: Axes, item_emb: np.ndarray, hot_ids: np.ndarray,
                         title: str = "", target_ids: Sequence[int] = ()) -> None:
  """Scatter of all items in 2-D, hot items in red, targets as black stars (Fig. 3)."""
  xy = pca_2d(item_emb)
  hot = np.zeros(len(xy), bool)
  hot[np.asarray(hot_ids)] = True
  ax.scatter(xy[~hot, 0], xy[~hot, 1], s=6, c="tab:blue", alpha=0.5, label="other items")
  ax.scatter(xy[hot, 0], xy[hot, 1], s=12, c="tab:red", label="hot items")
  if len(target_ids):
    t = np.asarray(target_ids)
    ax.scatter(xy[t, 0], xy[t, 1], s=90, c="black", marker="*", label="target")
  ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
  ax.legend(fontsize="small", loc="best")


def plot_singular_values(ax: Axes, spectra: dict[str, np.ndarray]) -> None:
  """Normalised sorted singular values per method (CL4FedRec Fig. 4b)."""
  for name, s in spectra.items():
    s = np.sort(np.asarray(s, np.float64))[::-1]
    ax.plot(np.arange(1, len(s) + 1), s / max(s[0], 1e-12), marker="o", ms=3, label=name)
  ax.set(xlabel="index", ylabel="singular value / largest", title="Item embedding spectrum")
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")
