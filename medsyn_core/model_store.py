"""The model store as the app sees it: registered models plus those bundled in ``models/``.

Each model is a folder with ``model_card.json`` (one schema for every engine, read through
:mod:`medsyn_core.model_card`, which also reads the folders of earlier versions), optionally
``privacy_ledger.json`` (the ε spent, written by :mod:`medsyn_core.privacy`) and its weights.
Deleting is admin-only, audited, and atomic: the folder is first renamed to a hidden sibling (one
``rename``), then the row is removed, then the renamed folder is erased.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsyn_core import settings
from medsyn_core.auth import User, authorise
from medsyn_core.model_card import CardView, read_card, with_latest_evaluation
from medsyn_core.names import RESERVED, NameRefused, NameTaken, bundled_model_names, check_name
from medsyn_core.storage import Store


@dataclass(frozen=True)
class ModelEntry:
    """One model folder with what its files say about it."""

    name: str
    engine: str                      # 'tabular' or 'imaging'
    path: Path
    source: str                      # 'store' (trained here) or 'bundled' (ships with MedSyn)
    dp_epsilon: float | None
    card: dict[str, Any] = field(default_factory=dict)
    ledger: dict[str, Any] | None = None
    kind: str = "unknown"            # 'ctgan', 'tvae', 'stylegan2', 'dcgan', 'resnet9', ...

    @property
    def deletable(self) -> bool:
        return self.source == "store"

    @property
    def view(self) -> CardView:
        """The card in the common schema (parameters, metrics, privacy with ε, δ and unit)."""
        return read_card(self.card, self.path, self.ledger)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def list_models(store: Store, user: User) -> list[ModelEntry]:
    """Registered models and bundled ones, for a user allowed to view models (see :func:`all_models`)."""
    authorise(store, user, "view_models")
    return all_models(store)


def all_models(store: Store) -> list[ModelEntry]:
    """Registered models (cards from the folder if present, else from the row), then the bundled ones
    (``models/``) not registered: the one listing of model folders for every engine and page."""
    out: list[ModelEntry] = []
    for rec in store.list_models():
        path = Path(rec.path)
        card = with_latest_evaluation(_read_json(path / "model_card.json") or rec.card, rec.name)
        out.append(ModelEntry(rec.name, rec.engine, path, "store", rec.dp_epsilon, card,
                              _read_json(path / "privacy_ledger.json"), rec.kind or read_card(card).kind))
    known = {m.path.resolve() for m in out}
    if settings.BUNDLED_MODELS_DIR.is_dir():
        for card_path in sorted(settings.BUNDLED_MODELS_DIR.glob("*/model_card.json")):
            folder = card_path.parent
            if folder.resolve() in known:
                continue
            card = _read_json(card_path) or {}
            card = with_latest_evaluation(card, card.get("name") or folder.name)
            ledger = _read_json(folder / "privacy_ledger.json")
            view = read_card(card, folder, ledger)
            out.append(ModelEntry(view.name, view.engine, folder, "bundled", view.privacy.epsilon, card,
                                  ledger, view.kind))
    return out


def zip_model(store: Store, user: User, entry: ModelEntry) -> bytes:
    """The model folder as zip bytes (paths relative to the folder); audited as an export."""
    user = authorise(store, user, "export")
    if not entry.path.is_dir():
        raise FileNotFoundError(f"The folder of model {entry.name!r} ({entry.path}) is missing.")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(entry.path.rglob("*")):
            if file.is_file():
                zf.write(file, Path(entry.path.name) / file.relative_to(entry.path))
    store.append_event(user.username, "model_downloaded", {"model": entry.name})
    return buf.getvalue()


def delete_model(store: Store, user: User, name: str) -> None:
    """Delete a trained model: its folder (atomically) and its row; audited. Bundled models stay."""
    user = authorise(store, user, "delete_model")
    rec = next((m for m in store.list_models() if m.name == name), None)
    if rec is None:
        raise KeyError(f"No trained model called {name!r}; bundled models cannot be deleted.")
    folder = Path(rec.path)
    trash = folder.with_name(f".{folder.name}.deleting")
    if folder.exists():
        os.replace(folder, trash)  # atomic: after this the model is gone for every reader
    store.delete_model(name)
    shutil.rmtree(trash, ignore_errors=True)
    store.append_event(user.username, "model_deleted", {"model": name, "engine": rec.engine,
                                                        "kind": rec.kind})


def ensure_model_name_free(name: str, replace: bool = False, folder: str | Path | None = None,
                           store=None) -> str:
    """Check that a *new* model may be called ``name`` (and written to ``folder``, if given).

    Raises :class:`NameRefused` (unsafe or reserved) or :class:`NameTaken` (registered, or the folder
    exists) unless ``replace``; a bundled or reserved name is never replaceable. Returns ``name``.
    """
    check_name(name)
    if name.lower() in RESERVED | bundled_model_names():
        raise NameRefused(f"{name!r} is the name of a model that ships with MedSyn; choose another name.")
    if replace:
        return name
    own = store is None
    store = store or Store()
    try:
        taken = store.model_named(name)
    finally:
        if own:
            store.close()
    if taken is not None:
        raise NameTaken(f"A model called {taken!r} already exists. Choose another name, or replace it "
                        "explicitly (the 'Replace the existing model' box, or --overwrite/--replace).",
                        taken)
    if folder is not None and Path(folder).exists():
        raise NameTaken(f"The folder for model {name!r} already exists. Choose another name, or replace it "
                        "explicitly.", name)
    return name
