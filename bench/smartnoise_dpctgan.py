"""Run smartnoise-synth's DP-CTGAN on a CSV and write synthetic rows as CSV (benchmark peer).

Runs with the python of the benchmark's own virtual environment (``bench/.venv-smartnoise``: smartnoise-synth
pins Opacus 0.14, which cannot live beside MedSyn's Opacus 1.x); it does not import MedSyn. Called by
``bench/tabular_dp.py``; prints one JSON line with the fit seconds, the epochs it ran (DP-CTGAN stops early
once its accountant reaches ε) and the ε its accountant reported.

    bench/.venv-smartnoise/bin/python bench/smartnoise_dpctgan.py TRAIN.csv OUT.csv --epsilon 1 \
        --epochs 50 --batch-size 50 --categorical a,b --continuous c,d --preprocessor-eps 0.1 --delta 1e-4
"""

import argparse
import contextlib
import io
import json
import sys
import time

import pandas as pd
import torch
from snsynth import Synthesizer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("train")
    p.add_argument("out")
    p.add_argument("--epsilon", type=float, required=True, help="total ε, preprocessor_eps included")
    p.add_argument("--preprocessor-eps", type=float, required=True)
    p.add_argument("--delta", type=float, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--categorical", default="")
    p.add_argument("--continuous", default="")
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bounds", default="", help="public bounds col=lo:hi,... (then no preprocessor_eps "
                   "is needed for those columns)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    df = pd.read_csv(args.train)
    cat = [c for c in args.categorical.split(",") if c]
    cont = [c for c in args.continuous.split(",") if c]
    for c in cat:  # categories as labels (smartnoise's label encoder)
        df[c] = df[c].astype(str)
    transformer = None
    nullable = bool(df.isna().any().any())
    if args.bounds:
        from snsynth.transform import MinMaxTransformer
        from snsynth.transform.table import TableTransformer

        constraints = {}
        for item in args.bounds.split(","):
            col, _, rng = item.partition("=")
            lo, hi = map(float, rng.split(":"))
            constraints[col] = MinMaxTransformer(lower=lo, upper=hi, nullable=bool(df[col].isna().any()))
        transformer = TableTransformer.create(df, style="gan", nullable=nullable, categorical_columns=cat,
                                              continuous_columns=cont, constraints=constraints)
    synth = Synthesizer.create("dpctgan", epsilon=args.epsilon - args.preprocessor_eps, epochs=args.epochs,
                               batch_size=args.batch_size, delta=args.delta, verbose=True, cuda=False)
    log = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(log):
        synth.fit(df, transformer=transformer, categorical_columns=cat, continuous_columns=cont,
                  preprocessor_eps=args.preprocessor_eps, nullable=nullable)
    fit_s = time.perf_counter() - t0
    rows = synth.sample(args.rows)
    rows.to_csv(args.out, index=False)
    epochs_run = sum(1 for line in log.getvalue().splitlines() if line.startswith("Epoch"))
    eps_list = [float(line.split()[2].rstrip(",")) for line in log.getvalue().splitlines()
                if line.startswith("epsilon is")]
    json.dump({"fit_s": fit_s, "epochs_run": epochs_run,
               "training_epsilon_reported": eps_list[-1] if eps_list else None}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
