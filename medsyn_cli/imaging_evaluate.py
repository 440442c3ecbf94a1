"""CLI of the imaging evaluation: ``medsyn imaging classifier train`` and ``medsyn imaging evaluate``.

:func:`add_commands` adds them to the ``imaging`` group that :mod:`medsyn_cli.imaging` creates. Heavy
imports stay inside the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=None,
                   help="most training epochs (default: from the data size, 10-80, with early stopping)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--width", type=int, default=None,
                   help="ResNet9 width (default: 16, or 32/64 for many images or classes; DAWNBench: 64)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 32/64/128 by data size")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.1 x batch / 128)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop after this many epochs without a better validation AUC (default: a quarter "
                        "of the epochs, at least 5; 0 = never)")


def add_commands(imaging: argparse._SubParsersAction) -> None:
    """Add ``classifier`` and ``evaluate`` to the sub-commands of ``medsyn imaging``."""
    clf = imaging.add_parser("classifier", help="ResNet9 disease classifier (TRTR/TSTR/mix)")
    clf_sub = clf.add_subparsers(dest="classifier_command", metavar="COMMAND")
    clf.set_defaults(func=lambda _args: clf.print_help() or 0)
    train = clf_sub.add_parser(
        "train", help="train on real and/or synthetic images, score on the real test split",
        description="Train a ResNet9 and print/write its AUC and accuracy on DATA's real test split.")
    train.add_argument("data", metavar="DATA", help="MedMNIST-style .npz, bundled name (pneumoniamnist, "
                       "breastmnist) or a folder of images by class")
    train.add_argument("--synthetic", metavar="SYNTHETIC", default=None,
                       help="synthetic images: .npz with 'images' and 'labels', or a folder of PNGs by class")
    train.add_argument("--mode", choices=("trtr", "tstr", "mix"), default=None,
                       help="trtr (real only; default without --synthetic), tstr (synthetic only; default "
                            "with --synthetic) or mix (real + synthetic)")
    _add_training_options(train)
    train.add_argument("--out", required=True, metavar="DIR", help="model folder to create (must not exist)")
    train.add_argument("--name", default=None, help="name in the model store (default: the folder name)")
    train.set_defaults(func=cmd_classifier_train)

    ev = imaging.add_parser(
        "evaluate", help="FID/KID, precision/recall, TSTR utility and memorisation report",
        description="Evaluate synthetic images against real DATA and write a report (.html or .json).")
    ev.add_argument("source", metavar="MODEL_DIR",
                    help="the synthetic images: a generator model folder (sampled with the real training "
                         "split's class counts), an .npz with 'images' and 'labels', or a folder of PNGs "
                         "by class")
    ev.add_argument("--data", required=True, help="the real data (as for classifier train)")
    ev.add_argument("--out", required=True, help="report file, .html or .json")
    ev.add_argument("--classifier", default=None, metavar="DIR",
                    help="a ResNet9 already trained on DATA (TRTR); trained now when left out")
    ev.add_argument("--modes", nargs="+", default=["tstr"], choices=("tstr", "mix"),
                    help="utility modes to train besides TRTR (default: tstr)")
    ev.add_argument("--inception-weights", default=None, metavar="PATH",
                    help="local FID InceptionV3 weights (pt_inception-2015-12-05-6726825d.pth) to use "
                         "instead of ResNet9 features; never downloaded")
    ev.add_argument("--ssim-threshold", type=float, default=0.95, help="near-copy SSIM threshold (0.95)")
    _add_training_options(ev)
    ev.set_defaults(func=cmd_evaluate)


def _config(args, n_train: int, n_classes: int):
    """The classifier settings: chosen from the data (:func:`default_config`), explicit options win."""
    from medsyn_imaging.evaluation.classifier import default_config

    for flag, value in (("--epochs", args.epochs), ("--width", args.width),
                        ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1.")
    if args.lr is not None and args.lr <= 0:
        raise ValueError("--lr must be positive.")
    if args.patience is not None and args.patience < 0:
        raise ValueError("--patience must be 0 (off) or more.")
    return default_config(n_train, n_classes, seed=args.seed, epochs=args.epochs, width=args.width,
                          batch_size=args.batch_size, lr_max=args.lr, patience=args.patience)


def cmd_classifier_train(args) -> int:
    from medsyn_cli.main import UserError
    from medsyn_imaging.evaluation.classifier import run_training
    from medsyn_imaging.evaluation.labelled_images import load_image_dataset, load_synthetic_images

    out = Path(args.out)
    if out.exists():
        raise UserError(f"{out} already exists; choose a new --out folder or remove it first.")
    mode = args.mode or ("tstr" if args.synthetic else "trtr")
    if mode != "trtr" and not args.synthetic:
        raise UserError(f"--mode {mode} needs --synthetic PATH (synthetic .npz or PNG folder by class).")
    data = load_image_dataset(args.data)
    synthetic = (load_synthetic_images(args.synthetic, data.class_names, real=data, seed=args.seed)
                 if args.synthetic else None)
    from medsyn_imaging.evaluation.classifier import training_set

    config = _config(args, len(training_set(mode, data.splits["train"], synthetic)), data.n_classes)
    print(f"classifier: {config.epochs} epochs at most (early stop after {config.patience}), width "
          f"{config.width}, batch {config.batch_size}, lr {config.lr_max:g}")
    print(f"{data.describe()}; mode {mode}" + (f", {len(synthetic)} synthetic images" if synthetic else ""))
    clf, summary = run_training(data, mode, synthetic=synthetic, config=config, log=print)
    summary["synthetic_source"] = Path(args.synthetic).name if args.synthetic else None
    clf.save(out, name=args.name, metrics=summary,
             extra_card={"dataset": data.name, "test_auc": summary["test"]["auc"],
                         "test_accuracy": summary["test"]["accuracy"]})
    t = summary["test"]
    print(f"test AUC {t['auc']:.4f}  accuracy {t['accuracy']:.4f}"
          + (f"  (accuracy {t['accuracy_val_threshold']:.4f} at the val-picked threshold "
             f"{t['threshold']:.3f})"
             if t["accuracy_val_threshold"] is not None else "")
          + f"  [{summary['train_seconds']:.0f} s, best epoch {summary['selected_epoch']}]")
    print(f"saved {out / 'metrics.json'} and the model (registered as {args.name or out.name!r})")
    return 0


def cmd_evaluate(args) -> int:
    from medsyn_imaging.evaluation.classifier import TrainedClassifier
    from medsyn_imaging.evaluation.imaging_report import evaluate_synthetic_images, save_report_copy
    from medsyn_imaging.evaluation.labelled_images import load_image_dataset, load_synthetic_images

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm", ".json"):
        raise ValueError(f"--out {out.name}: the report must be a .html or .json file.")
    import json

    from medsyn_core.report import model_context

    data = load_image_dataset(args.data)
    config = _config(args, len(data.splits["train"]), data.n_classes)
    synthetic = load_synthetic_images(args.source, data.class_names, real=data, seed=args.seed)
    card_path = Path(args.source) / "model_card.json"
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else None
    name = (card or {}).get("name") or Path(args.source).name
    classifier = TrainedClassifier.load(args.classifier) if args.classifier else None
    print(f"{data.describe()}; {len(synthetic)} synthetic images from {Path(args.source).name}")
    report = evaluate_synthetic_images(
        data, synthetic, config=config, classifier=classifier, modes=args.modes,
        inception_weights=args.inception_weights, ssim_threshold=args.ssim_threshold,
        synthetic_label=Path(args.source).name, log=print,
        context=model_context(card, name) if card else {"model": f"images from {Path(args.source).name}"})
    for section in report.sections:
        for m in section.metrics:
            ref = f"  (vs {m.reference:.4g} {m.reference_label})" if m.reference is not None else ""
            print(f"  {m.label:<40} {m.formatted()}{ref}")
    for w in report.warnings:
        print(f"warning: {w}")
    report.save(out)
    copy = save_report_copy(report)
    print(f"report written to {out} (a JSON copy for the app: {copy})")
    if card is not None:  # a generator: its latest evaluation is now this one, everywhere
        from medsyn_core import model_card
        from medsyn_imaging.evaluation.imaging_report import evaluation_metrics

        model_card.record_evaluation(name, evaluation_metrics(report), report=copy.name)
        print(f"recorded as the latest evaluation of {name!r} (model store, sampling page, quality bar)")
    return 0
