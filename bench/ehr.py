"""The EHR generator against a baseline that synthesises each table independently (and SDV's PAR on the
visit level, when ``bench/.venv-sdv`` exists), on the Synthea export of the reference data.

    nice -n 10 .venv/bin/python bench/ehr.py [--data ../shared/data/tabular/synthea_csv] [--epochs 150]
        [--dim 64] [--patients 200] [--runs 1] [--par-epochs 128]

Per run (seed r): the patients are split into training (three quarters) and holdout (a quarter), each
method is fitted on the training patients and samples ``--patients`` patients; the report of
:func:`medsyn_tabular.ehr.evaluation.evaluate_ehr` (with the holdout for TSTR) gives the figures:

* **ours**: :class:`medsyn_tabular.ehr.synthesizer.EHRSynthesizer` (all tables at once, one sequence per
  patient);
* **independent**: one flat TVAE (:class:`medsyn_tabular.synthesizer.TabularSynthesizer`) per table on its
  modelled columns (times as dates), as many rows per table as the real tables have per patient; then the
  keys: each visit gets a random synthetic patient and each event row a random synthetic visit (and that
  visit's patient), so references resolve but nothing ties rows of one patient together;
* **PAR** (SDV 2.0 ``PARSynthesizer``, in its own environment: ``python3 -m venv bench/.venv-sdv &&
  bench/.venv-sdv/bin/pip install sdv==2.0.0``): the visits table as sequences (key PATIENT, index START,
  context = the patient's attributes); it cannot make the event tables, so it enters the visit-level
  figures only.

Prints one table per run and the medians over runs; seconds are wall-clock on this machine (shared).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medsyn_tabular.ehr.checks import inter_visit_gaps_days, visits_per_patient  # noqa: E402
from medsyn_tabular.ehr.codecs import code_key  # noqa: E402
from medsyn_tabular.ehr.dataset import EHRDataset, format_times, read_folder  # noqa: E402
from medsyn_tabular.ehr.evaluation import evaluate_ehr  # noqa: E402
from medsyn_tabular.evaluation.fidelity import ks_complement, tv_complement  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tabular" / "synthea_csv"
SDV_PYTHON = ROOT / "bench" / ".venv-sdv" / "bin" / "python"


def split(data: EHRDataset, seed: int) -> tuple[EHRDataset, EHRDataset]:
    pname, p = data.schema.patients
    keys = data.table(pname)[p.key].map(code_key).to_numpy()
    rng = np.random.default_rng(seed)
    holdout = set(rng.choice(keys, len(keys) // 4, replace=False))
    return data.subset(set(keys) - holdout), data.subset(holdout)


def ours(train: EHRDataset, n: int, epochs: int, dim: int, seed: int) -> tuple[EHRDataset, float]:
    from medsyn_tabular.ehr.synthesizer import EHRSynthesizer

    t0 = time.perf_counter()
    synth = EHRSynthesizer(epochs=epochs, dim=dim, batch_size=16, seed=seed).fit(train)
    return synth.sample(n, seed=seed), time.perf_counter() - t0


def _flat_columns(data: EHRDataset, name: str) -> tuple[pd.DataFrame, dict, dict]:
    """The table's modelled columns for a flat model (times parsed), its schema overrides, PHI 'keep'."""
    spec = data.schema.tables[name]
    df = data.table(name)
    cols, kinds = {}, {}
    for col in [c for c in (spec.birth, spec.death, spec.start, spec.stop) if c]:
        cols[col], kinds[col] = data.times(name, col), "datetime"
    for col in [c for c in (spec.klass, spec.code, spec.value) if c]:
        cols[col], kinds[col] = df[col].map(code_key), "categorical"
    for col, cs in spec.columns.items():
        cols[col], kinds[col] = df[col], cs.kind
    frame = pd.DataFrame(cols)
    return frame, {"columns": {c: {"kind": k} for c, k in kinds.items()}}, {c: "keep" for c in frame.columns}


