"""Three-plane slice rendering of a volume: axial, coronal and sagittal, windowed, with true proportions.

:func:`render_planes` turns a :class:`~medsyn_imaging.io.volume.Volume` into pre-rendered uint8 slice stacks
(one per plane), so that scrolling is only indexing (the app caches the result per volume and window).

1. The voxel axes are reordered and flipped to the patient axes they are closest to (nibabel's
   ``io_orientation`` on the LPS affine): the array is then indexed ``[i, j, k]`` with ``i`` towards the
   patient's Left, ``j`` Posterior, ``k`` Superior. No resampling: oblique scans are shown in their nearest
   plane (the caption says so).
2. The window (``(center, width)`` or a preset name of :mod:`medsyn_imaging.io.windowing`) maps values to
   grey levels once for the whole volume.
3. Each plane is cut in the radiological convention: axial seen from the feet (patient's right on the
   screen's left, anterior at the top), coronal from the front (right on the left, superior at the top),
   sagittal from the patient's right (anterior on the left, superior at the top).
4. Slices are resized so that a screen pixel is square in millimetres (the finer of the two spacings),
   with the longest side between ``min_side`` and ``max_side`` pixels; :meth:`RenderedPlanes.image` draws
   the edge letters (A/P, R/L, S/I).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medsyn_imaging.io.volume import Volume
from medsyn_imaging.io.windowing import apply_window, auto_window, resolve_window

PLANES = ("axial", "coronal", "sagittal")
#: Letters at the (top, bottom, left, right) edges of each plane's image.
EDGE_LETTERS = {
    "axial": ("A", "P", "R", "L"),
    "coronal": ("S", "I", "R", "L"),
    "sagittal": ("S", "I", "A", "P"),
}
#: What the slider of each plane moves through, first slice to last.
SLICE_DIRECTION = {
    "axial": "inferior to superior",
    "coronal": "anterior to posterior",
    "sagittal": "right to left",
}
_LPS_LABELS = (("R", "L"), ("A", "P"), ("I", "S"))


def is_volume(volume: Volume) -> bool:
    """True for a grey volume with more than one slice; False for colour images and for stacks of separate
    2D images (PNG folders, MedMNIST, 2D DICOM exports: modality OT without patient geometry)."""
    if volume.rgb or volume.n_slices < 2:
        return False
    return not (volume.modality == "OT" and np.allclose(volume.affine, np.eye(4)))


def orientation_codes(affine: np.ndarray) -> str:
    """Where the voxel axes (column, row, slice) point in the patient, e.g. ``'LPS'`` (DICOM axial)."""
    import nibabel as nib

    return "".join(nib.aff2axcodes(affine, labels=_LPS_LABELS))


def canonical_lps(
    pixels: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, tuple[float, float, float], bool]:
    """(Z, Y, X) pixels with their LPS affine -> (array [L, P, S], spacing (L, P, S) mm, oblique?).

    ``oblique`` is True when a voxel axis is more than 1 degree off the patient axis it was mapped to."""
    from nibabel.orientations import apply_orientation, io_orientation

    data = np.transpose(np.asarray(pixels), (2, 1, 0))  # (x, y, z) = (column, row, slice)
    ornt = io_orientation(affine)  # for each voxel axis: the patient axis it is closest to, and its sign
    canonical = apply_orientation(data, ornt)
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    spacing = [0.0, 0.0, 0.0]
    oblique = False
    for axis, (target, _) in enumerate(ornt):
        spacing[int(target)] = float(norms[axis])
        direction = np.abs(affine[:3, axis]) / max(norms[axis], 1e-12)
        oblique |= bool(direction[int(target)] < np.cos(np.radians(1.0)))
    return np.ascontiguousarray(canonical), (spacing[0], spacing[1], spacing[2]), oblique


@dataclass
class RenderedPlanes:
    """Pre-rendered slices of one volume: ``stacks[plane]`` is (n, H, W) uint8 in display orientation."""

    stacks: dict[str, np.ndarray]
    pixel_mm: dict[
        str, tuple[float, float]
    ]  # mm per voxel along (rows, columns) of each plane, before resizing
    slice_mm: dict[str, float]  # mm between slices of each plane
    orientation: str  # voxel axes of the source, e.g. 'LPS'
    window: tuple[float, float]
    oblique: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def planes(self) -> tuple[str, ...]:
        return tuple(p for p in PLANES if p in self.stacks)

    def n_slices(self, plane: str) -> int:
        return int(self.stacks[plane].shape[0])

    def image(self, plane: str, index: int, letters: bool = True) -> np.ndarray:
        """Slice ``index`` (0-based, clipped to the stack) of ``plane``: (H, W) uint8, or with ``letters``
        (H, W, 3) uint8 with the edge letters drawn in (drawn per call: the stacks stay one byte a pixel)."""
        stack = self.stacks[plane]
        image = stack[int(np.clip(index, 0, len(stack) - 1))]
        return _letters(image, plane) if letters else image

    def caption(self, plane: str, index: int) -> str:
        """E.g. 'Axial 12/32 · 2 mm slices · 0.8 x 0.8 mm pixels · top A, left R'."""
        n = self.n_slices(plane)
        top, _, left, _ = EDGE_LETTERS[plane]
        rows, cols = self.pixel_mm[plane]
        return (
            f"{plane.capitalize()} {int(np.clip(index, 0, n - 1)) + 1}/{n} · {self.slice_mm[plane]:g} mm "
            f"slices · {rows:g} x {cols:g} mm pixels · top {top}, left {left}"
        )


def _resize_stack(
    stack: np.ndarray, row_mm: float, col_mm: float, max_side: int, min_side: int = 0
) -> np.ndarray:
    """(n, H, W) uint8 -> square-mm pixels, longest side between ``min_side`` and ``max_side`` (bilinear)."""
    import torch
    import torch.nn.functional as F

    n, h, w = stack.shape
    unit = min(row_mm, col_mm) if min(row_mm, col_mm) > 0 else 1.0
    out_h, out_w = h * row_mm / unit, w * col_mm / unit
    longest = max(out_h, out_w)
    scale = min(1.0, max_side / longest) if max_side else 1.0
    if min_side and longest * scale < min_side:
        scale = min_side / longest  # small volumes (64 px) are enlarged so the letters fit
    size = (max(1, int(round(out_h * scale))), max(1, int(round(out_w * scale))))
    if size == (h, w):
        return stack
    t = torch.from_numpy(np.ascontiguousarray(stack)).float()[:, None]
    resized = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return resized[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def _letters(image: np.ndarray, plane: str) -> np.ndarray:
    """Draw the edge letters of ``plane`` onto a (H, W) uint8 image (yellow on grey -> RGB)."""
    from PIL import Image, ImageDraw

    rgb = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(rgb)
    h, w = image.shape
    top, bottom, left, right = EDGE_LETTERS[plane]
    colour = (255, 214, 0)
    for text, (x, y) in (
        (top, (w // 2 - 3, 2)),
        (bottom, (w // 2 - 3, h - 12)),
        (left, (3, h // 2 - 5)),
        (right, (w - 9, h // 2 - 5)),
    ):
        draw.text((x, y), text, fill=colour)
    return np.asarray(rgb)


def render_planes(
    volume: Volume,
    window: str | tuple[float, float] = "auto",
    time: int = 0,
    max_side: int = 384,
    min_side: int = 192,
) -> RenderedPlanes:
    """Pre-render every slice of the three planes of a grey ``volume`` (see the module docstring).

    ``window``: a name (``auto``, ``from file``, a CT preset) or ``(center, width)``; ``time``: the time
    point of a 4D series. Planes across an axis of one voxel are left out (a single 2D image has only
    its axial plane). Memory: one byte per displayed pixel, e.g. ~200 MB for a 512x512x300 CT at 384 px.
    """
    if volume.rgb:
        raise ValueError("The slice viewer shows grey volumes; colour images are shown as they are.")
    pixels = volume.pixels[time] if volume.is_4d else volume.pixels
    if isinstance(window, str):
        center, width = auto_window(pixels) if window == "auto" else resolve_window(volume, window)
    else:
        center, width = float(window[0]), float(window[1])
        if width <= 0:
            raise ValueError(f"The window width must be positive, got {width}.")
    array, (s_l, s_p, s_s), oblique = canonical_lps(pixels, volume.affine)
    grey = apply_window(array, center, width)  # [L, P, S] uint8
    cuts = {
        "axial": (
            np.transpose(grey, (2, 1, 0)),
            (s_p, s_l),
            s_s,
        ),  # slices k: rows j (A top), cols i (R left)
        "coronal": (np.transpose(grey[:, :, ::-1], (1, 2, 0)), (s_s, s_l), s_p),  # slices j: rows S top
        "sagittal": (np.transpose(grey[:, :, ::-1], (0, 2, 1)), (s_s, s_p), s_l),  # slices i: cols A left
    }
    stacks, pixel_mm, slice_mm = {}, {}, {}
    for plane, (stack, (row_mm, col_mm), between) in cuts.items():
        if min(stack.shape[1:]) < 2:
            continue  # a line, not an image
        stack = _resize_stack(stack, row_mm, col_mm, max_side, min_side)
        stacks[plane], pixel_mm[plane], slice_mm[plane] = stack, (row_mm, col_mm), between
    notes = []
    if oblique:
        notes.append(
            "The scan is oblique: each plane shows the slices of the voxel axis closest to it, not "
            "resampled onto the patient axes."
        )
    return RenderedPlanes(
        stacks, pixel_mm, slice_mm, orientation_codes(volume.affine), (center, width), oblique, notes
    )
