"""Synthetic scans: preview and export images from a trained generator, or train a new one.

Thin page: sampling, training and export are library calls (``medsyn_imaging.training.generator_store``,
``medsyn_imaging.training.training_job``), the same ones the CLI and the tests use.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import streamlit as st

from medsyn_app.session import fragment_guard, page_guard, refusal

st.title("Synthetic scans")
user = page_guard("view_images")
may_train = refusal(user, "train") is None
st.caption("Generate synthetic medical images of a chosen class with a StyleGAN2-style generator. "
           "The bundled demo model (chest X-rays, normal vs pneumonia) works without any training.")
#: Previews are shown at least this many pixels per image side (nearest-neighbour upscaling: every
#: pixel becomes a block, nothing is smoothed, so what you see is what is exported).
PREVIEW_SIDE = 140


@st.cache_resource(show_spinner="Loading the generator…", max_entries=4)
def _load(path: str, mtime: float):
    from medsyn_imaging.training.generator_store import load_generator

    return load_generator(path)


@st.cache_data(show_spinner="Generating…", max_entries=8)
def _preview(path: str, mtime: float, per_class: int, label: str | None, seed: int, truncation: float):
    """The previewed images: exactly what the export writes (one sampling call)."""
    return _load(path, mtime).preview_batch(per_class, label, seed=seed, truncation=truncation)


def _privacy_text(card: dict) -> str:
    from medsyn_core.model_card import dp_label

    return dp_label(card)


def _offer_label(offer) -> str:
    state = ("approved by an admin" if offer.approved_by else "passes the quality bar"
             if offer.quality.passed else "below the quality bar")
    return f"{offer.entry.name} · {offer.quality.label} · {_privacy_text(offer.entry.card)} · {state}"


def preview_and_export() -> None:
    from medsyn_imaging.training.generator_store import offered_generators

    offers = offered_generators(user)
    if not offers:
        st.warning("No generator is available to you yet: generators are offered once they pass the quality "
                   "bar (evaluated, FID within 5x the real-vs-real floor, no near-copies) or an admin "
                   "approves them on the Model store page.")
        return
    labels = {_offer_label(o): o for o in offers}
    offer = labels[st.selectbox("Generator", list(labels),
                                help="The bundled demo model comes first; models trained here follow.")]
    entry = offer.entry
    mtime = (entry.path / "generator.safetensors").stat().st_mtime
    gen = _load(str(entry.path), mtime)
    card = gen.card
    training = card.get("training", {})
    where = (" (Evaluation page or `medsyn imaging evaluate`)" if refusal(user, "evaluate") is None
             else " (ask a researcher to evaluate it)")
    st.caption(f"Trained on {card.get('data', {}).get('source', '?')} · "
               f"{training.get('kimg', '?')} thousand images seen · {training.get('device', '?')} · "
               f"quality: {offer.quality.label}"
               + ("" if offer.quality.fid is not None else where))
    if not offer.quality.passed:
        st.warning("Below the quality bar: " + "; ".join(offer.quality.reasons)
                   + (f". Approved for clinicians by {offer.approved_by}." if offer.approved_by else "."))
    c1, c2, c3, c4 = st.columns(4)
    cls = c1.selectbox("Class", ["all classes"] + gen.class_names)
    per_class = int(c2.slider("Images per class", 1, 16, 4))
    seed = int(c3.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1,
                               help="The same seed gives the same images."))
    truncation = c4.slider("Truncation ψ", 0.1, 1.0, 0.7, 0.05,
                           help="Lower values give more typical, less varied images.")
    label = None if cls == "all classes" else cls
    images, labels = _preview(str(entry.path), mtime, per_class, label, seed, float(truncation))
    from medsyn_imaging.io.image_grid import make_grid

    scale = max(1, -(-PREVIEW_SIDE // gen.image_size))
    grid = make_grid(images, ncol=per_class, scale=scale)
    classes = gen.class_names if label is None else [label]
    st.image(grid[..., 0] if grid.shape[-1] == 1 else grid, output_format="PNG", width=grid.shape[1],
             caption="Rows: " + ", ".join(f"{i + 1} = {c}" for i, c in enumerate(classes))
             + f" · shown {scale}x (each pixel a {scale}x{scale} block) · hover and click the expand "
               "button to enlarge")

    st.subheader("Export these images")
    e1, e2 = st.columns([1, 2])
    fmt = e1.selectbox("Format", ["dicom", "nifti", "png"],
                       format_func={"dicom": "DICOM series", "nifti": "NIfTI volume",
                                    "png": "PNG images"}.get,
                       help="Downloaded as one zip with a provenance file marking them synthetic.")
    modality, spacing = gen.acquisition
    e2.caption(f"Exactly the {len(images)} images shown above, at their own resolution "
               f"({gen.image_size} x {gen.image_size}). DICOM: Secondary Capture, modality "
               f"{modality or 'OT'}, " + (f"nominal pixel spacing {spacing[0]:.3g} mm, " if spacing else "")
               + "window centre 128 / width 256 (as previewed).")
    preview_key = (entry.name, mtime, per_class, label, seed, float(truncation), fmt)
    export_clicked = st.button(f"Export the {len(images)} previewed images")
    if export_clicked and (denied := refusal(user, "export")) is not None:
        st.error(denied)
    elif export_clicked:
        import datetime as _dt
        import shutil
        import tempfile

        from medsyn_core.storage import Store
        from medsyn_imaging.training.generator_store import export_samples

        tmp = Path(tempfile.mkdtemp(prefix="medsyn-export-"))
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        try:
            export_samples(gen, images, labels, tmp / f"synthetic-{stamp}", fmt, seed=seed,
                           truncation=truncation)
        except ValueError as exc:
            st.error(str(exc))
        else:
            # one zip of everything written (images plus their provenance sidecar)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(tmp.rglob("*")):
                    if f.is_file():
                        zf.write(f, f.relative_to(tmp))
            st.session_state["scans_export"] = (preview_key, f"synthetic-{stamp}-{fmt}.zip", buf.getvalue(),
                                                len(images), fmt)
            with Store() as store:
                store.append_event(user.username, "export", {
                    "kind": "synthetic_images", "generator": entry.name, "format": fmt,
                    "images": len(images), "seed": seed, "truncation": float(truncation)})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    prepared = st.session_state.get("scans_export")
    if prepared is not None and prepared[0] == preview_key:  # only the export of what is shown now
        _, filename, data, count, prepared_fmt = prepared
        st.download_button(f"Download {filename}", data, file_name=filename, mime="application/zip")
        st.success(f"{count} synthetic images ({prepared_fmt.upper()}) ready, with their provenance file.")


def volumes() -> None:
    """The 3D generators: sample a volume, scroll it, export it (training them: for researchers)."""
    from medsyn_app.volume_panel import volume_generators_panel

    volume_generators_panel(user)


# Tabs only for what the role may use: clinicians get the preview and export, and the 3D volumes.
if may_train:
    preview_tab, volumes_tab, train_tab = st.tabs(["Preview and export", "3D volumes",
                                                   "Train a new generator"])
    with preview_tab:
        preview_and_export()
    with volumes_tab:
        volumes()
else:
    preview_tab, volumes_tab = st.tabs(["Preview and export", "3D volumes"])
    with preview_tab:
        preview_and_export()
    with volumes_tab:
        volumes()
    st.stop()

# -- training (only built for roles allowed to train: checked on the server above) --------------------------
with train_tab:
    from medsyn_core import jobs
    from medsyn_core.storage import Store

    def current_job(me) -> dict | None:
        """This session's training job, or after a reload the user's latest unfinished one."""
        with Store() as store:
            job_id = st.session_state.get("imaging_job_id")
            if job_id is None:
                mine = [j for j in jobs.visible_jobs(store, me, 50) if j["kind"] == "imaging-train"
                        and j["owner"] == me.username and j["status"] in ("queued", "running")]
                if not mine:
                    return None
                job_id = st.session_state["imaging_job_id"] = mine[0]["id"]
            return jobs.job_for(store, me, job_id)

    active = current_job(user)
    st.markdown(
        "Train a class-conditional generator on a bundled MedMNIST set or on a folder on this "
        "workstation with one sub-folder of PNG images per class. Training runs as a background job "
        "(it goes on if you leave this page; see also **Jobs**). On a CPU, expect a few to a few "
        "dozen images per second; a GPU is used automatically when present. The command line "
        "equivalent is `medsyn imaging train DATA --kimg K --out DIR`."
    )
    with st.form("train_form"):
        source = st.selectbox("Training data", ["pneumoniamnist", "breastmnist", "a folder on this machine"])
        folder = st.text_input("Folder (when training on a folder)", "")
        t1, t2, t3 = st.columns(3)
        model = t1.selectbox("Model", ["stylegan2", "dcgan"])
        resolution = t2.selectbox("Resolution", [32, 64, 128, 256], index=0)
        kimg = t3.number_input("Length (thousands of images)", min_value=0.1, max_value=25000.0, value=20.0)
        t4, t5, t6 = st.columns(3)
        batch = int(t4.number_input("Batch size", min_value=2, max_value=256, value=32))
        seed_train = int(t5.number_input("Seed", min_value=0, value=0, key="train_seed"))
        width = t6.selectbox("Width (StyleGAN2 channel base)", [512, 1024, 2048, 4096], index=0,
                             help="Wider is better but slower; 512 trains at tens of images/s on a CPU.")
        n1, n2 = st.columns([3, 1])
        name = n1.text_input("Model name", "my-generator",
                             help="Letters, digits, '-', '_' and '.'; starts with a letter or digit.")
        replace = n2.checkbox("Replace the existing model",
                              help="Only if a model of this name exists: the new one takes its place for "
                                   "everyone (recorded in the audit log).")
        dp_preset = st.selectbox(
            "Differential privacy", ["off", "strict", "balanced", "exploratory"],
            help="DP-SGD on the discriminator, the only network that sees real images: strict ε = 1, "
                 "balanced ε = 3, exploratory ε = 10 (δ = min(1e-5, 1/(10 n)), clipping norm 1). "
                 "Off = no DP. "
                 "Under DP, R1 and minibatch-stddev are off and the run cannot be resumed.")
        busy = bool(active and active["status"] in ("queued", "running"))
        submitted = st.form_submit_button("Start training", disabled=busy)
    if submitted:
        from medsyn_imaging.training.training_job import submit_training

        data_source = folder.strip() if source.startswith("a folder") else source
        try:
            if not data_source:
                raise ValueError("Enter the folder that holds one sub-folder of PNGs per class.")
            with Store() as store:
                st.session_state["imaging_job_id"] = submit_training(
                    store, user, data=data_source, name=name.strip(), model=model, resolution=int(resolution),
                    kimg=float(kimg), batch=batch, seed=seed_train,
                    channel_base=int(width) if model == "stylegan2" else None,
                    channel_max=256 if model == "stylegan2" else None,
                    preset=dp_preset if dp_preset != "off" else None, replace=bool(replace))
        except (ValueError, FileExistsError, FileNotFoundError) as exc:
            st.error(str(exc))

    def _job_panel() -> None:
        me = fragment_guard("train")  # every refresh: still logged in, enabled, allowed to train
        job = current_job(me)
        if job is None:
            st.caption("No training job in this session.")
            return
        payload = job["payload"] or {}
        st.progress(job["progress"], text=f"Job #{job['id']} {job['params']['name']}: {job['status']}")
        if payload.get("images_seen") is not None:
            m1, m2, m3, m4 = st.columns(4)
            m1.metric("Images seen", f"{payload['images_seen']:,} / {payload['total_images']:,}")
            m2.metric("D loss", f"{payload['d_loss']:.3f}" if "d_loss" in payload else "hidden (DP)",
                      help="Under differential privacy the discriminator's loss on real images is not "
                           "shown or stored: DP-SGD does not cover it.")
            m3.metric("G loss", f"{payload['g_loss']:.3f}")
            m4.metric("Speed", f"{payload['images_per_s']:.1f} img/s")
        if payload.get("grid") and Path(payload["grid"]).is_file():
            st.image(payload["grid"], caption="Live samples (EMA generator), rows by class")
        if job["status"] in ("queued", "running") and st.button("Cancel training"):
            with Store() as store:
                jobs.request_cancel(store, me, job["id"])
        if job["status"] == "finished":
            st.success(f"Saved as {job['result']['model_name']}; it is now listed under Preview and export "
                       "(with its quality: evaluate it on the Evaluation page before clinicians see it).")
            if st.session_state.get("imaging_job_listed") != job["id"]:  # refresh the generator list once
                st.session_state["imaging_job_listed"] = job["id"]
                st.rerun(scope="app")
        elif job["status"] == "failed":
            st.error(f"Training failed: {job['error']} (resume it from its checkpoint on the Jobs page)")
        elif job["status"] == "cancelled":
            st.warning("Training was cancelled; no model was saved (the checkpoint is kept).")

    # polls only while the job is queued or running (a poll would close open menus)
    latest = current_job(user)
    live = latest is not None and latest["status"] in ("queued", "running")
    st.fragment(run_every=2.0 if live else None)(_job_panel)()
