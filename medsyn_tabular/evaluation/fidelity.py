"""Fidelity: does the synthetic table look like the real one?

Column shapes and column-pair trends follow SDMetrics' definitions exactly (``KSComplement``,
``TVComplement``, ``CorrelationSimilarity``, ``ContingencySimilarity`` and the ``QualityReport``
averages), so the scores are comparable with published SDMetrics numbers:

* KS complement (numeric, datetime): ``1 - D`` with ``D`` the two-sample Kolmogorov-Smirnov statistic on
  the non-missing values (rounded to 14 decimals; datetimes as nanoseconds).
* TV complement (categorical): ``1 - 0.5 * sum |p_real - p_synth|`` over categories, missing values dropped.
* Correlation similarity (numeric x numeric): ``1 - |r_real - r_synth| / 2`` with Pearson's r on the
  rows where both values are present; undefined (skipped) for a constant column.
* Contingency similarity (all other pairs): ``1 - TV distance`` of the joint frequency tables, missing
  values counted as their own category. A numeric column in such a pair is first cut into the 10
  ``numpy.histogram_bin_edges`` bins of *its own table* (as SDMetrics does; values equal to the maximum
  and missing values share the last code).
* Pair trends: SDMetrics' ``QualityReport`` (>= 0.28) averages only pairs whose real data show a
  relationship (|r| > 0.5 for numeric pairs, Cramér's V > 0.3 otherwise); ``pair_trends_all_pairs`` is the
  plain mean over every pair (SDMetrics' ``ColumnPairTrends`` with thresholds 0, and releases < 0.28).
* Quality score: the mean of column shapes and pair trends.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, pearsonr, wasserstein_distance
from scipy.stats.contingency import association

from medsyn_tabular.evaluation.columns import CATEGORICAL, DATETIME, NUMERIC

MAX_DECIMALS = sys.float_info.dig - 1
#: SDMetrics QualityReport defaults (sdmetrics.reports.utils).
REAL_CORRELATION_THRESHOLD = 0.5
REAL_ASSOCIATION_THRESHOLD = 0.3
JS_BINS = 20


def _as_numbers(values: pd.Series) -> pd.Series:
    """Numeric view of a numeric or datetime column (datetimes as int nanoseconds), NaN kept."""
    if pd.api.types.is_datetime64_any_dtype(values):
        out = pd.Series(values.to_numpy(dtype="datetime64[ns]").astype("int64").astype(float),
                        index=values.index)
        return out.where(values.notna())
    return values.astype(float)


def ks_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """SDMetrics ``KSComplement``: 1 - two-sample KS statistic on non-missing values (1 = same shape)."""
    r = _as_numbers(real).dropna().round(MAX_DECIMALS)
    s = _as_numbers(synthetic).dropna().round(MAX_DECIMALS)
    if r.empty or s.empty:
        return float("nan")
    return float(1.0 - ks_2samp(r.to_numpy(), s.to_numpy()).statistic)


def category_frequencies(real: pd.Series, synthetic: pd.Series) -> tuple[np.ndarray, np.ndarray, list]:
    """Relative frequencies of each category (union of both tables, missing values dropped)."""
    r = real.dropna().value_counts()
    s = synthetic.dropna().value_counts()
    cats = list(r.index) + [c for c in s.index if c not in r.index]
    p = r.reindex(cats, fill_value=0).to_numpy(float)
    q = s.reindex(cats, fill_value=0).to_numpy(float)
    return p / max(p.sum(), 1), q / max(q.sum(), 1), cats


def tv_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """SDMetrics ``TVComplement``: 1 - total variation distance of the category frequencies."""
    if real.dropna().empty or synthetic.dropna().empty:
        return float("nan")
    p, q, _ = category_frequencies(real, synthetic)
    return float(1.0 - 0.5 * np.abs(p - q).sum())


def _discretize(values: pd.Series) -> np.ndarray:
    """SDMetrics ``ColumnPairTrends._discretize_column``: 10 histogram bins of the table's own values."""
    edges = np.histogram_bin_edges(values.dropna())
    return np.digitize(values, bins=edges)


