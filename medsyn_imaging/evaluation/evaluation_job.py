"""The imaging evaluation as a background job (``medsyn_core.jobs``, kind ``imaging-evaluate``).

It takes minutes (a ResNet9 per training mode, features, memorisation: 342 s for the demo on a CPU), so the
Evaluation page queues it instead of blocking the page; the job reports each stage as progress, saves the
report (``reports/imaging`` in the MedSyn home) and, for a generator, records the result as the
generator's latest evaluation (:func:`medsyn_core.model_card.record_evaluation`): from then on the
sampling page, the model store and the quality bar all show these numbers.

Params (JSON): ``real`` (bundled name or a folder), ``generator`` (a generator's name, as listed by
:func:`~medsyn_imaging.training.generator_store.list_generators`) or ``synthetic`` (an ``.npz`` or a
folder of PNGs by class), ``epochs``, ``width``, ``modes`` (``tstr``/``mix``), ``seed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: (start of a log line of evaluate_synthetic_images, fraction done when it appears)
STAGES = (("training the TRTR", 0.05), ("FID/KID/PRDC", 0.35), ("training the TSTR", 0.45),
          ("training the MIX", 0.65), ("memorisation", 0.85))


def evaluate_images(params: dict[str, Any], progress, resume_from: str | None = None) -> dict[str, Any]:
    """Job function: sample or read the synthetic images, evaluate, save the report, record it."""
    from medsyn_core import model_card
    from medsyn_core.report import model_context
    from medsyn_core.storage import Store
    from medsyn_imaging.evaluation.classifier import TrainConfig
    from medsyn_imaging.evaluation.imaging_report import (
        evaluate_synthetic_images,
        evaluation_metrics,
        save_report_copy,
    )
    from medsyn_imaging.evaluation.labelled_images import load_image_dataset, load_synthetic_images
    from medsyn_imaging.training.generator_store import list_generators

    progress(0.0, "loading the real images")
    real = load_image_dataset(params["real"])
    name, context = params.get("generator"), {}
    if name:
        entry = next((g for g in list_generators() if g.name == name), None)
        if entry is None:
            raise ValueError(f"No generator called {name!r}; it may have been deleted.")
        source, label = entry.path, name
        context = model_context(entry.card, name)
    else:
        source = Path(params["synthetic"])
        label = source.name
        context = {"model": f"images from {label}"}
    progress(0.02, f"sampling or reading the synthetic images ({label})")
    synthetic = load_synthetic_images(source, real.class_names, real=real, seed=int(params.get("seed", 0)))

    def log(message: str) -> None:  # each stage of the evaluation becomes the job's progress
        for prefix, fraction in STAGES:
            if message.startswith(prefix):
                progress(fraction, message)
                return

    config = TrainConfig(epochs=int(params.get("epochs", 10)), width=int(params.get("width", 16)),
                         seed=int(params.get("seed", 0)))
    report = evaluate_synthetic_images(real, synthetic, config=config, modes=params.get("modes", ["tstr"]),
                                       synthetic_label=label, log=log, context=context)
    progress(0.97, "saving the report")
    saved = save_report_copy(report)
    metrics = evaluation_metrics(report)
    if name:
        model_card.record_evaluation(name, metrics, report=saved.name)
    with Store() as store:
        store.append_event(progress.owner, "evaluate", {"kind": "imaging", "synthetic": label,
                                                        "real": str(params["real"]), "report": saved.name})
    return {"report": saved.name, "generator": name, "headline": report.headline(),
            "fid": metrics.get("fid"), "fid_real_floor": metrics.get("fid_real_floor")}
