"""Training a tabular synthesizer as a background job (``medsyn_core.jobs``, kind ``tabular-fit``); the
engine's other job kind, ``ehr-fit`` (:mod:`medsyn_tabular.ehr.job`), is registered here too.

The job runs in its own process, so training survives page switches and reloads and never blocks the
app; the page only polls the job table. The real table is read from a file: a bundled dataset's path
or an upload that the page saved in the MedSyn home folder (``uploads/``).

Params (JSON): ``data_path``, ``source`` (label for the model card), ``name`` (model name, a safe slug:
:mod:`medsyn_core.names`), ``replace`` (replace a model of that name; audited), ``model``,
``epochs``, ``batch_size``, ``seed``, ``schema`` (column overrides), ``phi_actions``, ``privacy``
(``{}`` for DP off, else ``epsilon``, ``delta``, ``max_grad_norm``, ``metadata``),
``checkpoint_every_s`` (default 30), and for an upload ``upload`` / ``keep_upload``
(:mod:`medsyn_core.uploads`: the file is deleted when the job ends unless kept).

The model name is checked when the job starts (before any training) and again when it is registered,
so a name taken meanwhile fails the job instead of re-pointing the existing model.

Without DP the training state is checkpointed into the job's folder (at most every
``checkpoint_every_s`` seconds, between epochs), so a job whose process died resumes where it stopped
and ends with the same model as an uninterrupted run. A DP job writes no checkpoint and cannot be
resumed (see :mod:`medsyn_tabular.models.checkpoint`): it is started again as a new job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsyn_core import model_store, names
from medsyn_core.jobs import register_job_type
from medsyn_core.storage import Store

MAX_LOSS_POINTS = 500  # loss history kept in the job's progress payload (for the live chart)


def save_upload(data: bytes, filename: str) -> Path:
    """Keep an uploaded table privately until its job ends (see :func:`medsyn_core.uploads.save_upload`)."""
    from medsyn_core.uploads import save_upload as save

    return save(data, filename)


def fit_table(params: dict[str, Any], progress, resume_from: str | None = None) -> dict[str, Any]:
    """Fit, save and register a synthesizer; returns ``{"model_path", "model_name", "dp_label", ...}``."""
    from medsyn_tabular.models.checkpoint import Checkpointer
    from medsyn_tabular.synthesizer import TabularSynthesizer

    epochs = int(params["epochs"])
    synth = TabularSynthesizer(
        params.get("model", "ctgan"), epochs=epochs, batch_size=int(params.get("batch_size", 500)),
        seed=int(params.get("seed", 0)), schema=params.get("schema") or None,
        phi_actions=params.get("phi_actions") or None, **(params.get("privacy") or {}))

    def on_epoch(record: dict[str, Any]) -> None:
        # the model's history, so that a resumed job's chart also shows the epochs before the crash
        # released_loss_history: under DP without the losses computed on real rows (not covered by DP)
        losses = [{k: v for k, v in r.items() if k in ("epoch", "loss", "loss_g", "loss_d")}
                  for r in synth.released_loss_history()[-MAX_LOSS_POINTS:]]
        progress(record["epoch"] / epochs, f"epoch {record['epoch']} of {epochs}", {"losses": losses})

    checkpointer = None
    if not params.get("privacy"):
        checkpointer = Checkpointer(progress.dir / "checkpoint.pt",
                                    every_s=float(params.get("checkpoint_every_s", 30.0)),
                                    on_saved=progress.checkpoint)

    replace = bool(params.get("replace"))
    name = params.get("name") or names.slugify(f"{params.get('source') or 'table'}-{synth.model_name}")
    path = names.model_dir(name)
    model_store.ensure_model_name_free(name, replace=replace, folder=path)
    progress(0.0, "preprocessing", {"losses": []})
    data_path = Path(params["data_path"])
    origin = "upload" if data_path.parent.name == "uploads" else "bundled"
    with Store() as store:
        dataset_id = store.register_dataset(params.get("source") or data_path.name, "tabular", data_path,
                                            origin)
        run_params = {k: v for k, v in params.items() if k != "data_path"}
        with store.recorded_run("tabular-fit", run_params, dataset_id) as run:
            synth.fit(data_path, progress=on_epoch, source=params.get("source"), checkpoint=checkpointer,
                      resume_from=resume_from)
            store.register_dataset(params.get("source") or data_path.name, "tabular", data_path, origin,
                                   n_rows=int(synth.card["rows"]))
            synth.save(path, name=name, overwrite=replace, replace=replace,
                       actor=getattr(progress, "owner", "medsyn"))
            eps = synth.ledger.total()[0] if synth.ledger is not None else None
            run["metrics"] = {"final_loss": synth.card.get("final_loss"), "epsilon": eps,
                              "training_seconds": synth.card.get("training_seconds")}
            run["model_id"] = store.model_id(path.name)
    return {"model_path": str(path), "model_name": path.name, "dp_label": synth.card.get("dp_label"),
            "epsilon": eps, "training_seconds": synth.card.get("training_seconds"),
            "resumed_after_epoch": synth.card.get("resumed_after_epoch")}


register_job_type("tabular-fit", f"{__name__}:fit_table", "train", needs_gpu=True)
# the EHR generator (related tables: patients, visits, events) is part of this engine: medsyn_tabular.ehr
register_job_type("ehr-fit", "medsyn_tabular.ehr.job:fit_ehr", "train", needs_gpu=True)
