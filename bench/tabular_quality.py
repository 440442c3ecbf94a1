"""Benchmark: quality, utility, privacy, fit time and time-to-quality of every MedSyn tabular model and its
peers, on real tables, with and without differential privacy.

Tables (80/20 split, stratified on the binary target, the 20 % never seen by any generator):
  heart     bundled UCI Cleveland (303 x 14), target num > 0, public metadata data/tabular/...yaml
  diabetes  ../shared/data/tabular/diabetes.csv (Pima, 768 x 9), target Outcome
  stroke    ../shared/data/tabular/healthcare-dataset-stroke-data.csv (5110 x 11, id dropped), target
            stroke, metadata bench/stroke_metadata.yaml
  failure   ../shared/data/tabular/heart_failure_clinical_records_dataset.csv (299 x 13), DEATH_EVENT
  synthea   ../shared/data/tabular/synthea_csv/patients.csv (59 rows, identifiers dropped), target GENDER
Under DP, tables without a metadata file get a declared schema written from the *inferred* one (kinds,
categories and bounds read from the rows): that leaks them, and is done here only to measure the
mechanisms; real use declares them (docs/privacy.md). Every DP implementation gets the same bounds.

Implementations: MedSyn's models at their defaults (``--models``; without DP: at most 300 epochs with
early stopping on a held-out 10 % of the training rows, medsyn_tabular.early_stopping; ``--dp-models``
under DP);
the ``ctgan`` package's CTGAN and TVAE at their defaults (300 epochs; ``--peers``); smartnoise-synth's
MST, AIM and DP-CTGAN under DP (``--sn``, in bench/.venv-smartnoise, through bench/smartnoise_synth.py);
mostlyai-engine's TabularARGN at its defaults without DP (``--mostlyai``, in bench/.venv-mostlyai,
through bench/mostlyai_engine.py). The peer venvs are created on first use.

Figures per (table, implementation, ε):
  quality   SDMetrics QualityReport (column shapes + pair trends), real training rows vs as many synthetic
            rows, categories compared as normalised labels (3, 3.0 and "3" are one category)
  tstr_auc  ROC AUC on the real 20 % of HistGradientBoosting trained on synthetic rows; trtr_auc: the
            same model trained on the real 80 %
  dcr_share share of synthetic rows nearer (standardised one-hot distance) to a real training row than
            to any holdout row, training rows subsampled to the holdout's size (0.5 = no memorisation)
  fit_s     wall seconds of fit (preprocessing included)
  val_q     validation quality: medsyn_tabular.early_stopping.quick_quality (SDMetrics' score over every pair)
            of as many synthetic rows as training rows against the real 20 % holdout
  ttq_s     time-to-quality (without DP): wall seconds of training (the benchmark's own scoring excluded)
            until val_q first reaches the target, the best final val_q of the ctgan package's CTGAN and TVAE
            after 300 epochs on that table; "-" if never (then best_q is the best reached). Scored after
            epochs 1, 2, 3, 5, 8, 12, 18, 27, 40, 60, 90, 135, 200, 300 (MedSyn: through the progress
            callback; the ctgan package: through its epoch loop) and at the end of the fit; mostlyai-engine
            and smartnoise run in their own processes: their fit seconds, if their final val_q reaches it.

    nice -n 10 .venv/bin/python bench/tabular_quality.py --tables heart,diabetes --epsilons 1,off
    nice -n 10 .venv/bin/python bench/tabular_quality.py        # everything (hours on 2 shared cores)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "tabular"
SN_VENV, MA_VENV = ROOT / "bench" / ".venv-smartnoise", ROOT / "bench" / ".venv-mostlyai"
CHECK_EPOCHS = (1, 2, 3, 5, 8, 12, 18, 27, 40, 60, 90, 135, 200, 300)
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


class Curve:
    """Validation quality against training seconds; the scoring's own time is taken off the clock."""

    def __init__(self, score):
        self.score, self.points, self.t0, self.paused = score, [], time.perf_counter(), 0.0

    def now(self) -> float:
        return time.perf_counter() - self.t0 - self.paused

    def check(self, make_rows) -> None:
        t = self.now()
        t1 = time.perf_counter()
        self.points.append((t, self.score(make_rows())))
        self.paused += time.perf_counter() - t1

    def time_to(self, target: float | None) -> float | None:
        if target is None:
            return None
        hit = [t for t, q in self.points if q >= target - 1e-12]
        return min(hit) if hit else None


