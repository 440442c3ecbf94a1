"""The FastAPI application: :func:`create_app` builds it (routes, error handling, size limits, audit, CORS
off unless configured). ``uvicorn medsyn_api.app:app`` or ``medsyn api`` serves it."""

from __future__ import annotations

from fastapi import FastAPI

from medsyn_api import errors
from medsyn_api.config import ApiConfig
from medsyn_api.deps import AuditCalls, BodyLimit, RateLimiter
from medsyn_core import __version__

DESCRIPTION = """The REST API of MedSyn: the same engines, accounts, roles, background jobs and audit log
as the app.

Authenticate with an API token (`Authorization: Bearer msy_…`): an admin creates one on the Users page or with
`medsyn users token create USER`, or you log in with `POST /api/v1/auth/token`. Every call is checked against
your role and written to the audit log. Errors are `application/problem+json` with a readable `detail`.
See docs/api.md for an example session."""


def create_app(config: ApiConfig | None = None) -> FastAPI:
    """The API with its routers; ``config`` defaults to the environment (:class:`ApiConfig`)."""
    from medsyn_api import routes_core, routes_models, routes_tabular
    from medsyn_imaging.training import training_job  # noqa: F401  (registers the 'imaging-train' job kind)
    from medsyn_tabular import fit_job  # noqa: F401  (registers the 'tabular-fit' job kind)

    config = config or ApiConfig.from_env()
    app = FastAPI(title="MedSyn API", version=__version__, description=DESCRIPTION,
                  openapi_tags=[{"name": n} for n in ("auth", "datasets", "models", "sampling", "jobs",
                                                      "evaluation", "audit", "health")])
    app.state.config = config
    app.state.token_limiter = RateLimiter(config.login_attempts, config.login_window_s)
    errors.install(app)
    app.include_router(routes_core.health)
    app.include_router(routes_core.router)
    app.include_router(routes_tabular.router)
    app.include_router(routes_models.router)
    app.add_middleware(BodyLimit, config=config)
    app.add_middleware(AuditCalls)  # outside the size limit, so refused bodies are audited too
    if config.cors_origins:  # off by default: browsers on other origins cannot call the API
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization",
                                                                                  "Content-Type"])
    return app


def __getattr__(name: str):
    """``medsyn_api.app:app`` for ``uvicorn``: built on first use, from the environment."""
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
