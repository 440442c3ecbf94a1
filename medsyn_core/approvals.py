"""Admin approval of models for clinicians.

A generator that has not been evaluated, or whose latest evaluation is below the quality bar (the engine
decides, e.g. :func:`medsyn_imaging.evaluation.quality.quality_check`), is offered to researchers and
admins only, with its verdict; clinicians see it only once an admin approves it. Approvals are kept in the
store (``model_approvals``), and granting or withdrawing one is audited with the admin as actor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from medsyn_core.auth import User, authorise
from medsyn_core.names import check_name
from medsyn_core.storage import Store

MAX_NOTE = 500


@dataclass(frozen=True)
class Approval:
    model_name: str
    approved_by: str
    approved_at: float
    note: str = ""


def approve(store: Store, user: User, model_name: str, note: str = "") -> Approval:
    """An admin approves ``model_name`` for clinicians (audited; replaces an earlier approval)."""
    user = authorise(store, user, "approve_models")
    name = check_name(model_name)
    note = note.strip()[:MAX_NOTE]
    now = time.time()
    store.set_model_approval(name, user.username, now, note)
    store.append_event(user.username, "model_approved", {"model": name, "note": note})
    return Approval(name, user.username, now, note)


def revoke(store: Store, user: User, model_name: str) -> bool:
    """Withdraw the approval of ``model_name`` (audited); False when there was none."""
    user = authorise(store, user, "approve_models")
    removed = store.delete_model_approval(model_name)
    if removed:
        store.append_event(user.username, "model_approval_revoked", {"model": model_name})
    return removed


def approval(store: Store, model_name: str) -> Approval | None:
    """The approval of ``model_name``, or None."""
    row = store.model_approval(model_name)
    return Approval(row["model_name"], row["approved_by"], row["approved_at"], row["note"]) if row else None


def approved_names(store: Store) -> set[str]:
    """Lower-cased names of every approved model."""
    return store.approved_model_names()
