"""HTTP routes the MedSyn app server adds beside Streamlit's own (``serve.py`` mounts them with ``st.App``).

``POST /medsyn/session`` exchanges the one-time ticket of a fresh login (request body) for the signed
session cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS; see
:mod:`medsyn_core.web_sessions`); ``DELETE /medsyn/session`` ends the cookie's session and removes the
cookie (logout). Requests from another origin are refused. Nothing here touches the database, so the
handlers never block the server's event loop.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from medsyn_core import web_sessions

MAX_BODY = 256  # bytes: a ticket is 43 characters


def _same_origin(request: Request) -> bool:
    """True unless an Origin header names another site than the one the request was sent to."""
    origin = request.headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _set(request: Request) -> Response:
    if not _same_origin(request):
        return Response(status_code=403)
    body = await request.body()
    if len(body) > MAX_BODY:
        return Response(status_code=413)
    try:
        value = web_sessions.REGISTRY.redeem(body.decode("ascii", "replace").strip())
    except web_sessions.CookieRefused:
        return Response(status_code=403)
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.set_cookie(web_sessions.COOKIE_NAME, value, max_age=int(web_sessions.MAX_AGE_S), path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


async def _clear(request: Request) -> Response:
    if not _same_origin(request):
        return Response(status_code=403)
    value = request.cookies.get(web_sessions.COOKIE_NAME)
    if value:
        web_sessions.REGISTRY.end_cookie(value)
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.delete_cookie(web_sessions.COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response


def routes() -> list[Route]:
    return [Route(web_sessions.ROUTE, _set, methods=["POST"]),
            Route(web_sessions.ROUTE, _clear, methods=["DELETE"])]
