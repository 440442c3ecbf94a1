"""Datasets (upload, list, delete), schema review, tabular training, sampling and evaluation: the same
library entry points as the Tabular and Evaluation pages and ``medsyn tabular``."""

from __future__ import annotations

import codecs
import io
import threading
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from medsyn_api.deps import current_user, get_store
from medsyn_api.errors import ApiError
from medsyn_api.schemas import Sample, TabularEvaluation, TabularFit
from medsyn_core import model_store, uploads
from medsyn_core.audit import record_upload_digest
from medsyn_core.auth import User, allowed, authorise
from medsyn_core.catalog import bundled
from medsyn_core.storage import Store

router = APIRouter(prefix="/api/v1")
#: Content types a table upload may have; a CSV's text must be UTF-8 unless its ``charset`` says otherwise.
TEXT_TYPES = {"text/csv", "text/tab-separated-values", "text/plain"}
PARQUET_TYPES = {"application/vnd.apache.parquet", "application/x-parquet"}
BINARY_TYPES = {"application/octet-stream"}


# -- datasets ----------------------------------------------------------------------------------------------
def _public_dataset(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "kind": row["kind"], "source": row["source"],
            "rows": row["n_rows"], "owner": row.get("owner"), "sha256_prefix": (row.get("sha256") or "")[:16],
            "created_at": row["created_at"]}


def resolve_table(store: Store, user: User, ref: str) -> tuple[Path, str, dict | None]:
    """A table the caller may train on or evaluate with: ``(path, source label, dataset row)``. ``ref`` is a
    bundled table's name or an uploaded dataset's id (the uploader's, or any for admins)."""
    from medsyn_tabular.data.datasets import LOADERS

    if ref in LOADERS:
        return bundled(ref).path, ref, None
    row = store.dataset(int(ref)) if ref.isdigit() else None
    if row is None or row["source"] != "upload" or row["kind"] != "tabular" or not (
            row.get("owner") == user.username or allowed(user, "manage_uploads")):
        raise KeyError(f"No dataset {ref!r} of yours: use a bundled table ({', '.join(LOADERS)}) or the id "
                       "an upload returned (GET /api/v1/datasets lists them).")
    if not Path(row["path"]).is_file():
        raise KeyError(f"Dataset {ref} was deleted (its training job ended, or it was deleted); upload it "
                       "again.")
    return Path(row["path"]), row["name"], row


@router.post("/datasets", tags=["datasets"], status_code=201,
             summary="Upload a real table (CSV/TSV/Parquet body, streamed to private storage)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string", "format": "binary"}},
                 "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_table(request: Request, filename: str = Query("table.csv", max_length=200,
                                                               pattern=r"^[^/\\]*$"),
                       user: User = Depends(current_user), store: Store = Depends(get_store)) -> dict:
    await run_in_threadpool(authorise, store, user, "upload_real_data")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    params = dict(p.strip().split("=", 1) for p in request.headers.get("content-type", "").split(";")[1:]
                  if "=" in p)
    suffix = Path(filename).suffix.lower()
    parquet = media in PARQUET_TYPES or suffix in (".parquet", ".pq")
    if media not in TEXT_TYPES | PARQUET_TYPES | BINARY_TYPES:
        raise ApiError(415, f"Unsupported Content-Type {media or '(none)'!r}: send the table as text/csv "
                            "(UTF-8), text/tab-separated-values, or application/vnd.apache.parquet.")
    if suffix not in uploads.SUFFIXES:
        raise ApiError(422, "The filename must end in .csv, .tsv, .txt, .parquet or .pq (only the ending is "
                            "used; the stored name never repeats it).")
    check = None
    if not parquet:
        charset = params.get("charset", "utf-8").strip('"').lower()
        try:
            decoder = codecs.getincrementaldecoder(charset)()
        except LookupError:
            raise ApiError(415, f"Unknown charset {charset!r}; send UTF-8 text or name a known encoding."
                           ) from None

        def check(chunk: bytes) -> None:
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                raise ApiError(415, f"The table is not valid {charset.upper()} text. Save it as UTF-8, or "
                                    "declare its encoding (Content-Type: text/csv; charset=windows-1252)."
                               ) from None

    writer = uploads.StreamedUpload(filename if not parquet else Path(filename).stem + ".parquet",
                                    request.app.state.config.max_upload_bytes, check)
    try:
        async for chunk in request.stream():
            if chunk:
                writer.write(chunk)
        if writer.size == 0:
            raise ApiError(422, "The upload is empty; send the table as the request body.")
        path, digest, size = writer.finish()
    except BaseException:
        writer.abort()
        raise

    def register() -> dict:
        from medsyn_tabular.data.io import read_table

        try:
            df = read_table(path)
        except BaseException:
            path.unlink(missing_ok=True)  # not a table: nothing is kept
            raise
        record_upload_digest(store, user, "api", digest, 1, size, rows=len(df), columns=df.shape[1])
        name = f"upload-{digest[:16]}"
        dataset_id = store.register_dataset(name, "tabular", path, "upload", n_rows=len(df), sha256=digest,
                                            owner=user.username)
        return {"id": dataset_id, "name": name, "rows": len(df), "columns": int(df.shape[1]), "bytes": size,
                "sha256_prefix": digest[:16], "notice": uploads.NOTICE}

    return await run_in_threadpool(register)