def correlation_similarity(real: pd.DataFrame, synthetic: pd.DataFrame) -> tuple[float, float, float]:
    """SDMetrics ``CorrelationSimilarity`` (Pearson) of two numeric columns: (score, r_real, r_synth)."""
    nan = float("nan")
    if (real.nunique() == 1).any() or (synthetic.nunique() == 1).any():
        return nan, nan, nan  # correlation undefined for constant data
    r = real.dropna()
    s = synthetic.dropna()
    if len(r) < 2 or len(s) < 2:
        return nan, nan, nan
    r_real = float(pearsonr(r.iloc[:, 0], r.iloc[:, 1])[0])
    r_syn = float(pearsonr(s.iloc[:, 0], s.iloc[:, 1])[0])
    if np.isnan(r_real) or np.isnan(r_syn):
        return nan, r_real, r_syn
    return 1.0 - abs(r_real - r_syn) / 2.0, r_real, r_syn


def contingency_similarity(real: pd.DataFrame, synthetic: pd.DataFrame) -> tuple[float, float]:
    """SDMetrics ``ContingencySimilarity`` of two discrete columns: (score, Cramér's V of the real data)."""
    cols = list(real.columns[:2])
    counts_real = real.groupby(cols, dropna=False).size()
    table = counts_real.unstack(fill_value=0)
    v_real = (float(association(table.to_numpy(), method="cramer"))
              if table.to_numpy().sum() > 0 and min(table.shape) >= 2 else float("nan"))
    p = counts_real / len(real)
    q = synthetic.groupby(cols, dropna=False).size() / len(synthetic)
    index = p.index.union(q.index, sort=False).drop_duplicates()
    diff = (p.reindex(index, fill_value=0) - q.reindex(index, fill_value=0)).abs().fillna(0)
    return float(1.0 - diff.sum() / 2.0), v_real


@dataclass
class FidelityResult:
    """All fidelity numbers; ``columns`` and ``pairs`` are per-column / per-pair detail rows."""

    column_shapes: float
    pair_trends: float
    pair_trends_all_pairs: float
    quality: float
    columns: list[dict] = field(default_factory=list)
    pairs: list[dict] = field(default_factory=list)

    @property
    def weakest_columns(self) -> list[dict]:
        rows = [c for c in self.columns if not np.isnan(c["shape score"])]
        return sorted(rows, key=lambda c: c["shape score"])[:3]


def _column_details(name: str, kind: str, real: pd.Series, syn: pd.Series) -> dict:
    row: dict = {"column": name, "kind": kind}
    miss_r, miss_s = float(real.isna().mean()), float(syn.isna().mean())
    if kind in (NUMERIC, DATETIME):
        row["shape metric"] = "KS complement"
        row["shape score"] = ks_complement(real, syn)
        r = _as_numbers(real).dropna().to_numpy()
        s = _as_numbers(syn).dropna().to_numpy()
        if r.size and s.size:
            scale = float(np.std(r)) or 1.0
            row["Wasserstein (in real SDs)"] = float(wasserstein_distance(r, s) / scale)
            edges = np.histogram_bin_edges(r, bins=JS_BINS)
            hr = np.histogram(np.clip(r, edges[0], edges[-1]), edges)[0]
            hs = np.histogram(np.clip(s, edges[0], edges[-1]), edges)[0]
            row["JS distance"] = float(jensenshannon(hr, hs, base=2))
            span = r.max() - r.min()
            covered = span - max(0.0, s.min() - r.min()) - max(0.0, r.max() - s.max())
            row["coverage"] = float(np.clip(covered / span, 0, 1)) if span > 0 else 1.0
        else:
            row["Wasserstein (in real SDs)"] = row["JS distance"] = row["coverage"] = float("nan")
    else:
        row["shape metric"] = "TV complement"
        row["shape score"] = tv_complement(real, syn)
        row["Wasserstein (in real SDs)"] = float("nan")
        if real.dropna().size and syn.dropna().size:
            p, q, _ = category_frequencies(real, syn)
            row["JS distance"] = float(jensenshannon(p, q, base=2))
        else:
            row["JS distance"] = float("nan")
        real_cats = set(real.dropna().unique())
        row["coverage"] = (len(real_cats & set(syn.dropna().unique())) / len(real_cats)
                           if real_cats else float("nan"))
    row["missing real"] = miss_r
    row["missing synthetic"] = miss_s
    row["missing match"] = 1.0 - abs(miss_r - miss_s)
    return row


