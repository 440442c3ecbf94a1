"""Fairness: is every subgroup of a sensitive column represented, and served as well, by the synthetic data?

Representation compares each subgroup's share of the real and the synthetic rows. Per-subgroup utility
scores the gradient-boosting models of the utility section (trained on real vs on synthetic rows) on
the real test rows of each subgroup. A numeric sensitive column (e.g. age) is cut into the quartiles
of the real data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medsyn_tabular.evaluation.columns import CATEGORICAL, DATETIME
from medsyn_tabular.evaluation.fidelity import _as_numbers
from medsyn_tabular.evaluation.utility import (
    UtilityResult,
    classification_scores,
    features,
    labels,
    regression_scores,
)

MIN_GROUP_ROWS = 5


def _bin_names(edges: np.ndarray, kind: str) -> list[str]:
    def fmt(x: float) -> str:
        if not np.isfinite(x):
            return "…"
        return str(pd.Timestamp(int(x)).date()) if kind == DATETIME else f"{x:.4g}"
    return [f"{fmt(lo)} to {fmt(hi)}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def subgroups(values: pd.Series, kind: str, edges: np.ndarray | None = None) -> pd.Series:
    """Subgroup label of each row (category as text, or a quartile range for numbers and dates)."""
    if kind == CATEGORICAL:
        return labels(values).where(values.notna(), "missing")
    numbers = pd.Series(_as_numbers(values), index=values.index)
    binned = pd.cut(numbers, bins=edges, labels=_bin_names(edges, kind), include_lowest=True)
    return binned.astype(object).where(values.notna(), "missing").astype(str)


@dataclass
class FairnessResult:
    sensitive: str
    representation: list[dict] = field(default_factory=list)
    per_group: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def worst_representation_ratio(self) -> float:
        ratios = [r["ratio"] for r in self.representation if np.isfinite(r["ratio"])]
        return min(ratios) if ratios else float("nan")

    @property
    def largest_gap(self) -> float:
        gaps = [r["gap"] for r in self.per_group if r["gap"] is not None and np.isfinite(r["gap"])]
        return max(gaps) if gaps else float("nan")


def evaluate_fairness(train: pd.DataFrame, test: pd.DataFrame, synthetic: pd.DataFrame,
                      kinds: dict[str, str], sensitive: str, utility: UtilityResult) -> FairnessResult:
    """Representation of each subgroup of ``sensitive`` and TRTR/TSTR scores within each subgroup."""
    if sensitive not in kinds:
        raise ValueError(f"Sensitive column {sensitive!r} is not in the table.")
    kind = kinds[sensitive]
    edges = None
    if kind != CATEGORICAL:
        edges = np.unique(np.nanquantile(_as_numbers(train[sensitive]), [0, 0.25, 0.5, 0.75, 1]))
        edges[0], edges[-1] = -np.inf, np.inf
    g_real, g_syn = subgroups(train[sensitive], kind, edges), subgroups(synthetic[sensitive], kind, edges)
    result = FairnessResult(sensitive)
    share_real = g_real.value_counts(normalize=True)
    share_syn = g_syn.value_counts(normalize=True)
    order = _bin_names(edges, kind) if edges is not None else []

    def rank(group: str) -> tuple:  # bins in value order, categories alphabetically, missing last
        return (group == "missing", order.index(group) if group in order else 0, str(group))

    for group in sorted(set(share_real.index) | set(share_syn.index), key=rank):
        r, s = float(share_real.get(group, 0.0)), float(share_syn.get(group, 0.0))
        result.representation.append({"subgroup": group, "real share": r, "synthetic share": s,
                                      "ratio": s / r if r > 0 else float("nan")})

    target = utility.target
    test = test[test[target].notna()]
    g_test = subgroups(test[sensitive], kind, edges)
    x_test = features(test, kinds, target)
    y_test = labels(test[target]) if utility.task == "classification" else test[target].astype(float)
    real_model, syn_model = utility.fitted["gradient boosting"]
    score = classification_scores if utility.task == "classification" else regression_scores
    metric = "accuracy" if utility.task == "classification" else "MAE"
    for group in sorted(g_test.unique(), key=rank):
        mask = (g_test == group).to_numpy()
        row = {"subgroup": group, "test rows": int(mask.sum()), f"real-trained {metric}": float("nan"),
               f"synthetic-trained {metric}": float("nan"), "gap": None}
        if mask.sum() >= MIN_GROUP_ROWS:
            real_s = score(real_model, x_test[mask], y_test[mask])[metric]
            row[f"real-trained {metric}"] = real_s
            if syn_model is not None:
                syn_s = score(syn_model, x_test[mask], y_test[mask])[metric]
                row[f"synthetic-trained {metric}"] = syn_s
                row["gap"] = (real_s - syn_s) if metric == "accuracy" else (syn_s - real_s)
        result.per_group.append(row)
    if any(r["test rows"] < MIN_GROUP_ROWS for r in result.per_group):
        result.notes.append(f"Subgroups with fewer than {MIN_GROUP_ROWS} real test rows are not scored.")
    return result
