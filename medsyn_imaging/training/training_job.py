"""Train an image generator as a background job (``medsyn_core.jobs``, kind ``imaging-train``).

The job runs the same :class:`~medsyn_imaging.training.gan_training.GANTrainer` as ``medsyn imaging train`` in
its own process, so it survives page switches, reloads and other users' work. It checkpoints into the
job's folder (``$MEDSYN_HOME/jobs/<id>/checkpoint.pt``, recorded with the job, so a crashed job is
resumed exactly from it), writes the latest live sample grid next to it, and at the end saves the EMA
generator to ``$MEDSYN_HOME/models/<name>/`` and registers it. Cancelling keeps the checkpoint and saves
no model.

Params (JSON): ``data`` (bundled name, ``.npz`` or class folder), ``name`` (a safe slug,
:mod:`medsyn_core.names`), ``replace`` (replace the model of that name; audited), ``resolution``,
``split`` and ``config`` (a :class:`~medsyn_imaging.training.gan_training.TrainConfig` as a dict).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_model_name(name: str, replace: bool = False) -> Path:
    """The folder a new generator called ``name`` will be saved to: ``$MEDSYN_HOME/models/<name>``.

    Raises :class:`~medsyn_core.names.NameRefused` (not a safe slug, or a bundled model's name) or
    :class:`~medsyn_core.names.NameTaken` (registered, or the folder exists) unless ``replace``."""
    from medsyn_core import model_store, names

    out_dir = names.model_dir(name)
    model_store.ensure_model_name_free(name, replace=replace, folder=out_dir)
    return out_dir


def train_generator(params: dict[str, Any], progress, resume_from: str | None = None) -> dict[str, Any]:
    """Job function: train, checkpoint, report progress (with a grid PNG), save and register."""
    from medsyn_imaging.io.image_grid import save_grid_png
    from medsyn_imaging.training.gan_training import GANTrainer, TrainConfig, TrainingProgress
    from medsyn_imaging.training.generator_store import save_generator
    from medsyn_imaging.training.training_data import load_training_images

    replace = bool(params.get("replace"))
    out_dir = check_model_name(params["name"], replace=replace)
    progress(0.0, "loading the training images")  # also where an early cancel takes effect
    data = load_training_images(params["data"], int(params.get("resolution", 32)),
                                split=params.get("split", "train"))
    if resume_from:
        trainer = GANTrainer.from_checkpoint(resume_from, data)
    else:
        trainer = GANTrainer(data, TrainConfig.from_dict(params["config"]))
    checkpoint = progress.dir / "checkpoint.pt"
    grid_png = progress.dir / "grid.png"

    def on_progress(p: TrainingProgress) -> None:
        if p.grid is not None:
            save_grid_png(p.grid, grid_png)
        if checkpoint.exists():
            progress.checkpoint(checkpoint)
        progress(p.fraction, f"{p.images_seen:,} of {p.total_images:,} images",
                 {"images_seen": p.images_seen, "total_images": p.total_images,
                  **({"d_loss": p.d_loss} if p.d_loss is not None else {}),  # None under DP
                  "g_loss": p.g_loss, "images_per_s": p.images_per_s,
                  "grid": str(grid_png) if grid_png.exists() else None})

    from medsyn_core.storage import Store

    with Store() as store:
        dataset_id = store.register_dataset(str(params["data"]), "imaging", str(params["data"]),
                                            "bundled" if not Path(str(params["data"])).exists() else "folder",
                                            n_rows=len(data.images))
        with store.recorded_run("imaging-train", {**params, "resume_from": resume_from}, dataset_id) as run:
            trainer.train(callback=on_progress, checkpoint_path=checkpoint,
                          report_every_images=max(trainer.config.batch_size, 500))
            command = (f"app job: data={params['data']}, resolution={params.get('resolution', 32)}, "
                       f"config={trainer.config.to_dict()}")
            if resume_from:
                command += f", resumed from {resume_from}"
            path = save_generator(trainer, out_dir, name=params["name"], command=command, overwrite=replace,
                                  actor=getattr(progress, "owner", "medsyn"))
            run["metrics"] = {"images_seen": trainer.images_seen, "wall_time_s": trainer.train_seconds}
            run["model_id"] = store.model_id(params["name"])
    return {"model_path": str(path), "model_name": params["name"], "images_seen": trainer.images_seen,
            "wall_time_s": trainer.train_seconds}


def submit_training(store, user, *, data: str, name: str, model: str = "stylegan2", resolution: int = 32,
                    kimg: float = 20.0, batch: int = 32, seed: int = 0, lr: float | None = None,
                    channel_base: int | None = None, channel_max: int | None = None,
                    diffaugment: str = "color,translation,cutout", epsilon: float | None = None,
                    preset: str | None = None, delta: float | None = None, clip: float = 1.0,
                    replace: bool = False, split: str = "train") -> int:
    """Check, then queue, an ``imaging-train`` job; returns its id (the Synthetic scans page, the REST API).

    In order: the role (``train``), the privacy settings (``epsilon`` or ``preset``; δ and the clipping
    norm only with DP), the model name (bad or taken, unless ``replace``), the training configuration (the
    same defaults as the page: learning rate by model, a checkpoint every tenth of the run), and under DP
    the budget against the number of training images (an unreachable one is refused now, with advice);
    then :func:`medsyn_core.jobs.submit` (audited)."""
    from medsyn_core.auth import authorise
    from medsyn_core.jobs import submit
    from medsyn_core.privacy import PrivacyBudget
    from medsyn_imaging.training.gan_training import TrainConfig, plan_private_training
    from medsyn_imaging.training.training_data import load_training_images

    user = authorise(store, user, "train")
    budget = PrivacyBudget.create(10**12, epsilon, None, preset)
    if budget is None and (delta is not None or clip != 1.0):
        raise ValueError("delta and the clipping norm apply to differentially private training; add epsilon "
                         "or a preset.")
    check_model_name(name, replace=replace)
    if model == "stylegan2":
        arch = {k: v for k, v in (("channel_base", channel_base), ("channel_max", channel_max))
                if v is not None}
    elif channel_base is not None or channel_max is not None:
        raise ValueError("channel_base/channel_max apply to stylegan2 only.")
    else:
        arch = {}
    config = TrainConfig(
        model=model, kimg=float(kimg), batch_size=int(batch), seed=int(seed),
        lr=lr if lr is not None else (0.0025 if model == "stylegan2" else 0.0002),
        beta1=0.0 if model == "stylegan2" else 0.5, diffaugment=diffaugment,
        checkpoint_kimg=max(1.0, float(kimg) / 10), grid_kimg=max(0.5, float(kimg) / 50), arch=arch,
        dp_epsilon=budget.epsilon if budget is not None else None, dp_delta=delta, dp_max_grad_norm=clip,
        dp_preset=budget.preset if budget is not None else None)
    if budget is not None:
        plan_private_training(config, len(load_training_images(data, int(resolution)).images))
    params = {"data": data, "name": name, "replace": bool(replace), "resolution": int(resolution),
              "split": split, "config": config.to_dict()}
    return submit(store, user, "imaging-train", params)


def _register() -> None:
    from medsyn_core.jobs import register_job_type

    register_job_type("imaging-train", f"{__name__}:train_generator", "train", needs_gpu=True)
    # the imaging evaluation (minutes: classifiers and features) runs as a job too
    register_job_type("imaging-evaluate", "medsyn_imaging.evaluation.evaluation_job:evaluate_images",
                      "evaluate", needs_gpu=True)


_register()
