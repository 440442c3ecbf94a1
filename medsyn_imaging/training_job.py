"""Train an image generator in a background thread (for the app), with progress, cancel and a store record.

The job runs the same :class:`~medsyn_imaging.gan_training.GANTrainer` as ``medsyn imaging train``,
checkpoints into ``$MEDSYN_HOME/runs/<name>/``, saves the EMA generator to ``$MEDSYN_HOME/models/<name>/``
and registers it. The app polls :attr:`TrainingJob.progress` and :attr:`TrainingJob.status`.
"""

from __future__ import annotations

import threading
import traceback
from pathlib import Path

from medsyn_imaging.gan_training import TrainConfig, TrainingProgress


class TrainingJob:
    """One background training run; ``status`` is queued, running, finished, failed or cancelled."""

    def __init__(self, data_source: str | Path, name: str, config: TrainConfig, resolution: int = 32,
                 split: str = "train"):
        from medsyn_core import settings

        if not name or any(ch in name for ch in "/\\:") or name.startswith("."):
            raise ValueError("Give the model a simple name (letters, digits, '-' or '_').")
        self.data_source = data_source
        self.name = name
        self.config = config
        self.resolution = resolution
        self.split = split
        self.out_dir = settings.models_dir() / name
        self.work_dir = settings.home_dir() / "runs" / name
        if self.out_dir.exists():
            raise FileExistsError(f"A model called {name!r} already exists ({self.out_dir}); "
                                  "pick another name.")
        self.status = "queued"
        self.error: str | None = None
        self.progress: TrainingProgress | None = None
        self.latest_grid = None  # (H, W, C) uint8, the most recent live sample grid
        self.model_path: Path | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> TrainingJob:
        self._thread = threading.Thread(target=self._run, name=f"medsyn-train-{self.name}", daemon=True)
        self.status = "running"
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop after the current step (the checkpoint is kept; no model is saved)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _on_progress(self, progress: TrainingProgress) -> None:
        self.progress = progress
        if progress.grid is not None:
            self.latest_grid = progress.grid

    def _run(self) -> None:
        from medsyn_core.storage import Store
        from medsyn_imaging.gan_training import GANTrainer
        from medsyn_imaging.generator_store import save_generator
        from medsyn_imaging.training_data import load_training_images

        params = {"data": str(self.data_source), "name": self.name, "resolution": self.resolution,
                  **self.config.to_dict()}
        with Store() as store:
            run_id = store.start_run("imaging-train", params)
        try:
            data = load_training_images(self.data_source, self.resolution, split=self.split)
            trainer = GANTrainer(data, self.config)
            self.work_dir.mkdir(parents=True, exist_ok=True)
            trainer.train(callback=self._on_progress, checkpoint_path=self.work_dir / "checkpoint.pt",
                          should_stop=self._stop.is_set,
                          report_every_images=max(self.config.batch_size, 500))
            if self._stop.is_set():
                self.status = "cancelled"
            else:
                command = (f"app: Synthetic scans page, data={self.data_source}, "
                           f"resolution={self.resolution}, config={self.config.to_dict()}")
                self.model_path = save_generator(trainer, self.out_dir, name=self.name, command=command)
                self.latest_grid = trainer.sample_grid()
                self.status = "finished"
            with Store() as store:
                store.finish_run(run_id, self.status,
                                 {"images_seen": trainer.images_seen, "wall_time_s": trainer.train_seconds})
        except Exception as exc:  # noqa: BLE001 — reported to the user in the app
            self.status = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            with Store() as store:
                store.finish_run(run_id, "failed", {"error": self.error})
