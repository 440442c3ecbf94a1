"""Streamlit glue of the three-plane slice viewer (the rendering is :mod:`medsyn_imaging.io.slice_viewer`).

:func:`volume_viewer` shows one or more volumes (e.g. a real and a synthetic one) row by row, each with its
axial, coronal and sagittal slice side by side; one window choice (presets or free window/level) and one
slider per plane apply to every row (the slider moves through the same fraction of each volume). Rendered
slice stacks are cached per volume and window, so moving a slider only picks a pre-rendered image.
"""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from medsyn_imaging.io.volume import Volume

CUSTOM = "custom window/level"
#: Offered first for CT (the issue's clinical presets), then the other presets.
FIRST_PRESETS = ("lung", "soft tissue", "bone", "brain")


def volume_token(volume: Volume) -> str:
    """A cheap cache key of a volume: source, shape, geometry and a strided sample of its voxels."""
    digest = hashlib.sha1()
    flat = volume.pixels.reshape(-1)
    step = max(1, flat.size // 1_000_000)
    for part in (
        volume.source,
        str(volume.pixels.shape),
        str(volume.pixels.dtype),
        volume.units,
        volume.modality,
    ):
        digest.update(part.encode("utf-8", "replace") + b"\0")
    digest.update(np.ascontiguousarray(volume.affine).tobytes())
    digest.update(np.ascontiguousarray(flat[::step]).tobytes())
    return digest.hexdigest()


@st.cache_resource(show_spinner="Rendering the slices…", max_entries=6)
def _rendered(token: str, window, time: int, _volume: Volume):
    from medsyn_imaging.io.slice_viewer import render_planes

    return render_planes(_volume, window=window, time=time)


def _window_choice(volume: Volume, key: str):
    from medsyn_imaging.io.windowing import window_names

    names = window_names(volume)
    ordered = [n for n in names if n not in FIRST_PRESETS]
    presets = [n for n in FIRST_PRESETS if n in names]
    options = ordered[:2] + presets + ordered[2:] + [CUSTOM]  # auto, from file, clinical presets, others
    choice = st.selectbox(
        "Viewer window",
        options,
        key=f"{key}-window",
        help="auto = 1st to 99th percentile; presets in Hounsfield units (CT); custom: "
        "any level (centre) and width",
    )
    if choice != CUSTOM:
        return choice
    from medsyn_imaging.io.windowing import auto_window

    center, width = volume.window or auto_window(volume.pixels)
    left, right = st.columns(2)
    level = left.number_input("Level (centre)", value=float(round(center, 1)), key=f"{key}-level")
    width = right.number_input("Width", value=float(round(width, 1)), min_value=1e-3, key=f"{key}-width")
    return (float(level), float(width))


def volume_viewer(volumes: list[tuple[str, Volume]] | Volume, key: str, time: int = 0) -> None:
    """Axial, coronal and sagittal slices of each ``(title, volume)``, with shared window and sliders.

    Colour images, single 2D images and stacks of separate 2D images are left to the caller's simple viewer
    (nothing is shown)."""
    from medsyn_imaging.io.slice_viewer import is_volume

    if isinstance(volumes, Volume):
        volumes = [("", volumes)]
    volumes = [(title, v) for title, v in volumes if is_volume(v)]
    if not volumes:
        return
    st.subheader("Slice viewer: axial, coronal, sagittal")
    window = _window_choice(volumes[0][1], key)
    try:
        rendered = [
            (title, _rendered(volume_token(v), window, min(time, v.n_timepoints - 1), v))
            for title, v in volumes
        ]
    except ValueError as exc:  # e.g. a HU preset on a series without HU
        st.error(str(exc))
        return
    planes = rendered[0][1].planes
    sliders = st.columns(len(planes))
    fraction = {}
    for column, plane in zip(sliders, planes, strict=True):
        n = rendered[0][1].n_slices(plane)
        index = column.slider(f"{plane.capitalize()} slice", 1, n, (n + 1) // 2, key=f"{key}-{plane}") - 1
        fraction[plane] = index / max(1, n - 1)
    for title, planes_of in rendered:
        first = planes_of.stacks[planes[0]]
        geometry = (
            f"orientation {planes_of.orientation} (where the voxel columns, rows and slices point); "
            f"window level {planes_of.window[0]:g}, width {planes_of.window[1]:g}"
        )
        st.markdown(f"**{title}** · {geometry}" if title else geometry)
        for note in planes_of.notes:
            st.caption(note)
        columns = st.columns(len(planes))
        for column, plane in zip(columns, planes, strict=True):
            if plane not in planes_of.stacks:
                continue
            index = int(round(fraction[plane] * (planes_of.n_slices(plane) - 1)))
            column.image(planes_of.image(plane, index), width=min(384, max(192, first.shape[2])))
            column.caption(planes_of.caption(plane, index))
