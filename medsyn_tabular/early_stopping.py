"""Training settings chosen for the user: when a model without differential privacy stops.

(The DP defaults, batch size and epochs chosen from n and ε, are in :mod:`medsyn_tabular.defaults`.)

Without DP a fixed epoch count is either too short (the model is still improving) or wasted time (it
stopped improving long ago). So the non-DP networks (ARGN, TVAE, CTGAN) train for at most ``epochs``
epochs, and :class:`TrainingMonitor` ends training earlier when

* **the time budget is spent**: ``time_budget_s`` seconds of training; it stops before an epoch that
  would overrun (its length estimated from the epochs so far), so the epochs follow from the budget
  (:func:`epochs_for_time_budget` gives the count in advance from a measured epoch); or
* **the held-out validation score stopped improving** (early stopping): :func:`validation_split` keeps
  ``VALIDATION_SHARE`` of the rows out of training; every so often the monitor scores the model on them
  (:func:`quick_quality`: SDMetrics' quality score of generated rows against the held-out rows, the
  same for every model; ARGN's held-out likelihood is available, ``stop_on="loss"``, but on tables of
  hundreds of rows it bottomed out after a few epochs while quality and utility kept improving) and stops
  after ``PATIENCE`` checks without an improvement of at least ``MIN_DELTA``, or after 2 such checks once
  the epochs trained are twice those of the best check (and at least ``MIN_EPOCHS_AFTER_BEST`` more): a
  score that has not improved in as long as it took to reach its best is taken as good enough (checks are
  noisy on small validation sets, so five failures in a row are rare). The weights of the best check (or
  the final ones, if better) are kept.

Checks are spaced by time, not epochs: the next one comes after at least ``CHECK_OVERHEAD``⁻¹ times the
last check's cost of training, so scoring never takes more than about a quarter of the time (a network
whose whole training takes seconds is checked rarely, and that is fine). Scoring never touches the
training random streams, so it changes nothing in the weights.

Early stopping is on by default without DP when the table has at least ``MIN_ROWS_EARLY_STOPPING`` rows and
at least ``MIN_EPOCHS_EARLY_STOPPING`` epochs are allowed; under DP the number of steps fixes σ before
training, so DP models train for their planned epochs.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

VALIDATION_SHARE = 0.1
MIN_VALIDATION_ROWS, MAX_VALIDATION_ROWS = 20, 5000
MIN_ROWS_EARLY_STOPPING = 200
MIN_EPOCHS_EARLY_STOPPING = 20
#: No check before this share of the most epochs (at least MIN_EPOCHS_EARLY_STOPPING): on small validation
#: sets the score of a barely trained network can beat later ones by noise alone (a TVAE kept its epoch-1
#: weights, 68 % agreement between a feature and the outcome where 100 epochs reach 97 %).
WARMUP_SHARE = 1 / 3
PATIENCE = 5  # checks without improvement before stopping
MIN_EPOCHS_AFTER_BEST = 10  # ... or 2 checks, once training has doubled the epochs of the best check
MIN_DELTA = {"loss": 1e-3, "quality": 2e-3}  # relative (loss) / absolute (quality) improvement that counts
CHECK_OVERHEAD = 0.25  # scoring takes at most about this share of the training time
QUALITY_ROWS = 1000  # synthetic rows generated for one quality check


def early_stopping_applies(n_rows: int, epochs: int, private: bool) -> bool:
    """The default: early stopping without DP, on tables and epoch counts where it can matter."""
    return not private and n_rows >= MIN_ROWS_EARLY_STOPPING and epochs >= MIN_EPOCHS_EARLY_STOPPING


def warmup_epochs(epochs: int) -> int:
    """The epoch of the first validation check: ``WARMUP_SHARE`` of the most epochs, at least
    ``MIN_EPOCHS_EARLY_STOPPING`` (and at most ``epochs``)."""
    return min(int(epochs), max(MIN_EPOCHS_EARLY_STOPPING, int(round(epochs * WARMUP_SHARE))))


def validation_split(n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training row indices, validation row indices): ``VALIDATION_SHARE`` of the rows, at least
    ``MIN_VALIDATION_ROWS`` and at most ``MAX_VALIDATION_ROWS``, drawn with ``seed``."""
    n_val = int(np.clip(round(VALIDATION_SHARE * n_rows), MIN_VALIDATION_ROWS, MAX_VALIDATION_ROWS))
    order = np.random.default_rng([seed, 14]).permutation(n_rows)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def epochs_for_time_budget(budget_s: float, seconds_per_epoch: float, max_epochs: int) -> int:
    """Whole epochs that fit in ``budget_s`` seconds at ``seconds_per_epoch`` (at least 1, at most
    ``max_epochs``)."""
    if budget_s <= 0:
        raise ValueError(f"The time budget must be positive (got {budget_s} s).")
    return int(max(1, min(max_epochs, budget_s // max(seconds_per_epoch, 1e-9))))


def quick_quality(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict[str, str] | None = None) -> float:
    """SDMetrics' quality score (mean of column shapes and of the pair trends over every pair: KS / TV
    complement, correlation / contingency similarity, as :mod:`medsyn_tabular.evaluation.fidelity`),
    without the report's extras; fast enough to score a model during training."""
    from medsyn_tabular.evaluation.columns import CATEGORICAL, infer_column_kinds
    from medsyn_tabular.evaluation.fidelity import (
        _discretize,
        contingency_similarity,
        correlation_similarity,
        ks_complement,
        tv_complement,
    )

    kinds = kinds or infer_column_kinds(real)
    cols = [c for c in real.columns if c in kinds]
    real, synthetic = real[cols].reset_index(drop=True), synthetic[cols].reset_index(drop=True)
    shapes = []
    for c in cols:
        if kinds[c] == CATEGORICAL:
            r, s = real[c].astype(object).map(str).where(real[c].notna()), \
                synthetic[c].astype(object).map(str).where(synthetic[c].notna())
            shapes.append(tv_complement(r, s))
        else:
            shapes.append(ks_complement(_numbers(real[c]), _numbers(synthetic[c])))
    pairs = []
    for a, b in itertools.combinations(cols, 2):
        if kinds[a] != CATEGORICAL and kinds[b] != CATEGORICAL:
            r = pd.DataFrame({a: _numbers(real[a]), b: _numbers(real[b])})
            s = pd.DataFrame({a: _numbers(synthetic[a]), b: _numbers(synthetic[b])})
            pairs.append(correlation_similarity(r, s)[0])
        else:
            def codes(df: pd.DataFrame, c: str) -> pd.Series:
                if kinds[c] == CATEGORICAL:
                    return df[c].astype(object).map(str).where(df[c].notna(), "nan")
                return pd.Series(_discretize(_numbers(df[c])), index=df.index)

            r = pd.DataFrame({a: codes(real, a), b: codes(real, b)})
            pairs.append(contingency_similarity(r, pd.DataFrame({a: codes(synthetic, a),
                                                                 b: codes(synthetic, b)}))[0])
    shape = float(np.nanmean(shapes)) if shapes else float("nan")
    pair = float(np.nanmean(pairs)) if pairs and not np.all(np.isnan(pairs)) else shape
    return (shape + pair) / 2


def _numbers(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return pd.Series(s.to_numpy(dtype="datetime64[ns]").astype("int64").astype(float),
                         index=s.index).where(s.notna())
    return pd.to_numeric(s, errors="coerce").astype(float)


class TrainingMonitor:
    """``monitor(epoch) -> bool`` after each epoch (True: stop). See the module docstring.

    ``score()``: the validation score now (``higher_is_better`` says its direction), or None for a time
    budget alone; ``snapshot()``: a copy of the model's state, kept for the best check and given back by
    :attr:`best_state`; ``time_budget_s``: seconds of training allowed (None: no budget);
    ``every_epoch``: score after every epoch instead of on the time-based schedule; ``warmup_epochs``: the
    first check comes after this epoch (:func:`warmup_epochs`). The record of
    every check is in :attr:`checks` (epoch, seconds of training, score)."""

    def __init__(self, score: Callable[[], float] | None = None, higher_is_better: bool = True,
                 snapshot: Callable[[], dict] | None = None, time_budget_s: float | None = None,
                 patience: int = PATIENCE, min_delta: float | None = None, relative: bool = False,
                 every_epoch: bool = False, warmup_epochs: int = 1):
        if time_budget_s is not None and time_budget_s <= 0:
            raise ValueError(f"The time budget must be positive (got {time_budget_s} s).")
        self.score, self.higher, self.snapshot = score, higher_is_better, snapshot
        self.time_budget_s, self.patience = time_budget_s, patience
        self.min_delta = min_delta if min_delta is not None else MIN_DELTA["loss" if relative else "quality"]
        self.relative, self.every_epoch = relative, every_epoch
        self.warmup_epochs = max(1, int(warmup_epochs))
        self.started = time.perf_counter()
        self.scoring_s = 0.0  # time spent scoring (not training)
        self.since_check = 0.0  # training seconds since the last check
        self.last_cost = 0.0
        self.last_epoch_end = self.started
        self.epoch_seconds: list[float] = []
        self.best: float | None = None
        self.best_epoch = 0
        self.best_state: dict | None = None
        self.bad_checks = 0
        self.checks: list[dict] = []
        self.stopped_because = ""

    @property
    def training_seconds(self) -> float:
        return time.perf_counter() - self.started - self.scoring_s

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        gain = (value - self.best) if self.higher else (self.best - value)
        return gain > (self.min_delta * abs(self.best) if self.relative else self.min_delta)

    def __call__(self, epoch: int) -> bool:
        now = time.perf_counter()
        epoch_s = now - self.last_epoch_end
        self.epoch_seconds.append(epoch_s)
        self.since_check += epoch_s
        due = epoch >= self.warmup_epochs and (self.every_epoch or epoch == self.warmup_epochs
                                               or self.since_check * CHECK_OVERHEAD >= self.last_cost)
        if self.score is not None and due:
            t0 = time.perf_counter()
            value = float(self.score())
            if self._improved(value):
                self.best, self.best_epoch, self.bad_checks = value, epoch, 0
                self.best_state = self.snapshot() if self.snapshot is not None else None
            else:
                self.bad_checks += 1
            self.last_cost = time.perf_counter() - t0
            self.scoring_s += self.last_cost
            self.since_check = 0.0
            self.checks.append({"epoch": epoch, "training_seconds": round(self.training_seconds, 3),
                                "score": value})
            if self.bad_checks >= self.patience:
                self.stopped_because = (f"validation score did not improve for {self.patience} checks; "
                                        f"best at epoch {self.best_epoch}")
            elif self.bad_checks >= 2 and epoch >= 2 * self.best_epoch \
                    and epoch - self.best_epoch >= MIN_EPOCHS_AFTER_BEST:
                self.stopped_because = (f"validation score did not improve in as many epochs as it took to "
                                        f"reach its best (epoch {self.best_epoch})")
        elif self.score is None:
            self.scoring_s += time.perf_counter() - now
        if not self.stopped_because and self.time_budget_s is not None:
            per_epoch = float(np.mean(self.epoch_seconds[-5:]))
            if self.training_seconds + per_epoch > self.time_budget_s:
                self.stopped_because = f"time budget of {self.time_budget_s:g} s reached"
        self.last_epoch_end = time.perf_counter()
        return bool(self.stopped_because)

    def finish(self, epoch: int) -> dict | None:
        """After the last epoch: score the final weights too (unless just checked) and return the state
        to restore, or None when the final weights are the best."""
        if self.score is None or self.best_state is None:
            return None
        if not self.checks or self.checks[-1]["epoch"] != epoch:
            t0 = time.perf_counter()
            value = float(self.score())
            self.scoring_s += time.perf_counter() - t0
            self.checks.append({"epoch": epoch, "training_seconds": round(self.training_seconds, 3),
                                "score": value})
            if self.best is None or (value >= self.best if self.higher else value <= self.best):
                self.best, self.best_epoch = value, epoch
                return None
        return None if self.best_epoch == epoch else self.best_state

    def summary(self) -> dict:
        """What the model card records: why training stopped, the best check and every check."""
        return {"stopped_because": self.stopped_because or "the most epochs allowed were trained",
                "best_epoch": self.best_epoch or None, "best_score": self.best,
                "time_budget_s": self.time_budget_s, "checks": self.checks[-50:]}
