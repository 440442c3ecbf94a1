"""Benchmark: DP training with the defaults of ``medsyn_tabular.defaults`` against fixed settings.

On the bundled heart table (80 % training rows, 20 % stratified holdout), for each ε it trains with
  defaults   batch size and epochs chosen from n and ε (the rule in medsyn_tabular/defaults.py)
  old-fixed  batch 500, 300 epochs (the previous default: refused under DP on this table)
  batch50    batch 50, 50 epochs (a setting someone might pick by hand)
and prints, as the median over --seeds runs (the DP noise is fresh in every run):
  quality   fidelity quality score of as many synthetic rows as training rows (1 = identical)
  tstr_auc  ROC AUC on the real holdout of the best model trained on synthetic rows (TRTR for reference)
  sigma     the calibrated noise multiplier; train_s seconds of training (one CPU thread)

    .venv/bin/python bench/dp_defaults.py --seeds 3 --model tvae
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--model", choices=["ctgan", "tvae"], default="tvae")
    args = parser.parse_args()

    import torch

    from medsyn_core.privacy import PrivacyError
    from medsyn_tabular.data.datasets import heart_cleveland_metadata, load_heart_cleveland
    from medsyn_tabular.data.holdout import split_holdout
    from medsyn_tabular.evaluation import evaluate_tabular
    from medsyn_tabular.synthesizer import TabularSynthesizer

    torch.set_num_threads(1)
    train, holdout, _ = split_holdout(load_heart_cleveland(), stratify="num")
    settings = {"defaults": (None, None), "old-fixed": (500, 300), "batch50": (50, 50)}
    print(f"heart table: {len(train)} training rows, {len(holdout)} holdout rows; model {args.model}; "
          f"median of {args.seeds} run(s)")
    print(f"{'eps':>5} {'setting':<10} {'batch':>5} {'epochs':>6} {'sigma':>6} {'train_s':>8} {'quality':>8} "
          f"{'tstr_auc':>8} {'trtr_auc':>8}")
    for eps in args.epsilons:
        for label, (batch, epochs) in settings.items():
            runs = []
            for seed in range(args.seeds):
                synth = TabularSynthesizer(args.model, epochs=epochs, batch_size=batch, seed=seed,
                                           epsilon=eps, metadata=heart_cleveland_metadata())
                try:
                    _, plan = synth.plan_privacy(len(train))
                except PrivacyError as exc:
                    print(f"{eps:>5g} {label:<10} {batch:>5} {epochs:>6}  refused: {str(exc)[:90]}…")
                    break
                started = time.perf_counter()
                synth.fit(train)
                seconds = time.perf_counter() - started
                rows = synth.sample(len(train), seed=seed)
                report = evaluate_tabular(train, rows, target="num", holdout=holdout, figures=False,
                                          seed=seed)
                utility, fidelity = report.section("utility"), report.section("fidelity")
                runs.append((plan.noise_multiplier, seconds, fidelity.metric("quality").value,
                             utility.metric("tstr").value, utility.metric("tstr").reference))
            if runs:
                med = [statistics.median(r[i] for r in runs) for i in range(5)]
                print(f"{eps:>5g} {label:<10} {synth.batch_size:>5} {synth.epochs:>6} {med[0]:>6.2f} "
                      f"{med[1]:>8.1f} {med[2]:>8.3f} {med[3]:>8.3f} {med[4]:>8.3f}")


if __name__ == "__main__":
    main()
