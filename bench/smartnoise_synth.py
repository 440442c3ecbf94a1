"""Run smartnoise-synth's MST, AIM or DP-CTGAN on a CSV and write synthetic rows as CSV (benchmark peer).

Runs with the python of ``bench/.venv-smartnoise`` (smartnoise-synth pins Opacus 0.14 and an older
``mbi``); it does not import MedSyn. Called by ``bench/tabular_quality.py``. Numeric columns get the same
public bounds MedSyn is given (``--bounds col=lo:hi``): binned into ``--bins`` equal-width bins for MST/AIM
(smartnoise's ``BinTransformer``), min-max scaled for DP-CTGAN; categories are read from the rows by
smartnoise (outside its ε, as its documentation does). Prints one JSON line with the fit seconds.

    bench/.venv-smartnoise/bin/python bench/smartnoise_synth.py mst TRAIN.csv OUT.csv --epsilon 1 \
        --delta 1e-5 --categorical a,b --continuous c --bounds c=0:100 --rows 500
"""

import argparse
import json
import sys
import time

import pandas as pd
import torch
from snsynth import Synthesizer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("synth", choices=("mst", "aim", "dpctgan"))
    p.add_argument("train")
    p.add_argument("out")
    p.add_argument("--epsilon", type=float, required=True)
    p.add_argument("--delta", type=float, required=True)
    p.add_argument("--categorical", default="")
    p.add_argument("--continuous", default="")
    p.add_argument("--bounds", default="")
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=500)
    args = p.parse_args()
    torch.set_num_threads(1)
    df = pd.read_csv(args.train)
    cat = [c for c in args.categorical.split(",") if c]
    cont = [c for c in args.continuous.split(",") if c]
    for c in cat:
        df[c] = df[c].astype(str).where(df[c].notna())
    nullable = bool(df.isna().any().any())
    from snsynth.transform import BinTransformer, MinMaxTransformer
    from snsynth.transform.table import TableTransformer

    bounds = {}
    for item in filter(None, args.bounds.split(",")):
        col, _, rng = item.partition("=")
        bounds[col] = tuple(map(float, rng.split(":")))
    constraints = {}
    for c in cont:
        lo, hi = bounds[c]
        null = bool(df[c].isna().any())
        constraints[c] = BinTransformer(bins=args.bins, lower=lo, upper=hi, nullable=null) \
            if args.synth != "dpctgan" else MinMaxTransformer(lower=lo, upper=hi, nullable=null)
    style = "gan" if args.synth == "dpctgan" else "cube"
    transformer = TableTransformer.create(df, style=style, nullable=nullable, categorical_columns=cat,
                                          continuous_columns=cont, constraints=constraints)
    kwargs = {"epochs": args.epochs, "batch_size": args.batch_size, "delta": args.delta, "cuda": False} \
        if args.synth == "dpctgan" else {"delta": args.delta}
    synth = Synthesizer.create(args.synth, epsilon=args.epsilon, **kwargs)
    t0 = time.perf_counter()
    synth.fit(df, transformer=transformer, categorical_columns=cat, continuous_columns=cont,
              preprocessor_eps=0.0, nullable=nullable)
    fit_s = time.perf_counter() - t0
    synth.sample(args.rows).to_csv(args.out, index=False)
    json.dump({"fit_s": fit_s}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
