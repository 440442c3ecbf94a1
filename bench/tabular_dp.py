"""Benchmark: MedSyn's differentially private CTGAN/TVAE against smartnoise-synth's DP-CTGAN.

For the heart table (bundled UCI Cleveland, target ``num`` > 0) and the stroke table (shared reference
data, ``id`` dropped, target ``stroke``), at ε ∈ {1, 3, 10} and with DP off, it prints:
  quality  SDMetrics QualityReport score, real training rows vs as many synthetic rows
           (MedSyn has no evaluation engine of its own on this branch, so SDMetrics is used)
  tstr_auc ROC AUC on a real holdout (20 %, stratified, never seen by any generator) of a scikit-learn
           HistGradientBoostingClassifier trained on synthetic rows ("train on synthetic, test on real");
           trtr_auc is the same model trained on the real training rows, for reference
  epoch_s  seconds per training epoch (MedSyn: training seconds / epochs; smartnoise: fit seconds / epochs
           it ran, since DP-CTGAN stops as soon as its accountant passes ε)
  With --seeds N every run is repeated N times (MedSyn seeds 0..N-1; the DP noise is fresh every time)
  and the mean is printed with the standard deviations of quality and AUC.
  eps      ε actually spent: MedSyn's ledger total (preprocessing + DP-SGD from the accountant);
           smartnoise: preprocessor_eps + the last ε its accountant printed
MedSyn is given the public metadata files (heart: data/tabular/heart_cleveland.metadata.yaml, stroke:
bench/stroke_metadata.yaml) and spends 10 % of ε on DP statistics. smartnoise runs twice, with the same δ,
epochs and batch size: "sn-own-bounds" gets the same 10 % as its ``preprocessor_eps`` (part of its ε) to
find the numeric bounds itself; "sn-public-bounds" gets the metadata's numeric bounds and all of ε for
training. In both, smartnoise reads the category sets and frequencies from the raw rows without noise
(not counted in its ε), which MedSyn never does.

smartnoise-synth pins Opacus 0.14, so it runs in a virtual environment of its own (created on first use
at bench/.venv-smartnoise with `pip install torch==2.13.0 smartnoise-synth pandas packaging`) and data is
exchanged as CSV through bench/smartnoise_dpctgan.py.

    .venv/bin/python bench/tabular_dp.py                                  # everything (about 15 minutes)
    .venv/bin/python bench/tabular_dp.py --tables heart --epsilons 1 --no-smartnoise
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
SN_VENV = ROOT / "bench" / ".venv-smartnoise"
SN_PACKAGES = ["torch==2.13.0", "smartnoise-synth", "pandas", "packaging"]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))


def load_tables() -> dict[str, tuple[pd.DataFrame, pd.Series, Path]]:
    """name -> (table, binary target as 0/1, public metadata file)."""
    from medsyn_tabular.data.datasets import load_heart_cleveland
    from medsyn_tabular.data.io import read_table

    heart = load_heart_cleveland()
    stroke = read_table(SHARED / "healthcare-dataset-stroke-data.csv").drop(columns=["id"])
    heart_meta = ROOT / "data/tabular/heart_cleveland.metadata.yaml"
    return {"heart": (heart, (heart["num"] > 0).astype(int), heart_meta),
            "stroke": (stroke, stroke["stroke"].astype(int), ROOT / "bench/stroke_metadata.yaml")}


def split(df: pd.DataFrame, y: pd.Series, seed: int = 0):
    from sklearn.model_selection import train_test_split

    train, holdout = train_test_split(df.index, test_size=0.2, stratify=y, random_state=seed)
    return df.loc[train].reset_index(drop=True), df.loc[holdout].reset_index(drop=True)


def tstr_auc(train: pd.DataFrame, holdout: pd.DataFrame, table: str, discrete: list[str]) -> float | None:
    """AUC on the real holdout of a classifier trained on ``train`` (synthetic or real)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    def target(d: pd.DataFrame) -> np.ndarray:
        t = pd.to_numeric(d["num" if table == "heart" else "stroke"], errors="coerce")
        return (t > 0).astype(int).to_numpy()

    def features(d: pd.DataFrame) -> pd.DataFrame:
        x = d.drop(columns=["num" if table == "heart" else "stroke"]).copy()
        for c in x.columns:
            if c in discrete:
                x[c] = x[c].astype(str).str.replace(r"\.0$", "", regex=True).where(x[c].notna(), "nan")
            else:
                x[c] = pd.to_numeric(x[c], errors="coerce").astype(float)
        return x

    y_train = target(train)
    if len(np.unique(y_train)) < 2:
        return None  # the synthetic target has one class only: no classifier can be trained
    both = pd.get_dummies(pd.concat([features(train), features(holdout)], keys=["a", "b"]),
                          columns=[c for c in discrete if c != ("num" if table == "heart" else "stroke")])
    model = HistGradientBoostingClassifier(random_state=0).fit(both.loc["a"], y_train)
    return float(roc_auc_score(target(holdout), model.predict_proba(both.loc["b"])[:, 1]))


