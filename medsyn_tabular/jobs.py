"""Training in a background thread, so that a UI (the Streamlit page) can poll progress without freezing.

    job = TrainingJob(TabularSynthesizer("ctgan", epochs=50), df, source="heart.csv").start()
    job.status, job.fraction, job.records   # poll; job.synthesizer once job.status == "finished"
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pandas as pd

from medsyn_tabular.synthesizer import TabularSynthesizer


class TrainingJob:
    """Runs ``synthesizer.fit(df)`` on a daemon thread; progress records are appended as epochs end."""

    def __init__(self, synthesizer: TabularSynthesizer, df: pd.DataFrame, source: str | None = None):
        self.synthesizer, self.df, self.source = synthesizer, df, source
        self.records: list[dict[str, Any]] = []
        self.status = "queued"  # queued -> running -> finished | failed
        self.error: str | None = None
        self.started_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="medsyn-tabular-fit", daemon=True)

    def _run(self) -> None:
        self.status, self.started_at = "running", time.time()
        try:
            self.synthesizer.fit(self.df, progress=self.records.append, source=self.source)
            self.status = "finished"
        except Exception as exc:  # shown to the user; the page stays usable
            self.error, self.status = str(exc), "failed"

    def start(self) -> TrainingJob:
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> TrainingJob:
        self._thread.join(timeout)
        return self

    @property
    def fraction(self) -> float:
        """Share of epochs done, 0..1."""
        return len(self.records) / max(1, self.synthesizer.epochs)

    def losses(self) -> pd.DataFrame:
        """Loss per epoch (index: epoch) for a live chart."""
        if not self.records:
            return pd.DataFrame()
        frame = pd.DataFrame(self.records).set_index("epoch")
        return frame[[c for c in ("loss_g", "loss_d", "loss") if c in frame]]
