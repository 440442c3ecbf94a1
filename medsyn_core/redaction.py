"""No cell values in what MedSyn stores about a failure: job errors, run records, worker logs, audit events.

Errors are fixed at the source (MedSyn's own messages name columns and counts, never values), and this
module is the second line where failures and audit details are *recorded*:

* :func:`public_error` is the only text stored for a failed job or run. For MedSyn's own errors (classes
  with ``value_free_message = True``) it is the message with every quoted literal replaced by ``'…'``,
  except the names the error declares public (``exc.public_names``: the table's column names, a checked
  model name). Any other exception (pandas, NumPy, PyTorch…, whose messages often quote the offending
  value, quoted or not) is stored as its type and a generic sentence only.
* :func:`redacted_traceback` is what the job worker writes to ``worker.log``: the stack (files, lines,
  code) with each message of the chain replaced by :func:`public_error`.
* :func:`redact_details` is applied by :meth:`medsyn_core.storage.Store.append_event`: quoted literals in
  every string are stripped, and free-text fields (``error``, ``message``, ``traceback``…) are cut to
  their error type unless they are already a :func:`public_error` text.

The full exception, values included, is only ever shown to the person who ran the work in the
foreground (a page's ``st.error`` right after their click, or the CLI's stderr), never stored.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable
from typing import Any

REDACTED = "'…'"
#: Quoted literals: '…', "…", `…`, “…”, ‘…’, «…»; a single quote only opens after a non-word character,
#: so apostrophes in prose (model's, isn't) are left alone.
_QUOTED = re.compile(
    r"(?<![\w'])'(?:[^'\\\n]|\\.)*'(?![\w])"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|`[^`\n]*`|“[^”\n]*”|‘[^’\n]*’|«[^»\n]*»"
)
#: Library errors whose messages describe the machine, never the data (kept verbatim).
_MACHINE_ERRORS = frozenset({"OutOfMemoryError", "MemoryError", "DeviceError"})
GENERIC = ("the message is withheld because it may quote values from the data; run the same work from "
           "the command line to see it in full")
#: Audit detail keys that hold free text about a failure.
FREE_TEXT_KEYS = frozenset({"error", "message", "exception", "traceback"})
_PUBLIC_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*: ")


class ValueFreeError(ValueError):
    """A bad-input error whose message names no data value: jobs raise it to have their message stored
    (quoted literals still stripped) instead of the generic sentence."""

    value_free_message = True


def strip_quoted(text: str, keep: Iterable[str] = ()) -> str:
    """``text`` with every quoted literal replaced by ``'…'``, except those whose content is in ``keep``."""
    allowed = {str(k) for k in keep}

    def sub(match: re.Match) -> str:
        return match.group(0) if match.group(0)[1:-1] in allowed else REDACTED

    return _QUOTED.sub(sub, text)


def allow_names(exc: BaseException, names: Iterable[Any]) -> BaseException:
    """Declare ``names`` (e.g. a table's column names) safe to keep quoted in ``exc``'s stored error."""
    try:
        exc.public_names = (*getattr(exc, "public_names", ()), *(str(n) for n in names))
    except AttributeError:  # an exception type without a __dict__: nothing is kept
        pass
    return exc


def public_error(exc: BaseException) -> str:
    """What may be stored about ``exc``: ``"Type: message"`` with values stripped (see module doc)."""
    name = type(exc).__name__
    if getattr(exc, "value_free_message", False):
        return f"{name}: {strip_quoted(str(exc), getattr(exc, 'public_names', ()))}"
    if name in _MACHINE_ERRORS:
        return f"{name}: {strip_quoted(str(exc))}"
    return f"{name}: {GENERIC}"


def redacted_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and its causes (oldest first), each message replaced by
    :func:`public_error`; frames show file, line and code only (never local values)."""
    chain, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts = []
    for i, item in enumerate(reversed(chain)):
        if i:
            parts.append("\nThe above exception led to the following one:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(item.__traceback__))
        parts.append(public_error(item) + "\n")
    return "".join(parts)


def redact_details(obj: Any, key: str | None = None) -> Any:
    """A copy of audit ``details`` safe to store (see module doc); dict keys are kept as they are."""
    if isinstance(obj, dict):
        return {k: redact_details(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_details(v, key) for v in obj]
    if isinstance(obj, str):
        if key in FREE_TEXT_KEYS and not _PUBLIC_PREFIX.match(obj):
            return "(free text withheld)"
        return strip_quoted(obj)
    return obj
