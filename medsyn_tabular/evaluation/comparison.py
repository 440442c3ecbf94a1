"""Model comparison: two or more synthetic tables (one per model) evaluated against the same real table and
holdout, side by side in one :class:`~medsyn_core.report.Report`.

Each model gets the full evaluation (:func:`~medsyn_tabular.evaluation.report.evaluate_tabular`, without
figures); the comparison section puts the headline numbers of every model in one table, with the model's
ε, and names the best model per measure. Each model's own report is kept in ``Comparison.reports``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medsyn_core.report import Metric, Report, Section, Table, verdict
from medsyn_tabular.evaluation.report import evaluate_tabular

#: (section, metric key, column title, higher is better)
HEADLINE = [
    ("fidelity", "quality", "quality (1 = identical)", True),
    ("utility", "tstr", "train synthetic, test real", True),
    ("utility", "utility_gap", "utility lost", False),
    ("privacy", "exact_copies", "exact copies (share)", False),
    ("privacy", "mia_distance_auc", "membership AUC (0.5 = guessing)", False),
    ("privacy", "dcr_share_closer_to_train", "closer to training than holdout", False),
]


@dataclass
class Comparison:
    report: Report
    reports: dict[str, Report] = field(default_factory=dict)


def _value(report: Report, section: str, key: str):
    try:
        metric = report.section(section).metric(key)
    except KeyError:
        return None, None
    value = metric.value
    if isinstance(value, float) and not np.isfinite(value):
        value = None
    return value, metric.good


def compare_models(real: pd.DataFrame, synthetic: dict[str, pd.DataFrame], *, target: str,
                   holdout: pd.DataFrame | None = None, contexts: dict[str, dict] | None = None,
                   quasi_identifiers: list[str] | None = None, seed: int = 0) -> Comparison:
    """Evaluate every ``synthetic[name]`` against ``real`` (the rows the models were trained on) and
    ``holdout`` (rows none of them saw) and put the headline numbers side by side. ``contexts[name]``: each
    model's report context (:func:`medsyn_core.report.model_context`). Raises ValueError for fewer than two
    models."""
    if len(synthetic) < 2:
        raise ValueError("Choose at least two models to compare.")
    contexts = contexts or {}
    reports = {name: evaluate_tabular(real, rows, target=target, holdout=holdout, figures=False, seed=seed,
                                      quasi_identifiers=quasi_identifiers, title=f"Evaluation of {name}",
                                      context=contexts.get(name))
               for name, rows in synthetic.items()}
    rows = []
    for name, report in reports.items():
        row = {"model": name, "ε": report.context.get("privacy", "off")}
        for section, key, title, _ in HEADLINE:
            value, good = _value(report, section, key)
            row[title] = value
            if good is not None:
                row[f"{title}: verdict"] = verdict(good)
        row["problems"] = len(report.problems())
        rows.append(row)
    best = []
    for _section, key, title, higher in HEADLINE:
        values = {r["model"]: r[title] for r in rows if isinstance(r[title], (int, float))}
        if values:
            winner = (max if higher else min)(values, key=values.get)
            best.append(Metric(f"best_{key}", f"Best {title}", winner,
                               f"The model with the {'highest' if higher else 'lowest'} {title} "
                               f"({values[winner]:.3g})."))
    first = next(iter(reports.values()))
    comparison = Report(f"Comparison of {len(reports)} models on one real table", "tabular",
                        inputs=dict(first.inputs), context={
                            "model": ", ".join(reports), "compared_with": (
                                f"{first.inputs.get('real rows (training)')} training rows and "
                                f"{first.inputs.get('holdout rows')} holdout rows")})
    comparison.add(Section("comparison", "Models side by side",
                           "The same real table and holdout for every model; each model's full report "
                           "follows below.", metrics=best,
                           tables=[Table("models", "Headline numbers per model", rows)]))
    comparison.warnings = [f"{name}: {w}" for name, r in reports.items() for w in r.warnings]
    return Comparison(comparison, reports)