@router.get("/datasets", tags=["datasets"], summary="Bundled tables and image sets, and your uploads")
def list_datasets(user: User = Depends(current_user), store: Store = Depends(get_store)) -> dict:
    from medsyn_core.catalog import BUNDLED

    user = authorise(store, user, "view_models")
    mine = [_public_dataset(r) for r in store.list_datasets("tabular")
            if r["source"] == "upload" and Path(r["path"]).is_file()
            and (r.get("owner") == user.username or allowed(user, "manage_uploads"))]
    return {"bundled": [{"name": b.name, "kind": b.kind, "title": b.title, "shape": b.shape,
                         "license": b.license} for b in BUNDLED], "uploads": mine}


@router.delete("/datasets/{dataset_id}", tags=["datasets"], status_code=204,
               summary="Delete an uploaded table (its owner or an admin; not while a job reads it)")
def delete_dataset(dataset_id: int, user: User = Depends(current_user), store: Store = Depends(get_store)):
    row = store.dataset(dataset_id)
    if row is None or row["source"] != "upload":
        raise KeyError(f"No uploaded dataset {dataset_id}.")
    if Path(row["path"]).exists():
        uploads.delete_unused(store, user, row["path"], row.get("owner"))
    elif row.get("owner") != user.username:
        authorise(store, user, "manage_uploads")
    store.delete_dataset(dataset_id)
    return Response(status_code=204)


@router.post("/datasets/{ref}/schema", tags=["datasets"],
             summary="Infer the schema and PHI flags of a table; a declaration to review and send back")
def schema(ref: str, user: User = Depends(current_user), store: Store = Depends(get_store)) -> dict:
    from medsyn_tabular.data.io import read_table
    from medsyn_tabular.data.phi import detect_phi
    from medsyn_tabular.data.privacy_unit import KEY_LIKE_PHI
    from medsyn_tabular.data.schema import declaration_yaml, infer_schema

    user = authorise(store, user, "train")
    path, label, _ = resolve_table(store, user, ref)
    df = read_table(path)
    inferred = infer_schema(df)
    phi = {f.column: f for f in detect_phi(df, inferred)}
    rank = {c: i for i, c in enumerate(KEY_LIKE_PHI)}
    flagged = sorted((f for f in phi.values() if f.category in rank), key=lambda f: rank[f.category])
    key_like = list(dict.fromkeys([f.column for f in flagged]
                                  + [c.name for c in inferred.columns if c.kind == "identifier"]))
    store.append_event(user.username, "schema_reviewed", {"dataset": label, "columns": df.shape[1]})
    return {"dataset": label, "rows": len(df),
            "columns": [{"name": c.name, "kind": c.kind, "missing": c.n_missing, "distinct": c.n_unique,
                         "why": c.reason, "phi": phi[c.name].category if c.name in phi else None,
                         "phi_action": phi[c.name].action if c.name in phi else None}
                        for c in inferred.columns],
            "declaration_yaml": declaration_yaml(inferred, phi.values(), key_like)}


# -- training -------------------------------------------------------------------------------------------
@router.post("/models/tabular", tags=["models"], status_code=202,
             summary="Train CTGAN/TVAE as a background job (every option of `medsyn tabular fit`)")
