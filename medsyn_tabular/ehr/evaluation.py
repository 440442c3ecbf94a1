"""``evaluate_ehr``: how alike a synthetic EHR dataset is to the real one, in one Report (the flat
evaluation's format: :class:`medsyn_core.report.Report`, JSON or self-contained HTML).

Sections:

* **integrity**: referential integrity and time order of the synthetic data (should both be 100 %),
  duplicate keys, and how many real identifiers appear in it (should be 0); the real data's own figures
  for comparison (exports often break the death-last rule themselves);
* **fidelity**: per table, the flat engine's column shapes, pair trends and quality score
  (:func:`medsyn_tabular.evaluation.fidelity.evaluate_fidelity`) on the modelled columns (times, codes,
  values, other columns; descriptions follow their codes and are left out);
* **parent-child**: visits per patient, rows per visit and per patient of every event table (KS
  complement), and how patient attributes correlate with these counts (correlation similarity);
* **temporal**: gaps between visits, visit durations and age at the first visit (KS complement), and the
  frequencies of transitions between consecutive visit classes, visit codes and condition codes (TV
  complement);
* **utility**: train on synthetic, test on real (TSTR) against train on real, on a longitudinal task:
  from a patient's history up to a visit, predict whether the next visit records a condition.

KS complement ≥ 0.85 of visits per patient and of the gaps is the bar of docs/ehr.md.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from medsyn_core.report import Figure, Metric, Report, Section, Table
from medsyn_tabular.ehr.checks import (
    dataset_texts,
    integrity,
    inter_visit_gaps_days,
    real_identifiers_in,
    visits_per_patient,
)
from medsyn_tabular.ehr.codecs import YEAR_SECONDS, code_key
from medsyn_tabular.ehr.dataset import EHRDataset
from medsyn_tabular.evaluation.columns import CATEGORICAL, DATETIME, NUMERIC
from medsyn_tabular.evaluation.fidelity import evaluate_fidelity, ks_complement, tv_complement

GOOD_KS = 0.85
GOOD_QUALITY = 0.8
MAX_FIDELITY_ROWS = 5000
MAX_EXAMPLES = 20000
TOP_CODES = 30


def _ok(value: float, threshold: float) -> bool | None:
    return None if value is None or not np.isfinite(value) else bool(value >= threshold)


def table_frame(data: EHRDataset, name: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """The modelled columns of one table as a frame for the fidelity scores, with their kinds."""
    spec = data.schema.tables[name]
    df = data.table(name)
    cols: dict[str, pd.Series] = {}
    kinds: dict[str, str] = {}
    if spec.role == "patients":
        cols[spec.birth], kinds[spec.birth] = data.times(name, spec.birth), DATETIME
        if spec.death:
            cols[f"{spec.death} (known)"] = df[spec.death].notna().map({True: "yes", False: "no"})
            kinds[f"{spec.death} (known)"] = CATEGORICAL
    else:
        cols[spec.start], kinds[spec.start] = data.times(name, spec.start), DATETIME
        if spec.stop:
            hours = (data.times(name, spec.stop) - data.times(name, spec.start)).dt.total_seconds() / 3600
            cols["duration (hours)"], kinds["duration (hours)"] = hours, NUMERIC
    for col in [c for c in (spec.klass, spec.code) if c]:
        cols[col], kinds[col] = df[col].map(code_key), CATEGORICAL
    if spec.value:
        numbers = pd.to_numeric(df[spec.value], errors="coerce")
        cols[f"{spec.value} (number)"], kinds[f"{spec.value} (number)"] = numbers, NUMERIC
        text = df[spec.value].where(numbers.isna()).map(code_key)
        cols[f"{spec.value} (text)"], kinds[f"{spec.value} (text)"] = text, CATEGORICAL
    for col, cs in spec.columns.items():
        if cs.kind == "categorical":
            cols[col], kinds[col] = df[col].map(code_key), CATEGORICAL
        else:
            cols[col], kinds[col] = pd.to_numeric(df[col], errors="coerce"), NUMERIC
    for col in spec.by_code:
        cols[col], kinds[col] = df[col].map(code_key), CATEGORICAL
    frame = pd.DataFrame(cols).reset_index(drop=True)
    return frame, kinds


def _sample(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    if len(frame) <= MAX_FIDELITY_ROWS:
        return frame
    return frame.sample(MAX_FIDELITY_ROWS, random_state=seed).reset_index(drop=True)


def _keys(values: pd.Series) -> pd.Series:
    return values.map(code_key)


def _visits(data: EHRDataset) -> pd.DataFrame:
    """Visits with patient, start, stop, class and code, sorted by patient and start."""
    vname, v = data.schema.visits
    V = data.table(vname)
    out = pd.DataFrame({"p": _keys(V[v.patient]), "key": _keys(V[v.key]) if v.key else np.arange(len(V)),
                        "start": data.times(vname, v.start)})
    out["stop"] = data.times(vname, v.stop) if v.stop else pd.NaT
    out["class"] = _keys(V[v.klass]) if v.klass else None
    out["code"] = _keys(V[v.code]) if v.code else None
    return out.dropna(subset=["start"]).sort_values(["p", "start"], kind="stable").reset_index(drop=True)


def _per_visit_counts(data: EHRDataset, name: str) -> np.ndarray:
    vname, v = data.schema.visits
    spec = data.schema.tables[name]
    counts = _keys(data.table(name)[spec.visit]).value_counts()
    return _keys(data.table(vname)[v.key]).map(counts).fillna(0).to_numpy(dtype=float)


def _per_patient_counts(data: EHRDataset, name: str) -> np.ndarray:
    pname, p = data.schema.patients
    spec = data.schema.tables[name]
    counts = _keys(data.table(name)[spec.patient]).value_counts()
    return _keys(data.table(pname)[p.key]).map(counts).fillna(0).to_numpy(dtype=float)


def _ks(a, b) -> float:
    return ks_complement(pd.Series(np.asarray(a, dtype=float)), pd.Series(np.asarray(b, dtype=float)))


def patient_summary(data: EHRDataset) -> pd.DataFrame:
    """One row per patient: birth year, age at the last visit, died, visits, rows per event table."""
    pname, p = data.schema.patients
    P = data.table(pname)
    keys = _keys(P[p.key])
    birth = data.times(pname, p.birth)
    visits = _visits(data)
    last = visits.groupby("p")["start"].max()
    out = pd.DataFrame({"birth year": birth.dt.year.to_numpy(dtype=float),
                        "age at last visit": ((keys.map(last) - birth).dt.total_seconds() / YEAR_SECONDS)
                        .to_numpy(dtype=float),
                        "visits": visits_per_patient(data)})
    if p.death:
        out["died"] = P[p.death].notna().to_numpy(dtype=float)
    for name, _ in data.schema.events:
        out[f"{name} rows"] = _per_patient_counts(data, name)
    return out


def _transitions(sequence: pd.DataFrame, column: str, keep: set | None) -> pd.Series:
    """Pairs 'a -> b' of consecutive values of ``column`` per patient (values not in ``keep`` -> other)."""
    values = sequence[column].map(lambda v: v if keep is None or v in keep else "other")
    nxt = values.groupby(sequence["p"]).shift(-1)
    pairs = values.astype(str) + " -> " + nxt.astype(str)
    return pairs[nxt.notna()].reset_index(drop=True)


def _condition_table(data: EHRDataset, resource: str) -> str | None:
    return next((n for n, s in data.schema.events if s.fhir == resource), None)


def longitudinal_examples(data: EHRDataset, seed: int = 0) -> tuple[pd.DataFrame, dict[str, str]]:
    """Prediction examples, one per visit that has a next visit: features of the history up to the visit
    and the target ``condition at next visit`` (yes/no). Returns (frame, evaluation kinds)."""
    cond = _condition_table(data, "Condition")
    if cond is None:
        raise ValueError("No event table is exported as Condition, so the next-visit task is undefined.")
    pname, p = data.schema.patients
    visits = _visits(data)
    birth = pd.Series(data.times(pname, p.birth).to_numpy(), index=_keys(data.table(pname)[p.key]).to_numpy())
    birth = birth[~birth.index.duplicated()]
    gender_col = next((c for c in p.columns if c.lower() in ("gender", "sex", "gender_concept_id")), None)
    visits["t"] = visits.groupby("p").cumcount()
    visits["age"] = (visits["start"] - visits["p"].map(birth)).dt.total_seconds() / YEAR_SECONDS
    visits["days since previous"] = visits.groupby("p")["start"].diff().dt.total_seconds() / 86400
    per_visit = {}
    for name, spec in data.schema.events:
        per_visit[name] = _keys(data.table(name)[spec.visit]).value_counts()
    visits["conditions here"] = visits["key"].map(per_visit[cond]).fillna(0)
    feats = {"age": NUMERIC, "visit number": NUMERIC, "days since previous": NUMERIC,
             "conditions here": NUMERIC}
    visits["visit number"] = visits["t"] + 1
    for name in per_visit:
        col = f"{name} so far"
        visits[col] = visits["key"].map(per_visit[name]).fillna(0).groupby(visits["p"]).cumsum()
        feats[col] = NUMERIC
    if visits["class"].notna().any():
        feats["class"] = CATEGORICAL
    if gender_col:
        visits["gender"] = visits["p"].map(pd.Series(_keys(data.table(pname)[gender_col]).to_numpy(),
                                                     index=_keys(data.table(pname)[p.key]).to_numpy()))
        feats["gender"] = CATEGORICAL
    nxt = visits.groupby("p")["conditions here"].shift(-1)
    visits["condition at next visit"] = np.where(nxt > 0, "yes", "no")
    examples = visits[nxt.notna()]
    if len(examples) > MAX_EXAMPLES:
        examples = examples.sample(MAX_EXAMPLES, random_state=seed)
    kinds = {**feats, "condition at next visit": CATEGORICAL}
    return examples[list(kinds)].reset_index(drop=True), kinds


def _histograms(real: EHRDataset, synthetic: EHRDataset) -> Figure:
    from medsyn_tabular.evaluation.plots import REAL_COLOR, SYN_COLOR, _plt

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, (title, r, s, log) in zip(axes, [
            ("Visits per patient", visits_per_patient(real), visits_per_patient(synthetic), False),
            ("Days between visits (log10(1 + days))", inter_visit_gaps_days(real),
             inter_visit_gaps_days(synthetic), True)], strict=True):
        if log:
            r, s = np.log10(1 + r), np.log10(1 + s)
        edges = np.histogram_bin_edges(np.r_[r, s], bins=25) if len(r) + len(s) else 10
        ax.hist(r, edges, density=True, alpha=0.55, color=REAL_COLOR, label="real")
        ax.hist(s, edges, density=True, alpha=0.55, color=SYN_COLOR, label="synthetic")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    return Figure.from_matplotlib("sequence_histograms", "Visits per patient and gaps between visits", fig,
                                  "Blue: real, orange: synthetic.", dpi=80)


def evaluate_ehr(real: EHRDataset, synthetic: EHRDataset, holdout: EHRDataset | None = None, *,
                 figures: bool = True, seed: int = 0, utility: bool = True) -> Report:
    """The EHR report of ``synthetic`` against ``real`` (the training data); ``holdout``: real patients the
    generator never saw, for the utility test (else a seeded quarter of the real patients is held out
    there, which is optimistic: the generator saw them)."""
    started = time.perf_counter()
    synthetic = EHRDataset(synthetic.tables, real.schema, synthetic.source, synthetic.files)
    warnings: list[str] = []
    report = Report("EHR evaluation", "ehr", inputs={
        "real patients": real.n_patients, "synthetic patients": synthetic.n_patients,
        "holdout patients": holdout.n_patients if holdout is not None else "none (a split of the real data)",
        "tables": ", ".join(n for n, t in real.schema.tables.items() if t.model)})

    # integrity
    syn_check, real_check = integrity(synthetic), integrity(real)
    leaked = real_identifiers_in(real, dataset_texts(synthetic))
    s = Section("integrity", "Integrity: keys, references and time order")
    s.metrics = [
        Metric("referential_integrity", "Referential integrity", syn_check.referential_integrity,
               "Share of foreign keys (visit -> patient, row -> patient, row -> visit, and a row's patient = "
               "its visit's patient) that resolve; must be 1.", good=syn_check.referential_integrity == 1.0,
               reference=real_check.referential_integrity, reference_label="real data"),
        Metric("time_order", "Time order valid", syn_check.time_order,
               "Share of time checks that hold (birth before visits and rows, start <= stop, death after "
               "everything); must be 1.", good=syn_check.time_order == 1.0,
               reference=real_check.time_order, reference_label="real data"),
        Metric("duplicate_keys", "Duplicate or missing keys", syn_check.duplicate_keys,
               "Primary keys that repeat or are empty; must be 0.", good=syn_check.duplicate_keys == 0),
        Metric("real_identifiers", "Real identifiers in the synthetic data", int(sum(leaked.values())),
               "Values of the real keys, references and PHI columns (names, addresses, SSN ...) found as a "
               "whole cell of the synthetic tables; must be 0.", good=not leaked),
    ]
    s.tables = [Table("references", "Foreign keys", syn_check.references),
                Table("time_rules", "Time rules", syn_check.time_rules)]
    s.summary = (f"Referential integrity {syn_check.referential_integrity:.1%}, time order "
                 f"{syn_check.time_order:.1%}, {syn_check.duplicate_keys} duplicate key(s), "
                 f"{sum(leaked.values())} real identifier(s) found.")
    if not syn_check.ok:
        warnings.append("The synthetic data breaks referential integrity or time order (see Integrity).")
    if leaked:
        warnings.append(f"Real identifiers appear in the synthetic data (columns: {', '.join(leaked)}).")
    report.add(s)

    # fidelity per table
    rows, column_rows, qualities = [], [], []
    for name, spec in real.schema.tables.items():
        if not spec.model:
            continue
        rf, kinds = table_frame(real, name)
        sf, _ = table_frame(synthetic, name)
        if len(sf) < 2 or len(rf) < 2:
            rows.append({"table": name, "real rows": len(rf), "synthetic rows": len(sf)})
            continue
        f = evaluate_fidelity(_sample(rf, seed), _sample(sf, seed), kinds)
        qualities.append(f.quality)
        rows.append({"table": name, "real rows": len(rf), "synthetic rows": len(sf), "quality": f.quality,
                     "column shapes": f.column_shapes, "pair trends": f.pair_trends})
        column_rows += [{"table": name, "column": c["column"], "kind": c["kind"], "metric": c["shape metric"],
                         "score": c["shape score"]} for c in f.columns]
    s = Section("fidelity", "Fidelity per table: do the synthetic tables look like the real ones?")
    mean_q = float(np.nanmean(qualities)) if qualities else float("nan")
    s.metrics = [Metric("quality", "Mean quality score over the tables", mean_q,
                        f"Mean of each table's SDMetrics-style quality (column shapes and pair trends); 1 = "
                        f"identical, above {GOOD_QUALITY} is good.", good=_ok(mean_q, GOOD_QUALITY))]
    s.tables = [Table("tables", "Per table", rows, "Times as dates, durations in hours, codes and other "
                      "columns as modelled; descriptions follow their codes and are left out."),
                Table("columns", "Per column", column_rows)]
    s.summary = f"Mean quality {mean_q:.2f} over {len(qualities)} table(s)."
    report.add(s)

    # parent-child
    vpp_r, vpp_s = visits_per_patient(real), visits_per_patient(synthetic)
    ks_vpp = _ks(vpp_r, vpp_s)
    s = Section("parent_child", "Parent-child structure: visits per patient, rows per visit")
    s.metrics = [Metric("visits_per_patient_ks", "Visits per patient (KS complement)", ks_vpp,
                        "1 - Kolmogorov-Smirnov distance between the real and synthetic numbers of visits "
                        f"per patient; at least {GOOD_KS} is good.", good=_ok(ks_vpp, GOOD_KS),
                        reference=float(np.mean(vpp_r)), reference_label="real mean visits per patient")]
    count_rows = [{"count": "visits per patient", "real mean": float(np.mean(vpp_r)),
                   "synthetic mean": float(np.mean(vpp_s)) if len(vpp_s) else float("nan"),
                   "KS complement": ks_vpp}]
    per_visit_ks = []
    for name, _ in real.schema.events:
        for label, fn in (("per visit", _per_visit_counts), ("per patient", _per_patient_counts)):
            r, sy = fn(real, name), fn(synthetic, name)
            ks = _ks(r, sy)
            if label == "per visit":
                per_visit_ks.append(ks)
            count_rows.append({"count": f"{name} rows {label}",
                               "real mean": float(np.mean(r)) if len(r) else 0,
                               "synthetic mean": float(np.mean(sy)) if len(sy) else 0, "KS complement": ks})
    if per_visit_ks:
        s.metrics.append(Metric("rows_per_visit_ks", "Rows per visit (KS complement, mean over tables)",
                                float(np.nanmean(per_visit_ks)),
                                "How alike the numbers of conditions, medications, observations ... per "
                                "visit are; 1 = identical."))
    ps_r, ps_s = patient_summary(real), patient_summary(synthetic)
    pairs = []
    children = [c for c in ps_r.columns if c.endswith(" rows") or c == "visits"]
    for a in [c for c in ps_r.columns if c not in children]:
        for b in children:
            rr = ps_r[[a, b]].dropna().corr().iloc[0, 1] if len(ps_r) > 2 else np.nan
            rs = ps_s[[a, b]].dropna().corr().iloc[0, 1] if len(ps_s) > 2 else np.nan
            sim = 1 - abs(rr - rs) / 2 if np.isfinite(rr) and np.isfinite(rs) else np.nan
            pairs.append({"patient attribute": a, "child statistic": b, "real r": rr, "synthetic r": rs,
                          "similarity": sim})
    corr_sim = float(np.nanmean([p["similarity"] for p in pairs])) if pairs else float("nan")
    s.metrics.append(Metric("attribute_child_correlation", "Patient attribute x child statistic "
                            "correlation similarity", corr_sim,
                            "1 - |r_real - r_synthetic| / 2 of Pearson correlations between patient "
                            "attributes (birth year, age at last visit, died) and counts of their visits and "
                            "rows, averaged; 1 = same relationships."))
    s.tables = [Table("counts", "Counts", count_rows), Table("correlations", "Attribute x child "
                                                                             "statistic", pairs)]
    s.summary = f"Visits per patient KS complement {ks_vpp:.3f}; attribute-child correlation similarity " \
                f"{corr_sim:.3f}."
    if np.isfinite(ks_vpp) and ks_vpp < GOOD_KS:
        warnings.append(f"Visits per patient differ from the real data: KS complement {ks_vpp:.2f} "
                        f"(below {GOOD_KS}).")
    if figures:
        s.figures.append(_histograms(real, synthetic))
    report.add(s)

    # temporal
    gaps_r, gaps_s = inter_visit_gaps_days(real), inter_visit_gaps_days(synthetic)
    ks_gap = _ks(gaps_r, gaps_s)
    vr, vs = _visits(real), _visits(synthetic)
    s = Section("temporal", "Temporal structure: gaps, durations, transitions")
    s.metrics = [Metric("gap_ks", "Days between visits (KS complement)", ks_gap,
                        "1 - KS distance between the real and synthetic gaps between consecutive visits of "
                        f"a patient; at least {GOOD_KS} is good.", good=_ok(ks_gap, GOOD_KS),
                        reference=float(np.median(gaps_r)) if len(gaps_r) else None,
                        reference_label="real median gap (days)")]
    temporal_rows = [{"statistic": "days between visits", "KS complement": ks_gap}]
    if real.schema.visits[1].stop:
        ks_d = _ks(((vr["stop"] - vr["start"]).dt.total_seconds() / 3600).dropna(),
                   ((vs["stop"] - vs["start"]).dt.total_seconds() / 3600).dropna())
        temporal_rows.append({"statistic": "visit duration (hours)", "KS complement": ks_d})
    pname, p = real.schema.patients

    def first_age(data: EHRDataset, visits: pd.DataFrame) -> np.ndarray:
        birth = pd.Series(data.times(pname, p.birth).to_numpy(), index=_keys(data.table(pname)[p.key]))
        birth = birth[~birth.index.duplicated()]
        first = visits.groupby("p")["start"].min()
        return ((first - first.index.map(birth)).dt.total_seconds() / YEAR_SECONDS).dropna().to_numpy()

    temporal_rows.append({"statistic": "age at first visit (years)",
                          "KS complement": _ks(first_age(real, vr), first_age(synthetic, vs))})
    tv_rows = []
    for column in ("class", "code"):
        if vr[column].notna().any():
            keep = set(vr[column].value_counts().index[:TOP_CODES])
            tv = tv_complement(_transitions(vr, column, keep), _transitions(vs, column, keep))
            tv_rows.append({"transitions": f"visit {column} -> next visit {column}", "TV complement": tv})
    cond = _condition_table(real, "Condition")
    if cond is not None:
        def condition_sequence(data: EHRDataset) -> pd.DataFrame:
            spec = data.schema.tables[cond]
            E = data.table(cond)
            seq = pd.DataFrame({"p": _keys(E[spec.patient]), "t": data.times(cond, spec.start),
                                "code": _keys(E[spec.code])})
            return seq.dropna().sort_values(["p", "t"], kind="stable").reset_index(drop=True)

        cr, cs = condition_sequence(real), condition_sequence(synthetic)
        keep = set(cr["code"].value_counts().index[:TOP_CODES])
        tv_rows.append({"transitions": f"{cond} code -> next {cond} code",
                        "TV complement": tv_complement(_transitions(cr, "code", keep),
                                                       _transitions(cs, "code", keep))})
    transitions = float(np.nanmean([r["TV complement"] for r in tv_rows])) if tv_rows else float("nan")
    s.metrics.append(Metric("transitions_tv", "Code transition frequencies (TV complement, mean)",
                            transitions,
                            "How alike the frequencies of consecutive pairs (class -> class, code -> code; "
                            f"the {TOP_CODES} most frequent real values, others pooled) are; 1 = identical."))
    s.tables = [Table("distributions", "Time distributions", temporal_rows),
                Table("transitions", "Transitions", tv_rows)]
    s.summary = (f"Gaps between visits KS complement {ks_gap:.3f}; transitions TV complement "
                 f"{transitions:.3f}.")
    if np.isfinite(ks_gap) and ks_gap < GOOD_KS:
        warnings.append(f"Gaps between visits differ from the real data: KS complement {ks_gap:.2f} (below "
                        f"{GOOD_KS}).")
    report.add(s)

    # utility: the longitudinal task
    if utility:
        _utility(report, real, synthetic, holdout, seed, warnings)
    report.warnings = list(dict.fromkeys(warnings))
    report.inputs["evaluation time (s)"] = round(time.perf_counter() - started, 2)
    return report


def _utility(report: Report, real: EHRDataset, synthetic: EHRDataset, holdout: EHRDataset | None, seed: int,
             warnings: list[str]) -> None:
    from medsyn_tabular.evaluation.report import utility_section
    from medsyn_tabular.evaluation.utility import evaluate_utility

    try:
        if holdout is not None:
            train, kinds = longitudinal_examples(real, seed)
            test, _ = longitudinal_examples(EHRDataset(holdout.tables, real.schema, holdout.source), seed)
            note = "Tested on the holdout's patients, which the generator never saw."
        else:
            pname, p = real.schema.patients
            keys = _keys(real.table(pname)[p.key]).to_numpy()
            rng = np.random.default_rng(seed)
            test_keys = set(rng.choice(keys, max(1, len(keys) // 4), replace=False))
            train, kinds = longitudinal_examples(real.subset(set(keys) - test_keys), seed)
            test, _ = longitudinal_examples(real.subset(test_keys), seed)
            note = ("Tested on a quarter of the real patients; the generator saw them too, so this is "
                    "optimistic (give a holdout for a fair test).")
        syn, _ = longitudinal_examples(synthetic, seed)
        target = "condition at next visit"
        if train[target].nunique() < 2 or test[target].nunique() < 2:
            raise ValueError("the real examples have a single value of the target")
        result = evaluate_utility(train, test, syn, kinds, target, seed=seed)
    except ValueError as exc:
        s = Section("utility", "Utility: train on synthetic, test on real (next-visit condition)")
        s.summary = f"Not computed: {exc}"
        report.add(s)
        return
    s = utility_section(result, note, warnings)
    s.title = "Utility: predict a condition at the next visit (train synthetic, test real)"
    report.add(s)
