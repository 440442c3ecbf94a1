"""Engine-neutral differential privacy: budgets and presets, DP mechanisms for preprocessing statistics,
DP-SGD through Opacus, and the privacy ledger that records (and recomputes) every use of the real data.

Used by the tabular engine (CTGAN discriminator, TVAE) and reusable by the imaging engine (GAN
discriminator). Nothing here is specific to tables or images.
"""

from medsyn_core.privacy.budget import PRESETS, PrivacyBudget, PrivacyError
from medsyn_core.privacy.ledger import LedgerEntry, PrivacyLedger

__all__ = ["PRESETS", "LedgerEntry", "PrivacyBudget", "PrivacyError", "PrivacyLedger"]
