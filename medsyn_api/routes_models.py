"""Models of every engine (list, card, privacy ledger, download, delete) and the imaging engine's training
and image sampling: the same library entry points as the Model store and Synthetic scans pages and
``medsyn imaging``."""

from __future__ import annotations

import dataclasses
import io
import threading
import zipfile
from functools import lru_cache

from fastapi import APIRouter, Depends, Response

from medsyn_api.deps import current_user, get_store
from medsyn_api.errors import scrub
from medsyn_api.schemas import ImageSample, ImagingTrain
from medsyn_core import model_store
from medsyn_core.auth import User, authorise
from medsyn_core.storage import Store

router = APIRouter(prefix="/api/v1")


def _entry(store: Store, user: User, name: str) -> model_store.ModelEntry:
    entry = next((m for m in model_store.list_models(store, user) if m.name == name), None)
    if entry is None:
        raise KeyError(f"No model called {name!r} (GET /api/v1/models lists them).")
    return entry


def _summary(m: model_store.ModelEntry) -> dict:
    view = m.view
    return {"name": m.name, "engine": m.engine, "kind": m.kind, "source": m.source,
            "data_source": view.data_source, "dp_epsilon": view.privacy.epsilon,
            "dp_delta": view.privacy.delta, "deletable": m.deletable}


@router.get("/models", tags=["models"], summary="Trained and bundled models of every engine")
def list_models(engine: str | None = None, user: User = Depends(current_user),
                store: Store = Depends(get_store)) -> list[dict]:
    return [_summary(m) for m in model_store.list_models(store, user) if engine in (None, m.engine)]


@router.get("/models/{name}", tags=["models"], summary="A model's card (one schema for every engine)")
def card(name: str, user: User = Depends(current_user), store: Store = Depends(get_store)) -> dict:
    m = _entry(store, user, name)
    view = m.view
    return scrub({**_summary(m), "parameters": view.parameters, "metrics": view.metrics,
                  "privacy": dataclasses.asdict(view.privacy),
                  "card": {k: v for k, v in m.card.items() if k not in ("path", "command")}})


@router.get("/models/{name}/ledger", tags=["models"],
            summary="The privacy ledger: every mechanism, and ε/δ recomputed from it")
def ledger(name: str, user: User = Depends(current_user), store: Store = Depends(get_store)) -> dict:
    from medsyn_core.privacy import PrivacyLedger

    m = _entry(store, user, name)
    store.append_event(user.username, "ledger_viewed", {"model": name})
    if m.ledger is None:
        return {"model": name, "differential_privacy": False,
                "message": "Trained without differential privacy: no guarantee, no ledger."}
    recomputed = PrivacyLedger.from_dict(m.ledger)
    eps, delta = recomputed.total()
    return {"model": name, "differential_privacy": True, "epsilon": eps, "delta": delta,
            "breakdown": {k: {"epsilon": e, "delta": d} for k, (e, d) in recomputed.breakdown().items()},
            "ledger": m.ledger}


@router.get("/models/{name}/download", tags=["models"], summary="The model folder as a zip (audited export)",
            response_class=Response)
def download(name: str, user: User = Depends(current_user), store: Store = Depends(get_store)):
    m = _entry(store, user, name)
    data = model_store.zip_model(store, user, m)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})


@router.delete("/models/{name}", tags=["models"], status_code=204, summary="Delete a trained model (admins)")
def delete(name: str, user: User = Depends(current_user), store: Store = Depends(get_store)):
    model_store.delete_model(store, user, name)
    return Response(status_code=204)


# -- imaging ----------------------------------------------------------------------------------------------
@router.post("/models/imaging", tags=["models"], status_code=202,
             summary="Train a StyleGAN2/DCGAN image generator on a bundled image set as a background job")
def train_imaging(body: ImagingTrain, user: User = Depends(current_user), store: Store = Depends(get_store)):
    from medsyn_imaging.training.training_job import submit_training

    job_id = submit_training(store, user, data=body.data, name=body.name, model=body.model,
                             resolution=body.resolution, kimg=body.kimg, batch=body.batch, seed=body.seed,
                             lr=body.lr, channel_base=body.channel_base, channel_max=body.channel_max,
                             diffaugment=body.diffaugment, epsilon=body.epsilon, preset=body.preset,
                             delta=body.delta, clip=body.clip, replace=body.replace)
    return {"job_id": job_id, "status": "queued", "poll": f"/api/v1/jobs/{job_id}",
            "events": f"/api/v1/jobs/{job_id}/events"}


@lru_cache(maxsize=4)
def _generator(path: str, mtime: float):
    from medsyn_imaging.training.generator_store import load_generator

    return load_generator(path), threading.Lock()


@router.post("/models/{name}/images", tags=["sampling"], response_class=Response,
             summary="Synthetic images from a generator: a zip of PNG or DICOM files, or one NIfTI volume")
def images(name: str, body: ImageSample, user: User = Depends(current_user),
           store: Store = Depends(get_store)):
    from medsyn_core.settings import private_temp_dir
    from medsyn_imaging.networks.gan_models import MODEL_KINDS
    from medsyn_imaging.training.generator_store import export_samples

    user = authorise(store, user, "sample")
    authorise(store, user, "export")
    m = _entry(store, user, name)
    if m.kind not in MODEL_KINDS:
        raise KeyError(f"{name!r} is not an image generator (it is a {m.kind} model).")
    config = m.path / "config.json"
    generator, lock = _generator(str(m.path), config.stat().st_mtime)
    with lock:
        imgs, labels = generator.sample(body.n, label=body.label, seed=body.seed, truncation=body.truncation)
    buf = io.BytesIO()
    with private_temp_dir("medsyn-api-images-") as tmp:
        out = tmp / ("synthetic.nii.gz" if body.format == "nifti" else "synthetic")
        export_samples(generator, imgs, labels, out, body.format, seed=body.seed, truncation=body.truncation)
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:  # the images and their provenance
            for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
                zf.write(file, file.relative_to(tmp))
    store.append_event(user.username, "sample", {"model": name, "images": body.n, "via": "api"})
    store.append_event(user.username, "export", {"model": name, "images": body.n, "format": body.format,
                                                 "via": "api"})
    return Response(buf.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}-{body.format}.zip"'})
