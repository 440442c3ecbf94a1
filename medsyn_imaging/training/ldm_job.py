"""Train a 3D generator (latent diffusion model) as a background job (kind ``imaging-train-3d``).

Runs :class:`~medsyn_imaging.training.ldm_training.LDMTrainer` in the job's own process, checkpointing into
the job's folder (``$MEDSYN_HOME/jobs/<id>/checkpoint.pt``, recorded with the job so a crashed or stopped job
resumes from it), then saves the model folder to ``$MEDSYN_HOME/models/<name>/`` and registers it.

Params (JSON): ``data`` (a folder of NIfTI files or DICOM series, see
:mod:`medsyn_imaging.training.volume_data`), ``name`` (a safe slug), ``replace``, ``shape`` and ``spacing``
(three numbers each, X Y Z), ``window`` and ``timepoints``, and ``config`` (an
:class:`~medsyn_imaging.training.ldm_training.LDMConfig` as a dict).
"""

from __future__ import annotations

from typing import Any


def train_volume_generator(
    params: dict[str, Any], progress, resume_from: str | None = None
) -> dict[str, Any]:
    """Job function: load the volumes, train both stages with checkpoints, save and register."""
    from medsyn_core.storage import Store
    from medsyn_imaging.training.ldm_training import LDMConfig, LDMTrainer
    from medsyn_imaging.training.training_job import check_model_name
    from medsyn_imaging.training.volume_data import load_training_volumes
    from medsyn_imaging.training.volume_generator_store import save_volume_generator

    replace = bool(params.get("replace"))
    out_dir = check_model_name(params["name"], replace=replace)
    progress(0.0, "reading and resampling the training volumes")
    data = load_training_volumes(
        params["data"],
        tuple(params.get("shape", (32, 32, 32))),
        tuple(params.get("spacing", (2.0, 2.0, 2.0))),
        params.get("window", "auto"),
        params.get("timepoints", "first"),
    )
    if resume_from:
        trainer = LDMTrainer.from_checkpoint(resume_from, data)
    else:
        trainer = LDMTrainer(data, LDMConfig.from_dict(params.get("config", {})))
    checkpoint = progress.dir / "checkpoint.pt"

    def on_progress(p) -> None:
        if checkpoint.exists():
            progress.checkpoint(checkpoint)
        progress(
            p.fraction,
            f"{p.stage}: step {p.step:,} of {p.total_steps:,}",
            {
                "stage": p.stage,
                "step": p.step,
                "total_steps": p.total_steps,
                **p.losses,
                "steps_per_s": p.steps_per_s,
                "volumes_per_s": p.volumes_per_s,
            },
        )

    with Store() as store:
        dataset_id = store.register_dataset(
            str(params["data"]), "imaging", str(params["data"]), "folder", n_rows=len(data.volumes)
        )
        with store.recorded_run(
            "imaging-train-3d", {**params, "resume_from": resume_from}, dataset_id
        ) as run:
            trainer.train(callback=on_progress, checkpoint_path=checkpoint, report_every=10)
            command = (
                f"app job: data={params['data']}, shape={list(data.shape)}, spacing={list(data.spacing)}, "
                f"window={data.intensity.name}, config={trainer.config.to_dict()}"
            )
            if resume_from:
                command += f", resumed from {resume_from}"
            path = save_volume_generator(
                trainer,
                out_dir,
                name=params["name"],
                command=command,
                replace=replace,
                actor=getattr(progress, "owner", "medsyn"),
            )
            run["metrics"] = {"steps": trainer.step, "wall_time_s": trainer.train_seconds}
            run["model_id"] = store.model_id(params["name"])
    return {
        "model_path": str(path),
        "model_name": params["name"],
        "steps": trainer.step,
        "wall_time_s": trainer.train_seconds,
    }


def _register() -> None:
    from medsyn_core.jobs import register_job_type

    register_job_type("imaging-train-3d", f"{__name__}:train_volume_generator", "train", needs_gpu=True)


_register()
