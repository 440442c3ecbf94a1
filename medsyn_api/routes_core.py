"""Health, tokens, the caller's account, jobs and the audit log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from medsyn_api.deps import client_address, current_user, get_store, rate_limited
from medsyn_api.errors import ApiError, problem, scrub
from medsyn_api.schemas import TokenRequest
from medsyn_core import audit, auth, jobs
from medsyn_core.auth import PERMISSIONS, User
from medsyn_core.storage import SCHEMA_VERSION, Store

health = APIRouter(tags=["health"])
router = APIRouter(prefix="/api/v1")


@health.get("/health", summary="Liveness: the process answers")
def alive() -> dict:
    return {"status": "ok"}


@health.get("/ready", summary="Readiness: the database answers and has this MedSyn's schema")
def ready():
    try:
        with Store() as store:
            version = store.schema_version
            where = store.backend
    except Exception:  # noqa: BLE001 - any failure means not ready; no detail leaves the server
        return problem(503, "Not ready: the database cannot be opened.")
    if version != SCHEMA_VERSION:
        return problem(503, f"Not ready: database schema v{version}, this MedSyn needs v{SCHEMA_VERSION}.")
    return {"status": "ready", "database": where, "schema_version": version}


# -- tokens and the caller ------------------------------------------------------------------------------
@router.post("/auth/token", tags=["auth"], status_code=201, dependencies=[Depends(rate_limited)],
             summary="Log in with a username and password; get an API token (shown once)")
def login(body: TokenRequest, request: Request, store: Store = Depends(get_store)) -> dict:
    config = request.app.state.config
    days = body.days if body.days is not None else config.token_days
    if days > config.max_token_days:
        raise ApiError(422, f"A token made by logging in lasts at most {config.max_token_days:g} days; an "
                            "admin creates longer-lived ones (Users page, `medsyn users token create`).")
    try:
        user = auth.authenticate(store, body.username, body.password, source=client_address(request))
    except auth.AuthError as exc:
        status = 429 if str(exc).startswith("Too many") else 401
        raise ApiError(status, str(exc), {"WWW-Authenticate": 'Bearer realm="medsyn"'}) from None
    request.state.actor = user.username
    secret, info = auth.create_token(store, user, user.username, label=body.label or "api login", days=days)
    return {"token": secret, "token_type": "bearer", **info}


@router.get("/auth/tokens", tags=["auth"], summary="Your API tokens (admins: ?username=)")
def tokens(username: str | None = Query(None, max_length=64), user: User = Depends(current_user),
           store: Store = Depends(get_store)) -> list[dict]:
    return auth.list_tokens(store, user, username)


@router.delete("/auth/tokens/{token_id}", tags=["auth"], status_code=204,
               dependencies=[Depends(rate_limited)], summary="Revoke a token (yours, or any as an admin)")
def revoke(token_id: int, user: User = Depends(current_user), store: Store = Depends(get_store)) -> None:
    auth.revoke_token(store, user, token_id)


@router.get("/me", tags=["auth"], summary="The token's account and what its role may do")
def me(user: User = Depends(current_user), store: Store = Depends(get_store)) -> dict:
    user = auth.authorise(store, user, "view_models")  # every role; the account must be active
    return {"username": user.username, "role": user.role,
            "may": sorted(a for a, roles in PERMISSIONS.items() if user.role in roles)}


# -- jobs ---------------------------------------------------------------------------------------------------
#: Job fields that hold server paths: never sent.
_PATH_KEYS = {"data_path", "upload", "model_path", "checkpoint", "resume_from", "grid"}


def public_job(job: dict) -> dict:
    """A job as the API shows it: no server paths (files are named by what they are, not where)."""
    out = {k: v for k, v in job.items() if k not in _PATH_KEYS and k not in ("target", "worker_pid")}
    if "params" in job:
        out["params"] = {k: v for k, v in (job["params"] or {}).items() if k not in _PATH_KEYS}
    if job.get("result"):
        out["result"] = {k: v for k, v in job["result"].items() if k not in _PATH_KEYS}
    if "payload" in job:
        out["payload"] = {k: v for k, v in (job["payload"] or {}).items() if k not in _PATH_KEYS}
    if "checkpoint" in job:
        out["resumable"] = bool(job["checkpoint"]) and job["status"] in ("failed", "cancelled")
    return scrub(out)


@router.get("/jobs", tags=["jobs"], summary="Jobs: yours in full, others' as queue entries (admins: all)")
def list_jobs(limit: int = Query(50, ge=1, le=500), user: User = Depends(current_user),
              store: Store = Depends(get_store)) -> list[dict]:
    return [public_job(j) for j in jobs.visible_jobs(store, user, limit)]


@router.get("/jobs/{job_id}", tags=["jobs"], summary="One job: status, progress, losses, result or error")
def get_job(job_id: int, user: User = Depends(current_user), store: Store = Depends(get_store)) -> dict:
    return public_job(jobs.job_for(store, user, job_id))


@router.post("/jobs/{job_id}/cancel", tags=["jobs"], summary="Cancel a queued job, or stop a running one")
def cancel(job_id: int, user: User = Depends(current_user), store: Store = Depends(get_store)) -> dict:
    jobs.request_cancel(store, user, job_id)
    return public_job(jobs.job_for(store, user, job_id))


@router.post("/jobs/{job_id}/resume", tags=["jobs"], status_code=202,
             summary="Queue a failed or cancelled job again from its last checkpoint")
def resume(job_id: int, user: User = Depends(current_user), store: Store = Depends(get_store)) -> dict:
    new_id = jobs.resume(store, user, job_id)
    return public_job(jobs.job_for(store, user, new_id))


@router.get("/jobs/{job_id}/events", tags=["jobs"], response_class=StreamingResponse,
            summary="Server-sent events: the job's progress until it ends")
def job_events(job_id: int, user: User = Depends(current_user), store: Store = Depends(get_store)):
    jobs.job_for(store, user, job_id)  # 403/404 now, before the stream starts

    def stream() -> Iterator[str]:
        deadline = time.time() + 3600
        last = None
        with Store() as own:
            while time.time() < deadline:
                job = public_job(jobs.job_for(own, user, job_id))  # re-checked: a disabled account stops
                state = (job["status"], job["progress"], job["message"])
                if state != last:
                    last = state
                    yield f"event: progress\ndata: {json.dumps(job, default=str)}\n\n"
                if job["status"] in jobs.TERMINAL:
                    return
                yield ": keep-alive\n\n"
                time.sleep(1.0)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# -- audit (admins) ----------------------------------------------------------------------------------------
@router.get("/audit", tags=["audit"], summary="The audit log (admins): JSON pages or the whole log as CSV")
def audit_log(after_id: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=10_000),
              format: str = Query("json", pattern="^(json|csv)$"), user: User = Depends(current_user),
              store: Store = Depends(get_store)):
    if format == "csv":
        return PlainTextResponse(audit.export_csv(store, user), media_type="text/csv",
                                 headers={"Content-Disposition": 'attachment; filename="medsyn-audit.csv"'})
    auth.authorise(store, user, "view_audit")
    events = store.audit_events_since(after_id, limit)
    store.append_event(user.username, "audit_viewed", {"after_id": after_id, "n_events": len(events)})
    return {"events": events, "next_after_id": events[-1]["id"] if events else after_id}


@router.get("/audit/verify", tags=["audit"], summary="Verify the hash chain of the audit log (admins)")
def audit_verify(expect_head: str | None = Query(None, pattern="^[0-9a-f]{64}$"),
                 user: User = Depends(current_user), store: Store = Depends(get_store)) -> dict:
    check = audit.verify(store, user, expect_head=expect_head)
    return {"ok": check.ok, "n_events": check.n_events, "head_hash": check.head_hash,
            "first_bad_id": check.first_bad_id, "reason": check.reason, "message": check.describe()}