def evaluate_fidelity(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict[str, str], *,
                      correlation_threshold: float = REAL_CORRELATION_THRESHOLD,
                      association_threshold: float = REAL_ASSOCIATION_THRESHOLD) -> FidelityResult:
    """Column shapes, pair trends and the quality score of ``synthetic`` against ``real``.

    ``real`` and ``synthetic`` have the same columns (see ``prepare_tables``); ``kinds`` maps each column
    to numeric / datetime / categorical. Scores are in [0, 1], 1 = identical distributions.
    """
    columns = [_column_details(c, k, real[c], synthetic[c]) for c, k in kinds.items()]
    shapes = float(np.nanmean([c["shape score"] for c in columns])) if columns else float("nan")

    continuous = {c for c, k in kinds.items() if k in (NUMERIC, DATETIME)}
    proc_real = pd.DataFrame({c: (_as_numbers(real[c]) if c in continuous else real[c]) for c in kinds})
    proc_syn = pd.DataFrame({c: (_as_numbers(synthetic[c]) if c in continuous else synthetic[c])
                             for c in kinds})
    disc_real = {c: _discretize(proc_real[c]) for c in continuous}
    disc_syn = {c: _discretize(proc_syn[c]) for c in continuous}

    pairs = []
    for a, b in itertools.combinations(list(kinds), 2):
        if a in continuous and b in continuous:
            score, r_real, r_syn = correlation_similarity(proc_real[[a, b]], proc_syn[[a, b]])
            meets = not np.isnan(r_real) and abs(r_real) > correlation_threshold
            pairs.append({"column 1": a, "column 2": b, "metric": "correlation similarity",
                          "score": score, "real correlation": r_real, "synthetic correlation": r_syn,
                          "real association": float("nan"), "counted": bool(meets and not np.isnan(score))})
            continue
        if (a in continuous) != (b in continuous):
            real_pair = pd.DataFrame({a: disc_real[a] if a in continuous else proc_real[a],
                                      b: disc_real[b] if b in continuous else proc_real[b]})
            syn_pair = pd.DataFrame({a: disc_syn[a] if a in continuous else proc_syn[a],
                                     b: disc_syn[b] if b in continuous else proc_syn[b]})
        else:
            real_pair, syn_pair = proc_real[[a, b]], proc_syn[[a, b]]
        score, v_real = contingency_similarity(real_pair, syn_pair)
        meets = not np.isnan(v_real) and v_real > association_threshold
        pairs.append({"column 1": a, "column 2": b, "metric": "contingency similarity", "score": score,
                      "real correlation": float("nan"), "synthetic correlation": float("nan"),
                      "real association": v_real, "counted": bool(meets and not np.isnan(score))})

    scores = np.array([p["score"] for p in pairs], dtype=float)
    counted = np.array([p["counted"] for p in pairs], dtype=bool)
    all_pairs = float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")
    if correlation_threshold <= 0 and association_threshold <= 0:
        trends = all_pairs
    else:
        trends = float(scores[counted].mean()) if counted.any() else float("nan")
    parts = [x for x in (shapes, trends) if not np.isnan(x)]
    quality = float(np.mean(parts)) if parts else float("nan")
    return FidelityResult(shapes, trends, all_pairs, quality, columns, pairs)


def association_matrix(df: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Spearman correlation of all columns, categories coded by their sorted order (for heatmaps)."""
    coded = {}
    for c, k in kinds.items():
        if k == CATEGORICAL and pd.api.types.is_numeric_dtype(df[c]):
            coded[c] = df[c].astype(float)
        elif k == CATEGORICAL:
            codes = pd.Series(pd.Categorical(df[c].astype(str).where(df[c].notna())).codes, index=df.index)
            coded[c] = codes.where(codes >= 0).astype(float)
        else:
            coded[c] = _as_numbers(df[c])
    return pd.DataFrame(coded).corr(method="spearman")
