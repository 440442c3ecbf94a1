"""Imaging: view a bundled dataset or uploaded DICOM / DICOM zip / NIfTI / PNGs (de-identified on read).

Thin page: loading, de-identification and windowing are `medsyn_imaging` functions shared with the CLI.
"""

import streamlit as st

from medsyn_app.session import audit_upload, page_guard, refusal
from medsyn_core.catalog import BUNDLED
from medsyn_core.storage import Store

st.title("Imaging")
user = page_guard("view_images")
st.caption("Real DICOM is de-identified (DICOM PS3.15 Basic Profile) while it is read: the header below "
           "is what MedSyn keeps. Nothing you upload is stored; the upload is recorded in the audit log "
           "(who, when, a content hash and its size; never names or values).")

IMAGING = [d for d in BUNDLED if d.kind == "imaging"]
UPLOAD_TYPES = ["dcm", "dicom", "ima", "zip", "nii", "gz", "png", "jpg", "jpeg", "npz"]


@st.cache_data(show_spinner="Reading the bundled dataset…", max_entries=4)
def _load_bundled(name: str):
    from medsyn_imaging.io.image_io import read_medmnist
    from medsyn_imaging.io.sources import LoadResult, load_path

    item = next(d for d in IMAGING if d.name == name)
    if item.path.suffix == ".npz":  # a preview of the test split is enough for viewing
        return LoadResult(volumes=[read_medmnist(item.path, split="test", limit=64)])
    return load_path(item.path)


@st.cache_data(show_spinner="Reading and de-identifying the upload…", max_entries=2)
def _load_upload(files: tuple[tuple[str, bytes], ...]):
    from medsyn_imaging.io.sources import load_uploaded

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
    generation = st.session_state.setdefault("imaging_upload_generation", 0)
    uploads = st.file_uploader(
        "DICOM files, a zip of a DICOM study, a NIfTI (.nii/.nii.gz), PNG/JPEG images or a MedMNIST .npz",
        type=UPLOAD_TYPES, accept_multiple_files=True, key=f"imaging-upload-{generation}")

    def _clear_all() -> None:  # a new uploader widget: every file goes at once
        st.session_state["imaging_upload_generation"] = generation + 1
        st.session_state.pop("deidentified_zip", None)

    if uploads:
        st.button(f"Clear all {len(uploads)} file{'s' * (len(uploads) != 1)}", on_click=_clear_all)
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

from medsyn_imaging.io.windowing import display_slice, window_names  # noqa: E402

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
        from medsyn_imaging.io.nifti_io import nifti_bytes

        if st.download_button("Download as NIfTI (.nii.gz)", data=nifti_bytes(volume),
                              file_name="volume.nii.gz", mime="application/gzip",
                              help="Pixels and geometry only: NIfTI carries no patient header."):
            with Store() as store:  # real pixels left the server: who, what (no names, no values)
                store.append_event(user.username, "export", {
                    "kind": "nifti_volume", "source": "bundled" if source == "Bundled dataset" else "upload",
                    "shape": list(volume.pixels.shape)})
    st.subheader("De-identified header")
    rows = [{"attribute": k, "value": v} for k, v in volume.metadata.items() if k != "labels"]
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch", height=320)
    else:
        st.caption("This source has no header.")

from medsyn_app.slice_viewer import volume_viewer  # noqa: E402

volume_viewer([("", volume)], key=f"imaging-{choice}", time=time)  # axial/coronal/sagittal, cached


def deidentified_download(deid_input, key: tuple) -> None:
    """De-identify the current DICOM input for sharing, with the PS3.15 options (same as the CLI)."""
    from medsyn_imaging.io.deidentify import BlackoutRecipe, Deidentifier, DeidOptions
    from medsyn_imaging.io.sources import deidentify_to_zip

    st.divider()
    st.subheader("De-identified DICOM for sharing")
    st.caption("DICOM PS3.15 Basic Profile by allowlist: only attributes needed to view and interpret the "
               "images are kept; names, IDs, dates, free text, private tags, overlays and icons go, UIDs "
               "are replaced. Images that usually show text in their pixels (ultrasound, screenshots, "
               "BurnedInAnnotation = YES) are refused unless you black out the text areas with a recipe "
               "or allow burned-in text. Details: docs/deidentification.md.")
    with st.form("deidentify"):
        left, right = st.columns(2)
        retain_dates = left.checkbox("Retain dates, shifted (Modified Dates option)")
        shift = left.number_input("Date shift in days (0 = secret random shift)", value=0, step=1)
        patient = left.checkbox("Retain patient characteristics (sex, age, size, weight)")
        device = right.checkbox("Retain device identity (station name, serial number)")
        descriptors = right.checkbox("Clean descriptors (keep descriptions that pass a safety check)")
        allow = right.checkbox("Allow burned-in text (pixels unchanged; only after checking them)")
        recipe = st.file_uploader("Blackout recipe (JSON/YAML: rectangles per manufacturer and model)",
                                  type=["json", "yaml", "yml"])
        submitted = st.form_submit_button("De-identify")
    if submitted:
        options = DeidOptions(retain_longitudinal_modified_dates=retain_dates,
                              retain_patient_characteristics=patient, retain_device_identity=device,
                              clean_descriptors=descriptors,
                              date_shift_days=int(shift) if retain_dates and shift else None)
        try:
            blackout = (BlackoutRecipe.from_text(recipe.getvalue().decode("utf-8"), recipe.name)
                        if recipe is not None else None)
            with st.spinner("De-identifying…"):
                data, report = deidentify_to_zip(deid_input, Deidentifier(options=options),
                                                 allow_burned_in=allow, blackout=blackout)
        except (ValueError, FileNotFoundError, UnicodeDecodeError) as exc:
            st.session_state.pop("deidentified_zip", None)
            st.error(str(exc))
        else:
            st.session_state["deidentified_zip"] = (key, data, report)
            with Store() as store:
                store.append_event(user.username, "export", {
                    "kind": "deidentified_dicom", "files": len(report.written), "refused": report.refused,
                    "blacked_out": report.blacked_out, "options": options.enabled()})
    prepared = st.session_state.get("deidentified_zip")
    if prepared is not None and prepared[0] == key:  # a result for this input, not a previous one
        _, data, report = prepared
        st.success(f"{len(report.written)} DICOM files de-identified"
                   + (f", {report.blacked_out} with burned-in text blacked out" if report.blacked_out else "")
                   + (f"; {report.refused} refused for burned-in text" if report.refused else "") + ".")
        for warning in report.warnings:
            st.warning(warning)
        for name, message in report.problems:
            st.warning(f"Skipped {name}: {message}")
        st.download_button("Download de-identified DICOM (.zip)", data=data, file_name="deidentified.zip",
                           mime="application/zip")


# De-identified export of real DICOM: for users who may handle real data (as for uploads).
if source == "Bundled dataset":
    bundled = next(d for d in IMAGING if d.name == name)
    deid_input, deid_key = (bundled.path if bundled.path.is_dir() else None), ("bundled", name)
else:
    deid_input = tuple((f.name, f.getvalue()) for f in uploads)
    deid_key = ("upload", tuple((f.name, f.size) for f in uploads))
if may_upload and deid_input is not None:
    deidentified_download(deid_input, deid_key)

st.divider()
st.caption("Synthetic images are previewed, exported and trained on the **Synthetic scans** page.")