def run_medsyn(model: str, train: pd.DataFrame, epsilon: float | None, metadata: dict | None, seed: int,
               score=None):
    from medsyn_tabular.synthesizer import TabularSynthesizer

    private = {} if epsilon is None else {"epsilon": epsilon, "metadata": metadata}
    batch = 500 if epsilon is None else max(10, min(500, int(0.05 * len(train)) // 10 * 10))
    kwargs = {"epochs": 300, "batch_size": batch} if model in ("ctgan", "tvae", "argn") else {}
    synth = TabularSynthesizer(model, seed=seed, **kwargs, **private)
    curve = Curve(score) if score is not None and epsilon is None else None

    def rows() -> pd.DataFrame:
        rng = np.random.default_rng(seed + 7)
        return synth._finish(synth._decode(synth.model.generate(len(train), rng), rng))

    def progress(record):
        if curve is not None and record["epoch"] in CHECK_EPOCHS:
            curve.check(rows)

    t0 = time.perf_counter()
    synth.fit(train, progress=progress)
    fit_s = time.perf_counter() - t0 - (curve.paused if curve else 0.0)
    if curve is not None:
        curve.check(rows)  # the model as fitted (early stopping keeps the best check's weights)
    spent = synth.ledger.total()[0] if synth.ledger is not None else None
    return synth.sample(len(train), seed=seed + 1), fit_s, spent, curve, synth.card.get("epochs_trained")


def run_peer(model: str, train: pd.DataFrame, discrete: list[str], seed: int, score=None):
    import ctgan.synthesizers.ctgan as ctgan_module
    import ctgan.synthesizers.tvae as tvae_module
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
    peer = (CTGAN if model == "ctgan" else TVAE)(epochs=300)
    curve = Curve(score) if score is not None else None

    def rows() -> pd.DataFrame:
        out = peer.sample(len(train))
        for c, v in filled.items():
            out[c] = out[c].where(out[c] > v + 0.5)
        return out

    def epochs_hooked(iterable, **_):  # the package's epoch loop, scored after the epochs of the schedule
        for i in iterable:
            yield i
            if curve is not None and i + 1 in CHECK_EPOCHS:
                curve.check(rows)

    module = ctgan_module if model == "ctgan" else tvae_module
    module.tqdm, original = epochs_hooked, module.tqdm
    try:
        t0 = time.perf_counter()
        peer.fit(data, [c for c in discrete])
        fit_s = time.perf_counter() - t0 - (curve.paused if curve else 0.0)
    finally:
        module.tqdm = original
    if curve is not None:
        curve.check(rows)  # the fitted model (the schedule's last epoch, 300, is this one)
        curve.points = curve.points[:-2] + [curve.points[-1]] if len(curve.points) > 1 and \
            curve.points[-2][0] == curve.points[-1][0] else curve.points
    return rows(), fit_s, None, curve, 300


def ensure_venv(venv: Path, packages: list[str], remove: tuple[str, ...] = ()) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)
        if remove:
            subprocess.run([str(venv / "bin" / "pip"), "uninstall", "-y", "-q", *remove], check=True)
    return python


def run_external(kind: str, synth: str, train: pd.DataFrame, discrete: list[str], epsilon: float | None,
                 metadata: dict, seed: int):
    """smartnoise-synth (MST/AIM/DP-CTGAN) or mostlyai-engine in its own venv, through a CSV."""
    from medsyn_core.privacy.budget import default_delta

    continuous = [c for c in train.columns if c not in discrete]
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "train.csv", Path(tmp) / "synthetic.csv"
        data = train.copy()
        for c in continuous:  # dates as days since 1900 (both peers take numbers)
            if not pd.api.types.is_numeric_dtype(data[c]):
                data[c] = (pd.to_datetime(data[c], errors="coerce") - pd.Timestamp("1900-01-01")).dt.days
        data.to_csv(src, index=False)
        if kind == "smartnoise":
            python = ensure_venv(SN_VENV, ["torch==2.13.0", "smartnoise-synth", "pandas", "packaging"])
            spec = metadata["columns"]
            bounds = []
            for c in continuous:
                lo, hi = spec[c].get("min"), spec[c].get("max")
                if isinstance(lo, str):  # a date bound: days since 1900
                    lo, hi = [(pd.Timestamp(v) - pd.Timestamp("1900-01-01")).days for v in (lo, hi)]
                bounds.append(f"{c}={lo}:{hi}")
            batch = max(10, min(500, int(0.05 * len(train)) // 10 * 10))
            cmd = [str(python), str(ROOT / "bench/smartnoise_synth.py"), synth, str(src), str(out),
                   "--epsilon", str(epsilon), "--delta", str(default_delta(len(train))),
                   "--categorical", ",".join(discrete), "--continuous", ",".join(continuous),
                   "--bounds", ",".join(bounds), "--rows", str(len(train)), "--batch-size", str(batch)]
        else:
            python = ensure_venv(MA_VENV, ["torch==2.13.0", "mostlyai-engine"], ("torchvision", "torchaudio"))
            cmd = [str(python), str(ROOT / "bench/mostlyai_engine.py"), str(src), str(out), "--rows",
                   str(len(train)), "--seed", str(seed), "--categorical", ",".join(discrete)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
            raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")
        info = json.loads(done.stdout.strip().splitlines()[-1])
        synthetic = pd.read_csv(out)
    for c in continuous:
        if not pd.api.types.is_numeric_dtype(train[c]):
            synthetic[c] = pd.Timestamp("1900-01-01") + pd.to_timedelta(synthetic[c], unit="D")
    return synthetic, info["fit_s"], epsilon, None, None


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="heart,diabetes,stroke,failure,synthea")
    parser.add_argument("--epsilons", default="1,3,10,off")
    parser.add_argument("--dp-models", default="mst,tvae")
    parser.add_argument("--models", default="argn,tvae,ctgan")
    parser.add_argument("--peers", default="ctgan,tvae")
    parser.add_argument("--sn", default="mst,aim,dpctgan", help="smartnoise-synth synthesizers under DP")
    parser.add_argument("--mostlyai", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write every row to this JSON file (rewritten after each row)")
    args = parser.parse_args()
    import torch
    from sklearn.model_selection import train_test_split

    from medsyn_tabular.early_stopping import quick_quality

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    tables = load_tables()
    rows = []
    print(f"{'table':<9} {'impl':<16} {'ε':>4} {'ε spent':>8} {'quality':>7} {'tstr_auc':>8} {'trtr_auc':>8} "
          f"{'dcr_share':>9} {'fit_s':>7} {'epochs':>6} {'val_q':>6} {'ttq_s':>7} {'best_q':>6}", flush=True)
    for name in args.tables.split(","):
        df, target, metadata = tables[name]
        df = df[df[target].notna()].reset_index(drop=True)
        idx_train, idx_hold = train_test_split(df.index, test_size=0.2, stratify=df[target], random_state=0)
        train, hold = df.loc[idx_train].reset_index(drop=True), df.loc[idx_hold].reset_index(drop=True)
        discrete = discrete_columns(df, target)
        columns = list(df.columns)
        real_n, hold_n = normalised(train, columns, discrete), normalised(hold, columns, discrete)
        kinds = {c: "categorical" if c in discrete else "numeric" for c in columns}
        trtr = tstr_auc(real_n, hold_n, target, discrete)
        meta = metadata or declared(train, target)

        def score(synthetic: pd.DataFrame, hold_n=hold_n, columns=columns, discrete=discrete,
                  kinds=kinds) -> float:
            return quick_quality(hold_n, normalised(synthetic, columns, discrete), kinds)

        table_rows = []
        for eps_text in args.epsilons.split(","):
            epsilon = None if eps_text == "off" else float(eps_text)
            chosen = args.models if epsilon is None else args.dp_models
            runs = [(m, "medsyn") for m in chosen.split(",") if m]
            if epsilon is None:
                runs = [(m, "peer") for m in args.peers.split(",") if m] + runs  # peers first: the target
                runs += [("argn", "mostlyai")] if args.mostlyai else []
            else:
                runs += [(m, "smartnoise") for m in args.sn.split(",") if m]
            for model, who in runs:
                for seed in range(args.seeds):
                    try:
                        if who == "medsyn":
                            syn, fit_s, spent, curve, epochs = run_medsyn(model, train, epsilon, meta, seed,
                                                                          score)
                        elif who == "peer":
                            syn, fit_s, spent, curve, epochs = run_peer(model, train, discrete, seed, score)
                        else:
                            syn, fit_s, spent, curve, epochs = run_external(who, model, train, discrete,
                                                                            epsilon, meta, seed)
                        syn_n = normalised(syn, columns, discrete)
                        r = {"table": name, "impl": f"{who}-{model}", "epsilon": eps_text, "spent": spent,
                             "quality": quality(real_n, syn_n, discrete),
                             "tstr_auc": tstr_auc(syn_n, hold_n, target, discrete), "trtr_auc": trtr,
                             "dcr_share": dcr_share(real_n, hold_n, syn_n, discrete), "fit_s": fit_s,
                             "seed": seed, "epochs": epochs, "val_q": score(syn),
                             "curve": curve.points if curve is not None else None}
                    except Exception as exc:  # a failing run is reported, the others go on
                        print(f"{name:<9} {who}-{model:<7} {eps_text:>4} failed: {str(exc)[:160]}",
                              flush=True)
                        rows.append({"table": name, "impl": f"{who}-{model}", "epsilon": eps_text,
                                     "error": str(exc)[:500]})
                        continue
                    if epsilon is None:
                        peers_done = [x["val_q"] for x in table_rows if x["impl"].startswith("peer-")
                                      and x["epsilon"] == "off" and x.get("val_q") is not None]
                        r["target_q"] = max(peers_done) if peers_done and who != "peer" else None
                        if who == "peer":
                            r["target_q"] = r["val_q"]  # its own final score: when did it get there?
                        if curve is not None:
                            r["ttq_s"] = curve.time_to(r["target_q"])
                            r["best_q"] = max(q for _, q in curve.points)
                        else:
                            r["ttq_s"] = fit_s if r["target_q"] is not None and r["val_q"] >= r["target_q"] \
                                else None
                            r["best_q"] = r["val_q"]
                    rows.append(r)
                    table_rows.append(r)
                    print(f"{name:<9} {r['impl']:<16} {eps_text:>4} {fmt(spent):>8} {r['quality']:>7.3f} "
                          f"{fmt(r['tstr_auc']):>8} {fmt(trtr):>8} {r['dcr_share']:>9.3f} {fit_s:>7.1f} "
                          f"{str(epochs or '-'):>6} {r['val_q']:>6.3f} {fmt1(r.get('ttq_s')):>7} "
                          f"{fmt(r.get('best_q')):>6}", flush=True)
                    if args.json:
                        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
        target = max((x["val_q"] for x in table_rows if x["impl"].startswith("peer-")), default=None)
        for x in table_rows:  # time-to-quality of every implementation against the final target
            if x["epsilon"] == "off" and target is not None and x.get("curve") is not None:
                hit = [t for t, q in x["curve"] if q >= target - 1e-12]
                x["ttq_final_target_s"] = min(hit) if hit else None
        if target is not None:
            print(f"{name:<9} target val_q (best ctgan-package model after 300 epochs): {target:.3f}; "
                  "time to reach it: " + ", ".join(f"{x['impl']} {fmt1(x.get('ttq_final_target_s'))}"
                                                  for x in table_rows if x.get("curve") is not None),
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


def fmt1(v) -> str:
    return "-" if v is None else f"{v:.1f}"


if __name__ == "__main__":
    main()
