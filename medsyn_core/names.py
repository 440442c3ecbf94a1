"""One policy for the names users give to what MedSyn stores: models, run folders, outputs in the home.

A name is a **safe slug**: 1 to :data:`MAX_LENGTH` ASCII letters, digits, ``-``, ``_`` or ``.``, starting
with a letter or a digit. So it is never empty, ``.``, ``..``, a hidden file, an option (``-x``), a path
(``/``, ``\\``), and never a look-alike (``．．／``, a right-to-left override, a zero-width space): every
character outside the ASCII set is refused rather than normalised, because normalising is where look-alikes
slip through. A name is checked and refused with a readable message, never silently rewritten;
:func:`slugify` only makes *default* suggestions.

Where a name becomes a path inside the home folder, :func:`path_inside` joins it to its parent folder and
refuses the result unless it resolves to a direct child of that folder (a symlink planted at the name
that points elsewhere is refused too).

Clashes: a name that is already registered (compared without case, since ``Heart`` and ``heart`` are one
folder on some file systems), or whose folder already exists, is refused unless the caller asks to
*replace* it explicitly; :meth:`medsyn_core.storage.Store.register_model` then records the replacement in
the audit log. Names of the models that ship with MedSyn (and ``demo``) are reserved and cannot be replaced.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from medsyn_core import settings

MAX_LENGTH = 64
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Names the CLI gives a meaning of its own (``medsyn imaging sample demo``).
RESERVED = frozenset({"demo"})


class NameRefused(ValueError):
    """A user-given name is not a safe slug or would resolve outside its folder."""

    #: The message names no data value (see :mod:`medsyn_core.redaction`).
    value_free_message = True


class NameTaken(FileExistsError):
    """The name is already used (registry, folder or a bundled model) and no replace was asked for."""

    value_free_message = True

    def __init__(self, message: str, name: str):
        super().__init__(message)
        self.public_names = (name,)  # a checked slug: safe to keep in a stored error


def check_name(name: object, what: str = "model") -> str:
    """Return ``name`` if it is a safe slug, else raise :class:`NameRefused` saying what is wrong."""
    rule = (f"Use 1-{MAX_LENGTH} characters: ASCII letters, digits, '-', '_' or '.', starting with a "
            "letter or a digit (e.g. heart-ctgan-v2).")
    if not isinstance(name, str) or not name:
        raise NameRefused(f"The {what} name is empty. {rule}")
    if len(name) > MAX_LENGTH:
        raise NameRefused(f"The {what} name is {len(name)} characters long. {rule}")
    if not name.isascii():
        raise NameRefused(f"The {what} name contains a character outside plain ASCII (look-alike letters, "
                          f"invisible or direction-changing characters are refused). {rule}")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise NameRefused(f"The {what} name is a path, not a name. {rule}")
    if not _SAFE.fullmatch(name):
        raise NameRefused(f"The {what} name contains a space or a character that is not allowed, or "
                          f"does not start with a letter or digit. {rule}")
    return name


def slugify(text: str, fallback: str = "model") -> str:
    """A safe default name made from free text (e.g. an upload's file name); never raises."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text.encode("ascii", "ignore").decode()).strip("-._")
    slug = re.sub(r"-{2,}", "-", slug)[:MAX_LENGTH].rstrip("-._")
    return slug if slug and _SAFE.fullmatch(slug) else fallback


def path_inside(parent: str | Path, name: str, what: str = "model") -> Path:
    """``parent/name`` after :func:`check_name`; refused unless it resolves to a direct child of
    ``parent`` (also when something already at that name is a symlink to elsewhere)."""
    check_name(name, what)
    parent = Path(parent).resolve()
    candidate = parent / name
    if candidate.resolve().parent != parent:
        raise NameRefused(f"The {what} name {name!r} resolves outside its folder (a link is in the way); "
                          "choose another name.")
    return candidate


def model_dir(name: str) -> Path:
    """The folder of the trained model ``name`` in the home folder: ``$MEDSYN_HOME/models/<name>``."""
    return path_inside(settings.models_dir(), name)


def run_dir(name: str) -> Path:
    """The work folder (checkpoints, logs) of the training run ``name``: ``$MEDSYN_HOME/runs/<name>``."""
    return path_inside(settings.home_dir() / "runs", name, "run")


def bundled_model_names() -> set[str]:
    """Lower-cased names (folder and model-card name) of the models shipped in ``models/``."""
    out = set()
    if settings.BUNDLED_MODELS_DIR.is_dir():
        for card in settings.BUNDLED_MODELS_DIR.glob("*/model_card.json"):
            out.add(card.parent.name.lower())
            try:
                out.add(str(json.loads(card.read_text(encoding="utf-8")).get("name", "")).lower())
            except (OSError, ValueError):
                pass
    return out - {""}
