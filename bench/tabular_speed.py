"""Benchmark: MedSyn's CTGAN/TVAE against the `ctgan` package (benchmark-only peer) on the same tables.

For each table and model, in one run, with the same hyperparameters and epochs (published defaults:
batch 500, pac 10, embedding 128, 256/256 or 128/128 layers), it prints:
  fit_s        seconds for fit from a DataFrame, preprocessing included
  prep_s       seconds of preprocessing alone (MedSyn: schema+PHI+transformer; peer: its DataTransformer)
  epoch_s      seconds per training epoch ((fit_s - prep_s) / epochs)
  sample_rows_s  rows per second when sampling 100,000 rows
  quality      SDMetrics QualityReport score (real table vs as many synthetic rows)
Tables: stroke (5110 x 11, 201 missing bmi), stroke-complete (its 4909 rows without missing values: the
peer refuses missing values in continuous columns) and heart (303 x 14).

    .venv/bin/python bench/tabular_speed.py                      # stroke (20 epochs) and heart (100 epochs)
    .venv/bin/python bench/tabular_speed.py --epochs-stroke 10 --threads 2

Needs `pip install -r requirements-bench.txt` (ctgan, sdmetrics). The stroke table is read from
../shared/data (license unclear: benchmark use only) and its `id` column is dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure this checkout's engine, not the installed copy's
SHARED = ROOT.parent / "shared" / "data" / "tabular"


def load_tables() -> dict[str, pd.DataFrame]:
    from medsyn_tabular.data.io import read_table

    stroke = read_table(SHARED / "healthcare-dataset-stroke-data.csv").drop(columns=["id"])
    heart = read_table(SHARED / "heart.csv")
    # the peer rejects missing values in continuous columns, so it is also compared on complete rows
    complete = stroke.dropna().reset_index(drop=True)
    return {"stroke": stroke, "stroke-complete": complete, "heart": heart}


def sdmetrics_metadata(df: pd.DataFrame, discrete: list[str]) -> dict:
    return {"columns": {c: {"sdtype": "categorical" if c in discrete else "numerical"} for c in df.columns}}


def quality(real: pd.DataFrame, synthetic: pd.DataFrame, discrete: list[str]) -> float:
    from sdmetrics.reports.single_table import QualityReport

    report = QualityReport()
    synthetic = synthetic[real.columns].copy()
    for c in real.columns:  # same dtypes so SDMetrics compares like with like
        if c not in discrete:
            synthetic[c] = pd.to_numeric(synthetic[c], errors="coerce").astype(float)
    real = real.copy()
    for c in discrete:
        real[c], synthetic[c] = real[c].astype(str), synthetic[c].astype(str)
    report.generate(real, synthetic, sdmetrics_metadata(real, discrete), verbose=False)
    return float(report.get_score())


def run_medsyn(model: str, df: pd.DataFrame, epochs: int, n_sample: int) -> dict:
    from medsyn_tabular.synthesizer import TabularSynthesizer

    t0 = time.perf_counter()
    synth = TabularSynthesizer(model, epochs=epochs, batch_size=500, seed=0).fit(df)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    synth.sample(n_sample)
    sample_s = time.perf_counter() - t0
    discrete = [c.name for c in synth.schema.modelled if c.kind in ("categorical", "boolean")]
    return {"fit_s": fit_s, "prep_s": synth.card["preprocessing_seconds"], "sample_s": sample_s,
            "synthetic": synth.sample(len(df), seed=1), "discrete": discrete}


def run_peer(model: str, df: pd.DataFrame, epochs: int, n_sample: int, discrete: list[str]) -> dict:
    from ctgan import CTGAN, TVAE
    from ctgan.data_transformer import DataTransformer

    cls = CTGAN if model == "ctgan" else TVAE
    t0 = time.perf_counter()
    peer = cls(epochs=epochs, batch_size=500)
    peer.set_random_state(0)
    peer.fit(df, discrete_columns=discrete)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()  # the peer's preprocessing alone, for the per-epoch figure
    tr = DataTransformer()
    tr.fit(df, discrete)
    tr.transform(df)
    prep_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    peer.sample(n_sample)
    sample_s = time.perf_counter() - t0
    return {"fit_s": fit_s, "prep_s": prep_s, "sample_s": sample_s, "synthetic": peer.sample(len(df))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs-stroke", type=int, default=20)
    parser.add_argument("--epochs-heart", type=int, default=100)
    parser.add_argument("--sample-rows", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    tables = load_tables()
    results = []
    print(f"torch {torch.__version__}, {args.threads} thread(s); batch 500; "
          f"sampling {args.sample_rows:,} rows")
    header = f"{'table':<15} {'model':<6} {'impl':<7} {'epochs':>6} {'fit_s':>7} {'prep_s':>7} " \
             f"{'epoch_s':>8} " \
             f"{'sample_rows_s':>13} {'quality':>7}"
    print(header)
    for table, df in tables.items():
        epochs = args.epochs_stroke if table.startswith("stroke") else args.epochs_heart
        for model in ("ctgan", "tvae"):
            ours = run_medsyn(model, df, epochs, args.sample_rows)
            try:
                peer = run_peer(model, df, epochs, args.sample_rows, ours["discrete"])
            except Exception as exc:  # the peer may crash on missing values: record it, go on
                peer = {"error": f"{type(exc).__name__}: {exc}"}
            for impl, r in (("medsyn", ours), ("ctgan-pkg", peer)):
                if "error" in r:
                    print(f"{table:<15} {model:<6} {impl:<7} failed: {r['error'][:120]}")
                    results.append({"table": table, "model": model, "impl": impl, "error": r["error"]})
                    continue
                r["quality"] = quality(df, r.pop("synthetic"), ours["discrete"])
                row = {"table": table, "model": model, "impl": impl, "epochs": epochs,
                       "fit_s": round(r["fit_s"], 2), "prep_s": round(r["prep_s"], 2),
                       "epoch_s": round((r["fit_s"] - r["prep_s"]) / epochs, 3),
                       "sample_rows_s": round(args.sample_rows / r["sample_s"]),
                       "quality": round(r["quality"], 4)}
                results.append(row)
                print(f"{table:<15} {model:<6} {impl:<7} {epochs:>6} {row['fit_s']:>7} {row['prep_s']:>7} "
                      f"{row['epoch_s']:>8} {row['sample_rows_s']:>13,} {row['quality']:>7}", flush=True)
            if "error" not in peer:
                print(f"                -> speed-up: fit x{peer['fit_s'] / ours['fit_s']:.2f}, "
                      f"sampling x{peer['sample_s'] / ours['sample_s']:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
