"""Every error of the API is an RFC 9457 problem (``application/problem+json``): ``type``, ``title``,
``status`` and a readable ``detail`` that says what is wrong and what to do. Never a traceback, never a
server path: library messages pass :func:`public_text`, and an unexpected exception is answered with a
generic 500 whose incident id points to the server log (where the traceback is written redacted, as job
errors are: :func:`medsyn_core.redaction.redacted_traceback`).
"""

from __future__ import annotations

import re
import secrets
import sys
from http import HTTPStatus

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from medsyn_core import settings
from medsyn_core.auth import AuthError, PermissionDenied, TokenRefused
from medsyn_core.limits import InputLimitError
from medsyn_core.names import NameRefused, NameTaken
from medsyn_core.storage import StoreError
from medsyn_core.uploads import UploadTooLarge

PROBLEM = "application/problem+json"
_ABS_PATH = re.compile(r"(?<![\w.:/])/(?!api/|docs\b)(?:[^\s/'\"]+/)+([^\s/'\"]*)")


class ApiError(Exception):
    """An error the API answers with ``status`` and ``detail`` (readable, no paths)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class BodyTooLarge(HTTPException):
    """The body went past its limit while it arrived (an HTTPException, so that FastAPI's body parsing
    passes it on instead of calling it a parse error)."""

    def __init__(self, limit: int):
        super().__init__(413, f"The request body is larger than the limit of {limit:,} bytes; nothing was "
                              "kept. Send less (an administrator can raise the limit, docs/api.md).")


def public_text(text: str) -> str:
    """``text`` without server paths: the home folder and the code folder, then any other absolute path,
    are cut to their last part."""
    for root, label in ((str(settings.home_dir(create=False)), "<medsyn-home>"),
                        (str(settings.PROJECT_ROOT), "<medsyn>")):
        text = text.replace(root, label)
    return _ABS_PATH.sub(lambda m: m.group(1) or "<folder>", text)


def scrub(obj):
    """A copy of a JSON-like value with :func:`public_text` applied to every string (cards and job views
    written by the app may name server folders)."""
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    return public_text(obj) if isinstance(obj, str) else obj


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": public_text(detail), **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def _field(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def validation_detail(exc: RequestValidationError) -> tuple[int, str]:
    """(status, readable text) of a FastAPI validation error: 400 for a body that is not JSON at all,
    422 listing each wrong field otherwise."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "The request body is not valid JSON; send a JSON object (Content-Type: application/json)."
    if any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        return 400, ("The request body must be a JSON object with the fields /docs lists (Content-Type: "
                     "application/json).")
    parts = []
    for e in errors[:10]:
        msg = e.get("msg", "invalid")
        if e.get("type") == "missing":
            msg = "is required"
        parts.append(f"{_field(e.get('loc', ()))}: {msg}")
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return 422, "Invalid request: " + "; ".join(parts) + more + "."


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into problems."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return problem(exc.status, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        status, detail = validation_detail(exc)
        return problem(status, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such endpoint; the API's endpoints are listed at /docs."
        elif exc.status_code == 405:
            detail = f"The method {request.method} is not allowed here; /docs shows what this endpoint takes."
        return problem(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(TokenRefused)
    async def _token(request: Request, exc: TokenRefused):
        return problem(401, _message(exc), {"WWW-Authenticate": 'Bearer realm="medsyn"'})

    @app.exception_handler(PermissionDenied)
    async def _denied(request: Request, exc: PermissionDenied):
        return problem(403, _message(exc))

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError):
        return problem(400, _message(exc))

    @app.exception_handler(NameTaken)
    async def _taken(request: Request, exc: NameTaken):
        return problem(409, _message(exc))

    @app.exception_handler(NameRefused)
    async def _refused(request: Request, exc: NameRefused):
        return problem(400, _message(exc))

    @app.exception_handler(InputLimitError)
    async def _limit(request: Request, exc: InputLimitError):
        return problem(413, _message(exc))

    @app.exception_handler(UploadTooLarge)
    async def _too_large(request: Request, exc: UploadTooLarge):
        return problem(413, _message(exc))

    @app.exception_handler(KeyError)
    async def _missing(request: Request, exc: KeyError):
        return problem(404, _message(exc))

    @app.exception_handler(FileNotFoundError)
    async def _no_file(request: Request, exc: FileNotFoundError):
        return problem(404, _message(exc))

    @app.exception_handler(FileExistsError)
    async def _exists(request: Request, exc: FileExistsError):
        return problem(409, _message(exc))

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError):
        # MedSyn's bad-input errors (schema, conditions, privacy budget, table reading ...) are
        # ValueErrors whose messages say what to do; they go to the person who sent the request
        return problem(422, _message(exc))

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError):
        return problem(503, "The database is not available; try again shortly (the server log has details).")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        from medsyn_core.redaction import redacted_traceback

        incident = secrets.token_hex(6)
        print(f"medsyn api: incident {incident}\n{redacted_traceback(exc)}", file=sys.stderr, flush=True)
        return problem(500, f"Internal error (incident {incident}); nothing was changed that the response "
                            "does not say. An administrator finds the details in the server log.",
                       incident=incident)
