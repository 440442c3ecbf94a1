"""The imaging evaluation report: fidelity (FID/KID/PRDC), utility (TRTR vs TSTR/mix) and memorisation.

:func:`evaluate_synthetic_images` runs the whole evaluation of synthetic labelled images against a real
dataset with train/val/test splits and returns a shared :class:`medsyn_core.report.Report` with the
sections ``imaging_samples``, ``imaging_fidelity``, ``imaging_utility`` and ``memorisation``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from medsyn_core.report import Figure, Metric, Report, Section, Table
from medsyn_imaging.evaluation.classifier import TrainConfig, TrainedClassifier, default_config, run_training
from medsyn_imaging.evaluation.image_metrics import DistributionScores
from medsyn_imaging.evaluation.labelled_images import ImageDataset, LabelledImages
from medsyn_imaging.evaluation.memorisation import DEFAULT_SSIM_THRESHOLD, MemorisationResult

#: Verdicts against the real-vs-real floor (the best reachable at this sample size): a distance is good up
#: to this many times its floor, a share good from this fraction of its floor on.
MAX_DISTANCE_RATIO = 2.0
MIN_SHARE_OF_FLOOR = {"precision": 0.8, "recall": 0.7, "density": 0.5, "coverage": 0.7}
#: TSTR AUC is good within this much of TRTR.
MAX_TSTR_GAP = 0.05

MODE_TITLES = {"trtr": "train real, test real (TRTR)", "tstr": "train synthetic, test real (TSTR)",
               "mix": "train real + synthetic, test real"}


def _display(img: np.ndarray) -> np.ndarray:
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def sample_grid_figure(real: LabelledImages, synthetic: LabelledImages, class_names: list[str],
                       per_class: int = 8, seed: int = 0):
    """Matplotlib figure: for each class, a row of real and a row of synthetic images (random picks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    rows = [(f"real · {name}", real, c) for c, name in enumerate(class_names)]
    rows = [r for pair in zip(rows, [(f"synthetic · {n}", synthetic, c) for c, n in enumerate(class_names)],
                              strict=True) for r in pair]
    fig, axes = plt.subplots(len(rows), per_class, figsize=(1.1 * per_class, 1.2 * len(rows)), squeeze=False)
    for r, (title, images, c) in enumerate(rows):
        idx = np.flatnonzero(images.labels == c)
        pick = rng.choice(idx, min(per_class, len(idx)), replace=False) if len(idx) else []
        for col in range(per_class):
            ax = axes[r, col]
            ax.axis("off")
            if col < len(pick):
                img = images.images[pick[col]]
                ax.imshow(_display(img), cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=255)
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def confusion_figure(confusions: dict[str, list[list[int]]], class_names: list[str]):
    """Matplotlib figure: one confusion matrix (rows true, columns predicted) per training mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(confusions), figsize=(3.2 * len(confusions), 3), squeeze=False)
    for ax, (mode, cm) in zip(axes[0], confusions.items(), strict=True):
        cm = np.asarray(cm)
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
        ax.set_xticks(range(len(class_names)), class_names)
        ax.set_yticks(range(len(class_names)), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(mode.upper(), fontsize=9)
    fig.tight_layout()
    return fig


def fidelity_section(scores: dict[str, DistributionScores], extractor_name: str) -> Section:
    """``imaging_fidelity``: FID, KID and PRDC of the synthetic set, each beside the real-vs-real floor."""
    syn, floor = scores["synthetic"], scores["real_floor"]
    ref = "real test vs real train (floor)"

    def distance_ok(value: float, best: float) -> bool:
        return bool(value <= MAX_DISTANCE_RATIO * max(best, 1e-9))

    def share_ok(key: str, value: float, best: float) -> bool:
        return bool(value >= MIN_SHARE_OF_FLOOR[key] * best)

    def share_text(key: str) -> str:
        return f" Good from {MIN_SHARE_OF_FLOOR[key]:.0%} of the floor on."

    distance_text = f" Good up to {MAX_DISTANCE_RATIO:g}x the floor."
    metrics = [
        Metric("fid", "FID", syn.fid, "Fréchet distance between feature distributions; lower is better, "
               "the real-vs-real floor is the best reachable at this sample size." + distance_text,
               reference=floor.fid, reference_label=ref, good=distance_ok(syn.fid, floor.fid)),
        Metric("kid", "KID", syn.kid_mean, f"Kernel distance (mean of subsets of {syn.kid_subset_size}, "
               f"std {syn.kid_std:.2g}); unbiased for small sets, lower is better." + distance_text,
               reference=floor.kid_mean, reference_label=ref, good=distance_ok(syn.kid_mean, floor.kid_mean)),
        Metric("precision", "Precision", syn.precision, "Share of synthetic images that fall in the real "
               "data's region (realism); higher is better." + share_text("precision"),
               reference=floor.precision, reference_label=ref,
               good=share_ok("precision", syn.precision, floor.precision)),
        Metric("recall", "Recall", syn.recall, "Share of real images that the synthetic set reaches "
               "(diversity); higher is better." + share_text("recall"), reference=floor.recall,
               reference_label=ref, good=share_ok("recall", syn.recall, floor.recall)),
        Metric("density", "Density", syn.density, "How crowded real neighbourhoods are with synthetic "
               "images; about 1 for real-like data, far below 1 = off-manifold." + share_text("density"),
               reference=floor.density, reference_label=ref,
               good=share_ok("density", syn.density, floor.density)),
        Metric("coverage", "Coverage", syn.coverage, "Share of real neighbourhoods holding at least one "
               "synthetic image (mode coverage); higher is better." + share_text("coverage"),
               reference=floor.coverage, reference_label=ref,
               good=share_ok("coverage", syn.coverage, floor.coverage)),
    ]
    ratio = syn.fid / floor.fid if floor.fid > 0 else float("inf")
    return Section(
        "imaging_fidelity", "Imaging fidelity: distribution distance and coverage",
        f"FID {syn.fid:.3g} against a real-vs-real floor of {floor.fid:.3g} ({ratio:.1f}x). Features: "
        f"{extractor_name}. Reference set: the real training split ({syn.n_reference} images); "
        f"{syn.n_compared} synthetic and {floor.n_compared} real test images compared.",
        metrics=metrics,
        tables=[Table("distribution_scores", "Synthetic vs the real-vs-real floor",
                      [{"set": "synthetic", **syn.as_dict()},
                       {"set": "real test (floor)", **floor.as_dict()}],
                      "All scores against the real training split, in the same feature space.")],
    )


def utility_section(summaries: dict[str, dict], class_names: list[str]) -> Section:
    """``imaging_utility``: test AUC/accuracy on the real test split for each training mode."""
    trtr = summaries.get("trtr")
    metrics, rows = [], []
    for mode, s in summaries.items():
        t = s["test"]
        rows.append({"mode": mode, "training": MODE_TITLES[mode], "n_train": s["n_train"],
                     "test_auc": t["auc"], "test_accuracy": t["accuracy"],
                     "test_accuracy_val_threshold": t["accuracy_val_threshold"], "epochs": s["epochs"],
                     "selected_epoch": s["selected_epoch"], "train_seconds": s["train_seconds"]})
        if mode == "trtr":
            continue
        reference = trtr["test"]["auc"] if trtr else None
        good = (None if reference is None or t["auc"] is None or not np.isfinite(t["auc"])
                else bool(t["auc"] >= reference - MAX_TSTR_GAP))
        metrics.append(Metric(f"{mode}_auc", f"{mode.upper()} AUC", t["auc"],
                              f"ROC AUC on the real test split of a ResNet9 trained on {MODE_TITLES[mode]}; "
                              "close to TRTR = the synthetic images carry the disease signal (good within "
                              f"{MAX_TSTR_GAP} of TRTR).", reference=reference, reference_label="TRTR",
                              good=good))
        metrics.append(Metric(f"{mode}_accuracy", f"{mode.upper()} accuracy", t["accuracy"],
                              "Accuracy (arg-max) on the real test split.",
                              reference=trtr["test"]["accuracy"] if trtr else None, reference_label="TRTR"))
    if trtr:
        metrics.insert(0, Metric("trtr_auc", "TRTR AUC", trtr["test"]["auc"],
                                 "The reference: the same classifier trained on the real training split."))
    figure = Figure.from_matplotlib(
        "confusion_matrices", "Confusion matrices on the real test split",
        confusion_figure({m: s["test"]["confusion"] for m, s in summaries.items()}, class_names),
        "Rows: true class; columns: predicted class (arg-max).")
    return Section(
        "imaging_utility", "Imaging utility: a disease classifier trained on synthetic scans",
        "ResNet9 classifiers trained per mode, epoch selected by AUC on the real validation split, scored "
        "once on the real test split.", metrics=metrics,
        tables=[Table("utility_by_mode", "Test scores by training mode", rows)], figures=[figure])


def memorisation_section(result: MemorisationResult, figure) -> Section:
    """``memorisation``: near-copies of training images among the synthetic images."""
    s = result.summary()
    metrics = [
        Metric("n_flagged", "Near-copies", s["n_flagged"],
               f"Synthetic images whose closest real training image has pixel SSIM >= "
               f"{result.ssim_threshold}; should be 0.", good=s["n_flagged"] == 0),
        Metric("max_ssim", "Highest SSIM to a training image", s["max_ssim"],
               "Closest any synthetic image comes to a training image (1 = identical).",
               reference=s["reference_max_ssim"], reference_label="real test images"),
        Metric("median_ssim", "Median SSIM to the nearest training image", s["median_ssim"],
               "Typical closeness; far above the real-test reference suggests copying.",
               reference=s["reference_median_ssim"], reference_label="real test images"),
    ]
    flagged_rows = [{"synthetic_index": int(i), "training_index": int(result.synthetic.nearest_index[i]),
                     "ssim": float(result.synthetic.ssim[i]),
                     "feature_distance": float(result.synthetic.feature_distance[i])}
                    for i in result.flagged[:50]]
    tables = [Table("near_copies", "Flagged near-copies (first 50)", flagged_rows,
                    "Indices into the synthetic set and the real training split (no patient identifiers).")
              ] if flagged_rows else []
    verdict = ("No synthetic image is a near-copy of a training image." if not s["n_flagged"] else
               f"{s['n_flagged']} synthetic image(s) are near-copies of training images: do not share them.")
    return Section(
        "memorisation", "Memorisation: near-copies of real training images",
        f"{verdict} Each synthetic image's 5 nearest training images in feature space were compared by "
        "pixel SSIM; the real test split gives the closeness that genuinely new patients reach.",
        metrics=metrics, tables=tables,
        figures=[Figure.from_matplotlib("closest_pairs", "Closest synthetic/real pairs", figure,
                                        "Top row synthetic, bottom row its closest real training image. "
                                        "Contains real training images: share within the data owner's "
                                        "rules.")])


def evaluate_synthetic_images(
    data: ImageDataset, synthetic: LabelledImages, *, config: TrainConfig | None = None,
    classifier: TrainedClassifier | None = None, modes: Sequence[str] = ("tstr",),
    inception_weights: str | Path | None = None, ssim_threshold: float = DEFAULT_SSIM_THRESHOLD,
    synthetic_label: str = "synthetic images", k: int = 5, log: Callable[[str], None] | None = None,
    context: dict | None = None,
) -> Report:
    """Evaluate ``synthetic`` labelled images against ``data`` and return the imaging report.

    ``classifier``: a ResNet9 already trained on ``data``'s real training split (TRTR); trained here with
    ``config`` when None. Its penultimate layer is the feature space unless ``inception_weights`` (a local
    FID InceptionV3 file) is given. ``modes``: extra training modes for utility (``tstr``, ``mix``).
    ``context``: the report header (:func:`medsyn_core.report.model_context` of the generator's card).
    """
    from medsyn_imaging.evaluation.features import ClassifierFeatures, InceptionFeatures, extract_features
    from medsyn_imaging.evaluation.image_metrics import synthetic_vs_floor
    from medsyn_imaging.evaluation.memorisation import closest_pairs_figure, memorisation_check

    say = log or (lambda _msg: None)
    config = config or default_config(len(data.splits["train"]), data.n_classes)  # chosen from the data
    train, test = data.splits["train"], data.splits["test"]
    if synthetic.shape != train.shape:
        raise ValueError(f"Synthetic images are {synthetic.shape} (C, H, W) but the real images are "
                         f"{train.shape}; they must match.")
    for mode in modes:
        if mode not in ("tstr", "mix"):
            raise ValueError(f"Unknown extra training mode {mode!r}; use tstr and/or mix.")
    summaries: dict[str, dict] = {}
    if classifier is None:
        say("training the TRTR ResNet9 on the real training split (also the feature extractor)")
        classifier, summaries["trtr"] = run_training(data, "trtr", config=config, log=log)
    else:
        if tuple(classifier.image_shape) != train.shape or classifier.class_names != data.class_names:
            raise ValueError("The given classifier was trained on other images or classes than DATA; "
                             "train one on DATA (medsyn imaging classifier train DATA) or leave it out.")
        t = classifier.score(test)
        summaries["trtr"] = {"mode": "trtr", "n_train": len(train), "epochs": classifier.config.epochs,
                             "selected_epoch": next((h["selected_epoch"] for h in classifier.history
                                                     if "selected_epoch" in h), None),
                             "train_seconds": round(classifier.train_seconds, 1), "test": t.__dict__}
    resnet_features = ClassifierFeatures(classifier)
    extractor = InceptionFeatures(inception_weights) if inception_weights else resnet_features
    say(f"FID/KID/PRDC with {extractor.name}")
    scores = synthetic_vs_floor(extractor, train.images, test.images, synthetic.images, k=k, seed=config.seed)
    for mode in modes:
        say(f"training the {mode.upper()} ResNet9")
        _, summaries[mode] = run_training(data, mode, synthetic=synthetic, config=config, log=log)
    say("memorisation check")
    train_f = extract_features(resnet_features, train.images)
    mem = memorisation_check(synthetic.images, extract_features(resnet_features, synthetic.images),
                             train.images, train_f, test.images,
                             extract_features(resnet_features, test.images),
                             ssim_threshold=ssim_threshold, k=k)

    report = Report(f"Imaging evaluation: {synthetic_label} vs {data.name}", "imaging", inputs={
        "real data": data.describe(), "synthetic": f"{synthetic_label}: {len(synthetic)} images, "
        f"per class {np.bincount(synthetic.labels, minlength=data.n_classes).tolist()}",
        "feature extractor": extractor.name, "classifier": f"ResNet9 width {config.width}, {config.epochs} "
        f"epochs, seed {config.seed}",
    }, context={**(context or {}), "compared_with": f"{data.name} (real test split as holdout)"})
    report.add(Section("imaging_samples", "Samples", "Random real and synthetic images of each class.",
                       figures=[Figure.from_matplotlib("sample_grid", "Real and synthetic samples",
                                                       sample_grid_figure(train, synthetic, data.class_names,
                                                                          seed=config.seed))]))
    report.add(fidelity_section(scores, extractor.name))
    report.add(utility_section(summaries, data.class_names))
    report.add(memorisation_section(mem, closest_pairs_figure(mem, synthetic.images, train.images)))
    if len(mem.flagged):
        report.warnings.append(f"{len(mem.flagged)} synthetic image(s) are near-copies of real training "
                               f"images (SSIM >= {ssim_threshold}).")
    if len(synthetic) < len(test):
        report.warnings.append(f"Only {len(synthetic)} synthetic images for {len(test)} real test images: "
                               "FID/KID are biased upwards at small sizes; sample more for firmer numbers.")
    return report


def evaluation_metrics(report: Report) -> dict:
    """The numbers of an imaging report that go into the generator's card (``metrics``): each fidelity
    metric with its floor and verdict, TSTR/TRTR AUC, near-copies, and when and where it was made."""
    out: dict = {"evaluated_at": report.created_at, "features": report.inputs.get("feature extractor")}
    verdicts = {}
    for section in report.sections:
        for m in section.metrics:
            if isinstance(m.value, int | float) and not isinstance(m.value, bool):
                out[m.key] = float(m.value)
                if m.reference is not None and section.key == "imaging_fidelity":
                    out[f"{m.key}_real_floor"] = float(m.reference)
                if m.good is not None:
                    verdicts[m.key] = "good" if m.good else "below the bar"
    if "n_flagged" in out:
        out["near_copies"] = int(out.pop("n_flagged"))
    out["verdicts"] = verdicts
    return out


def saved_reports_dir(create: bool = True) -> Path:
    """Folder of saved imaging reports (JSON) in the MedSyn home folder: ``reports/imaging``."""
    from medsyn_core.settings import home_dir

    path = home_dir(create) / "reports" / "imaging"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def save_report_copy(report: Report) -> Path:
    """Keep a JSON copy of ``report`` in :func:`saved_reports_dir` so the app can list it."""
    import datetime as dt

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    return report.save(saved_reports_dir() / f"imaging-{stamp}.json")


def list_saved_reports() -> list[tuple[Path, Report]]:
    """Saved imaging reports, newest first (unreadable files are skipped)."""
    import json

    folder = saved_reports_dir(create=False)
    out = []
    for path in sorted(folder.glob("imaging-*.json"), reverse=True) if folder.is_dir() else []:
        try:
            out.append((path, Report.from_dict(json.loads(path.read_text()))))
        except (ValueError, KeyError, TypeError, OSError):
            continue
    return out
