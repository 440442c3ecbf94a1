"""Figures of the evaluation report (matplotlib, rendered to PNG inside the report)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medsyn_core.report import Figure
from medsyn_tabular.evaluation.columns import CATEGORICAL
from medsyn_tabular.evaluation.fidelity import association_matrix
from medsyn_tabular.evaluation.utility import labels

MAX_MARGINALS = 12
REAL_COLOR, SYN_COLOR = "#1f77b4", "#ff7f0e"
DPI = 80


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def marginal_overlays(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict[str, str]) -> Figure:
    """Histogram (numbers, dates) or bar chart (categories) of real vs synthetic for each column."""
    plt = _plt()
    cols = list(kinds)[:MAX_MARGINALS]
    ncols = 4
    nrows = int(np.ceil(len(cols) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), squeeze=False)
    for ax, c in zip(axes.ravel(), cols, strict=False):
        r, s = real[c].dropna(), synthetic[c].dropna()
        if kinds[c] == CATEGORICAL:
            p = labels(r).value_counts(normalize=True)
            q = labels(s).value_counts(normalize=True)
            cats = list(p.index) + [x for x in q.index if x not in p.index]
            cats = cats[:15]
            x = np.arange(len(cats))
            ax.bar(x - 0.2, p.reindex(cats, fill_value=0), 0.4, color=REAL_COLOR, label="real")
            ax.bar(x + 0.2, q.reindex(cats, fill_value=0), 0.4, color=SYN_COLOR, label="synthetic")
            ax.set_xticks(x, [str(v)[:8] for v in cats], fontsize=7, rotation=45)
        else:
            if pd.api.types.is_datetime64_any_dtype(r):
                r, s = r.astype("int64"), s.astype("int64")
            edges = np.histogram_bin_edges(np.r_[r.to_numpy(float), s.to_numpy(float)], bins=25)
            ax.hist(r, edges, density=True, alpha=0.55, color=REAL_COLOR, label="real")
            ax.hist(s, edges, density=True, alpha=0.55, color=SYN_COLOR, label="synthetic")
            ax.tick_params(labelsize=7)
        ax.set_title(str(c), fontsize=9)
    for ax in axes.ravel()[len(cols):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.subplots_adjust(hspace=0.7, wspace=0.3)
    caption = "Blue: real, orange: synthetic (shares of non-missing values)."
    if len(kinds) > MAX_MARGINALS:
        caption += f" First {MAX_MARGINALS} of {len(kinds)} columns."
    return Figure.from_matplotlib("marginals", "Column distributions", fig, caption, dpi=DPI)


def correlation_heatmaps(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict[str, str]) -> Figure:
    """Spearman correlation matrices of real and synthetic data and their absolute difference."""
    plt = _plt()
    cr, cs = association_matrix(real, kinds), association_matrix(synthetic, kinds)
    diff = (cr - cs).abs()
    n = len(kinds)
    size = max(3.5, min(0.35 * n + 1.5, 7))
    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size))
    panels = ((axes[0], cr, "real", "RdBu_r", -1), (axes[1], cs, "synthetic", "RdBu_r", -1),
              (axes[2], diff, "|difference|", "Reds", 0))
    for ax, mat, title, cmap, vmin in panels:
        im = ax.imshow(mat.to_numpy(dtype=float), cmap=cmap, vmin=vmin, vmax=1)
        ax.set_title(title)
        labels_ = [str(c)[:10] for c in mat.columns]
        ax.set_xticks(range(n), labels_, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels_, fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.subplots_adjust(wspace=0.45)
    return Figure.from_matplotlib("correlations", "Correlations: real, synthetic and difference", fig,
                                  "Spearman correlation; categories coded by their value order. White/pale "
                                  "in the difference panel = relationships preserved.", dpi=DPI)


def dcr_histogram(dcr_synthetic: np.ndarray, dcr_holdout: np.ndarray | None) -> Figure:
    """Distances to the closest training row: synthetic rows vs real holdout rows (the natural floor)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    upper = max(float(np.max(dcr_synthetic)), float(np.max(dcr_holdout)) if dcr_holdout is not None else 0)
    edges = np.linspace(0, max(upper, 1e-6), 40)
    ax.hist(dcr_synthetic, edges, density=True, alpha=0.6, color=SYN_COLOR, label="synthetic → train")
    if dcr_holdout is not None:
        ax.hist(dcr_holdout, edges, density=True, alpha=0.6, color=REAL_COLOR, label="real holdout → train")
    ax.set_xlabel("distance to closest training row (0 = identical)")
    ax.legend(fontsize=8)
    return Figure.from_matplotlib("dcr", "Distance to closest record", fig,
                                  "A spike at 0 for synthetic rows means copied patients; synthetic "
                                  "rows should be no closer to the training rows than new real patients "
                                  "are.", dpi=DPI)
