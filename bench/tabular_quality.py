"""Benchmark: quality, utility, privacy and fit time of every MedSyn tabular model and the `ctgan`
package's CTGAN/TVAE at their defaults, on real tables, with and without differential privacy.

Tables (80/20 split, stratified on the binary target, the 20 % never seen by any generator):
  heart     bundled UCI Cleveland (303 x 14), target num > 0, public metadata data/tabular/...yaml
  diabetes  ../shared/data/tabular/diabetes.csv (Pima, 768 x 9), target Outcome
  stroke    ../shared/data/tabular/healthcare-dataset-stroke-data.csv (5110 x 11, id dropped), target
            stroke, metadata bench/stroke_metadata.yaml
  failure   ../shared/data/tabular/heart_failure_clinical_records_dataset.csv (299 x 13), DEATH_EVENT
  synthea   ../shared/data/tabular/synthea_csv/patients.csv (59 rows, identifiers dropped), target GENDER
Under DP, tables without a metadata file get a declared schema written from the *inferred* one (kinds,
categories and bounds read from the rows): that leaks them, and is done here only to measure the
mechanisms; real use declares them (docs/privacy.md).

Figures per (table, implementation, ε):
  quality   SDMetrics QualityReport (column shapes + pair trends), real training rows vs as many synthetic
            rows, categories compared as normalised labels (3, 3.0 and "3" are one category)
  tstr_auc  ROC AUC on the real 20 % of HistGradientBoosting trained on synthetic rows; trtr_auc: the
            same model trained on the real 80 %
  dcr_share share of synthetic rows nearer (standardised one-hot distance) to a real training row than
            to any holdout row, training rows subsampled to the holdout's size (0.5 = no memorisation)
  fit_s     wall seconds of fit (preprocessing included)

    nice -n 10 .venv/bin/python bench/tabular_quality.py --tables heart,diabetes --epsilons 1,off
    nice -n 10 .venv/bin/python bench/tabular_quality.py        # everything (hours on 2 shared cores)

Peers not run here: smartnoise-synth (MST/AIM/DP-CTGAN, see bench/tabular_dp.py for its venv) and
mostlyai-engine; time-to-quality is not measured yet (docs/tabular.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "tabular"
sys.path.insert(0, str(ROOT))


def load_tables() -> dict[str, tuple[pd.DataFrame, str, dict | None]]:
    """name -> (table, binary target column, public metadata or None)."""
    from medsyn_tabular.data.datasets import heart_cleveland_metadata, load_heart_cleveland
    from medsyn_tabular.data.io import read_table

    out = {}
    heart = load_heart_cleveland()
    heart["num"] = (heart["num"] > 0).astype(int)
    meta = heart_cleveland_metadata()
    meta["columns"]["num"] = {"kind": "categorical", "categories": [0, 1], "nullable": False}
    out["heart"] = (heart, "num", meta)
    if SHARED.is_dir():
        import yaml

        out["diabetes"] = (read_table(SHARED / "diabetes.csv"), "Outcome", None)
        stroke = read_table(SHARED / "healthcare-dataset-stroke-data.csv").drop(columns=["id"])
        out["stroke"] = (stroke, "stroke", yaml.safe_load((ROOT / "bench/stroke_metadata.yaml").read_text()))
        failure = read_table(SHARED / "heart_failure_clinical_records_dataset.csv")
        out["failure"] = (failure, "DEATH_EVENT", None)
        patients = read_table(SHARED / "synthea_csv/patients.csv")
        keep = ["BIRTHDATE", "MARITAL", "RACE", "ETHNICITY", "GENDER", "HEALTHCARE_EXPENSES",
                "HEALTHCARE_COVERAGE"]
        out["synthea"] = (patients[[c for c in keep if c in patients.columns]], "GENDER", None)
    return out


def declared(df: pd.DataFrame, target: str) -> dict:
    """A declared schema written from the inferred one (benchmark only: see the module docstring)."""
    from medsyn_tabular.data.schema import infer_schema

    cols = {}
    for c in infer_schema(df).columns:
        spec = {"kind": c.kind}
        if c.kind in ("continuous", "integer"):
            spec.update(min=float(df[c.name].min()), max=float(df[c.name].max()))
        elif c.kind == "datetime":
            d = pd.to_datetime(df[c.name], errors="coerce")
            spec.update(min=str(d.min().date()), max=str(d.max().date()))
        elif c.kind in ("categorical", "boolean"):
            spec.update(kind="categorical", categories=sorted(df[c.name].dropna().unique().tolist(), key=str))
        spec["nullable"] = bool(df[c.name].isna().any())
        cols[c.name] = spec
    return {"unit": "row", "columns": cols}


def label(v) -> str:
    if pd.isna(v):
        return "nan"
    try:
        f = float(v)
        return str(int(f)) if f.is_integer() else str(f)
    except (TypeError, ValueError):
        return str(v)


def discrete_columns(df: pd.DataFrame, target: str) -> list[str]:
    out = [target]
    for c in df.columns:
        if c != target and (df[c].dtype == object or df[c].nunique() <= 10):
            out.append(c)
    return out


def normalised(df: pd.DataFrame, columns: list[str], discrete: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(index=range(len(df)))
    for c in columns:
        s = df[c].reset_index(drop=True)
        if c in discrete:
            out[c] = s.map(label)
        elif pd.api.types.is_datetime64_any_dtype(s) or s.dtype == object:
            d = pd.to_datetime(s, errors="coerce")
            out[c] = (d - pd.Timestamp("1900-01-01")).dt.days.astype(float)
        else:
            out[c] = pd.to_numeric(s, errors="coerce").astype(float)
    return out


def quality(real: pd.DataFrame, synthetic: pd.DataFrame, discrete: list[str]) -> float:
    from sdmetrics.reports.single_table import QualityReport

    meta = {"columns": {c: {"sdtype": "categorical" if c in discrete else "numerical"} for c in real.columns}}
    report = QualityReport()
    report.generate(real, synthetic[real.columns], meta, verbose=False)
    return float(report.get_score())


def features(df: pd.DataFrame, target: str, discrete: list[str], columns) -> pd.DataFrame:
    x = pd.get_dummies(df.drop(columns=[target]), columns=[c for c in discrete if c != target], dtype=float)
    return x.reindex(columns=columns, fill_value=0.0)


def tstr_auc(train: pd.DataFrame, holdout: pd.DataFrame, target: str, discrete: list[str]) -> float | None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    positive = sorted(holdout[target].unique())[-1]
    y = (train[target] == positive).astype(int)
    if y.nunique() < 2:
        return None
    cols = features(pd.concat([train, holdout]), target, discrete, None).columns
    model = HistGradientBoostingClassifier(random_state=0).fit(features(train, target, discrete, cols), y)
    proba = model.predict_proba(features(holdout, target, discrete, cols))[:, 1]
    return float(roc_auc_score((holdout[target] == positive).astype(int), proba))


def dcr_share(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame,
              discrete: list[str]) -> float:
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    train = train.iloc[rng.choice(len(train), min(len(train), len(holdout)), replace=False)]
    both = pd.concat([train, holdout, synthetic], keys=["t", "h", "s"])
    x = pd.get_dummies(both, columns=discrete, dtype=float)
    x = x.fillna(x.median()).fillna(0.0)
    x = (x - x.mean()) / x.std().replace(0, 1)
    s = x.loc["s"].to_numpy()
    d_train = NearestNeighbors(n_neighbors=1).fit(x.loc["t"].to_numpy()).kneighbors(s)[0][:, 0]
    d_hold = NearestNeighbors(n_neighbors=1).fit(x.loc["h"].to_numpy()).kneighbors(s)[0][:, 0]
    return float(np.mean(d_train < d_hold))


def run_medsyn(model: str, train: pd.DataFrame, epsilon: float | None, metadata: dict | None, seed: int):
    from medsyn_tabular.synthesizer import TabularSynthesizer

    private = {} if epsilon is None else {"epsilon": epsilon, "metadata": metadata}
    batch = 500 if epsilon is None else max(10, min(500, int(0.05 * len(train)) // 10 * 10))
    kwargs = {"epochs": 300, "batch_size": batch} if model in ("ctgan", "tvae") else {}
    t0 = time.perf_counter()
    synth = TabularSynthesizer(model, seed=seed, **kwargs, **private).fit(train)
    fit_s = time.perf_counter() - t0
    spent = synth.ledger.total()[0] if synth.ledger is not None else None
    return synth.sample(len(train), seed=seed + 1), fit_s, spent


def run_peer(model: str, train: pd.DataFrame, discrete: list[str], seed: int):
    import torch
    from ctgan import CTGAN, TVAE

    torch.manual_seed(seed)
    np.random.seed(seed)
    data = train.copy()
    filled = {}
    for c in data.columns:  # the peer refuses missing numbers: a sentinel below the range, undone after
        if data[c].isna().any() and c not in discrete:
            filled[c] = float(pd.to_numeric(data[c]).min()) - 1.0
            data[c] = data[c].fillna(filled[c])
        elif c in discrete:
            data[c] = data[c].map(label)
    t0 = time.perf_counter()
    peer = (CTGAN if model == "ctgan" else TVAE)(epochs=300)
    peer.fit(data, [c for c in discrete])
    fit_s = time.perf_counter() - t0
    out = peer.sample(len(train))
    for c, v in filled.items():
        out[c] = out[c].where(out[c] > v + 0.5)
    return out, fit_s, None


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="heart,diabetes,stroke,failure,synthea")
    parser.add_argument("--epsilons", default="1,3,10,off")
    parser.add_argument("--dp-models", default="mst,tvae")
    parser.add_argument("--models", default="tvae,ctgan,mst")
    parser.add_argument("--peers", default="ctgan,tvae")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write every row to this JSON file")
    args = parser.parse_args()
    import torch
    from sklearn.model_selection import train_test_split

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    tables = load_tables()
    rows = []
    print(f"{'table':<9} {'impl':<13} {'ε':>4} {'ε spent':>8} {'quality':>7} {'tstr_auc':>8} {'trtr_auc':>8} "
          f"{'dcr_share':>9} {'fit_s':>7}", flush=True)
    for name in args.tables.split(","):
        df, target, metadata = tables[name]
        df = df[df[target].notna()].reset_index(drop=True)
        idx_train, idx_hold = train_test_split(df.index, test_size=0.2, stratify=df[target], random_state=0)
        train, hold = df.loc[idx_train].reset_index(drop=True), df.loc[idx_hold].reset_index(drop=True)
        discrete = discrete_columns(df, target)
        columns = list(df.columns)
        real_n, hold_n = normalised(train, columns, discrete), normalised(hold, columns, discrete)
        trtr = tstr_auc(real_n, hold_n, target, discrete)
        meta = metadata or declared(train, target)
        for eps_text in args.epsilons.split(","):
            epsilon = None if eps_text == "off" else float(eps_text)
            chosen = args.models if epsilon is None else args.dp_models
            runs = [(m, "medsyn") for m in chosen.split(",") if m]
            if epsilon is None:
                runs += [(m, "peer") for m in args.peers.split(",") if m]
            for model, who in runs:
                for seed in range(args.seeds):
                    try:
                        if who == "medsyn":
                            syn, fit_s, spent = run_medsyn(model, train, epsilon, meta, seed)
                        else:
                            syn, fit_s, spent = run_peer(model, train, discrete, seed)
                        syn_n = normalised(syn, columns, discrete)
                        r = {"table": name, "impl": f"{who}-{model}", "epsilon": eps_text, "spent": spent,
                             "quality": quality(real_n, syn_n, discrete),
                             "tstr_auc": tstr_auc(syn_n, hold_n, target, discrete), "trtr_auc": trtr,
                             "dcr_share": dcr_share(real_n, hold_n, syn_n, discrete), "fit_s": fit_s,
                             "seed": seed}
                    except Exception as exc:  # a failing run is reported, the others go on
                        print(f"{name:<9} {who}-{model:<7} {eps_text:>4} failed: {str(exc)[:120]}",
                              flush=True)
                        continue
                    rows.append(r)
                    print(f"{name:<9} {r['impl']:<13} {eps_text:>4} {fmt(spent):>8} {r['quality']:>7.3f} "
                          f"{fmt(r['tstr_auc']):>8} {fmt(trtr):>8} {r['dcr_share']:>9.3f} {fit_s:>7.1f}",
                          flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
