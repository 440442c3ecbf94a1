"""Labelled image sets for the imaging evaluation: real splits and synthetic images, as (N, C, H, W) uint8.

Real data (``DATA``) is a MedMNIST-style ``.npz`` (``{train,val,test}_{images,labels}``; also a bundled
name such as ``pneumoniamnist``) or a folder of images by class: either ``train/``, ``val/``, ``test/``
each holding one sub-folder per class, or just the class sub-folders (then split 70/10/20, stratified,
with a fixed seed). Synthetic images come as an ``.npz`` with ``images`` and ``labels`` or as a folder of
PNGs by class. Class folders named ``0``, ``1`` … are read as those label numbers; other names are sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medsyn_imaging.io.datasets import SPLITS, load_medmnist

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Split fractions used when a folder by class has no train/val/test sub-folders.
DEFAULT_SPLIT_FRACTIONS = (0.7, 0.1, 0.2)


@dataclass
class LabelledImages:
    """``images`` (N, C, H, W) uint8 in [0, 255] and ``labels`` (N,) int64 class indices."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        self.images = to_nchw_uint8(self.images)
        self.labels = np.asarray(self.labels).reshape(-1).astype(np.int64)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels: they must match.")
        if len(self.labels) and self.labels.min() < 0:
            raise ValueError("Labels must be class indices 0, 1, 2 …; found a negative label.")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: np.ndarray) -> LabelledImages:
        return LabelledImages(self.images[index], self.labels[index])


@dataclass
class ImageDataset:
    """Real labelled images in official (or seeded) train/val/test splits."""

    name: str
    splits: dict[str, LabelledImages]
    class_names: list[str] = field(default_factory=list)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.splits["train"].shape

    def describe(self) -> str:
        sizes = "/".join(str(len(self.splits[s])) for s in SPLITS)
        c, h, w = self.image_shape
        return f"{self.name}: {sizes} train/val/test, {c}x{h}x{w}, {self.n_classes} classes"


