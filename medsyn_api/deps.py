"""What every route shares: a store handle per request, the caller's account from its API token, the
client's address, the rate limit of the token endpoints, the request-size limit and the audit of every
call."""

from __future__ import annotations

import ipaddress
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medsyn_api.config import ApiConfig
from medsyn_api.errors import ApiError, BodyTooLarge, problem
from medsyn_core import auth
from medsyn_core.auth import User
from medsyn_core.storage import Store

bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer msy_…`")
#: Paths not written to the audit log: probes that a load balancer calls every few seconds, and the docs.
UNAUDITED = ("/health", "/ready", "/docs", "/redoc", "/openapi.json")


def get_store() -> Iterator[Store]:
    """One store handle (connection) per request, closed after it."""
    store = Store()
    try:
        yield store
    finally:
        store.close()


def client_address(request: Request) -> str:
    """The client's address; behind a reverse proxy listed in ``MEDSYN_API_TRUSTED_PROXIES`` the last
    address its ``X-Forwarded-For`` adds (a client cannot spoof that one)."""
    config: ApiConfig = request.app.state.config
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and peer in config.trusted_proxies:
        candidate = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            return peer
    return peer


def current_user(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
                 store: Store = Depends(get_store)) -> User:
    """The account of the request's API token (re-loaded: a disabled account or a revoked or expired token
    is refused with 401). Routes then check the action with :func:`medsyn_core.auth.authorise`."""
    secret = credentials.credentials if credentials is not None else None
    if secret is not None:
        request.state.actor = "(unknown token)"
    user = auth.authenticate_token(store, secret)
    request.state.actor = user.username
    return user


class RateLimiter:
    """At most ``attempts`` calls per ``window_s`` seconds per key (a client address), in this process.
    The account throttle of :func:`medsyn_core.auth.authenticate` (in the store, shared by every process)
    applies on top of it."""

    def __init__(self, attempts: int, window_s: float):
        self.attempts, self.window_s = attempts, window_s
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and now - hits[0] > self.window_s:
                hits.popleft()
            if len(hits) >= self.attempts:
                retry = int(self.window_s - (now - hits[0])) + 1
                raise ApiError(429, f"Too many token requests from this address; try again in {retry} s.",
                               {"Retry-After": str(retry)})
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle addresses
                for k in [k for k, v in self._hits.items() if not v or now - v[-1] > self.window_s]:
                    del self._hits[k]


def rate_limited(request: Request) -> None:
    """Dependency of the login/token endpoints."""
    request.app.state.token_limiter.check(client_address(request))


class BodyLimit:
    """Pure ASGI middleware: refuse a request body over the limit (413) before the route reads it, by its
    ``Content-Length`` or, for a chunked body, as the bytes arrive. Uploads (``POST /api/v1/datasets``)
    have their own, larger limit and are streamed to disk by their route."""

    def __init__(self, app: ASGIApp, config: ApiConfig):
        self.app, self.config = app, config

    def _limit(self, scope: Scope) -> int:
        upload = scope["method"] == "POST" and scope["path"].rstrip("/") == "/api/v1/datasets"
        return self.config.max_upload_bytes if upload else self.config.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0 or declared > limit:
                response = problem(413 if declared > limit else 400,
                                   BodyTooLarge(limit).detail if declared > limit
                                   else "The Content-Length header is not a number.")
                await response(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


class AuditCalls:
    """Pure ASGI middleware: every call to the API is written to the audit log: who (the token's account,
    ``(anonymous)`` or ``(unknown token)``), the route template (never the raw path, which may hold
    anything), the method, the status and the client address. It also answers an exception that nothing
    else handled with a generic 500 problem, so no traceback reaches the client or the access log (the
    server log gets it redacted, as job errors are)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["actor"] = "(anonymous)"
        status = {"code": 500, "started": False}

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:  # noqa: BLE001 - the last line: a generic answer, a redacted log
            from medsyn_core.redaction import redacted_traceback

            incident = secrets.token_hex(6)
            print(f"medsyn api: incident {incident}\n{redacted_traceback(exc)}", file=sys.stderr, flush=True)
            if not status["started"]:
                await problem(500, f"Internal error (incident {incident}); an administrator finds the "
                                   "details in the server log.", incident=incident)(scope, receive, watched)
        if not scope["path"].startswith(UNAUDITED):
            route = scope.get("route")
            request = Request(scope)
            details = {"method": scope["method"], "route": getattr(route, "path", "(no such route)"),
                       "status": status["code"], "source": client_address(request)}

            def write() -> None:
                with Store() as store:
                    store.append_event(state.get("actor") or "(anonymous)", "api_call", details)

            await run_in_threadpool(write)
