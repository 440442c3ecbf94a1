"""Run mostlyai-engine's TabularARGN (MOSTLY AI's open-source engine) on a CSV at its defaults and write
synthetic rows as CSV (benchmark peer, non-DP).

Runs with the python of ``bench/.venv-mostlyai`` (created by ``bench/tabular_quality.py`` on first use:
``pip install torch==2.13.0 mostlyai-engine``, then torchvision/torchaudio removed: the CPU torch wheel
has no matching torchvision there and nothing here needs it). Prints one JSON line with the fit seconds.

    bench/.venv-mostlyai/bin/python bench/mostlyai_engine.py TRAIN.csv OUT.csv --rows 500 --seed 0
"""

import argparse
import json
import sys
import tempfile
import time

import pandas as pd
import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("train")
    p.add_argument("out")
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--categorical", default="")
    args = p.parse_args()
    torch.set_num_threads(1)
    from mostlyai.engine import TabularARGN

    df = pd.read_csv(args.train)
    for c in filter(None, args.categorical.split(",")):
        df[c] = df[c].astype(str).where(df[c].notna())
    with tempfile.TemporaryDirectory() as ws:
        t0 = time.perf_counter()
        model = TabularARGN(workspace_dir=ws, random_state=args.seed, device="cpu", verbose=0)
        model.fit(df)
        fit_s = time.perf_counter() - t0
        model.sample(n_samples=args.rows).to_csv(args.out, index=False)
    json.dump({"fit_s": fit_s}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
