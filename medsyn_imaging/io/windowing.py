"""Display windows: named presets (CT, in Hounsfield units), the window a file suggests, auto-window.

A window is ``(center, width)``: values ``center - width/2`` and below show black, ``center + width/2``
and above white, linear in between (DICOM PS3.3 C.11.2.1.2, "linear" VOI LUT function).
"""

from __future__ import annotations

import numpy as np

from medsyn_imaging.io.volume import Volume

#: Standard CT windows (center, width) in HU.
PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "soft tissue": (40.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "bone": (400.0, 1800.0),
}
AUTO = "auto"
FROM_FILE = "from file"


def auto_window(pixels: np.ndarray, low_percentile: float = 1.0,
                high_percentile: float = 99.0) -> tuple[float, float]:
    """(center, width) spanning the 1st-99th percentile of the values (robust to outliers)."""
    values = np.asarray(pixels, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.5, 1.0
    lo, hi = np.percentile(values, [low_percentile, high_percentile])
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    width = max(float(hi - lo), 1e-6)
    return float(lo + width / 2), width


def window_names(volume: Volume) -> list[str]:
    """Window choices that make sense for ``volume``: file window and CT presets where they apply."""
    names = [AUTO]
    if volume.window is not None:
        names.append(FROM_FILE)
    if volume.units == "HU" or volume.modality == "CT":
        names.extend(PRESETS)
    return names


def resolve_window(volume: Volume, name: str) -> tuple[float, float]:
    """(center, width) for a window name from :func:`window_names` (or any preset name)."""
    if name == FROM_FILE and volume.window is not None:
        return volume.window
    if name in PRESETS:
        return PRESETS[name]
    if name != AUTO:
        raise ValueError(f"Unknown window {name!r}; use one of: {AUTO}, {FROM_FILE}, {', '.join(PRESETS)}.")
    return auto_window(volume.pixels)


def apply_window(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map values to display grey levels uint8 0-255 with a linear window."""
    if width <= 0:
        raise ValueError(f"Window width must be positive, got {width}.")
    lo = center - width / 2.0
    scaled = (np.asarray(pixels, dtype=np.float32) - lo) / width
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def display_slice(volume: Volume, index: int, time: int = 0, window: str = AUTO) -> np.ndarray:
    """One slice ready to show: (Y, X) uint8 for grey (windowed), (Y, X, 3) uint8 for RGB."""
    image = volume.slice_image(index, time)
    if volume.rgb:
        if image.dtype == np.uint8:
            return image
        center, width = auto_window(image)
        return apply_window(image, center, width)
    center, width = resolve_window(volume, window) if window != AUTO else auto_window(
        volume.pixels[time] if volume.is_4d else volume.pixels)
    return apply_window(image, center, width)