def train_tabular(body: TabularFit, user: User = Depends(current_user), store: Store = Depends(get_store)):
    from medsyn_tabular.data.datasets import METADATA
    from medsyn_tabular.data.io import read_table
    from medsyn_tabular.fit_job import submit_fit

    user = authorise(store, user, "train")
    path, label, row = resolve_table(store, user, body.dataset)
    n_rows = row["n_rows"] if row is not None and row["n_rows"] else len(read_table(path))
    private = body.epsilon is not None or body.preset not in (None, "off")
    metadata = body.metadata
    if private and metadata is None and body.use_bundled_metadata and body.dataset in METADATA:
        metadata = METADATA[body.dataset]()
    privacy = {"epsilon": body.epsilon, "preset": body.preset, "delta": body.delta,
               "max_grad_norm": body.clip, "metadata": metadata} if private else {}
    if not private and body.delta is not None:
        raise ApiError(422, "delta applies to differentially private training; add epsilon or a preset.")
    job_id = submit_fit(store, user, data_path=path, source=label, n_rows=n_rows, name=body.name,
                        model=body.model, epochs=body.epochs, batch_size=body.batch_size, seed=body.seed,
                        schema=body.schema_, phi_actions=body.phi, privacy=privacy, replace=body.replace,
                        upload=path if row is not None else None, keep_upload=body.keep_upload)
    return {"job_id": job_id, "status": "queued", "poll": f"/api/v1/jobs/{job_id}",
            "events": f"/api/v1/jobs/{job_id}/events"}


# -- sampling ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _loaded(path: str, mtime: float):
    """A loaded synthesizer (cached per folder and card time) and the lock that serialises its sampling."""
    from medsyn_tabular.synthesizer import TabularSynthesizer

    return TabularSynthesizer.load(path), threading.Lock()


def tabular_model(store: Store, user: User, name: str):
    entry = next((m for m in model_store.list_models(store, user) if m.name == name), None)
    if entry is None or entry.engine != "tabular":
        raise KeyError(f"No tabular model called {name!r} (GET /api/v1/models lists them).")
    card = entry.path / "model_card.json"
    if not card.exists():
        raise KeyError(f"The files of model {name!r} are missing; ask an admin.")
    return entry, _loaded(str(entry.path), card.stat().st_mtime)


def _rows_response(rows, fmt: str, raw: bool, name: str) -> Response:
    from medsyn_core.csv_export import to_csv_bytes

    if fmt == "csv":
        return Response(to_csv_bytes(rows, raw=raw), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="synthetic-{name}.csv"'})
    if fmt == "json":
        return Response(rows.to_json(orient="split", index=False, date_format="iso"),
                        media_type="application/json")
    buf = io.BytesIO()
    rows.to_parquet(buf, index=False)
    return Response(buf.getvalue(), media_type="application/vnd.apache.parquet",
                    headers={"Content-Disposition": f'attachment; filename="synthetic-{name}.parquet"'})


@router.post("/models/{name}/sample", tags=["sampling"],
             summary="Synthetic rows of a tabular model (CSV, JSON or Parquet), optionally under conditions")
def sample(name: str, body: Sample, user: User = Depends(current_user), store: Store = Depends(get_store)):
    user = authorise(store, user, "sample")
    authorise(store, user, "export")
    entry, (synth, lock) = tabular_model(store, user, name)
    with lock:
        rows = synth.sample(body.n, conditions=body.conditions or None, seed=body.seed)
    store.append_event(user.username, "sample", {"model": name, "rows": len(rows),
                                                 "conditions": body.conditions, "via": "api"})
    store.append_event(user.username, "export", {"model": name, "rows": len(rows), "format": body.format,
                                                 "raw": body.raw, "via": "api"})
    return _rows_response(rows, body.format, body.raw, name)


# -- evaluation ----------------------------------------------------------------------------------------------
@router.post("/evaluations/tabular", tags=["evaluation"],
             summary="Fidelity, utility, privacy and fairness of a model's rows against the real table")
def evaluate(body: TabularEvaluation, user: User = Depends(current_user), store: Store = Depends(get_store)):
    from medsyn_tabular.data.io import read_table
    from medsyn_tabular.evaluation import evaluate_tabular

    user = authorise(store, user, "evaluate")
    path, label, _ = resolve_table(store, user, body.dataset)
    real = read_table(path)
    holdout = read_table(resolve_table(store, user, body.holdout)[0]) if body.holdout else None
    entry, (synth, lock) = tabular_model(store, user, body.model)
    with lock:
        rows = synth.sample(body.n or len(real), seed=body.seed)
    shared = [c for c in rows.columns if c in real.columns]
    if body.target not in shared:
        raise ApiError(422, f"The target column {body.target!r} is not in both the real and the synthetic "
                            f"table; choose one of: {', '.join(map(str, shared))}.")
    report = evaluate_tabular(real[shared], rows[shared], target=body.target,
                              holdout=holdout[shared] if holdout is not None else None,
                              figures=body.figures, seed=body.seed)
    store.append_event(user.username, "evaluate", {"model": body.model, "dataset": label,
                                                   "target": body.target, "rows": len(rows), "via": "api"})
    if body.format == "html":
        return HTMLResponse(report.to_html())
    return report.to_dict()

