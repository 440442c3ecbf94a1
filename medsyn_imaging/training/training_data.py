"""Training images for the generators, fitted to the generator's square resolution.

Sources: a bundled MedMNIST name (``pneumoniamnist``), any MedMNIST-style ``.npz``, or a folder with one
sub-folder of images per class (``root/normal/*.png``, ``root/pneumonia/*.dcm``): PNG/JPEG, or DICOM
(de-identified while read; every frame of a multi-frame file is one image). DICOM values become grey levels
by a window: CT (values in HU) by a named preset (``window``, default ``soft tissue``; see
:data:`medsyn_imaging.io.windowing.PRESETS`), X-ray, MR and others by their own 0.5th-99.5th percentiles
(``window="percentile"``, the default for them).

Fitting to the resolution ``R`` (32..256):

* **pad** when the images are square and only a little smaller (``R - size`` even and <= 8, e.g. the
  28x28 MedMNIST images -> 32x32): edge-replicate padding of ``(R - size) / 2`` pixels on each side.
  It is exact and reversible, so generated images are centre-cropped back to 28x28 on sampling.
* **resize** otherwise, with MONAI's ``Resize`` (area averaging when shrinking, bilinear when growing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Human-readable class names of the bundled MedMNIST datasets (from ``data/README.md``).
MEDMNIST_CLASS_NAMES = {
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal or benign"),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")
#: CT window of DICOM training images when none is named.
DEFAULT_CT_WINDOW = "soft tissue"


@dataclass
class ImageTrainingSet:
    """Images (N, C, R, R) uint8 at the generator resolution with labels (N,) int64 in 0..K-1."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    source: str  # e.g. "bundled pneumoniamnist, train split"
    native_size: int  # side of the images before fitting (e.g. 28)
    fit: str  # 'none', 'pad' or 'resize'
    pad: int = 0  # pixels added on each side when fit == 'pad'
    class_counts: list[int] = field(default_factory=list)
    duplicates_removed: int | None = None  # set by :func:`deduplicate` (None: not de-duplicated)
    from_dicom: bool = False  # some images are DICOM slices/frames (several may come from one patient)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def deduplicate(data: ImageTrainingSet) -> ImageTrainingSet:
    """``data`` with exact-duplicate images removed (same pixels, by SHA-256; the first copy is kept).

    DP-SGD protects one *record*; an image stored twice is one person counted twice, so DP training runs
    on distinct images. (Adding one image to a set changes the de-duplicated set by at most one image,
    so DP on the result is DP on the input.) The number removed follows from the two image counts,
    which are treated as public, and is shown on the model card.
    """
    import dataclasses
    import hashlib

    seen: set[bytes] = set()
    keep = []
    for i, image in enumerate(data.images):
        digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()
        if digest not in seen:
            seen.add(digest)
            keep.append(i)
    idx = np.asarray(keep, dtype=np.int64)
    labels = data.labels[idx]
    counts = np.bincount(labels, minlength=len(data.class_names)).tolist() if len(labels) else []
    return dataclasses.replace(data, images=data.images[idx], labels=labels, class_counts=counts,
                               duplicates_removed=len(data.images) - len(idx))


def _fit_to_resolution(images: np.ndarray, resolution: int) -> tuple[np.ndarray, str, int]:
    """(N, C, H, W) uint8 -> (N, C, R, R) uint8, the fit used and the padding per side."""
    _, _, h, w = images.shape
    if h == w == resolution:
        return images, "none", 0
    if h == w and 0 < resolution - h <= 8 and (resolution - h) % 2 == 0:
        pad = (resolution - h) // 2
        return np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge"), "pad", pad
    return np.stack([_resize(img, resolution) for img in images]), "resize", 0


