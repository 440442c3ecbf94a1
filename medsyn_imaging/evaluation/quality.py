"""The quality bar a generator must pass before clinicians are offered it without an admin's approval.

It reads the generator's latest evaluation (the card's ``metrics``, one figure everywhere: see
:func:`medsyn_core.model_card.with_latest_evaluation`) and is deliberately looser than the report's
per-metric verdicts: a generator may show low diversity (recall, coverage) and still be useful for
previews, but not one that was never evaluated, is far from real images, copies training images, or has
lost the disease signal.

* evaluated: the card has an FID and its real-vs-real floor;
* FID at most :data:`MAX_FID_RATIO` times the floor;
* no near-copy of a training image (memorisation check);
* TSTR AUC within :data:`MAX_TSTR_GAP` of TRTR, when measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_FID_RATIO = 5.0
MAX_TSTR_GAP = 0.1


@dataclass(frozen=True)
class QualityCheck:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # why not, in plain words
    fid: float | None = None
    fid_floor: float | None = None

    @property
    def label(self) -> str:
        """'FID 46.2 (real-vs-real floor 11.3)' or 'not evaluated yet'."""
        if self.fid is None:
            return "not evaluated yet"
        text = f"FID {self.fid:.1f}"
        return text + (f" (real-vs-real floor {self.fid_floor:.1f})" if self.fid_floor is not None else "")


def _number(metrics: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def quality_check(metrics: dict[str, Any]) -> QualityCheck:
    """Check a generator's latest evaluation numbers (the card's ``metrics``) against the bar."""
    fid, floor = _number(metrics, "fid"), _number(metrics, "fid_real_floor")
    if fid is None or floor is None:
        return QualityCheck(False, ["not evaluated yet (Evaluation page or `medsyn imaging evaluate`)"])
    reasons = []
    if fid > MAX_FID_RATIO * floor:
        reasons.append(f"FID {fid:.1f} is more than {MAX_FID_RATIO:g}x the real-vs-real floor {floor:.1f}")
    copies = _number(metrics, "near_copies", "near_copies_ssim_0.95")
    if copies:
        reasons.append(f"{int(copies)} near-copies of training images")
    tstr, trtr = _number(metrics, "tstr_auc"), _number(metrics, "trtr_auc")
    if tstr is not None and trtr is not None and tstr < trtr - MAX_TSTR_GAP:
        reasons.append(f"TSTR AUC {tstr:.2f} is more than {MAX_TSTR_GAP} below TRTR {trtr:.2f}")
    return QualityCheck(not reasons, reasons, fid, floor)
