"""Imaging: view a bundled dataset or uploaded DICOM / DICOM zip / NIfTI / PNGs (de-identified on read).

Thin page: loading, de-identification and windowing are `medsyn_imaging` functions shared with the CLI.
"""

import streamlit as st

from medsyn_core.app_session import audit_upload, page_guard, refusal
from medsyn_core.catalog import BUNDLED

st.title("Imaging")
user = page_guard("view_images")
st.caption("Real DICOM is de-identified (DICOM PS3.15 Basic Profile) while it is read: the header below "
           "is what MedSyn keeps. Nothing you upload is stored; the upload is recorded in the audit log "
           "(who, when, a content hash and its size; never names or values).")

IMAGING = [d for d in BUNDLED if d.kind == "imaging"]
UPLOAD_TYPES = ["dcm", "dicom", "ima", "zip", "nii", "gz", "png", "jpg", "jpeg", "npz"]


@st.cache_data(show_spinner="Reading the bundled dataset…", max_entries=4)
def _load_bundled(name: str):
    from medsyn_imaging.image_io import read_medmnist
    from medsyn_imaging.sources import LoadResult, load_path

    item = next(d for d in IMAGING if d.name == name)
    if item.path.suffix == ".npz":  # a preview of the test split is enough for viewing
        return LoadResult(volumes=[read_medmnist(item.path, split="test", limit=64)])
    return load_path(item.path)


@st.cache_data(show_spinner="Reading and de-identifying the upload…", max_entries=2)
def _load_upload(files: tuple[tuple[str, bytes], ...]):
    from medsyn_imaging.sources import load_uploaded

    return load_uploaded(files)


# Uploading real scans needs the upload_real_data permission (researchers, admins); clinicians view
# the bundled data and synthetic images only.
may_upload = refusal(user, "upload_real_data") is None
source = st.radio("Images", ["Bundled dataset", "Upload files"] if may_upload else ["Bundled dataset"],
                  horizontal=True)
if source == "Bundled dataset":
    name = st.selectbox("Dataset", [d.name for d in IMAGING],
                        format_func=lambda n: next(f"{d.name} — {d.title}" for d in IMAGING if d.name == n))
    result = _load_bundled(name)
else:
    uploads = st.file_uploader(
        "DICOM files, a zip of a DICOM study, a NIfTI (.nii/.nii.gz), PNG/JPEG images or a MedMNIST .npz",
        type=UPLOAD_TYPES, accept_multiple_files=True)
    if not uploads:
        st.info("Choose files to view. A whole DICOM study is easiest as one .zip.")
        st.stop()
    audit_upload(user, "imaging", uploads)  # real patient data reached the server: audited once
    try:
        result = _load_upload(tuple((f.name, f.getvalue()) for f in uploads))
    except (ValueError, FileNotFoundError) as exc:
        st.error(str(exc))
        st.stop()

for problem in result.problems:
    st.warning(f"Skipped {problem.path}: {problem.message}")
if not result.volumes:
    st.error("No image could be read from this input; see the messages above.")
    st.stop()

labels = [f"{v.source} — {v.describe()}" for v in result.volumes]
choice = st.selectbox("Series", range(len(labels)), format_func=labels.__getitem__) if len(labels) > 1 else 0
volume = result.volumes[choice]

for note in volume.warnings:
    if "burned" in note.lower() or "BurnedInAnnotation" in note:
        st.error(f"Burned-in annotation: {note}")
    else:
        st.warning(note)

from medsyn_imaging.windowing import display_slice, window_names  # noqa: E402

left, right = st.columns([3, 2])
with left:
    time = 0
    if volume.is_4d:
        time = st.slider("Time point", 1, volume.n_timepoints, 1) - 1
    index = 0
    if volume.n_slices > 1:
        index = st.slider("Image" if volume.modality == "OT" else "Slice",
                          1, volume.n_slices, (volume.n_slices + 1) // 2) - 1
    window = "auto"
    if not volume.rgb:
        window = st.selectbox("Window", window_names(volume),
                              help="auto = 1st to 99th percentile; CT presets in Hounsfield units")
    image = display_slice(volume, index, time, window=window)
    where = f"time {time + 1}, " if volume.is_4d else ""
    st.image(image, caption=f"{where}slice {index + 1} of {volume.n_slices}",
             width=min(512, max(256, image.shape[1])))
with right:
    st.subheader("Geometry")
    z, y, x = volume.spacing
    st.markdown(f"**Shape:** {' x '.join(map(str, volume.pixels.shape))} ({volume.pixels.dtype})  \n"
                f"**Voxel size:** {z:g} x {y:g} x {x:g} mm (slice x row x column)  \n"
                f"**Origin (LPS):** {', '.join(f'{v:.1f}' for v in volume.origin)} mm  \n"
                f"**Values:** {volume.units or 'scanner units'}; modality {volume.modality or 'unknown'}")
    labels_meta = volume.metadata.get("labels")
    if labels_meta is not None:
        st.markdown(f"**Label of this image:** {labels_meta[index]}")
    if not volume.rgb:
        from medsyn_imaging.nifti_io import nifti_bytes

        st.download_button("Download as NIfTI (.nii.gz)", data=nifti_bytes(volume),
                           file_name="volume.nii.gz", mime="application/gzip",
                           help="Pixels and geometry only: NIfTI carries no patient header.")
    st.subheader("De-identified header")
    rows = [{"attribute": k, "value": v} for k, v in volume.metadata.items() if k != "labels"]
    if rows:
        st.dataframe(rows, hide_index=True, use_container_width=True, height=320)
    else:
        st.caption("This source has no header.")

st.divider()
st.subheader("Synthetic images")
st.info("Not built yet: the image generator (train, preview and export synthetic scans as DICOM, NIfTI "
        "or PNG) is a separate piece of work. Its exports go through `medsyn_imaging.export.export_images`.")