def _resize(image: np.ndarray, resolution: int) -> np.ndarray:
    """One (C, H, W) uint8 image -> (C, R, R) uint8 with MONAI's Resize."""
    from monai.transforms import Resize

    shrinking = max(image.shape[1:]) > resolution
    resize = Resize((resolution, resolution), mode="area" if shrinking else "bilinear",
                    **({} if shrinking else {"align_corners": False}))
    out = np.asarray(resize(image.astype(np.float32)))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _from_medmnist(source: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    from medsyn_imaging.io.datasets import SPLITS, load_medmnist

    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    data = load_medmnist(source)
    images = data.images[split]
    images = images[:, None] if images.ndim == 3 else np.moveaxis(images, -1, 1)
    names = MEDMNIST_CLASS_NAMES.get(data.name) or tuple(f"class {k}" for k in range(data.n_classes))
    kind = "bundled " if not Path(str(source)).suffix else ""
    return images.astype(np.uint8), data.labels[split], list(names), f"{kind}{data.name}, {split} split"


def _read_image(path: Path, mode: str, label: str) -> np.ndarray:
    """One PNG/JPEG -> (C, H, W) uint8 in ``mode`` 'L' or 'RGB' (16-bit grayscale scaled to 8 bits)."""
    from medsyn_imaging.io.image_io import open_image

    with open_image(path, label) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
            gray = np.clip(np.rint(arr / top * 255), 0, 255).astype(np.uint8)
            arr = gray[None] if mode == "L" else np.repeat(gray[None], 3, axis=0)
        else:
            arr = np.asarray(img.convert(mode), dtype=np.uint8)
            arr = arr[None] if mode == "L" else np.moveaxis(arr, -1, 0)
    return arr


def dicom_to_grey(volume, window: str | None = None) -> np.ndarray:
    """A DICOM :class:`~medsyn_imaging.io.volume.Volume` -> (Z, H, W) uint8 grey levels: CT (HU) through a
    window preset, anything else (X-ray, MR …) through its own 0.5th-99.5th percentiles."""
    from medsyn_imaging.io.windowing import PRESETS, apply_window

    pixels = np.asarray(volume.pixels[0] if volume.is_4d else volume.pixels, dtype=np.float32)
    if volume.rgb:
        raise ValueError(f"{volume.source} is a colour image; train colour images from PNG files.")
    is_ct = volume.units == "HU" or volume.modality == "CT"
    if window in (None, "", "auto"):
        window = DEFAULT_CT_WINDOW if is_ct else "percentile"
    if window == "percentile":
        lo, hi = np.percentile(pixels, [0.5, 99.5])
        return apply_window(pixels, float((lo + hi) / 2), float(max(hi - lo, 1e-6)))
    if window not in PRESETS:
        raise ValueError(f"Unknown window {window!r}; use auto, percentile or one of {', '.join(PRESETS)}.")
    if not is_ct:
        raise ValueError(f"The window {window!r} is in Hounsfield units but {volume.source} is "
                         f"{volume.modality or 'not CT'}; use 'percentile' for X-ray and MR.")
    return apply_window(pixels, *PRESETS[window])


def _read_dicom_images(path: Path, label: str, window: str | None) -> list[np.ndarray]:
    """Every frame of one DICOM file as (1, H, W) uint8 (see :func:`dicom_to_grey`)."""
    from medsyn_imaging.io.dicom_read import read_dicom_file

    try:
        volume = read_dicom_file(path)
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None
    return [frame[None] for frame in dicom_to_grey(volume, window)]


def _from_png_folder(root: Path, resolution: int, channels: int | None, window: str | None = None):
    """Images of ``root/<class>/*.png`` (or ``*.dcm``); an unreadable image is an error naming
    ``<class>/<file>`` (the generator must not silently train on fewer images than the user gave it)."""
    from medsyn_imaging.io.image_io import open_image

    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {d.name: sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES)
             for d in class_dirs}
    files = {name: fs for name, fs in files.items() if fs}
    if not files:
        raise ValueError(
            f"{root} has no class sub-folders with images. Put one folder per class in it, e.g. "
            f"{root}/normal/*.png and {root}/pneumonia/*.png."
        )
    if channels is None:
        gray_modes = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "P"}
        channels = 1
        for name, fs in files.items():
            for f in fs:
                if f.suffix.lower() in DICOM_SUFFIXES:
                    continue  # DICOM is trained grey (windowed)
                with open_image(f, f"{name}/{f.name}", decode=False) as img:  # header only
                    if img.mode not in gray_modes:
                        channels = 3
                        break
    mode = "L" if channels == 1 else "RGB"
    images, labels = [], []
    n_dicom = 0
    for k, (name, fs) in enumerate(files.items()):
        for f in fs:
            if f.suffix.lower() in DICOM_SUFFIXES:
                read = _read_dicom_images(f, f"{name}/{f.name}", window)
                read = [np.repeat(g, 3, axis=0) for g in read] if channels == 3 else read
                n_dicom += 1
            else:
                read = [_read_image(f, mode, f"{name}/{f.name}")]
            for img in read:
                if img.shape[1:] != (resolution, resolution):
                    img = _resize(img, resolution)
                images.append(img)
                labels.append(k)
    kind = "DICOM" if n_dicom == sum(len(fs) for fs in files.values()) else "PNG" if not n_dicom else "image"
    return (np.stack(images), np.asarray(labels, dtype=np.int64), list(files), f"{kind} folder {root.name}",
            n_dicom)


