"""Streamlit glue of the 3D generators on the Synthetic scans page (one call: volume_generators_panel).

Sampling, export and training are library calls (:mod:`medsyn_imaging.training.volume_generator_store`,
:mod:`medsyn_imaging.training.ldm_job`), the same the CLI (``medsyn imaging sample-3d`` / ``train-3d``) and
the tests use. MedSyn ships no 3D model (a model trained on the few small volumes that may be redistributed
would teach nothing): without one, the panel says how to train one.
"""

from __future__ import annotations

import io
import zipfile

import streamlit as st

from medsyn_app.session import audit_upload, refusal
from medsyn_app.slice_viewer import volume_viewer

HOW_TO_TRAIN = (
    "No 3D generator is available yet; MedSyn ships none (one trained on the few small volumes that may be "
    "redistributed would only reproduce them). Train one on your own volumes: a folder of NIfTI files or "
    "DICOM series, one sub-folder per class. On a CPU, a small demo: `medsyn imaging train-3d FOLDER --out "
    "DIR --size tiny --shape 32 32 32 --spacing 4 4 4`; on a GPU workstation, CT at 128³: `medsyn imaging "
    "train-3d FOLDER --out DIR --size standard --shape 128 128 128 --spacing 1.5 1.5 1.5 --window "
    "soft tissue --ae-steps 20000 --diffusion-steps 50000 --decode-roi 32 32 32` (about a day on one GPU; "
    "docs/imaging_3d.md). Researchers can also start a training job below."
)


@st.cache_resource(show_spinner="Loading the 3D generator…", max_entries=2)
def _load(path: str, mtime: float):
    from medsyn_imaging.training.volume_generator_store import load_volume_generator

    return load_volume_generator(path)


@st.cache_resource(
    show_spinner="Generating a synthetic volume (DDIM in latent space, then decoding)…", max_entries=4
)
def _sample(path: str, mtime: float, label: str | None, seed: int, steps: int):
    return _load(path, mtime).sample(1, label=label, seed=seed, ddim_steps=steps)[0]


def _real_on_grid(uploads, generator):
    """An uploaded real volume resampled onto the generator's grid (the same MONAI steps as training)."""
    from medsyn_imaging.io.sources import load_uploaded
    from medsyn_imaging.training.volume_data import IntensityMapping, prepare_volume, to_volume

    result = load_uploaded(tuple((f.name, f.getvalue()) for f in uploads))
    volumes = [v for v in result.volumes if not v.rgb and v.n_slices > 1]
    if not volumes:
        raise ValueError("No 3D grey volume could be read from the upload.")
    intensity = IntensityMapping.from_dict(generator.config["data"]["intensity"])
    array = prepare_volume(volumes[0], generator.shape, generator.spacing, intensity)
    return to_volume(array, generator.spacing, intensity, source="real (on the model's grid)")


