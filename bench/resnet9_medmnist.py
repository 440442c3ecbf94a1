"""ResNet9 on the bundled PneumoniaMNIST and BreastMNIST (28 px, real only = TRTR), official splits.

Trains with the settings ``medsyn imaging classifier train DATA`` uses when given no option
(:func:`medsyn_imaging.evaluation.classifier.default_config`: epochs, width, batch and learning rate from
the data size and classes, early stopping on the val split), unless ``--epochs``/``--width`` override them.
Selects the epoch by AUC on the val split and reports test AUC and accuracy (arg-max, and at the
decision threshold picked on the val split), with seeds, epochs and training time on this machine,
next to the published MedMNIST v2 ResNet-18 (28) baseline (Yang et al. 2023, Table 3).

    .venv/bin/python bench/resnet9_medmnist.py                      # CLI defaults, seeds 0 1 2
    .venv/bin/python bench/resnet9_medmnist.py --seeds 0 --width 32 --json out.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

# Run from a checkout: use this tree's packages, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Published MedMNIST v2 ResNet-18 (28) test AUC and ACC.
BASELINE = {"pneumoniamnist": (0.944, 0.854), "breastmnist": (0.901, 0.863)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(BASELINE), choices=list(BASELINE))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=None,
                        help="ResNet9 width (default: default_config's; 64 = DAWNBench original)")
    parser.add_argument("--epochs", type=int, default=None, help="override default_config's epochs")
    parser.add_argument("--json", default=None, help="also write all results to this JSON file")
    args = parser.parse_args()

    import torch

    from medsyn_core.device import device_info
    from medsyn_imaging.evaluation.classifier import default_config, run_training
    from medsyn_imaging.evaluation.labelled_images import load_image_dataset

    print(f"machine: {platform.processor() or platform.machine()}, device {device_info().summary()}, "
          f"torch {torch.__version__}", flush=True)
    results = []
    for seed in args.seeds:
        for name in args.datasets:
            data = load_image_dataset(name)
            config = default_config(len(data.splits["train"]), data.n_classes, seed=seed, epochs=args.epochs,
                                    width=args.width)
            epochs = config.epochs
            started = time.perf_counter()
            _, summary = run_training(data, "trtr", config=config)
            wall = time.perf_counter() - started
            t = summary["test"]
            results.append({**summary, "wall_seconds": round(wall, 1), "width": config.width})
            auc_ref, acc_ref = BASELINE[name]
            print(f"{name:<15} seed {seed}  width {config.width}  batch {config.batch_size}  lr "
                  f"{config.lr_max:g}  epochs {summary['epochs_run']}/{epochs}"
                  f" (best {summary['selected_epoch']})"
                  f"  test AUC {t['auc']:.4f} (target {auc_ref})  ACC {t['accuracy']:.4f} (target {acc_ref})"
                  f"  ACC@val-threshold {t['accuracy_val_threshold']:.4f} (t={t['threshold']:.3f})"
                  f"  train {summary['train_seconds']:.0f} s", flush=True)
    print("\nsummary (median over seeds):")
    for name in args.datasets:
        rows = [r for r in results if r["dataset"] == name]
        auc = statistics.median(r["test"]["auc"] for r in rows)
        acc = statistics.median(r["test"]["accuracy"] for r in rows)
        acc_t = statistics.median(r["test"]["accuracy_val_threshold"] for r in rows)
        secs = statistics.median(r["train_seconds"] for r in rows)
        auc_ref, acc_ref = BASELINE[name]
        verdict = "HIT" if auc >= auc_ref and acc >= acc_ref else "MISS"
        print(f"  {name:<15} AUC {auc:.4f} / ACC {acc:.4f} (arg-max) / ACC {acc_t:.4f} (val threshold) "
              f"vs ResNet-18 (28) {auc_ref} / {acc_ref}: {verdict} on arg-max; "
              f"{len(rows)} seeds, {secs:.0f} s training each")
    if args.json:
        from medsyn_core.files import atomic_write_json

        atomic_write_json(args.json, results)


if __name__ == "__main__":
    main()
