"""Plain image files: PNG/JPEG in and out, and MedMNIST ``.npz`` archives, as :class:`Volume`.

Plain images have no patient geometry: the affine is the identity (1 mm pixels) and ``Z`` is the image
index. Grey images give ``(Z, Y, X)``; colour images ``(Z, Y, X, 3)`` with ``rgb=True``. 8-bit and 16-bit
PNGs keep their values (uint8 / uint16); an alpha channel is dropped.

Every PNG/JPEG MedSyn reads (here, the generator's training folders, the evaluation's image folders) is
opened by :func:`open_image`: Pillow restricted to the PNG and JPEG decoders, width x height checked
against :data:`medsyn_core.limits.MAX_IMAGE_PIXELS` (also set as Pillow's ``Image.MAX_IMAGE_PIXELS``)
before decoding, and any decoding failure turned into a ``ValueError`` that names the file.
"""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from medsyn_core.files import atomic_write_bytes, open_untrusted
from medsyn_core.limits import MAX_IMAGE_PIXELS, InputLimitError, check_voxels, error_detail
from medsyn_imaging.io.volume import Volume

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Pillow decoders allowed for image files (Pillow's JPEG decoder also opens camera MPO files); never
#: the others (e.g. EPS, which would run Ghostscript).
PIL_FORMATS = ("PNG", "JPEG")
#: What Pillow raises for damaged or crafted image data.
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, TypeError)


@contextlib.contextmanager
def open_image(path: str | Path, label: str | None = None, decode: bool = True) -> Iterator:
    """Open and decode one PNG/JPEG with Pillow under MedSyn's limits; yields the loaded ``PIL.Image``
    (with ``decode=False`` only its header is read: size and mode, e.g. to choose channels).

    Raises :class:`~medsyn_core.limits.InputLimitError` for an image larger than ``MAX_IMAGE_PIXELS``
    (checked from the header, before decoding; also Pillow's decompression-bomb errors) and
    ``ValueError`` naming the file (``label``, default its name) when it is not a readable PNG/JPEG.
    Width x height x bands is charged to the current voxel budget. Pillow reads from
    :func:`medsyn_core.files.open_untrusted`, so a crafted chunk length cannot make it allocate more
    than the file holds.
    """
    from PIL import Image

    path = Path(path)
    label = label or path.name
    limit = MAX_IMAGE_PIXELS.value()
    Image.MAX_IMAGE_PIXELS = limit  # Pillow's own bomb check: errors beyond twice this, warns beyond it
    with open_untrusted(path) as handle:
        try:
            img = Image.open(handle, formats=PIL_FORMATS)
        except Image.DecompressionBombError as exc:
            raise InputLimitError(f"{label} is larger than MedSyn's limit of {limit:,} pixels ({exc}); it "
                                  "may be a decompression bomb. If the image is genuine, an administrator "
                                  f"can raise the limit with {MAX_IMAGE_PIXELS.env}.") from None
        except _PIL_ERRORS as exc:
            raise _unreadable(label, exc, path) from None
        with img:
            MAX_IMAGE_PIXELS.check(img.width * img.height, f"{label} ({img.width} x {img.height} pixels)",
                                   "It may be a decompression bomb.")
            if decode:
                check_voxels(img.width * img.height * len(img.getbands()), label)
                try:
                    img.load()
                except _PIL_ERRORS as exc:
                    raise _unreadable(label, exc, path) from None
            try:
                yield img
            except (OSError, SyntaxError, EOFError, struct.error, zlib.error, IndexError) as exc:
                raise _unreadable(label, exc, path) from None


def _unreadable(label: str, exc: BaseException, path: Path) -> ValueError:
    return ValueError(f"{label} is not a readable PNG/JPEG image ({error_detail(exc, path)}); check that "
                      "the file is complete and really an image.")


def _load_pixels(path: Path) -> tuple[np.ndarray, bool]:
    """(pixels, is_rgb): grey modes give (Y, X) uint8/uint16, everything else (Y, X, 3) uint8; a palette
    image whose colours are all grey counts as grey."""
    with open_image(path) as img:
        if img.mode.startswith("I;16"):
            return np.asarray(img).astype(np.uint16), False
        if img.mode == "I":
            return np.asarray(img).astype(np.int32), False
        if img.mode in ("L", "LA", "1"):
            return np.asarray(img.convert("L")), False
        rgb = np.asarray(img.convert("RGB"))
    if img.mode == "P" and np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1],
                                                                                      rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0]), False
    return rgb, True


def read_image(path: str | Path) -> Volume:
    """Read one PNG or JPEG as a Volume with one slice."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give a .png or .jpg file.")
    arr, rgb = _load_pixels(path)
    return Volume(pixels=arr[None], rgb=rgb, source=path.name, modality="OT")


def read_images(paths: Iterable[str | Path], name: str = "images") -> Volume:
    """Read several PNG/JPEG files of the same size as one stack (sorted by file name)."""
    paths = sorted(Path(p) for p in paths)
    if not paths:
        raise ValueError("No image files were given; choose one or more .png/.jpg files.")
    loaded = [(p, *_load_pixels(p)) for p in paths]
    any_rgb = any(rgb for _, _, rgb in loaded)
    arrays = []
    for _, arr, rgb in loaded:
        arrays.append(np.repeat(arr[..., None], 3, axis=-1) if any_rgb and not rgb else arr)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        first = arrays[0].shape
        odd = next(p.name for (p, _, _), a in zip(loaded, arrays, strict=True) if a.shape != first)
        raise ValueError(f"Images differ in size ({', '.join(str(s[:2]) for s in sorted(shapes))}); "
                         f"{odd} is not {first[:2]} like {paths[0].name}. Resize them to one size first.")
    dtypes = {a.dtype for a in arrays}
    stack = np.stack([a.astype(np.result_type(*dtypes)) for a in arrays])
    return Volume(pixels=stack, rgb=any_rgb, source=name, modality="OT",
                  metadata={"files": ", ".join(p.name for p in paths)[:2000]})


def read_medmnist(name_or_path: str | Path, split: str = "test", limit: int | None = None) -> Volume:
    """One split of a MedMNIST ``.npz`` (bundled name or path) as a Volume ``(N, 28, 28)``; the labels
    are in ``metadata['labels']`` (list of int)."""
    from medsyn_imaging.io.datasets import SPLITS, load_medmnist

    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    ds = load_medmnist(name_or_path)
    images, labels = ds.images[split], ds.labels[split]
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    rgb = images.ndim == 4
    return Volume(pixels=images, rgb=rgb, source=f"{ds.name} ({split})", modality="OT",
                  metadata={"labels": [int(x) for x in labels], "split": split})


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a (Y, X) uint8/uint16 or (Y, X, 3) uint8 image as PNG bytes."""
    from PIL import Image

    image = np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8:
        img = Image.fromarray(image, mode="RGB")
    elif image.ndim == 2 and image.dtype == np.uint8:
        img = Image.fromarray(image, mode="L")
    elif image.ndim == 2 and image.dtype == np.uint16:
        img = Image.fromarray(image.astype(np.uint16))
    else:
        raise ValueError(f"PNG needs (Y, X) uint8/uint16 or (Y, X, 3) uint8; got {image.shape} "
                         f"{image.dtype}.")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """Write one image as PNG atomically (see :func:`png_bytes` for accepted shapes)."""
    return atomic_write_bytes(path, png_bytes(image))