def _export(user, generator, volume, seed: int, steps: int) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from medsyn_imaging.training.volume_generator_store import export_samples

    left, right = st.columns([2, 1])
    fmt = left.selectbox(
        "Export format",
        ["dicom", "dicom-enhanced", "nifti"],
        format_func={
            "dicom": "DICOM series (one file per slice)",
            "dicom-enhanced": "Enhanced multi-frame DICOM (one file)",
            "nifti": "NIfTI (.nii.gz)",
        }.get,
        key="vol-export-format",
    )
    if not right.button("Export this volume", key="vol-export"):
        return
    if (denied := refusal(user, "export")) is not None:
        st.error(denied)
        return
    tmp = Path(tempfile.mkdtemp(prefix="medsyn-export3d-"))
    try:
        out = export_samples(generator, [volume], tmp / "synthetic-volume", fmt, seed=seed, ddim_steps=steps)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(out.rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(tmp))
        st.download_button(
            "Download the synthetic volume (.zip)",
            buf.getvalue(),
            file_name=f"synthetic-volume-{fmt}.zip",
            mime="application/zip",
        )
    except ValueError as exc:
        st.error(str(exc))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _train_form(user) -> None:
    from medsyn_core import jobs
    from medsyn_core.storage import Store

    with st.expander("Train a 3D generator (background job)"):
        with st.form("train3d"):
            folder = st.text_input(
                "Folder of volumes on this machine (NIfTI files or DICOM series; one sub-folder per class)"
            )
            c1, c2, c3 = st.columns(3)
            side = c1.selectbox("Grid (voxels per side)", [32, 64, 96, 128], index=0)
            spacing = c2.number_input("Voxel size (mm)", min_value=0.3, max_value=10.0, value=2.0)
            size = c3.selectbox("Network size", ["tiny", "small", "standard"], index=0)
            c4, c5, c6 = st.columns(3)
            ae_steps = int(c4.number_input("Autoencoder steps", min_value=1, value=500))
            diffusion_steps = int(c5.number_input("Diffusion steps", min_value=1, value=1000))
            window = c6.selectbox(
                "Intensity", ["auto", "percentile", "ct", "soft tissue", "lung", "bone", "brain"]
            )
            name = st.text_input("3D model name", "my-3d-generator", key="vol-train-name")
            submitted = st.form_submit_button("Start 3D training")
        if submitted:
            from medsyn_imaging.training.ldm_training import LDMConfig
            from medsyn_imaging.training.training_job import check_model_name

            try:
                if not folder.strip():
                    raise ValueError("Enter the folder that holds the volumes.")
                check_model_name(name.strip())
                config = LDMConfig(preset=size, ae_steps=ae_steps, diffusion_steps=diffusion_steps)
                params = {
                    "data": folder.strip(),
                    "name": name.strip(),
                    "shape": [int(side)] * 3,
                    "spacing": [float(spacing)] * 3,
                    "window": window,
                    "config": config.to_dict(),
                }
                with Store() as store:
                    job_id = jobs.submit(store, user, "imaging-train-3d", params)
                st.success(f"Training job #{job_id} queued; follow it on the Jobs page.")
            except (ValueError, FileExistsError, FileNotFoundError) as exc:
                st.error(str(exc))


def volume_generators_panel(user) -> None:
    """Pick a 3D generator, generate a volume, view it in three planes (beside a real one for researchers),
    export it; or learn how to train one."""
    from medsyn_imaging.training.volume_generator_store import list_volume_generators

    entries = list_volume_generators()
    may_train = refusal(user, "train") is None
    if not entries:
        st.info(HOW_TO_TRAIN)
        if may_train:
            _train_form(user)
        return
    by_name = {e.name: e for e in entries}
    name = st.selectbox("3D generator", list(by_name), key="vol-generator")
    entry = by_name[name]
    mtime = (entry.path / "unet.safetensors").stat().st_mtime
    generator = _load(str(entry.path), mtime)
    data = generator.config["data"]
    st.caption(
        f"Trained on {data.get('source', '?')}: grid {'x'.join(map(str, data['shape']))} voxels of "
        f"{'x'.join(f'{s:g}' for s in data['spacing'])} mm, classes {', '.join(generator.class_names)} "
        f"· {generator.card.get('dp_label', 'DP: off')}"
    )
    c1, c2, c3 = st.columns(3)
    label = c1.selectbox("Class", generator.class_names, key="vol-class")
    seed = int(c2.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="vol-seed"))
    steps = int(
        c3.number_input(
            "DDIM steps",
            min_value=1,
            max_value=1000,
            value=int(generator.config["training"]["ddim_steps"]),
            key="vol-steps",
        )
    )
    if st.button("Generate a volume", key="vol-generate"):
        st.session_state["vol-shown"] = (str(entry.path), mtime, label, seed, steps)
    shown = st.session_state.get("vol-shown")
    if not shown or shown[0] != str(entry.path):
        return
    volume = _sample(*shown)
    rows = [(f"Synthetic ({shown[2]}, seed {shown[3]})", volume)]
    if refusal(user, "upload_real_data") is None:  # researchers compare with a real volume of their own
        uploads = st.file_uploader(
            "A real volume to show beside it (NIfTI, or a zip of a DICOM series); it "
            "is resampled onto the model's grid and not stored",
            type=["nii", "gz", "zip", "dcm"],
            accept_multiple_files=True,
            key="vol-real",
        )
        if uploads:
            audit_upload(user, "imaging-3d", uploads)
            try:
                rows.append(("Real", _real_on_grid(uploads, generator)))
            except (ValueError, FileNotFoundError) as exc:
                st.error(str(exc))
    volume_viewer(rows, key="synthetic-3d")
    _export(user, generator, volume, shown[3], shown[4])
