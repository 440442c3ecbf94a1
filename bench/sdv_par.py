"""Run SDV's PARSynthesizer on one sequential table and write synthetic sequences as CSV (benchmark peer).

Runs with the python of the benchmark's own virtual environment (``bench/.venv-sdv``: SDV pins its own
rdt/ctgan/deepecho releases, so it is kept out of MedSyn's environment); it does not import MedSyn. Called by
``bench/ehr.py``; prints one JSON line with the fit and sampling seconds.

PAR models a single table of sequences with per-sequence context: here the visits (encounters) of each
patient, ordered by START, with the patient's attributes as context. It has no notion of child tables
(conditions, medications, observations), so it is compared on the visit level only.

    bench/.venv-sdv/bin/python bench/sdv_par.py VISITS.csv OUT.csv --key PATIENT --index START \
        --context GENDER,RACE,ETHNICITY,BIRTH_YEAR --epochs 128 --sequences 200
"""

import argparse
import json
import time

import pandas as pd
from sdv.metadata import Metadata
from sdv.sequential import PARSynthesizer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("train")
    p.add_argument("out")
    p.add_argument("--key", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--context", default="")
    p.add_argument("--categorical", default="")
    p.add_argument("--epochs", type=int, default=128)
    p.add_argument("--sequences", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    df = pd.read_csv(args.train)
    df[args.index] = pd.to_datetime(df[args.index], utc=True).dt.tz_localize(None)
    context = [c for c in args.context.split(",") if c]
    categorical = [c for c in args.categorical.split(",") if c]
    metadata = Metadata.detect_from_dataframes({"visits": df}, infer_keys=None)  # SDV 2.0
    metadata.update_column(args.key, sdtype="id", table_name="visits")
    metadata.set_sequence_key(args.key, table_name="visits")
    metadata.update_column(args.index, sdtype="datetime", table_name="visits")
    metadata.set_sequence_index(args.index, table_name="visits")
    for col in categorical + context:
        metadata.update_column(col, sdtype="categorical", table_name="visits")
    import numpy as np
    import torch

    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    synth = PARSynthesizer(metadata, context_columns=context, epochs=args.epochs, verbose=False)
    synth.fit({"visits": df})  # SDV 2.0: tables by name
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = synth.sample_sequences(args.sequences)["visits"]
    sample_s = time.perf_counter() - t0
    out.to_csv(args.out, index=False)
    print(json.dumps({"fit_seconds": fit_s, "sample_seconds": sample_s, "rows": len(out)}))


if __name__ == "__main__":
    main()
