"""Privacy budgets: ε/δ targets, the clinician-facing presets, validation and the preprocessing share.

The total budget (ε, δ) is split by sequential composition into a preprocessing share (noisy statistics
of the real table: bounds, category counts, missing rates) and a training share (DP-SGD). Totals add up:
ε_total = ε_pre + ε_train and δ_total = δ_pre + δ_train, which is a valid (if not the tightest) bound.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: Presets a clinician can choose from; None means no differential privacy ("off").
PRESETS: dict[str, float | None] = {"strict": 1.0, "balanced": 3.0, "exploratory": 10.0, "off": None}

EPSILON_RANGE = (0.1, 20.0)  # what the app's slider offers; the API accepts any ε > 0
DEFAULT_PREPROCESSING_SHARE = 0.1  # of ε (and of δ) spent on preprocessing statistics


class PrivacyError(ValueError):
    """An impossible or unreachable privacy setting; the message says what to change."""

    #: Messages name columns and counts, never a cell value (see medsyn_core.redaction).
    value_free_message = True


#: The largest default δ: a mechanism may fail with probability δ, e.g. publish one record outright, so δ
#: is kept far below 1/n, as is the field's practice (e.g. 1e-5 for datasets of thousands).
MAX_DEFAULT_DELTA = 1e-5


def default_delta(n_rows: int) -> float:
    """δ far below 1/n: min(1e-5, 1 / (10 n))."""
    if n_rows < 1:
        raise PrivacyError("The table has no rows, so no privacy budget can be set.")
    return min(MAX_DEFAULT_DELTA, 1.0 / (10.0 * n_rows))


@dataclass(frozen=True)
class PrivacyBudget:
    """A total (ε, δ) budget and how it is split between preprocessing and training."""

    epsilon: float
    delta: float
    preprocessing_share: float = DEFAULT_PREPROCESSING_SHARE
    preset: str | None = None

    @classmethod
    def create(
        cls,
        n_rows: int,
        epsilon: float | None = None,
        delta: float | None = None,
        preset: str | None = None,
        preprocessing_share: float = DEFAULT_PREPROCESSING_SHARE,
    ) -> PrivacyBudget | None:
        """Validate the user's choice and return a budget, or None when DP is off.

        Either a ``preset`` (strict, balanced, exploratory, off) or an explicit ``epsilon``; ``delta``
        defaults to :func:`default_delta` and must be below 1/n.
        """
        if preset is not None:
            key = preset.strip().lower()
            if key not in PRESETS:
                raise PrivacyError(
                    f"Unknown privacy preset {preset!r}. Choose one of: {', '.join(PRESETS)}.")
            if epsilon is not None and PRESETS[key] is not None and epsilon != PRESETS[key]:
                raise PrivacyError(
                    f"The preset {key!r} means ε = {PRESETS[key]:g}, but ε = {epsilon:g} was also given. "
                    "Give either a preset or an ε.")
            if PRESETS[key] is None:
                return None
            epsilon = PRESETS[key]
            preset = key
        if epsilon is None:
            return None
        if not (isinstance(epsilon, int | float) and math.isfinite(epsilon)) or epsilon <= 0:
            raise PrivacyError(
                f"ε must be a positive number (got {epsilon!r}). Smaller ε means stronger privacy; "
                "typical values are 1 (strict) to 10 (exploratory).")
        if n_rows < 2:
            raise PrivacyError("Differential privacy needs a table with at least 2 rows.")
        if delta is None:
            delta = default_delta(n_rows)
        if not math.isfinite(delta) or delta <= 0:
            raise PrivacyError(f"δ must be a positive number below 1/n (got {delta!r}).")
        if delta >= 1.0 / n_rows:
            raise PrivacyError(
                f"δ = {delta:g} is not below 1/n = {1.0 / n_rows:g} for this table of {n_rows} rows: "
                "such a δ would allow a whole record to leak. Use δ ≤ "
                f"{default_delta(n_rows):.2g} (the default).")
        if not 0.0 < preprocessing_share < 1.0:
            raise PrivacyError(
                f"The preprocessing share must be strictly between 0 and 1 (got {preprocessing_share}).")
        return cls(float(epsilon), float(delta), float(preprocessing_share), preset)

    @property
    def epsilon_preprocessing(self) -> float:
        return self.epsilon * self.preprocessing_share

    @property
    def epsilon_training(self) -> float:
        return self.epsilon - self.epsilon_preprocessing

    @property
    def delta_preprocessing(self) -> float:
        return self.delta * self.preprocessing_share

    @property
    def delta_training(self) -> float:
        return self.delta - self.delta_preprocessing

    def to_dict(self) -> dict:
        return asdict(self)
