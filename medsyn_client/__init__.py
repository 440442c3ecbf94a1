"""A Python client of MedSyn's REST API (httpx), for pipelines and notebooks on other machines.

    from medsyn_client import MedSynClient
    client = MedSynClient("https://medsyn.hospital.example", token=os.environ["MEDSYN_TOKEN"])
    upload = client.upload_table("cohort.csv")
    job = client.train_tabular(str(upload["id"]), name="cohort-ctgan", epochs=300, preset="balanced",
                               schema=yaml.safe_load(open("schema.yaml")))
    client.wait(job["job_id"], on_progress=print)
    rows = client.sample("cohort-ctgan", 500, conditions=["age>=65"])      # a pandas DataFrame

Every error of the server arrives as :class:`ApiError` with the server's readable message (``detail``) and
HTTP status. The client needs only httpx (and pandas for DataFrames); it imports nothing of the server.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

TOKEN_ENV = "MEDSYN_TOKEN"
TERMINAL = ("finished", "failed", "cancelled")
CHUNK = 1 << 20


class ApiError(Exception):
    """The server refused or failed a request: ``status`` (HTTP) and ``detail`` (its readable message)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class MedSynClient:
    """One server, one token (``token=`` or ``$MEDSYN_TOKEN``). ``timeout``: seconds per request."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 300.0,
                 transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> MedSynClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail") or response.text
            except ValueError:
                detail = response.text or response.reason_phrase
            raise ApiError(response.status_code, str(detail))
        return response

    def _json(self, method: str, path: str, **kwargs) -> Any:
        response = self._request(method, path, **kwargs)
        return response.json() if response.content else None

    # -- accounts -----------------------------------------------------------------------------------------
    def login(self, username: str, password: str, label: str = "", days: float | None = None) -> dict:
        """Exchange a password for a token (used for this client's further requests); returns its info."""
        body = {"username": username, "password": password, "label": label}
        if days is not None:
            body["days"] = days
        info = self._json("POST", "/api/v1/auth/token", json=body)
        self.token = info["token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        return info

    def me(self) -> dict:
        return self._json("GET", "/api/v1/me")

    def tokens(self) -> list[dict]:
        return self._json("GET", "/api/v1/auth/tokens")

    def revoke_token(self, token_id: int) -> None:
        self._request("DELETE", f"/api/v1/auth/tokens/{int(token_id)}")

    # -- datasets -------------------------------------------------------------------------------------------
    def datasets(self) -> dict:
        return self._json("GET", "/api/v1/datasets")

    def upload_table(self, path: str | os.PathLike, charset: str | None = None) -> dict:
        """Stream a CSV/TSV/Parquet file to the server; returns ``{"id", "rows", "columns", ...}``."""
        path = Path(path)
        parquet = path.suffix.lower() in (".parquet", ".pq")
        ctype = "application/vnd.apache.parquet" if parquet else (
            "text/tab-separated-values" if path.suffix.lower() == ".tsv" else "text/csv")
        if charset and not parquet:
            ctype += f"; charset={charset}"

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        return self._json("POST", "/api/v1/datasets", params={"filename": path.name},
                          headers={"Content-Type": ctype, "Content-Length": str(path.stat().st_size)},
                          content=chunks())

    def delete_dataset(self, dataset_id: int) -> None:
        self._request("DELETE", f"/api/v1/datasets/{int(dataset_id)}")

    def schema(self, dataset: str) -> dict:
        """The inferred schema, PHI flags and a declaration (YAML text) to review."""
        return self._json("POST", f"/api/v1/datasets/{dataset}/schema")

    # -- models and jobs ------------------------------------------------------------------------------------
    def train_tabular(self, dataset: str, name: str, **options: Any) -> dict:
        """Queue ``medsyn tabular fit`` on the server; options as the API's TabularFit (epochs, batch_size,
        seed, model, schema, phi, epsilon/preset, delta, clip, metadata, replace, keep_upload)."""
        body = {"dataset": dataset, "name": name, **{k: v for k, v in options.items() if v is not None}}
        return self._json("POST", "/api/v1/models/tabular", json=body)

    def train_imaging(self, data: str, name: str, **options: Any) -> dict:
        return self._json("POST", "/api/v1/models/imaging", json={"data": data, "name": name, **options})

    def job(self, job_id: int) -> dict:
        return self._json("GET", f"/api/v1/jobs/{int(job_id)}")

    def jobs(self) -> list[dict]:
        return self._json("GET", "/api/v1/jobs")

    def cancel(self, job_id: int) -> dict:
        return self._json("POST", f"/api/v1/jobs/{int(job_id)}/cancel")

    def resume(self, job_id: int) -> dict:
        return self._json("POST", f"/api/v1/jobs/{int(job_id)}/resume")

    def wait(self, job_id: int, timeout: float = 24 * 3600, poll_s: float = 1.0,
             on_progress: Callable[[dict], None] | None = None) -> dict:
        """Poll the job until it ends; returns it. Raises :class:`ApiError` if it failed or was cancelled
        (status 409 then, with the job's stored error) and TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["status"] in TERMINAL:
                if job["status"] != "finished":
                    raise ApiError(409, f"job {job_id} {job['status']}: {job.get('error') or 'no error'}")
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout:g} s")
            time.sleep(poll_s)

    def models(self, engine: str | None = None) -> list[dict]:
        return self._json("GET", "/api/v1/models", params={"engine": engine} if engine else None)

    def model(self, name: str) -> dict:
        return self._json("GET", f"/api/v1/models/{name}")

    def ledger(self, name: str) -> dict:
        return self._json("GET", f"/api/v1/models/{name}/ledger")

    def delete_model(self, name: str) -> None:
        self._request("DELETE", f"/api/v1/models/{name}")

    # -- sampling and evaluation ------------------------------------------------------------------------
    def sample_bytes(self, model: str, n: int, conditions: list[str] | None = None, seed: int | None = None,
                     fmt: str = "csv", raw: bool = False) -> bytes:
        """Rows as the server sends them: CSV (spreadsheet-safe unless ``raw``), JSON or Parquet bytes."""
        body = {"n": n, "conditions": conditions or [], "seed": seed, "format": fmt, "raw": raw}
        return self._request("POST", f"/api/v1/models/{model}/sample", json=body).content

    def sample(self, model: str, n: int, conditions: list[str] | None = None, seed: int | None = None):
        """Rows as a pandas DataFrame (sent as Parquet, so types survive)."""
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.sample_bytes(model, n, conditions, seed, fmt="parquet")))

    def images(self, model: str, n: int = 16, fmt: str = "png", **options: Any) -> bytes:
        """A zip of synthetic images (PNG, DICOM) or one NIfTI volume with its sidecar."""
        body = {"n": n, "format": fmt, **options}
        return self._request("POST", f"/api/v1/models/{model}/images", json=body).content

    def evaluate(self, model: str, dataset: str, target: str, fmt: str = "json", **options: Any):
        """The evaluation report: a dict (``fmt='json'``) or HTML text."""
        body = {"model": model, "dataset": dataset, "target": target, "format": fmt, **options}
        response = self._request("POST", "/api/v1/evaluations/tabular", json=body)
        return response.text if fmt == "html" else response.json()

    def audit_verify(self, expect_head: str | None = None) -> dict:
        return self._json("GET", "/api/v1/audit/verify",
                          params={"expect_head": expect_head} if expect_head else None)

    def audit_events(self, after_id: int = 0, limit: int = 1000) -> dict:
        return self._json("GET", "/api/v1/audit", params={"after_id": after_id, "limit": limit})


__all__ = ["ApiError", "MedSynClient", "TOKEN_ENV"]
