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
st.caption("Generate synthetic medical images of a chosen class with a StyleGAN2-style generator. "
           "The bundled demo model (chest X-rays, normal vs pneumonia) works without any training.")


@st.cache_resource(show_spinner="Loading the generator…", max_entries=4)
def _load(path: str, mtime: float):
    from medsyn_imaging.training.generator_store import load_generator

    return load_generator(path)


def _evaluation_text(ev: dict) -> str:
    if ev.get("fid") is None:
        return "FID: not measured yet (Evaluation page or `medsyn imaging evaluate`)"
    text = f"FID {ev['fid']:.1f}"
    if ev.get("fid_real_floor") is not None:
        text += f" (real-vs-real floor {ev['fid_real_floor']:.1f})"
    if ev.get("tstr_auc") is not None:
        text += f" · TSTR AUC {ev['tstr_auc']:.3f} vs TRTR {ev.get('trtr_auc', float('nan')):.3f}"
    return text


def _generators():
    from medsyn_imaging.training.generator_store import list_generators

    return list_generators()


entries = _generators()
preview_tab, volumes_tab, train_tab = st.tabs(["Preview and export", "3D volumes", "Train a new generator"])

# -- preview and export --------------------------------------------------------------------------------------
with preview_tab:
    if not entries:
        st.warning("No generator is available: the bundled demo model is missing from `models/`. "
                   "Train one in the next tab or with `medsyn imaging train`.")
    else:
        labels_by_key = {f"{e.name} ({e.model}, {e.source})": e for e in entries}
        key = st.selectbox("Generator", list(labels_by_key), index=0,
                           help="The bundled demo model comes first; models you train are added below.")
        entry = labels_by_key[key]
        gen = _load(str(entry.path), (entry.path / "generator.safetensors").stat().st_mtime)
        card = gen.card
        training = card.get("training", {})
        st.caption(
            f"Trained on {card.get('data', {}).get('source', '?')} · "
            f"{training.get('kimg', '?')} thousand images seen · {training.get('device', '?')} · "
            + _evaluation_text(card.get("evaluation", {}))
        )
        c1, c2, c3 = st.columns(3)
        seed = int(c1.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1,
                                   help="The same seed gives the same images."))
        truncation = c2.slider("Truncation ψ", 0.1, 1.0, 0.7, 0.05,
                               help="Lower values give more typical, less varied images.")
        per_class = int(c3.slider("Images per class", 2, 16, 8))
        grid = gen.class_grid(per_class=per_class, seed=seed, truncation=truncation, scale=3)
        st.image(grid[..., 0] if grid.shape[-1] == 1 else grid, clamp=True,
                 caption="Rows: " + ", ".join(f"{i + 1} = {c}" for i, c in enumerate(gen.class_names)))

        st.subheader("Export")
        e1, e2, e3 = st.columns(3)
        cls = e1.selectbox("Class", ["all classes (alternating)"] + gen.class_names)
        n = int(e2.number_input("Number of images", min_value=1, max_value=2000, value=16))
        fmt = e3.selectbox("Format", ["dicom", "nifti", "png"],
                           format_func={"dicom": "DICOM series", "nifti": "NIfTI volume",
                                        "png": "PNG images"}.get,
                           help="Downloaded as one zip with a provenance file marking them synthetic.")
        export_clicked = st.button("Generate and export")
        if export_clicked and (denied := refusal(user, "export")) is not None:
            st.error(denied)
        elif export_clicked:
            import datetime as _dt
            import shutil
            import tempfile

            from medsyn_imaging.training.generator_store import export_samples

            label = None if cls.startswith("all classes") else cls
            images, labels = gen.sample(n, label=label, seed=seed, truncation=truncation)
            tmp = Path(tempfile.mkdtemp(prefix="medsyn-export-"))
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            try:
                export_samples(gen, images, labels, tmp / f"synthetic-{stamp}", fmt,
                               seed=seed, truncation=truncation)
            except ValueError as exc:
                st.error(str(exc))
            else:
                # one zip of everything written (images plus their provenance sidecar)
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                    for f in sorted(tmp.rglob("*")):
                        if f.is_file():
                            zf.write(f, f.relative_to(tmp))
                filename = f"synthetic-{stamp}-{fmt}.zip"
                st.download_button(f"Download {filename}", buf.getvalue(), file_name=filename,
                                   mime="application/zip")
                st.success(f"{n} synthetic images ({fmt.upper()}) ready, with their provenance file.")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

# -- 3D volumes (before the training tab, whose refusal stops the script for clinicians) -------------------
with volumes_tab:
    from medsyn_app.volume_panel import volume_generators_panel

    volume_generators_panel(user)

# -- training ------------------------------------------------------------------------------------------------
with train_tab:
    # Server-side: the training controls are only built for roles allowed to train.
    if (denied := refusal(user, "train")) is not None:
        st.error(denied)
        st.stop()
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
        from medsyn_imaging.training.gan_training import TrainConfig
        from medsyn_imaging.training.training_job import check_model_name

        data_source = folder.strip() if source.startswith("a folder") else source
        try:
            if not data_source:
                raise ValueError("Enter the folder that holds one sub-folder of PNGs per class.")
            check_model_name(name.strip(), replace=replace)
            config = TrainConfig(
                model=model, kimg=float(kimg), batch_size=batch, seed=seed_train,
                lr=0.0025 if model == "stylegan2" else 0.0002, beta1=0.0 if model == "stylegan2" else 0.5,
                checkpoint_kimg=max(1.0, float(kimg) / 10), grid_kimg=max(0.5, float(kimg) / 50),
                arch={"channel_base": int(width), "channel_max": 256} if model == "stylegan2" else {},
            )
            if dp_preset != "off":
                import dataclasses

                from medsyn_core.privacy import PRESETS
                from medsyn_imaging.training.gan_training import plan_private_training
                from medsyn_imaging.training.training_data import load_training_images

                config = dataclasses.replace(config, dp_epsilon=PRESETS[dp_preset], dp_preset=dp_preset)
                n_images = len(load_training_images(data_source, int(resolution)).images)
                plan_private_training(config, n_images)  # unreachable budgets are refused now, with advice
            params = {"data": data_source, "name": name.strip(), "replace": bool(replace),
                      "resolution": int(resolution), "split": "train", "config": config.to_dict()}
            with Store() as store:
                st.session_state["imaging_job_id"] = jobs.submit(store, user, "imaging-train", params)
        except (ValueError, FileExistsError, FileNotFoundError) as exc:
            st.error(str(exc))

    @st.fragment(run_every=2.0)
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
            st.success(f"Saved to {job['result']['model_path']}; it is now listed in the Preview tab "
                       "(reload the page).")
        elif job["status"] == "failed":
            st.error(f"Training failed: {job['error']} (resume it from its checkpoint on the Jobs page)")
        elif job["status"] == "cancelled":
            st.warning("Training was cancelled; no model was saved (the checkpoint is kept).")

    _job_panel()