def run_medsyn(model: str, train: pd.DataFrame, epsilon: float | None, epochs: int, batch: int,
               metadata: Path, seed: int = 0) -> dict:
    from medsyn_tabular.synthesizer import TabularSynthesizer

    private = {} if epsilon is None else {"epsilon": epsilon, "metadata": metadata}
    t0 = time.perf_counter()
    synth = TabularSynthesizer(model, epochs=epochs, batch_size=batch, seed=seed, **private).fit(train)
    fit_s = time.perf_counter() - t0
    discrete = [c.name for c in synth.schema.modelled if c.kind in ("categorical", "boolean")]
    return {"synthetic": synth.sample(len(train), seed=1), "discrete": discrete, "fit_s": fit_s,
            "epoch_s": synth.card["training_seconds"] / epochs, "epochs_run": epochs,
            "eps": synth.ledger.total()[0] if synth.ledger is not None else None}


def ensure_smartnoise_venv() -> Path:
    python = SN_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SN_VENV)], check=True)
        subprocess.run([str(SN_VENV / "bin" / "pip"), "install", "-q", *SN_PACKAGES], check=True)
    return python


def public_bounds(metadata: Path, columns: list[str]) -> str:
    """'col=lo:hi,...' for the numeric columns whose bounds the metadata file declares."""
    import yaml

    spec = yaml.safe_load(metadata.read_text())["columns"]
    return ",".join(f"{c}={spec[c]['min']}:{spec[c]['max']}" for c in columns
                    if c in spec and "min" in spec[c] and "max" in spec[c])