def load_training_images(source: str | Path, resolution: int, split: str = "train",
                         channels: int | None = None, window: str | None = None) -> ImageTrainingSet:
    """Load ``source`` (bundled MedMNIST name, ``.npz`` or class-folder of PNG/DICOM images) fitted to
    ``resolution``.

    ``channels`` (1 or 3) converts PNG folders (default: 1 if every image is grayscale, else 3);
    MedMNIST files keep their own channels. ``split`` applies to MedMNIST and to a folder with ``train``,
    ``val`` and ``test`` sub-folders (then only ``train`` is trained on by default, and the evaluation's
    real test images are images the generator never saw: the holdout); ``window`` to DICOM only (see the
    module docstring).
    """
    from medsyn_imaging.networks.stylegan2 import SUPPORTED_RESOLUTIONS

    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ValueError(f"Resolution {resolution} is not supported; use one of {SUPPORTED_RESOLUTIONS}.")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}.")
    path = Path(source)
    if path.is_dir() and all((path / s).is_dir() for s in ("train", "val", "test")):
        path = path / split  # the other splits are kept back for the evaluation
    if path.is_dir():
        images, labels, names, desc, n_dicom = _from_png_folder(path, resolution, channels, window)
        native, fit, pad = int(images.shape[-1]), "resize", 0
        fitted = images
    else:
        if path.suffix and path.suffix.lower() != ".npz":
            raise ValueError(
                f"{path} is neither a folder of class sub-folders with PNGs nor a MedMNIST .npz file."
            )
        images, labels, names, desc = _from_medmnist(source, split)
        n_dicom = 0
        native = int(images.shape[-1])
        fitted, fit, pad = _fit_to_resolution(images, resolution)
    if len(images) < 2:
        raise ValueError(f"{desc} has {len(images)} image(s); a generator needs at least a few dozen.")
    if int(labels.min()) < 0 or int(labels.max()) >= len(names):
        raise ValueError(f"{desc} has labels outside 0..{len(names) - 1}.")
    counts = np.bincount(labels, minlength=len(names)).tolist()
    return ImageTrainingSet(fitted, labels, names, desc, native, fit, pad, counts, from_dicom=n_dicom > 0)


def crop_to_native(images: np.ndarray, pad: int) -> np.ndarray:
    """Undo the 'pad' fit: (N, C, R, R) -> (N, C, R - 2 pad, R - 2 pad)."""
    return images[..., pad:-pad, pad:-pad] if pad else images
