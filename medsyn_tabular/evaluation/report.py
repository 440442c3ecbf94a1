"""``evaluate_tabular``: fidelity, utility, privacy and fairness of a synthetic table in one Report.

The report is :class:`medsyn_core.report.Report` (shared with the imaging engine, which adds its own
sections); every number carries a one-line explanation and ``report.warnings`` says plainly what is bad.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from medsyn_core.report import Metric, Report, Section, Table
from medsyn_tabular.evaluation import plots
from medsyn_tabular.evaluation.columns import MIN_HOLDOUT_ROWS, prepare_tables
from medsyn_tabular.evaluation.fairness import evaluate_fairness
from medsyn_tabular.evaluation.fidelity import FidelityResult, evaluate_fidelity
from medsyn_tabular.evaluation.privacy import PrivacyResult, default_quasi_identifiers, evaluate_privacy
from medsyn_tabular.evaluation.utility import UtilityResult, evaluate_utility

# Thresholds for "good" (stated in the explanations).
GOOD_QUALITY = 0.8
MAX_UTILITY_GAP = 0.05
MAX_MIA_AUC = 0.6
MAX_COPY_SHARE = 0.0
MIN_K = 5
MAX_ATTRIBUTE_RISK = 0.1
MIN_REPRESENTATION = 0.5
TEST_SHARE = 0.25


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ok(value, test) -> bool | None:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return bool(test(value))


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def fidelity_section(f: FidelityResult, real: pd.DataFrame, synthetic: pd.DataFrame,
                     kinds: dict[str, str], figures: bool, warnings: list[str]) -> Section:
    s = Section("fidelity", "Fidelity: does the synthetic table look like the real one?")
    s.metrics = [
        Metric("quality", "Overall quality score", f.quality,
               "Mean of column shapes and pair trends (SDMetrics' quality score); 1 = identical, "
               f"above {GOOD_QUALITY} is good.", good=_ok(f.quality, lambda v: v >= GOOD_QUALITY),
               reference=1.0, reference_label="identical data"),
        Metric("column_shapes", "Column shapes", f.column_shapes,
               "How alike each column's distribution is (KS complement for numbers and dates, TV "
               "complement for categories), averaged; 1 = identical."),
        Metric("pair_trends", "Column pair trends", f.pair_trends,
               "How well relationships between two columns are kept (correlation or contingency "
               "similarity), averaged over the pairs that are related in the real data (as SDMetrics)."),
        Metric("pair_trends_all_pairs", "Column pair trends, all pairs", f.pair_trends_all_pairs,
               "The same, averaged over every pair of columns (SDMetrics before version 0.28)."),
        Metric("js_distance", "Mean Jensen–Shannon distance", _mean(f.columns, "JS distance"),
               "Difference between real and synthetic value frequencies per column (20 bins for numbers), "
               "averaged; 0 = identical, 1 = no overlap."),
        Metric("wasserstein", "Mean Wasserstein distance (in real SDs)",
               _mean(f.columns, "Wasserstein (in real SDs)"),
               "How far numeric values must move to match the real distribution, in real standard "
               "deviations, averaged over numeric columns; 0 = identical."),
        Metric("coverage", "Range and category coverage", _mean(f.columns, "coverage"),
               "Share of each real column's range or categories that the synthetic data covers, averaged; "
               "1 = nothing missing."),
        Metric("missing_match", "Missing-value match", _mean(f.columns, "missing match"),
               "1 - difference in the share of missing values per column, averaged; 1 = same amount "
               "missing."),
    ]
    worst = ", ".join(f"{c['column']} ({c['shape score']:.2f})" for c in f.weakest_columns)
    s.summary = (f"Quality {f.quality:.2f} (column shapes {f.column_shapes:.2f}, pair trends "
                 f"{f.pair_trends:.2f}). Least similar columns: {worst or 'none'}.")
    if np.isfinite(f.quality) and f.quality < GOOD_QUALITY:
        warnings.append(f"Fidelity is low: quality score {f.quality:.2f} (below {GOOD_QUALITY}); the least "
                        f"similar columns are {worst}.")
    s.tables.append(Table("columns", "Per column", f.columns,
                          "Shape score: 1 = same distribution. JS distance: 0 = same (base 2). Coverage: "
                          "share of the real range or categories that the synthetic data covers. Missing "
                          "match: 1 - difference in missing-value rates."))
    s.tables.append(Table("pairs", "Per pair of columns", f.pairs,
                          "'counted' marks the pairs that enter the pair-trends score (real |r| > 0.5 or "
                          "Cramér's V > 0.3)."))
    if figures:
        s.figures += [plots.marginal_overlays(real, synthetic, kinds),
                      plots.correlation_heatmaps(real, synthetic, kinds)]
    return s


def utility_section(u: UtilityResult, note: str, warnings: list[str]) -> Section:
    s = Section("utility", f"Utility: do models trained on synthetic rows work on real patients? "
                           f"(target: {u.target})")
    m = u.headline_metric
    real_best, syn_best = u.best("real"), u.best("synthetic")
    gap = real_best - syn_best
    label = "ROC AUC" if m == "AUC" else "R²"
    s.metrics = [
        Metric("tstr", f"Train synthetic, test real: best {label}", syn_best,
               f"{label} on real test patients of the best model trained on synthetic rows; compare with "
               "the same models trained on real rows.",
               good=_ok(gap, lambda g: g <= MAX_UTILITY_GAP), reference=real_best,
               reference_label="train real, test real"),
        Metric("utility_gap", f"{label} lost by training on synthetic data", gap,
               f"Real-trained minus synthetic-trained {label}; at most {MAX_UTILITY_GAP} is good.",
               good=_ok(gap, lambda g: g <= MAX_UTILITY_GAP)),
        Metric("importance_agreement", "Feature-importance agreement", u.importance_agreement,
               "Rank correlation of which columns matter to the real- vs synthetic-trained "
               "gradient-boosting model (1 = same order, 0 = unrelated)."),
    ]
    s.tables.append(Table("models", "Scores per model (tested on the same real rows)", u.rows, note))
    if u.importances:
        s.tables.append(Table("importances", "Permutation importance per feature", u.importances,
                              "Drop in score when the column is shuffled (real test rows)."))
    s.summary = (f"Best {label}: {_fmt(syn_best, digits=3)} trained on synthetic vs "
                 f"{_fmt(real_best, digits=3)} trained on real "
                 f"data ({u.task} of {u.target!r}). " + " ".join(u.notes))
    if np.isfinite(gap) and gap > MAX_UTILITY_GAP:
        warnings.append(f"Models trained on the synthetic data are worse on real patients: {label} "
                        f"{syn_best:.3f} vs {real_best:.3f} when trained on real data.")
    warnings.extend(u.notes)
    return s


K_ANONYMITY_PLAIN = (
    "k-anonymity counts how many synthetic rows share each combination of the quasi-identifiers (here {qi}). "
    "Synthetic rows are not real patients, so a small group does not point at a real person by itself: it "
    "matters when the combination is also rare among real patients and the rest of the row matches one "
    "(the exact-copy, distance and membership checks above test that). A low k is a reason to look, not "
    "proof of a leak.")
L_DIVERSITY_PLAIN = (
    "l-diversity: within each group of synthetic rows sharing the quasi-identifiers, how many different "
    "values of {sensitive!r} appear; l = 1 means someone who knows the quasi-identifiers of a group can read "
    "its {sensitive!r} off the synthetic table. Again these are synthetic rows: see the attribute-inference "
    "risk for what it means for real patients.")


def privacy_section(p: PrivacyResult, figures: bool, warnings: list[str], dp: bool = False) -> Section:
    s = Section("privacy", "Privacy: can a real patient be found in, or learned from, the synthetic table?")
    s.metrics = [
        Metric("exact_copies", "Synthetic rows that copy a real training row", p.exact_copies_train,
               "Share of synthetic rows equal to a real training patient in every column; should be 0.",
               unit="(share)", good=p.exact_copies_train <= MAX_COPY_SHARE,
               reference=p.holdout_copies_of_train,
               reference_label="real holdout rows equal to a training row"),
        Metric("median_dcr", "Median distance to closest real row", float(np.median(p.dcr_synthetic_train)),
               "Typical distance from a synthetic row to the nearest training row (0 = copy, 1 = differs in "
               "everything); compare with new real patients.",
               reference=float(np.median(p.dcr_holdout_train)) if p.dcr_holdout_train is not None else None,
               reference_label="real holdout rows"),
        Metric("dcr_share_closer_to_train", "Synthetic rows closer to training than to holdout rows",
               p.share_closer_to_train,
               "Above about 50% (with equal-sized train and holdout) means the generator memorised its "
               "training patients.", unit="(share)"),
        Metric("dcr_overfitting_protection", "DCR overfitting protection (SDMetrics)",
               p.dcr_overfitting_score,
               "min(2 x (1 - share closer to training), 1); 1 = no sign of memorisation."),
        Metric("dcr_baseline_protection", "DCR baseline protection (SDMetrics)", p.dcr_baseline_score,
               "Median distance of synthetic rows to real rows relative to random rows; 1 = as far as "
               "random data, 0 = copies."),
        Metric("nndr", "Median nearest-neighbour distance ratio", p.nndr_synthetic,
               "Closest / second-closest training distance; near 0 means a synthetic row singles out one "
               "patient. Compare with new real patients.",
               reference=p.nndr_holdout, reference_label="real holdout rows"),
        Metric("mia_distance_auc", "Membership attack AUC (distance)", p.mia_distance_auc,
               "How well an attacker tells training patients from new ones by their distance to the "
               f"synthetic rows; 0.5 = guessing, above {MAX_MIA_AUC} is a risk.",
               good=_ok(p.mia_distance_auc, lambda v: v <= MAX_MIA_AUC)),
        Metric("mia_domias_auc", "Membership attack AUC (density ratio, DOMIAS)", p.mia_domias_auc,
               "The same with a density-ratio attack (synthetic vs real reference density); 0.5 = guessing.",
               good=_ok(p.mia_domias_auc, lambda v: v <= MAX_MIA_AUC)),
    ]
    if p.attribute_inference:
        a = p.attribute_inference
        s.metrics.append(Metric(
            "attribute_inference_risk", f"Attribute-inference risk for {a['secret']!r}", a["risk"],
            "Knowing all other columns of a patient, how much better the synthetic data lets an attacker "
            "guess this column for training patients than for new ones (anonymeter); 0 = no extra risk.",
            good=_ok(a["risk"], lambda v: v <= MAX_ATTRIBUTE_RISK), reference=a["control rate"],
            reference_label=f"guess rate on new patients (attack: {a['attack rate']:.2f})"))
    if p.quasi_identifiers:
        qi = ", ".join(map(str, p.quasi_identifiers))
        dp_note = (" Under differential privacy the ε guarantee, not k, bounds what any row reveals about a "
                   "patient, so k is shown for information only." if dp else "")
        s.metrics.append(Metric("k_anonymity", f"k-anonymity over {qi}", p.k_anonymity,
                                "Every combination of these columns is shared by at least k synthetic rows "
                                f"(values compared exactly, not generalised); k >= {MIN_K} is a common "
                                "minimum for real data." + dp_note,
                                good=None if dp else _ok(p.k_anonymity, lambda v: v >= MIN_K)))
        s.metrics.append(Metric("small_groups", f"Rows in groups smaller than {MIN_K}", p.small_group_share,
                                "Share of synthetic rows whose quasi-identifier combination has fewer than "
                                f"{MIN_K} rows.", unit="(share)"))
        if p.l_diversity is not None:
            s.metrics.append(Metric("l_diversity", f"l-diversity of {p.sensitive!r}", p.l_diversity,
                                    "Each quasi-identifier group holds at least l different values of the "
                                    "sensitive column; l = 1 means some group reveals it."))
        s.tables.append(Table("k_anonymity_plain", "What k-anonymity and l-diversity mean for synthetic rows",
                              [{"measure": "k-anonymity", "in plain words": K_ANONYMITY_PLAIN.format(qi=qi)}]
                              + ([{"measure": "l-diversity", "in plain words":
                                   L_DIVERSITY_PLAIN.format(sensitive=p.sensitive)}]
                                 if p.l_diversity is not None else [])))
    if p.exact_copies_train > MAX_COPY_SHARE:
        n_rows = p.n_synthetic
        warnings.append(f"{_pct(p.exact_copies_train)} of synthetic rows are exact copies of real rows "
                        f"({int(round(p.exact_copies_train * n_rows))} of {n_rows}).")
    for key, auc in (("distance", p.mia_distance_auc), ("density-ratio", p.mia_domias_auc)):
        if auc is not None and np.isfinite(auc) and auc > MAX_MIA_AUC:
            warnings.append(f"A {key} membership attack tells training patients from new ones with "
                            f"AUC {auc:.2f} (0.5 = guessing): the synthetic data leaks who was in the "
                            "training set.")
    if p.attribute_inference and np.isfinite(p.attribute_inference["risk"]) \
            and p.attribute_inference["risk, 95% lower bound"] > MAX_ATTRIBUTE_RISK:
        a = p.attribute_inference
        warnings.append(f"Attribute inference: {a['secret']!r} of training patients is guessed correctly "
                        f"{_pct(a['attack rate'])} of the time vs {_pct(a['control rate'])} for new patients "
                        f"(risk {a['risk']:.2f}, at least {a['risk, 95% lower bound']:.2f} allowing for "
                        "chance).")
    if p.k_anonymity is not None and p.k_anonymity < MIN_K and not dp:
        warnings.append(f"k-anonymity is {p.k_anonymity} over {', '.join(map(str, p.quasi_identifiers))}: "
                        f"{_pct(p.small_group_share)} of synthetic rows are in groups of fewer than {MIN_K} "
                        "synthetic rows. These are not real patients; it matters if such rare combinations "
                        "also match real patients (see the copy, distance and membership checks).")
    warnings.extend(p.notes)
    s.summary = (f"{_pct(p.exact_copies_train)} exact copies; membership attack AUC "
                 f"{_fmt(p.mia_distance_auc)} (distance) / {_fmt(p.mia_domias_auc)} (density ratio); "
                 f"{_fmt(p.share_closer_to_train, pct=True)} of synthetic rows closer to training than "
                 "holdout.")
    if p.attribute_inference:
        s.tables.append(Table("attribute_inference", "Attribute inference (anonymeter method)",
                              [p.attribute_inference],
                              "Attack: training patients; control: holdout patients; random guess: draw from "
                              "the synthetic values. The warning uses the 95% lower bound of the risk, "
                              "so that sampling noise on small tables is not reported as a leak."))
    if figures:
        s.figures.append(plots.dcr_histogram(p.dcr_synthetic_train, p.dcr_holdout_train))
    return s


def constraints_section(rules, train: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict[str, str],
                        dp_model: bool, warnings: list[str]) -> Section:
    """The declared rules: the share of synthetic rows breaking each (should be 0) and, without DP, the
    share of real rows that already break it (data-entry errors, or a rule that is too strict)."""
    from medsyn_tabular.data.constraints import ConstraintSet

    numeric_codes = {c for c, k in kinds.items() if k == "categorical"
                     and pd.to_numeric(train[c].dropna(), errors="coerce").notna().all()}
    as_schema = {c: "continuous" if k == "numeric" else "datetime" if k == "datetime"
                 else "integer" if c in numeric_codes else "categorical" for c, k in kinds.items()}
    rules = ConstraintSet.parse(rules, list(kinds)).bind(as_schema)
    real = rules.breaking_shares(train)
    syn = rules.breaking_shares(synthetic)
    rows = [{"rule": r["rule"], "declared as": r["declared as"], "kind": r["kind"],
             "real rows breaking it": None if dp_model else r["share breaking it"],
             "synthetic rows breaking it": s["share breaking it"]} for r, s in zip(real, syn, strict=True)]
    any_broken = float((~_holds_all(rules, synthetic)).mean()) if len(synthetic) else 0.0
    s = Section("constraints", "Clinical rules: does every synthetic row keep the declared rules?")
    s.metrics = [Metric("synthetic_breaking", "Synthetic rows breaking a declared rule", any_broken,
                        "Share of synthetic rows that break at least one rule (derived columns included); "
                        "MedSyn's generators enforce them, so this should be 0.", unit="(share)",
                        good=any_broken == 0)]
    caption = ("Share of rows breaking each rule; a rule on a missing cell is not checkable and counts as "
               "kept.")
    if dp_model:
        s.summary = ("The share of real rows breaking a rule is not reported for a model trained with "
                     "differential privacy: it is a statistic of the real rows that ε does not cover.")
    else:
        worst = max(real, key=lambda r: r["share breaking it"], default=None)
        s.summary = (f"{_pct(any_broken)} of synthetic rows break a rule. Real rows breaking a rule: up to "
                     f"{_pct(worst['share breaking it'])} (rule {worst['rule']})." if worst else "No rules.")
    if any_broken > 0:
        warnings.append(f"{_pct(any_broken)} of synthetic rows break a declared clinical rule.")
    s.tables.append(Table("rules", "Declared rules", rows, caption))
    return s


def _holds_all(rules, rows: pd.DataFrame) -> np.ndarray:
    ok = np.ones(len(rows), dtype=bool)
    for r in rules.rules:
        ok &= r.holds(rows)
    return ok


def _fmt(x, pct: bool = False, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return _pct(x) if pct else f"{x:.{digits}f}"


def evaluate_tabular(real: pd.DataFrame, synthetic: pd.DataFrame, *, target: str,
                     holdout: pd.DataFrame | None = None, column_types: dict[str, str] | None = None,
                     quasi_identifiers: list[str] | None = None, sensitive: str | None = None,
                     figures: bool = True, seed: int = 0,
                     title: str = "Synthetic table evaluation", context: dict | None = None,
                     constraints=None, dp_model: bool = False) -> Report:
    """Evaluate ``synthetic`` against the ``real`` rows the generator was trained on.

    ``holdout``: real rows the generator never saw (needed for the membership and DCR-share comparisons;
    without it the utility test rows are split from ``real``). ``column_types``: column -> numeric /
    datetime / categorical overrides. ``quasi_identifiers`` default to age/sex/ZIP-like columns;
    ``sensitive`` (a column) is the secret of the attribute-inference attack and of l-diversity (the
    target when None) and enables the fairness section.
    ``context``: the report header (:func:`medsyn_core.report.model_context`: model, data source, ε …);
    a DP model's k-anonymity is then informational (its ε is the guarantee).
    ``constraints``: declared clinical rules (the schema file's ``constraints:`` list, see
    :mod:`medsyn_tabular.data.constraints`) for a section on the rows breaking them; ``dp_model``: the
    synthetic rows come from a differentially private model, so the share of real rows breaking a rule
    (a statistic of the rows) is left out.
    Raises ``ValueError`` with a plain message for unusable inputs.
    """
    # One thread per library: OpenMP/BLAS thread pools fighting over a busy CPU are many times slower.
    with threadpool_limits(limits=1):
        return _evaluate(real, synthetic, target=target, holdout=holdout, column_types=column_types,
                         quasi_identifiers=quasi_identifiers, sensitive=sensitive, figures=figures,
                         seed=seed, title=title, context=context, constraints=constraints,
                         dp_model=dp_model)


def _evaluate(real, synthetic, *, target, holdout, column_types, quasi_identifiers, sensitive, figures,
              seed, title, context=None, constraints=None, dp_model=False) -> Report:
    started = time.perf_counter()
    tables = prepare_tables(real, synthetic, target=target, holdout=holdout, column_types=column_types)
    if sensitive is not None and sensitive not in tables.kinds:
        raise ValueError(f"Sensitive column {sensitive!r} is not in the table.")
    kinds, train, syn = tables.kinds, tables.train, tables.synthetic
    warnings: list[str] = []
    report = Report(title, "tabular", context=dict(context or {}))
    dp = str(report.context.get("privacy", "off")).startswith("ε")

    if tables.holdout is not None:
        fit_rows, test_rows = train, tables.holdout
        note = "Real test rows: the holdout the generator never saw."
    else:
        n_test = int(round(len(train) * TEST_SHARE))
        if n_test < MIN_HOLDOUT_ROWS:
            raise ValueError(f"The real table has {len(train)} rows: too few to set aside "
                             f"{MIN_HOLDOUT_ROWS} test rows. Give more rows or a holdout file.")
        order = np.random.default_rng(seed).permutation(len(train))
        test_rows, fit_rows = train.iloc[order[:n_test]], train.iloc[order[n_test:]]
        note = (f"No holdout given: {n_test} real rows were set aside for testing; if the generator saw "
                "them, the synthetic-trained scores are optimistic.")

    qis = quasi_identifiers if quasi_identifiers is not None else default_quasi_identifiers(list(kinds))
    report.inputs = {
        "real rows (training)": len(train), "holdout rows": len(tables.holdout) if tables.holdout is not None
        else "none", "synthetic rows": len(syn), "columns": len(kinds), "target": target,
        "column kinds": ", ".join(f"{c}: {k}" for c, k in kinds.items()),
        "quasi-identifiers": ", ".join(map(str, qis)) or "none", "sensitive column": sensitive or "none",
    }

    fid = evaluate_fidelity(train, syn, kinds)
    report.add(fidelity_section(fid, train, syn, kinds, figures, warnings))
    util = evaluate_utility(fit_rows, test_rows, syn, kinds, target, seed)
    report.add(utility_section(util, note, warnings))
    priv = evaluate_privacy(train, tables.holdout, syn, kinds, quasi_identifiers=qis,
                            sensitive=sensitive if sensitive is not None else target, seed=seed)
    report.add(privacy_section(priv, figures, warnings, dp=dp))

    fair = Section("fairness", "Fairness: is every subgroup represented and served?")
    if sensitive is None:
        fair.summary = "Not evaluated: choose a sensitive column (e.g. sex) to compare subgroups."
    else:
        fr = evaluate_fairness(fit_rows, test_rows, syn, kinds, sensitive, util)
        fair.metrics = [
            Metric("worst_representation", "Least represented subgroup (synthetic / real share)",
                   fr.worst_representation_ratio,
                   "1 = the subgroup is as common in the synthetic data as in the real data; below "
                   f"{MIN_REPRESENTATION} it is badly under-represented.",
                   good=_ok(fr.worst_representation_ratio, lambda v: v >= MIN_REPRESENTATION)),
            Metric("largest_subgroup_gap", "Largest per-subgroup loss from training on synthetic data",
                   fr.largest_gap, "Worst subgroup's drop in score (accuracy, or increase in MAE) of the "
                   "synthetic-trained vs the real-trained gradient-boosting model on real test patients."),
        ]
        fair.tables = [Table("representation", f"Representation by {sensitive}", fr.representation),
                       Table("per_group", f"Utility by {sensitive} (gradient-boosting model)", fr.per_group,
                             " ".join(fr.notes))]
        missing = [r["subgroup"] for r in fr.representation
                   if r["synthetic share"] == 0 and r["real share"] > 0]
        worst = fr.worst_representation_ratio
        fair.summary = f"Least represented subgroup at {worst:.2f} of its real share."
        if missing:
            fair.summary += f" Missing entirely from the synthetic data: {', '.join(missing)}."
            warnings.append(f"Subgroups of {sensitive!r} missing from the synthetic data: "
                            f"{', '.join(missing)}.")
        elif np.isfinite(worst) and worst < MIN_REPRESENTATION:
            warnings.append(f"A subgroup of {sensitive!r} is under-represented: {worst:.2f} of its real "
                            "share.")
    report.add(fair)
    if constraints:
        report.add(constraints_section(constraints, train, syn, kinds, dp_model or dp, warnings))
    report.warnings = list(dict.fromkeys(warnings))
    report.inputs["evaluation time (s)"] = round(time.perf_counter() - started, 2)
    return report
