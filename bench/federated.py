"""Benchmark: federated synthesis (3 sites, non-IID) against centralised training and each site alone.

For two tables, the Kaggle copy of UCI heart (target ``target``; metadata tests/data/federated/
heart_schema.yaml) and Pima diabetes (target ``Outcome``; metadata bench/diabetes_metadata.yaml), 20 % of
the rows are held out (stratified, seen by no generator). The other 80 % are split into 3 sites by age
(sorted, consecutive thirds: each site holds another age band, a non-IID split) and
``medsyn_federated.simulate.simulate`` runs the real federation on 127.0.0.1 (Flower SuperLink and three
SuperNodes over TLS, FedAvg), then trains the same CTGAN centrally on the 80 % and on each site alone, for
the same number of epochs (rounds × local epochs). It prints, per table and model:

  quality   SDMetrics' QualityReport score (MedSyn's implementation of its definition) of as many
            synthetic rows as real training rows, against the whole 80 %
  tstr auc  ROC AUC on the held-out real rows of gradient boosting trained on synthetic rows

Goal (issue 15): federated within 0.03 quality of centralised, and above every single site alone.
With --seeds N each table is run N times (seeds 0..N-1) and medians are printed.

    nice -n 10 .venv/bin/python bench/federated.py                      # both tables (tens of minutes)
    nice -n 10 .venv/bin/python bench/federated.py --tables heart --rounds 5 --local-epochs 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "tabular"
sys.path.insert(0, str(ROOT))

TABLES = {
    "heart": (lambda: pd.read_csv(SHARED / "heart.csv" if (SHARED / "heart.csv").exists()
                                  else ROOT / "tests/data/reference/tabular/heart.csv"),
              "target", "age", ROOT / "tests/data/federated/heart_schema.yaml"),
    "diabetes": (lambda: pd.read_csv(SHARED / "diabetes.csv" if (SHARED / "diabetes.csv").exists()
                                     else ROOT / "tests/data/reference/tabular/diabetes.csv"),
                 "Outcome", "Age", ROOT / "bench/diabetes_metadata.yaml"),
}


def holdout_split(df: pd.DataFrame, target: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(df, test_size=0.2, stratify=df[target], random_state=seed)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--local-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--strategy", default="fedavg")
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args()

    os.environ.setdefault("MEDSYN_HOME", tempfile.mkdtemp(prefix="medsyn-bench-fed-"))
    from medsyn_cli.audit import CLI_USER
    from medsyn_federated.simulate import simulate
    from medsyn_tabular.data.schema import load_override_file

    hyper = {"embedding_dim": 64, "generator_dim": [128, 128], "discriminator_dim": [128, 128]}
    rows = []
    for table in args.tables:
        load, target, split_col, meta_path = TABLES[table]
        metadata = load_override_file(meta_path)
        for seed in range(args.seeds):
            train, test = holdout_split(load(), target, seed)
            t0 = time.time()
            result = simulate(train, metadata, user=CLI_USER, sites=3, split=f"by-column={split_col}",
                              model="ctgan", rounds=args.rounds, local_epochs=args.local_epochs,
                              batch_size=args.batch_size, hyperparameters=hyper, seed=seed, target=target,
                              test=test, name=f"bench-{table}-{seed}", replace=True, strategy=args.strategy)
            row = {"table": table, "seed": seed, "rows_per_site": result.rows_per_site,
                   "federated": result.federated, "centralised": result.centralised,
                   "single_sites": result.single_sites, "seconds": round(time.time() - t0, 1),
                   **result.seconds}
            rows.append(row)
            print(f"\n== {table}, seed {seed} ({row['seconds']} s; federation {result.seconds})")
            print(result.summary(), flush=True)
    print("\nMedians over seeds")
    print(f"{'table':<10}{'model':<16}{'quality':>9}{'tstr auc':>10}")
    for table in args.tables:
        mine = [r for r in rows if r["table"] == table]
        entries = [("federated", [r["federated"] for r in mine]),
                   ("centralised", [r["centralised"] for r in mine])]
        entries += [(f"site {i + 1} alone", [r["single_sites"][i] for r in mine]) for i in range(3)]
        for name, values in entries:
            q = np.median([v["quality"] for v in values])
            auc = np.median([v.get("tstr auc", np.nan) for v in values])
            print(f"{table:<10}{name:<16}{q:>9.3f}{auc:>10.3f}")
        fed = np.median([r["federated"]["quality"] for r in mine])
        cen = np.median([r["centralised"]["quality"] for r in mine])
        best_site = max(np.median([r["single_sites"][i]["quality"] for r in mine]) for i in range(3))
        print(f"{table:<10}goal: |federated - centralised| = {abs(fed - cen):.3f} (<= 0.03: "
              f"{'met' if abs(fed - cen) <= 0.03 or fed > cen else 'missed'}), federated - best single "
              f"site = {fed - best_site:+.3f} ({'met' if fed > best_site else 'missed'})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
