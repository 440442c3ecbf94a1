"""Training a tabular synthesizer as a background job (``medsyn_core.jobs``, kind ``tabular-fit``); the
engine's other job kind, ``ehr-fit`` (:mod:`medsyn_tabular.ehr.job`), is registered here too.

The job runs in its own process, so training survives page switches and reloads and never blocks the
app; the page only polls the job table. The real table is read from a file: a bundled dataset's path
or an upload that the page saved in the MedSyn home folder (``uploads/``).

Params (JSON): ``data_path``, ``source`` (label for the model card), ``name`` (model name, a safe slug:
:mod:`medsyn_core.names`), ``replace`` (replace a model of that name; audited), ``model``,
``epochs`` and ``batch_size`` (None: chosen by :mod:`medsyn_tabular.defaults`), ``seed``, ``schema``
(column overrides), ``phi_actions``, ``holdout`` (a :class:`~medsyn_tabular.data.holdout.HoldoutSpec` as a
dict: the rows it keeps back are never trained on; the page re-derives the same rows to evaluate),
``cleaning`` (the value-free record of the fixes the page applied before saving the table), ``privacy``
(``{}`` for DP off, else ``epsilon``, ``delta``, ``max_grad_norm``, ``metadata``),
``checkpoint_every_s`` (default 30), ``early_stopping`` (None: automatic without DP) and
``time_budget_s`` (:mod:`medsyn_tabular.early_stopping`), and for an upload ``upload`` / ``keep_upload``
(:mod:`medsyn_core.uploads`: the file is deleted when the job ends unless kept).

The model name is checked when the job starts (before any training) and again when it is registered,
so a name taken meanwhile fails the job instead of re-pointing the existing model.

Without DP the training state is checkpointed into the job's folder (at most every
``checkpoint_every_s`` seconds, between epochs), so a job whose process died resumes where it stopped
and ends with the same model as an uninterrupted run. A DP job writes no checkpoint and cannot be
resumed (see :mod:`medsyn_core.training`): it is started again as a new job.
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
    from medsyn_core.training import job_checkpointer
    from medsyn_tabular.synthesizer import TabularSynthesizer

    def whole(key: str) -> int | None:  # None: chosen by medsyn_tabular.defaults (from n and ε under DP)
        return None if params.get(key) is None else int(params[key])

    synth = TabularSynthesizer(
        params.get("model"), epochs=whole("epochs"), batch_size=whole("batch_size"),
        seed=int(params.get("seed", 0)), schema=params.get("schema") or None,
        phi_actions=params.get("phi_actions") or None, early_stopping=params.get("early_stopping"),
        time_budget_s=params.get("time_budget_s"), **(params.get("privacy") or {}))

    def on_epoch(record: dict[str, Any]) -> None:
        # the model's history, so that a resumed job's chart also shows the epochs before the crash
        # released_loss_history: under DP without the losses computed on real rows (not covered by DP)
        losses = [{k: v for k, v in r.items() if k in ("epoch", "loss", "loss_g", "loss_d")}
                  for r in synth.released_loss_history()[-MAX_LOSS_POINTS:]]
        total = int(record.get("epochs") or synth.epochs or 1)  # MST/AIM count rounds, not epochs
        progress(record["epoch"] / total, f"epoch {record['epoch']} of {total}", {"losses": losses})

    checkpointer = job_checkpointer(progress, params)

    replace = bool(params.get("replace"))
    name = params.get("name") or names.slugify(f"{params.get('source') or 'table'}-{synth.model_name}")
    path = names.model_dir(name)
    model_store.ensure_model_name_free(name, replace=replace, folder=path)
    progress(0.0, "preprocessing", {"losses": []})
    data_path = Path(params["data_path"])
    origin = "upload" if data_path.parent.name == "uploads" else "bundled"
    import hashlib

    from medsyn_tabular.data.holdout import apply_spec
    from medsyn_tabular.data.io import read_table

    table = read_table(data_path)
    digest = hashlib.sha256(data_path.read_bytes()).hexdigest()
    train, holdout = apply_spec(table, params.get("holdout"))
    with Store() as store:
        dataset_id = store.register_dataset(params.get("source") or data_path.name, "tabular", data_path,
                                            origin, sha256=digest)
        run_params = {k: v for k, v in params.items() if k != "data_path"}
        with store.recorded_run("tabular-fit", run_params, dataset_id) as run:
            synth.fit(train, progress=on_epoch, source=params.get("source") or data_path.name,
                      checkpoint=checkpointer, resume_from=resume_from)
            synth.card["data_sha256_prefix"] = digest[:16]  # names the file; reveals nothing of it
            if holdout is not None:
                synth.card["holdout"] = {**params["holdout"], "rows_held_out": len(holdout),
                                         "note": "kept back from training; the evaluation's membership "
                                                 "and distance checks use these rows"}
            if params.get("cleaning"):
                synth.card["cleaning"] = params["cleaning"]
            store.register_dataset(params.get("source") or data_path.name, "tabular", data_path, origin,
                                   n_rows=len(table), sha256=digest)
            synth.save(path, name=name, overwrite=replace, replace=replace,
                       actor=getattr(progress, "owner", "medsyn"))
            eps = synth.ledger.total()[0] if synth.ledger is not None else None
            run["metrics"] = {"final_loss": synth.card.get("final_loss"), "epsilon": eps,
                              "training_seconds": synth.card.get("training_seconds")}
            run["model_id"] = store.model_id(path.name)
    return {"model_path": str(path), "model_name": path.name, "dp_label": synth.card.get("dp_label"),
            "epsilon": eps, "training_seconds": synth.card.get("training_seconds"),
            "resumed_after_epoch": synth.card.get("resumed_after_epoch"),
            "holdout": params.get("holdout"), "batch_size": synth.batch_size, "epochs": synth.epochs}


def submit_fit(store: Store, user, *, data_path: str | Path, source: str, n_rows: int, name: str,
               model: str | None = None, epochs: int | None = None, batch_size: int | None = None,
               seed: int = 0, schema: dict[str, Any] | None = None,
               phi_actions: dict[str, str] | None = None, privacy: dict[str, Any] | None = None,
               replace: bool = False, upload: str | Path | None = None, keep_upload: bool = False,
               holdout: dict[str, Any] | None = None, cleaning: list | None = None,
               time_budget_s: float | None = None) -> int:
    """Check, then queue, a ``tabular-fit`` job; returns its id (the Tabular page and the REST API).

    In order: the role (``train``, the account re-loaded), the settings (by building the synthesizer:
    unknown model, bad epochs or batch size, ε ≤ 0 ...), the privacy budget against the ``n_rows`` privacy
    units (an unreachable budget is refused now, with advice, not after training), and the model name (bad
    or taken, unless ``replace``); then :func:`medsyn_core.jobs.submit` (audited). ``model`` None: the
    registry's default for the privacy setting (the job records the model it resolved to).
    ``privacy``: ``{}``/None for DP off, else ``epsilon``/``preset``, ``delta``, ``max_grad_norm``,
    ``metadata``. ``epochs``/``batch_size`` None: chosen by :mod:`medsyn_tabular.defaults` (from n and
    ε under DP). ``upload``: the uploaded file the job reads (deleted when it ends unless ``keep_upload``,
    :mod:`medsyn_core.uploads`). ``holdout``: the kept-back share of the rows (see
    :mod:`medsyn_tabular.data.holdout`), recorded with the job so that its report uses the same rows.
    ``time_budget_s``: without DP, stop training before this many seconds
    (:mod:`medsyn_tabular.early_stopping`).
    """
    from medsyn_core import jobs
    from medsyn_core.auth import authorise
    from medsyn_tabular.synthesizer import TabularSynthesizer

    user = authorise(store, user, "train")
    privacy = {k: v for k, v in (privacy or {}).items() if v is not None}
    synth = TabularSynthesizer(model, epochs=epochs, batch_size=batch_size, seed=seed, schema=schema,
                               phi_actions=phi_actions, time_budget_s=time_budget_s, **privacy)
    synth.plan_privacy(int(n_rows))
    model_store.ensure_model_name_free(name, replace=replace, store=store)
    params = {"data_path": str(data_path), "source": source, "name": name, "replace": bool(replace),
              "model": synth.model_name, "epochs": None if epochs is None else int(epochs),
              "batch_size": None if batch_size is None else int(batch_size), "seed": int(seed),
              "schema": schema or {}, "phi_actions": phi_actions or {},
              "privacy": privacy if synth.private else {}}
    if upload is not None:
        params.update({"upload": str(upload), "keep_upload": bool(keep_upload)})
    if holdout:
        params["holdout"] = holdout
    if time_budget_s and not synth.private:
        params["time_budget_s"] = float(time_budget_s)
    if cleaning:
        params["cleaning"] = cleaning  # the value-free record of the fixes applied before saving
    return jobs.submit(store, user, "tabular-fit", params)


register_job_type("tabular-fit", f"{__name__}:fit_table", "train", needs_gpu=True)
# the EHR generator (related tables: patients, visits, events) is part of this engine: medsyn_tabular.ehr
register_job_type("ehr-fit", "medsyn_tabular.ehr.job:fit_ehr", "train", needs_gpu=True)