def to_nchw_uint8(images: np.ndarray) -> np.ndarray:
    """Return images as (N, C, H, W) uint8, C in {1, 3}.

    Accepts (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3 and uint8 values, or floats in
    [0, 1] (scaled by 255). Anything else is a clear error rather than a silent guess.
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(
            f"Images must be shaped (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 channels; "
            f"got {arr.shape}."
        )
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 1 or np.isnan(arr).any()):
            raise ValueError("Float images must hold values in [0, 1] (no NaN); rescale them or use uint8.")
        return np.ascontiguousarray(np.round(arr * 255).astype(np.uint8))
    if np.issubdtype(arr.dtype, np.integer) and (arr.size == 0 or (arr.min() >= 0 and arr.max() <= 255)):
        return np.ascontiguousarray(arr.astype(np.uint8))
    raise ValueError(
        f"Images must be uint8 (0-255) or floats in [0, 1]; got {arr.dtype} with values "
        f"{arr.min()}..{arr.max()}. Convert them to 8-bit first."
    )


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _ordered_class_names(names: list[str]) -> list[str]:
    """Numeric names in numeric order (``0, 1, 2, 10``), else alphabetical."""
    if names and all(n.isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def read_image_file(path: Path) -> np.ndarray:
    """One 8-bit image as (C, H, W) uint8: grey modes (L, LA, 1) -> 1 channel, others -> 3 (RGB)."""
    from medsyn_imaging.io.image_io import open_image

    with open_image(path, f"{path.parent.name}/{path.name}") as img:
        if img.mode in ("I;16", "I", "F", "I;16B", "I;16L"):
            raise ValueError(f"{path} is a {img.mode} (16-bit or float) image; save it as 8-bit PNG.")
        img = img.convert("L") if img.mode in ("L", "LA", "1") else img.convert("RGB")
        arr = np.asarray(img)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def read_class_folder(folder: str | Path,
                      class_names: list[str] | None = None) -> tuple[LabelledImages, list[str]]:
    """Read ``folder/<class>/*.png`` into labelled images; returns them and the class names.

    With ``class_names`` given (e.g. the real data's classes), each sub-folder must be one of them and
    gets that index; otherwise the classes are the sub-folders in numeric/alphabetical order.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder not found: {folder}")
    subdirs = _class_folders(folder)
    if not subdirs:
        raise ValueError(f"{folder} has no class sub-folders; put each class's images in its own folder.")
    names = [d.name for d in subdirs]
    if class_names is None:
        class_names = _ordered_class_names(names)
    unknown = sorted(set(names) - set(class_names))
    if unknown:
        raise ValueError(
            f"{folder} has class folders {unknown} that the real data does not have "
            f"(its classes are {class_names})."
        )
    images, labels = [], []
    for d in subdirs:
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for p in files:
            images.append(read_image_file(p))
            labels.append(class_names.index(d.name))
    if not images:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders.")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"Images in {folder} differ in size or channels {sorted(shapes)}; "
                         "resize them to one shape.")
    return LabelledImages(np.stack(images), np.asarray(labels)), class_names


def _stratified_split(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = int(round(DEFAULT_SPLIT_FRACTIONS[0] * len(idx)))
        n_val = int(round(DEFAULT_SPLIT_FRACTIONS[1] * len(idx)))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])
    return {s: np.sort(np.concatenate(v)) for s, v in parts.items()}


def load_image_dataset(source: str | Path, split_seed: int = 0) -> ImageDataset:
    """Load real labelled images with train/val/test splits (see the module docstring for layouts)."""
    path = Path(source)
    if path.is_dir():
        if all((path / s).is_dir() for s in SPLITS):
            train, names = read_class_folder(path / "train")
            splits = {"train": train}
            for s in ("val", "test"):
                splits[s], _ = read_class_folder(path / s, names)
        else:
            everything, names = read_class_folder(path)
            parts = _stratified_split(everything.labels, split_seed)
            splits = {s: everything.subset(i) for s, i in parts.items()}
        dataset = ImageDataset(path.name, splits, names)
    else:
        if path.suffix and not path.exists():
            raise FileNotFoundError(f"Data file not found: {path}")
        if path.suffix and path.suffix.lower() != ".npz":
            raise ValueError(f"{path.name}: DATA must be a MedMNIST-style .npz or a folder of images "
                             "by class.")
        medmnist = load_medmnist(source)
        splits = {s: LabelledImages(medmnist.images[s], medmnist.labels[s]) for s in SPLITS}
        n_classes = max(int(v.labels.max()) for v in splits.values()) + 1
        dataset = ImageDataset(medmnist.name, splits, [str(i) for i in range(n_classes)])
    shapes = {s: v.shape for s, v in dataset.splits.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"The splits of {path.name} have different image shapes: {shapes}.")
    for s, v in dataset.splits.items():
        if len(v) == 0:
            raise ValueError(f"The {s} split of {path.name} is empty; every split needs images.")
    return dataset


def sample_generator(path: str | Path, class_names: list[str], real: ImageDataset | None = None,
                     n: int | None = None, seed: int = 0, truncation: float = 1.0) -> LabelledImages:
    """Sample a saved generator into labelled images whose class names match the real data's."""
    from medsyn_imaging.training.generator_store import load_generator

    generator = load_generator(path)
    if len(generator.class_names) != len(class_names):
        raise ValueError(
            f"The generator knows {len(generator.class_names)} classes ({generator.class_names}) but the "
            f"real data has {len(class_names)} ({class_names}); evaluate it against the data it was "
            "trained on.")
    if real is not None and n is None:
        labels = np.sort(real.splits["train"].labels)
    else:
        labels = np.arange(n or 1000) % len(class_names)
    images, labels = generator.sample(len(labels), label=labels.tolist(), seed=seed, truncation=truncation)
    return LabelledImages(images, labels)


def load_synthetic_images(source: str | Path, class_names: list[str], real: ImageDataset | None = None,
                          n: int | None = None, seed: int = 0, truncation: float = 1.0) -> LabelledImages:
    """Synthetic labelled images: ``.npz`` (``images`` (N, …), ``labels`` (N,)), a PNG folder by class,
    or a generator model folder (``config.json`` + ``model_card.json``, as written by
    ``medsyn imaging train``), which is sampled here.

    A generator is sampled with the class counts of ``real``'s training split (so TSTR trains on as
    many images per class as TRTR), or ``n`` images cycling through the classes; ``seed`` and
    ``truncation`` as in ``medsyn imaging sample``.
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"Synthetic images not found: {path}")
    if path.is_dir() and (path / "model_card.json").is_file():
        return sample_generator(path, class_names, real=real, n=n, seed=seed, truncation=truncation)
    if path.is_dir():
        images, _ = read_class_folder(path, class_names)
    else:
        from medsyn_core.archives import open_npz

        with open_npz(path) as archive:  # sizes in the archive checked before numpy allocates anything
            keys = set(archive.files)
            if {"images", "labels"} <= keys:
                images = LabelledImages(archive["images"], archive["labels"])
            elif {"train_images", "train_labels"} <= keys:
                images = LabelledImages(archive["train_images"], archive["train_labels"])
            else:
                raise ValueError(
                    f"{path.name} needs the arrays 'images' (N, H, W[, C]) and 'labels' (N,); it has "
                    f"{sorted(keys)}."
                )
    if len(images) == 0:
        raise ValueError(f"{path.name} holds no synthetic images.")
    if len(images.labels) and images.labels.max() >= len(class_names):
        raise ValueError(
            f"Synthetic labels go up to {images.labels.max()} but the real data has only "
            f"{len(class_names)} classes ({class_names})."
        )
    return images
