"""The user's privacy choice, validated once, as one typed object for a whole fit.

:class:`PrivacySettings` is built from what the user gave (a preset or ε, optional δ, the clipping norm,
the preprocessing share and the accountant) and checked at once for everything that does not depend on
the data; :meth:`PrivacySettings.budget` then turns it into the :class:`~.budget.PrivacyBudget` of a
dataset of n privacy units (δ against 1/n and the default δ need n). Engines keep one instance per fit and
save :meth:`to_dict` with the model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from medsyn_core.privacy.budget import (
    DEFAULT_PREPROCESSING_SHARE,
    PRESETS,
    PrivacyBudget,
    PrivacyError,
)

ACCOUNTANTS = ("rdp", "prv")


@dataclass(frozen=True)
class PrivacySettings:
    """A validated privacy choice; ``epsilon`` None means DP off."""

    epsilon: float | None = None
    delta: float | None = None
    preset: str | None = None
    max_grad_norm: float = 1.0
    preprocessing_share: float = DEFAULT_PREPROCESSING_SHARE
    accountant: str = "rdp"

    @classmethod
    def create(cls, epsilon: float | None = None, delta: float | None = None, preset: str | None = None,
               max_grad_norm: float = 1.0, preprocessing_share: float = DEFAULT_PREPROCESSING_SHARE,
               accountant: str = "rdp") -> PrivacySettings:
        """Validate the user's choice (readable :class:`PrivacyError` s) without knowing the data."""
        if preset is not None:
            key = str(preset).strip().lower()
            if key not in PRESETS:
                raise PrivacyError(f"Unknown privacy preset {preset!r}. Choose one of: {', '.join(PRESETS)}.")
            if epsilon is not None and PRESETS[key] is not None and epsilon != PRESETS[key]:
                raise PrivacyError(
                    f"The preset {key!r} means ε = {PRESETS[key]:g}, but ε = {epsilon:g} was also given. "
                    "Give either a preset or an ε.")
            epsilon, preset = PRESETS[key], key
        if epsilon is None:
            return cls(None, None, preset, float(max_grad_norm), float(preprocessing_share), accountant)
        if isinstance(epsilon, bool) or not (isinstance(epsilon, int | float) and math.isfinite(epsilon)) \
                or epsilon <= 0:
            raise PrivacyError(
                f"ε must be a positive number (got {epsilon!r}). Smaller ε means stronger privacy; "
                "typical values are 1 (strict) to 10 (exploratory).")
        if delta is not None and (not math.isfinite(delta) or delta <= 0):
            raise PrivacyError(f"δ must be a positive number below 1/n (got {delta!r}).")
        if not max_grad_norm > 0:
            raise PrivacyError(f"The clipping norm must be positive (got {max_grad_norm}).")
        if accountant not in ACCOUNTANTS:
            raise PrivacyError(f"Unknown accountant {accountant!r}; use one of {', '.join(ACCOUNTANTS)}.")
        if not 0.0 <= preprocessing_share < 1.0:
            raise PrivacyError(
                f"The preprocessing share must be at least 0 and below 1 (got {preprocessing_share}).")
        return cls(float(epsilon), None if delta is None else float(delta), preset, float(max_grad_norm),
                   float(preprocessing_share), accountant)

    @property
    def enabled(self) -> bool:
        return self.epsilon is not None

    def budget(self, n_units: int) -> PrivacyBudget | None:
        """The (ε, δ) budget for ``n_units`` privacy units (None with DP off); δ defaults to
        min(1e-5, 1/(10 n)) and must be below 1/n. A preprocessing share of 0 (nothing but training reads
        the data, e.g. the image GAN) gives the whole budget to training."""
        if not self.enabled:
            return None
        checked = PrivacyBudget.create(n_units, self.epsilon, self.delta, None,
                                       self.preprocessing_share or DEFAULT_PREPROCESSING_SHARE)
        return replace(checked, preprocessing_share=self.preprocessing_share, preset=self.preset)

    def to_dict(self) -> dict:
        return asdict(self)