def independent(train: EHRDataset, n: int, epochs: int, seed: int) -> tuple[EHRDataset, float]:
    """One flat TVAE per table, keys assigned at random (see the module docstring)."""
    from medsyn_tabular.synthesizer import TabularSynthesizer

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    s = train.schema
    scale = n / train.n_patients
    out: dict[str, pd.DataFrame] = {}
    keys: dict[str, np.ndarray] = {}
    owner: dict[str, np.ndarray] = {}
    order = [s.patients[0], s.visits[0]] + [name for name, _ in s.events]
    for name in order:
        spec = s.tables[name]
        frame, schema, keep = _flat_columns(train, name)
        rows = n if spec.role == "patients" else max(1, int(round(len(frame) * scale)))
        synth = TabularSynthesizer("tvae", epochs=epochs, batch_size=min(500, max(10, len(frame) // 2)),
                                   seed=seed, schema=schema, phi_actions=keep).fit(frame)
        fake = synth.sample(rows, seed=seed)
        table = pd.DataFrame({c: np.full(rows, np.nan, dtype=object) for c in train.table(name).columns})
        for col in fake.columns:
            values = fake[col]
            if col in spec.times:
                values = format_times(pd.to_datetime(values), spec.times[col])
            table[col] = values.to_numpy()
        if spec.key:
            keys[name] = np.asarray([str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(rows)])
            table[spec.key] = keys[name]
        if spec.role == "visits":
            owner[name] = keys[s.patients[0]][rng.integers(0, len(keys[s.patients[0]]), rows)]
            table[spec.patient] = owner[name]
        elif spec.role == "events":
            vname = s.visits[0]
            pick = rng.integers(0, len(keys[vname]), rows)
            table[spec.visit], table[spec.patient] = keys[vname][pick], owner[vname][pick]
        real = train.table(name)
        for code_col in spec.code_columns:  # descriptions and by-code columns looked up, as ours does
            looked = [d for d, t in spec.describe.items() if t == code_col] + \
                (spec.by_code if code_col == spec.code else [])
            for col in looked:
                mode = real.groupby(real[code_col].map(code_key))[col].agg(
                    lambda x: x.mode().iloc[0] if x.notna().any() else np.nan)
                table[col] = table[code_col].map(code_key).map(mode)
        out[name] = table
    return EHRDataset(out, s, "independent", dict(train.files)), time.perf_counter() - t0


def par(train: EHRDataset, n: int, epochs: int, seed: int) -> tuple[EHRDataset | None, float, str]:
    """SDV PAR on the visits (in its own environment), or (None, 0, why) when it is not installed."""
    if not SDV_PYTHON.exists():
        return None, 0.0, "bench/.venv-sdv not found"
    s = train.schema
    pname, p = s.patients
    vname, v = s.visits
    P, V = train.table(pname), train.table(vname)
    context = [c for c in p.columns if P[c].nunique() > 1 and p.columns[c].kind == "categorical"
               and c.upper() in ("GENDER", "RACE", "ETHNICITY", "MARITAL")]
    pat = P.set_index(p.key)[context].copy()
    pat["BIRTH_YEAR"] = pd.to_datetime(P.set_index(p.key)[p.birth]).dt.year.astype(str)
    visits = pd.DataFrame({v.patient: V[v.patient], v.start: train.times(vname, v.start)})
    for col in [c for c in (v.klass, v.code) if c]:
        visits[col] = V[col].map(code_key)
    visits = visits.join(pat, on=v.patient)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "visits.csv", Path(tmp) / "out.csv"
        visits.to_csv(src, index=False)
        cmd = [str(SDV_PYTHON), str(ROOT / "bench" / "sdv_par.py"), str(src), str(dst), "--key", v.patient,
               "--index", v.start, "--context", ",".join(context + ["BIRTH_YEAR"]),
               "--categorical", ",".join(c for c in (v.klass, v.code) if c), "--epochs", str(epochs),
               "--sequences", str(n), "--seed", str(seed)]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if run.returncode != 0:
            return None, seconds, run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "failed"
        fake = pd.read_csv(dst)
    keys = fake[v.patient].astype(str).unique()
    fmt = v.times[v.start]
    visits_out = pd.DataFrame({c: np.full(len(fake), np.nan, dtype=object) for c in V.columns})
    visits_out[v.key] = [str(uuid.uuid4()) for _ in range(len(fake))]
    visits_out[v.patient] = fake[v.patient].astype(str).to_numpy()
    visits_out[v.start] = format_times(pd.to_datetime(fake[v.start]), fmt).to_numpy()
    for col in [c for c in (v.klass, v.code) if c]:
        visits_out[col] = fake[col].to_numpy()
    patients_out = pd.DataFrame({c: np.full(len(keys), np.nan, dtype=object) for c in P.columns})
    patients_out[p.key] = keys
    return EHRDataset({pname: patients_out, vname: visits_out}, s, "par", dict(train.files)), seconds, ""


def visit_level(real: EHRDataset, fake: EHRDataset) -> dict[str, float]:
    """Figures PAR can be compared on: visits per patient, gaps, class transitions."""
    vname, v = real.schema.visits

    def classes(data):
        V = data.table(vname)
        frame = pd.DataFrame({"p": V[v.patient].map(code_key), "t": data.times(vname, v.start),
                              "c": V[v.klass].map(code_key)}).dropna().sort_values(["p", "t"])
        nxt = frame.groupby("p")["c"].shift(-1)
        return (frame["c"] + " -> " + nxt)[nxt.notna()]

    return {"visits per patient KS": ks_complement(pd.Series(visits_per_patient(real)),
                                                   pd.Series(visits_per_patient(fake))),
            "gap KS": ks_complement(pd.Series(inter_visit_gaps_days(real)),
                                    pd.Series(inter_visit_gaps_days(fake))),
            "class transitions TV": tv_complement(classes(real), classes(fake)) if v.klass else np.nan}


def figures(report) -> dict[str, float]:
    def metric(section, key):
        try:
            return float(report.section(section).metric(key).value)
        except (KeyError, TypeError, ValueError):
            return float("nan")

    return {"referential integrity": metric("integrity", "referential_integrity"),
            "time order valid": metric("integrity", "time_order"),
            "real identifiers found": metric("integrity", "real_identifiers"),
            "fidelity quality (mean of tables)": metric("fidelity", "quality"),
            "visits per patient KS": metric("parent_child", "visits_per_patient_ks"),
            "rows per visit KS": metric("parent_child", "rows_per_visit_ks"),
            "attribute x child correlation": metric("parent_child", "attribute_child_correlation"),
            "gap KS": metric("temporal", "gap_ks"),
            "transitions TV": metric("temporal", "transitions_tv"),
            "TSTR AUC (next-visit condition)": metric("utility", "tstr"),
            "TRTR AUC (same task)": float(report.section("utility").metric("tstr").reference)
            if "utility" in [s.key for s in report.sections] and report.section("utility").metrics
            else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--baseline-epochs", type=int, default=100)
    ap.add_argument("--par-epochs", type=int, default=128)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--json", help="also write the figures as JSON here")
    args = ap.parse_args()
    data = read_folder(args.data)
    print(f"data: {args.data}: {data.n_patients} patients, "
          + ", ".join(f"{n} {len(df)}" for n, df in data.tables.items() if data.schema.tables[n].model))
    results = []
    for run in range(args.runs):
        train, holdout = split(data, run)
        row: dict[str, dict] = {}
        fake, secs = ours(train, args.patients, args.epochs, args.dim, run)
        row["ours"] = {**figures(evaluate_ehr(train, fake, holdout, figures=False, seed=run)),
                       "seconds": secs,
                       **{f"visit-level {k}": x for k, x in visit_level(train, fake).items()}}
        fake, secs = independent(train, args.patients, args.baseline_epochs, run)
        row["independent"] = {**figures(evaluate_ehr(train, fake, holdout, figures=False, seed=run)),
                              "seconds": secs,
                              **{f"visit-level {k}": x for k, x in visit_level(train, fake).items()}}
        fake, secs, why = par(train, args.patients, args.par_epochs, run)
        if fake is not None:
            # PAR makes the patients and their visits only: integrity is visits -> patients
            (pname, pspec), (vname, vspec) = fake.schema.patients, fake.schema.visits
            resolved = fake.table(vname)[vspec.patient].astype(str).isin(
                set(fake.table(pname)[pspec.key].astype(str)))
            row["PAR (SDV)"] = {"seconds": secs, "referential integrity": float(resolved.mean()),
                                **{f"visit-level {k}": x for k, x in visit_level(train, fake).items()}}
        else:
            print(f"PAR: not run ({why})")
        results.append(row)
        keys = list(dict.fromkeys(k for r in row.values() for k in r))
        print(f"\nrun {run}: {train.n_patients} training / {holdout.n_patients} holdout patients, "
              f"{args.patients} sampled")
        print(f"{'figure':<40}" + "".join(f"{m:>16}" for m in row))
        for k in keys:
            print(f"{k:<40}" + "".join(f"{row[m].get(k, float('nan')):>16.3f}" for m in row))
    if args.runs > 1:
        print("\nmedians over runs")
        methods = list(results[0])
        keys = list(dict.fromkeys(k for r in results[0].values() for k in r))
        print(f"{'figure':<40}" + "".join(f"{m:>16}" for m in methods))
        for k in keys:
            print(f"{k:<40}" + "".join(
                f"{np.nanmedian([r[m].get(k, np.nan) for r in results if m in r]):>16.3f}" for m in methods))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
