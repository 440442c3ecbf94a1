"""Training the EHR generator as a background job (kind ``ehr-fit``, registered in
:mod:`medsyn_tabular.fit_job`, the engine's job module).

Params (JSON): ``data_path`` (a folder, or a zip of one: the EHR page saves an upload as one private zip
in ``uploads/``), ``source`` (label for the card), ``name`` (model name, a safe slug), ``replace``,
``schema`` (an EHR schema dict, or None for the inferred one), ``epochs``, ``batch_size``, ``dim``,
``seed``, ``privacy`` (``{}`` for DP off, else ``epsilon``, ``delta``, ``max_grad_norm``),
``declared_by``, ``checkpoint_every_s`` (default 30), and for an upload ``upload``/``keep_upload``
(deleted when the job ends unless kept: :mod:`medsyn_core.uploads`).

Without DP the training state is checkpointed in the job's folder, so a job whose process died resumes
where it stopped; a DP job writes no checkpoint (the accountant's state is not saved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsyn_core import model_store, names
from medsyn_core.storage import Store

MAX_LOSS_POINTS = 500


def fit_ehr(params: dict[str, Any], progress, resume_from: str | None = None) -> dict[str, Any]:
    """Fit, save and register an EHR generator; returns ``{"model_path", "model_name", "dp_label", ...}``."""
    from medsyn_core.training import job_checkpointer
    from medsyn_tabular.ehr.dataset import read_source
    from medsyn_tabular.ehr.synthesizer import EHRSynthesizer

    epochs = int(params["epochs"])
    synth = EHRSynthesizer(params.get("schema") or None, epochs=epochs,
                           batch_size=int(params.get("batch_size", 16)), seed=int(params.get("seed", 0)),
                           dim=int(params.get("dim", 128)), declared_by=params.get("declared_by"),
                           **(params.get("privacy") or {}))

    def on_epoch(record: dict[str, Any]) -> None:
        losses = [{k: v for k, v in r.items() if k in ("epoch", "loss")}
                  for r in synth.loss_history[-MAX_LOSS_POINTS:]]
        progress(record["epoch"] / epochs, f"epoch {record['epoch']} of {epochs}", {"losses": losses})

    checkpointer = job_checkpointer(progress, params)
    replace = bool(params.get("replace"))
    name = params.get("name") or names.slugify(f"{params.get('source') or 'ehr'}-ehr")
    path = names.model_dir(name)
    model_store.ensure_model_name_free(name, replace=replace, folder=path)
    progress(0.0, "reading the tables", {"losses": []})
    data_path = Path(params["data_path"])
    origin = "upload" if data_path.parent.name == "uploads" else "bundled"
    label = params.get("source") or data_path.name
    data = read_source(data_path, synth.declared)
    with Store() as store:
        dataset_id = store.register_dataset(label, "tabular", data_path, origin)
        run_params = {k: v for k, v in params.items() if k not in ("data_path", "schema")}
        with store.recorded_run("ehr-fit", run_params, dataset_id) as run:
            synth.fit(data, progress=on_epoch, checkpoint=checkpointer, resume_from=resume_from, source=label)
            store.register_dataset(label, "tabular", data_path, origin, n_rows=int(synth.card["patients"]))
            synth.save(path, name=name, overwrite=replace, replace=replace,
                       actor=getattr(progress, "owner", "medsyn"))
            eps = synth.ledger.total()[0] if synth.ledger is not None else None
            run["metrics"] = {"epsilon": eps, "training_seconds": synth.card.get("training_seconds"),
                              **synth.card.get("metrics", {})}
            run["model_id"] = store.model_id(path.name)
    return {"model_path": str(path), "model_name": path.name, "dp_label": synth.card.get("dp_label"),
            "epsilon": eps, "patients": synth.card.get("patients"),
            "training_seconds": synth.card.get("training_seconds")}