def run_smartnoise(train: pd.DataFrame, epsilon: float, epochs: int, batch: int, discrete: list[str],
                   threads: int, bounds: str = "") -> dict:
    from medsyn_core.privacy.budget import DEFAULT_PREPROCESSING_SHARE, default_delta

    python = ensure_smartnoise_venv()
    continuous = [c for c in train.columns if c not in discrete]
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "train.csv", Path(tmp) / "synthetic.csv"
        train.to_csv(src, index=False)
        cmd = [str(python), str(ROOT / "bench/smartnoise_dpctgan.py"), str(src), str(out),
               "--epsilon", str(epsilon), "--bounds", bounds,
               "--preprocessor-eps", str(0.0 if bounds else DEFAULT_PREPROCESSING_SHARE * epsilon),
               "--delta", str(default_delta(len(train))), "--epochs", str(epochs), "--batch-size", str(batch),
               "--categorical", ",".join(discrete), "--continuous", ",".join(continuous),
               "--rows", str(len(train)), "--threads", str(threads)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
            raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")
        info = json.loads(done.stdout.strip().splitlines()[-1])
        synthetic = pd.read_csv(out)
    eps = None if info["training_epsilon_reported"] is None else \
        (0.0 if bounds else DEFAULT_PREPROCESSING_SHARE * epsilon) + info["training_epsilon_reported"]
    return {"synthetic": synthetic, "fit_s": info["fit_s"], "epochs_run": info["epochs_run"],
            "epoch_s": info["fit_s"] / max(1, info["epochs_run"]), "eps": eps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="heart,stroke")
    parser.add_argument("--epsilons", default="1,3,10,off")
    parser.add_argument("--models", default="ctgan,tvae")
    parser.add_argument("--epochs-heart", type=int, default=15)
    parser.add_argument("--epochs-stroke", type=int, default=20)
    parser.add_argument("--batch-heart", type=int, default=100)
    parser.add_argument("--batch-stroke", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every run (default 1)")
    parser.add_argument("--no-smartnoise", action="store_true")
    parser.add_argument("--seeds", type=int, default=1, help="repeat every run this many times (mean shown)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    import torch
    from tabular_speed import quality

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    tables = load_tables()
    results = []
    print(f"torch {torch.__version__}, {args.threads} thread(s); quality = SDMetrics QualityReport; "
          "TSTR = HistGradientBoosting trained on synthetic, AUC on a real 20 % holdout")
    print(f"{'table':<7} {'impl':<16} {'ε asked':>7} {'ε spent':>8} {'epochs':>6} {'epoch_s':>8} "
          f"{'quality':>7} {'tstr_auc':>8}")
    for name in args.tables.split(","):
        df, y, metadata = tables[name]
        train, holdout = split(df, y)
        epochs = args.epochs_heart if name == "heart" else args.epochs_stroke
        batch = args.batch_heart if name == "heart" else args.batch_stroke
        import yaml

        spec = yaml.safe_load(metadata.read_text())["columns"]
        discrete = [c for c in train.columns if "categories" in (spec.get(c) or {})]
        for eps_text in args.epsilons.split(","):
            epsilon = None if eps_text == "off" else float(eps_text)
            runs: dict[str, list[dict]] = {}
            for seed in range(args.seeds):
                for model in args.models.split(","):
                    try:
                        r = run_medsyn(model, train, epsilon, epochs, batch, metadata, seed)
                    except Exception as exc:
                        r = {"error": f"{type(exc).__name__}: {exc}"}
                    runs.setdefault(f"medsyn-{model}", []).append(r)
                if epsilon is not None and not args.no_smartnoise:
                    continuous = [c for c in train.columns if c not in discrete]
                    declared = public_bounds(metadata, continuous)
                    for impl, bounds in (("sn-own-bounds", ""), ("sn-public-bounds", declared)):
                        try:
                            r = run_smartnoise(train, epsilon, epochs, batch, discrete, args.threads, bounds)
                        except Exception as exc:
                            r = {"error": f"{type(exc).__name__}: {exc}"}
                        runs.setdefault(impl, []).append(r)
            for impl, rs in runs.items():
                row = {"table": name, "impl": impl, "epsilon": eps_text, "epochs": epochs, "batch": batch}
                errors = [r["error"] for r in rs if "error" in r]
                if errors:
                    row["error"] = errors[0]
                    print(f"{name:<7} {impl:<16} {eps_text:>7} failed ({len(errors)}/{len(rs)} runs): "
                          f"{errors[0][:160]}", flush=True)
                    results.append(row)
                    continue
                qualities = [quality(train, r["synthetic"], discrete) for r in rs]
                aucs = [tstr_auc(r["synthetic"], holdout, name, discrete) for r in rs]
                aucs_ok = [a for a in aucs if a is not None]
                spent = [r["eps"] for r in rs if r["eps"] is not None]
                row.update({
                    "runs": len(rs), "eps_spent": round(max(spent), 3) if spent else None,
                    "epochs_run": max(r["epochs_run"] for r in rs),
                    "epoch_s": round(float(np.mean([r["epoch_s"] for r in rs])), 3),
                    "quality": round(float(np.mean(qualities)), 4), "quality_runs": qualities,
                    "tstr_auc": round(float(np.mean(aucs_ok)), 3) if aucs_ok else None,
                    "tstr_auc_runs": aucs})
                results.append(row)
                spent_text = "-" if row["eps_spent"] is None else f"{row['eps_spent']:.3g}"
                auc = "n/a" if row["tstr_auc"] is None else f"{row['tstr_auc']:.3f}"
                spread = f" (sd {np.std(qualities):.3f} / {np.std(aucs_ok):.3f})" if len(rs) > 1 else ""
                print(f"{name:<7} {impl:<16} {eps_text:>7} {spent_text:>8} {row['epochs_run']:>6} "
                      f"{row['epoch_s']:>8} {row['quality']:>7} {auc:>8}{spread}", flush=True)
        trtr = tstr_auc(train, holdout, name, discrete)
        results.append({"table": name, "impl": "real (TRTR)", "tstr_auc": round(trtr, 3)})
        print(f"{name:<7} {'real rows (TRTR)':<16} {'':>7} {'':>8} {'':>6} {'':>8} {'':>7} {trtr:>8.3f}",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
