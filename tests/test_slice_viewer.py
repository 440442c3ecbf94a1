"""The three-plane slice viewer: orientation, proportions, windows, and its place on the pages."""

from __future__ import annotations

import numpy as np
import pytest

from medsyn_imaging.io.slice_viewer import render_planes
from medsyn_imaging.io.volume import Volume

SPACING = (1.0, 2.0, 3.0)  # mm towards L, P, S


def canonical_phantom() -> np.ndarray:
    """A[L, P, S] (20 x 16 x 12): background 0, a body 100, and a bright marker 1000 in the patient's
    left-anterior-superior corner."""
    a = np.zeros((20, 16, 12), dtype=np.float32)
    a[2:18, 2:14, 2:10] = 100.0
    a[14:17, 3:6, 7:9] = 1000.0
    return a


def as_lps_axial(a: np.ndarray) -> Volume:
    """The usual DICOM axial layout: columns towards L, rows towards P, slices towards S."""
    affine = np.diag([*SPACING, 1.0])
    return Volume(np.transpose(a, (2, 1, 0)).copy(), affine=affine)


def as_flipped(a: np.ndarray) -> Volume:
    """Columns towards R and slices towards I (a feet-first, mirrored series)."""
    nl, _, ns = a.shape
    affine = np.diag([-SPACING[0], SPACING[1], -SPACING[2], 1.0])
    affine[:3, 3] = [(nl - 1) * SPACING[0], 0.0, (ns - 1) * SPACING[2]]
    return Volume(np.transpose(a, (2, 1, 0))[::-1, :, ::-1].copy(), affine=affine)


def as_sagittal(a: np.ndarray) -> Volume:
    """A sagittal acquisition: columns towards P, rows towards I, slices towards L."""
    ns = a.shape[2]
    pixels = np.transpose(a, (0, 2, 1))[:, ::-1, :]  # [L, S reversed, P]
    affine = np.zeros((4, 4))
    affine[:3, 0] = [0.0, SPACING[1], 0.0]
    affine[:3, 1] = [0.0, 0.0, -SPACING[2]]
    affine[:3, 2] = [SPACING[0], 0.0, 0.0]
    affine[:3, 3] = [0.0, 0.0, (ns - 1) * SPACING[2]]
    affine[3, 3] = 1.0
    return Volume(pixels.copy(), affine=affine)


def _marker_quadrant(image: np.ndarray) -> tuple[str, str]:
    y, x = np.unravel_index(np.argmax(image), image.shape)
    return ("top" if y < image.shape[0] / 2 else "bottom"), ("left" if x < image.shape[1] / 2 else "right")


def test_every_acquisition_layout_shows_the_same_radiological_planes():
    a = canonical_phantom()
    rendered = [
        render_planes(v, window=(500.0, 1000.0)) for v in (as_lps_axial(a), as_flipped(a), as_sagittal(a))
    ]
    assert [r.orientation for r in rendered] == ["LPS", "RPI", "PIL"]
    reference = rendered[0]
    for other in rendered[1:]:
        for plane in ("axial", "coronal", "sagittal"):
            assert np.array_equal(other.stacks[plane], reference.stacks[plane]), plane
    # the left-anterior-superior marker: axial (seen from the feet: anterior up, patient's left on the
    # right), coronal (superior up, left on the right), sagittal (superior up, anterior on the left)
    mid = {"axial": 7, "coronal": 4, "sagittal": 15}
    expected = {"axial": ("top", "right"), "coronal": ("top", "right"), "sagittal": ("top", "left")}
    for plane, index in mid.items():
        assert _marker_quadrant(reference.image(plane, index, letters=False)) == expected[plane], plane
    assert [reference.n_slices(p) for p in ("axial", "coronal", "sagittal")] == [12, 16, 20]


def test_pixels_are_square_in_millimetres_and_captions_say_the_geometry():
    r = render_planes(as_lps_axial(canonical_phantom()), max_side=400, min_side=0)
    # axial: 16 rows of 2 mm x 20 columns of 1 mm -> 32 x 20 screen pixels of 1 mm
    assert r.stacks["axial"].shape[1:] == (32, 20)
    assert r.stacks["coronal"].shape[1:] == (36, 20)  # 12 x 3 mm rows, 20 x 1 mm columns
    assert r.stacks["sagittal"].shape[1:] == (18, 16)  # 12 x 3 mm rows, 16 x 2 mm columns, 2 mm pixels
    assert r.caption("axial", 0) == "Axial 1/12 · 3 mm slices · 2 x 1 mm pixels · top A, left R"
    letters = r.image("sagittal", 3)
    assert letters.shape == (*r.stacks["sagittal"].shape[1:], 3)  # RGB with the edge letters drawn in


def test_windows_presets_and_free_window_level():
    v = as_lps_axial(canonical_phantom())
    v.units, v.modality = "HU", "CT"
    bone = render_planes(v, window="bone")  # 400 / 1800: the body (100 HU) is dark grey, the marker white
    assert bone.window == (400.0, 1800.0)
    soft = render_planes(v, window="soft tissue")
    assert soft.window == (40.0, 400.0)
    axial = soft.image("axial", 7, letters=False)  # through the marker
    assert axial.max() == 255 and 160 <= np.median(axial[axial > 0]) <= 170  # body: (100 + 160) / 400
    free = render_planes(v, window=(100.0, 1.0))
    assert free.window == (100.0, 1.0)
    assert {0, 128, 255} <= set(np.unique(free.stacks["axial"]).tolist())  # air, body at the level, marker
    with pytest.raises(ValueError, match="positive"):
        render_planes(v, window=(0.0, 0.0))
    with pytest.raises(ValueError, match="Unknown window"):
        render_planes(v, window="sunset")


def test_a_single_image_has_only_its_axial_plane_and_oblique_scans_are_flagged():
    single = Volume(np.random.default_rng(0).normal(size=(1, 32, 32)).astype(np.float32))
    assert render_planes(single).planes == ("axial",)
    affine = np.eye(4)
    angle = np.radians(20)
    affine[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    oblique = render_planes(Volume(np.zeros((4, 8, 8), np.float32), affine=affine))
    assert oblique.oblique and "oblique" in oblique.notes[0]


def test_imaging_page_shows_the_three_planes_of_a_bundled_series():
    from app_helpers import logged_in

    at = logged_in("pages/imaging.py", "clinician")
    at.run()
    dataset = next(s for s in at.selectbox if s.label == "Dataset")
    dataset.select(next(o for o in dataset.options if "ge_mr_fmri" in o)).run()
    assert not at.exception
    captions = " ".join(str(c.value) for c in at.caption)
    markdown = " ".join(str(m.value) for m in at.markdown)
    for plane in ("Axial", "Coronal", "Sagittal"):
        assert plane in captions or plane in markdown, plane
    window = next(s for s in at.selectbox if s.label == "Viewer window")
    assert "custom window/level" in window.options
    window.select("custom window/level").run()
    assert not at.exception and any(n.label == "Level (centre)" for n in at.number_input)


def test_stacks_of_separate_2d_images_are_not_volumes():
    from medsyn_imaging.io.image_io import read_medmnist
    from medsyn_imaging.io.slice_viewer import is_volume

    assert not is_volume(read_medmnist("pneumoniamnist", limit=8))  # 8 chest X-rays, not slices of a body
    assert is_volume(as_lps_axial(canonical_phantom()))
    assert not is_volume(Volume(np.zeros((1, 8, 8), np.float32)))
