"""Which change would make the ResNet9 defaults reach the MedMNIST v2 ResNet-18 (28) accuracy on
BreastMNIST? One training run per (width, seed), the whole one-cycle schedule (no early stopping), and at
every epoch the val and test scores of that epoch's weights, plain and with test-time augmentation (the
mean of the image and its horizontal flip); at the end, the average of the last quarter's epoch weights
(stochastic weight averaging style). The selection rules (best val AUC, last epoch, averaged weights) are
then compared on the same runs. The test split is scored at every epoch **for this comparison only**; the
product never looks at it to choose.

    .venv/bin/python bench/resnet9_variants.py --dataset breastmnist --widths 16 32 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BASELINE = {"pneumoniamnist": (0.944, 0.854), "breastmnist": (0.901, 0.863)}


def one_run(name: str, seed: int, width: int) -> dict:
    from medsyn_imaging.evaluation import classifier as C
    from medsyn_imaging.evaluation.labelled_images import load_image_dataset

    data = load_image_dataset(name)
    val, test = data.splits["val"], data.splits["test"]
    plain = C.TrainedClassifier.predict_proba

    def flipped(clf, images):
        return (plain(clf, images) + plain(clf, np.ascontiguousarray(images[..., ::-1]))) / 2

    def scores(clf, split, proba):
        return C.score_probabilities(split.labels, proba(clf, split.images))

    epochs, states, holder = [], [], {}
    original_score = C.TrainedClassifier.score

    def recording_score(clf, split):  # called once per epoch on the val split by train_classifier
        result = original_score(clf, split)
        if split is val:
            record = {}
            for tag, proba in (("", plain), ("tta_", flipped)):
                v, t = scores(clf, val, proba), scores(clf, test, proba)
                record.update({f"{tag}val_auc": v.auc, f"{tag}test_auc": t.auc, f"{tag}test_acc": t.accuracy})
            epochs.append(record)
            states.append(copy.deepcopy(clf.model.state_dict()))
            holder["clf"] = clf
        return result

    C.TrainedClassifier.score = recording_score
    try:
        config = C.default_config(len(data.splits["train"]), data.n_classes, seed=seed, width=width,
                                  patience=0)
        started = time.perf_counter()
        C.train_classifier(data.splits["train"], val, data.class_names, config)
    finally:
        C.TrainedClassifier.score = original_score
    clf, k = holder["clf"], max(1, len(states) // 4)
    clf.model.load_state_dict({key: (sum(s[key].float() for s in states[-k:]) / k).to(states[-1][key].dtype)
                               for key in states[-1]})
    rules = {}
    for tag, proba in (("", plain), ("tta_", flipped)):
        best = int(np.argmax([e[f"{tag}val_auc"] for e in epochs]))
        rules[f"best val AUC{' + TTA' if tag else ''}"] = (epochs[best][f"{tag}test_auc"],
                                                          epochs[best][f"{tag}test_acc"])
        rules[f"last epoch{' + TTA' if tag else ''}"] = (epochs[-1][f"{tag}test_auc"],
                                                        epochs[-1][f"{tag}test_acc"])
        t = scores(clf, test, proba)
        rules[f"average of the last quarter{' + TTA' if tag else ''}"] = (t.auc, t.accuracy)
    return {"dataset": name, "seed": seed, "width": width, "seconds": round(time.perf_counter() - started),
            "rules": rules}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="breastmnist", choices=list(BASELINE))
    parser.add_argument("--widths", nargs="+", type=int, default=[16, 32])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    runs = [one_run(args.dataset, seed, width) for width in args.widths for seed in args.seeds]
    auc_ref, acc_ref = BASELINE[args.dataset]
    print(f"{args.dataset}: test AUC / arg-max accuracy, median over seeds {args.seeds} "
          f"(target {auc_ref} / {acc_ref})")
    for width in args.widths:
        mine = [r for r in runs if r["width"] == width]
        for rule in mine[0]["rules"]:
            auc = statistics.median(r["rules"][rule][0] for r in mine)
            acc = statistics.median(r["rules"][rule][1] for r in mine)
            hit = "HIT" if auc >= auc_ref and acc >= acc_ref else "miss"
            per_seed = ", ".join(f"{r['rules'][rule][0]:.3f}/{r['rules'][rule][1]:.3f}" for r in mine)
            print(f"  width {width:>2}  {rule:<36} {auc:.3f} / {acc:.3f}  {hit}   ({per_seed})")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
