"""Time ``evaluate_tabular`` on a 10,000 x 20 table (target: under 30 s on the development CPU).

The table is a mixed-type fixture built from the Pima diabetes table in the shared reference data when
it is there (8 real columns, resampled with jitter to 10,000 rows, plus 11 derived numeric/categorical
columns), else from a seeded Gaussian draw. Real training rows: 10,000; real holdout: 2,500; synthetic:
10,000 (an independent resample). Prints the median and every run of ``--runs`` repetitions and the time
of each section of one run.

    .venv/bin/python bench/eval_speed.py [--runs 3] [--rows 10000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medsyn_tabular.evaluation import evaluate_tabular

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tabular" / "diabetes.csv"


def make_table(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """n rows x 20 columns: 8 Pima columns (jittered resample) + 5 numeric + 6 categorical derived columns."""
    if SHARED.is_file():
        base = pd.read_csv(SHARED)
    else:  # pragma: no cover - fallback without the shared folder
        base = pd.DataFrame(rng.normal(size=(768, 9)), columns=[f"x{i}" for i in range(8)] + ["Outcome"])
        base["Outcome"] = (base["Outcome"] > 0).astype(int)
    rows = base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True)
    out = pd.DataFrame(index=rows.index)
    for c in base.columns:
        if c == "Outcome":
            continue
        v = rows[c].to_numpy(float)
        out[c] = v + rng.normal(0, 0.05 * (v.std() or 1), n)
    for i in range(5):
        out[f"num_{i}"] = out.iloc[:, i % 8] * rng.uniform(0.5, 2) + rng.normal(0, 1, n)
    for i in range(5):
        out[f"cat_{i}"] = pd.qcut(out.iloc[:, i], q=3 + i, labels=False, duplicates="drop").astype(str)
    out["sex"] = rng.choice(["F", "M"], n)
    out["Outcome"] = rows["Outcome"].to_numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=10_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    real = make_table(args.rows, rng)
    holdout = make_table(args.rows // 4, rng)
    synthetic = make_table(args.rows, rng)
    print(f"real {real.shape}, holdout {holdout.shape}, synthetic {synthetic.shape}")
    times = []
    for i in range(args.runs):
        t0 = time.perf_counter()
        report = evaluate_tabular(real, synthetic, target="Outcome", holdout=holdout, sensitive="sex")
        times.append(time.perf_counter() - t0)
        quality = report.section("fidelity").metric("quality").value
        print(f"run {i + 1}: {times[-1]:.1f} s  (quality {quality:.3f})")
    print(f"median of {args.runs} runs: {statistics.median(times):.1f} s for a {args.rows:,} x "
          f"{real.shape[1]} table (target < 30 s)")

    # Where the time goes (one run, section by section).
    from medsyn_tabular.evaluation.columns import prepare_tables
    from medsyn_tabular.evaluation.fidelity import evaluate_fidelity
    from medsyn_tabular.evaluation.plots import correlation_heatmaps, dcr_histogram, marginal_overlays
    from medsyn_tabular.evaluation.privacy import evaluate_privacy
    from medsyn_tabular.evaluation.utility import evaluate_utility

    t = prepare_tables(real, synthetic, target="Outcome", holdout=holdout)
    steps = {
        "fidelity": lambda: evaluate_fidelity(t.train, t.synthetic, t.kinds),
        "utility": lambda: evaluate_utility(t.train, t.holdout, t.synthetic, t.kinds, "Outcome"),
        "privacy": lambda: evaluate_privacy(t.train, t.holdout, t.synthetic, t.kinds, sensitive="sex"),
        "figures": lambda: (marginal_overlays(t.train, t.synthetic, t.kinds),
                            correlation_heatmaps(t.train, t.synthetic, t.kinds),
                            dcr_histogram(np.random.rand(100), None)),
    }
    from threadpoolctl import threadpool_limits

    for name, fn in steps.items():
        t0 = time.perf_counter()
        with threadpool_limits(limits=1):  # as evaluate_tabular does
            fn()
        print(f"  {name:<9} {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
