"""Export of generated samples: a folder of PNGs, a DICOM series (+ zip), or one NIfTI file.

This is the one function the image generator calls to hand samples to users:

>>> export_images(images, "out/samples", "dicom", labels=[0, 1], label_names=["normal", "pneumonia"],
...               provenance={"model": "stylegan2-pneumonia", "seed": 7, "truncation": 0.7})

Every export says it is synthetic (DICOM attributes, NIfTI ``descrip``) and carries a JSON sidecar with
the provenance and the per-image labels.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsyn_core import __version__
from medsyn_core.csv_export import safe_row
from medsyn_core.files import atomic_directory, atomic_write_json
from medsyn_imaging.io.dicom_write import write_dicom_series, zip_folder
from medsyn_imaging.io.image_io import png_bytes
from medsyn_imaging.io.nifti_io import write_nifti
from medsyn_imaging.io.volume import Volume

FORMATS = ("png", "dicom", "nifti")
#: Formats of 3D volumes: a DICOM series per volume (per-slice geometry), one Enhanced multi-frame DICOM
#: file per volume (highdicom), or one NIfTI per volume.
VOLUME_FORMATS = ("dicom", "dicom-enhanced", "nifti")
SIDECAR = "provenance.json"

__all__ = ["FORMATS", "VOLUME_FORMATS", "export_images", "export_volumes", "images_to_uint8", "zip_folder"]


def images_to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] or uint8 -> (N, H, W) or (N, H, W, 3) uint8 (round(x * 255))."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C = 1 or 3; got shape {images.shape}.")
    if images.shape[0] == 0:
        raise ValueError("images is empty (N = 0); generate at least one sample before exporting.")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"images must be float in [0, 1] or uint8; got {images.dtype}.")
        if not np.all(np.isfinite(images)):
            raise ValueError("images contain NaN or infinity; the generator output is broken.")
        lo, hi = float(images.min()), float(images.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"float images must be in [0, 1], got values from {lo:.3g} to {hi:.3g}; "
                             "rescale them (e.g. (x + 1) / 2 for a tanh output) before exporting.")
        images = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    images = np.moveaxis(images, 1, -1)  # (N, H, W, C)
    return images[..., 0] if images.shape[-1] == 1 else np.ascontiguousarray(images)


def _label_records(n: int, labels: Sequence[int] | None, label_names: Sequence[str] | None
                   ) -> list[dict[str, Any]]:
    if labels is None:
        return [{} for _ in range(n)]
    labels = [int(x) for x in labels]
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries for {n} images; give one label per image.")
    records = []
    for label in labels:
        record: dict[str, Any] = {"label": label}
        if label_names is not None:
            if not 0 <= label < len(label_names):
                raise ValueError(f"label {label} has no name: label_names has {len(label_names)} entries.")
            record["label_name"] = str(label_names[label])
        records.append(record)
    return records


def export_images(images: np.ndarray, out: str | Path, fmt: str, *, labels: Sequence[int] | None = None,
                  label_names: Sequence[str] | None = None, provenance: dict | None = None,
                  modality: str | None = None, pixel_spacing: tuple[float, float] | None = None) -> Path:
    """Write synthetic ``images`` and return what was written (atomically; existing outputs are refused).

    ``images``: (N, C, H, W), C = 1 or 3, float in [0, 1] or uint8 (floats are stored as round(x * 255)).
    ``fmt``: ``'png'`` -> folder ``out`` of ``image-00001.png`` … plus ``labels.csv`` and
    ``provenance.json``; ``'dicom'`` -> folder ``out`` with one Secondary Capture series
    ``IMG00001.dcm`` … plus ``provenance.json`` (zip it with :func:`zip_folder`); ``'nifti'`` -> one
    ``.nii.gz`` (``.nii.gz`` is appended if ``out`` has no NIfTI suffix) with the images stacked along z,
    plus a ``.json`` sidecar beside it.
    ``modality`` and ``pixel_spacing`` ((row, column) mm, nominal) describe the data the generator learned
    from; DICOM carries them (with a window that shows the 8-bit pixels as previewed: center 128, width
    256), NIfTI the spacing.
    """
    fmt = fmt.lower().strip()
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}.")
    pixels = images_to_uint8(images)
    n = pixels.shape[0]
    rgb = pixels.ndim == 4
    records = _label_records(n, labels, label_names)
    sidecar = {"synthetic": True, "generator": "MedSyn", "medsyn_version": __version__,
               "provenance": dict(provenance or {}), "n_images": n,
               "image_shape": list(pixels.shape[1:]), "label_names": list(label_names or []),
               "images": [{"index": i + 1, **r} for i, r in enumerate(records)]}
    out = Path(out)
    if fmt == "nifti":
        if not out.name.lower().endswith((".nii", ".nii.gz")):
            out = out.with_name(out.name + ".nii.gz")
        if out.exists():
            raise FileExistsError(f"{out} already exists; choose another file name or remove it first.")
        stem = out.name[: -len(".nii.gz")] if out.name.lower().endswith(".gz") else out.name[:-4]
        sidecar["file"] = out.name
        sidecar["axes"] = "NIfTI (x, y, z): z is the image index (1 mm nominal spacing)"
        model = str((provenance or {}).get("model", ""))
        volume = Volume(pixels, rgb=rgb, source="synthetic")
        if pixel_spacing is not None:
            affine = np.diag([float(pixel_spacing[1]), float(pixel_spacing[0]), 1.0, 1.0])
            volume = Volume(pixels, affine=affine, rgb=rgb, source="synthetic")
            sidecar["axes"] = (f"NIfTI (x, y, z): z is the image index; nominal pixel size "
                               f"{pixel_spacing[0]:g} x {pixel_spacing[1]:g} mm")
        write_nifti(volume, out, synthetic=True,
                    description=f"SYNTHETIC MedSyn {model}".strip())
        try:
            atomic_write_json(out.with_name(stem + ".json"), sidecar)
        except BaseException:
            out.unlink(missing_ok=True)  # no image without its provenance
            raise
        return out
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another output folder or remove it first.")
    if fmt == "dicom":
        model = str((provenance or {}).get("model", "")).strip()
        write_dicom_series(Volume(pixels, rgb=rgb, source="synthetic"), out,
                           description=f"{model} samples" if model else "samples",
                           provenance=provenance, per_image=records, geometry=False, sidecar=sidecar,
                           modality=modality, pixel_spacing=pixel_spacing, window=(128.0, 256.0))
        return out
    with atomic_directory(out) as tmp:
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["file", "label", "label_name"])
        for i in range(n):
            name = f"image-{i + 1:05d}.png"
            (tmp / name).write_bytes(png_bytes(pixels[i]))
            writer.writerow(safe_row([name, records[i].get("label", ""), records[i].get("label_name", "")]))
        (tmp / "labels.csv").write_text(table.getvalue(), encoding="utf-8")
        atomic_write_json(tmp / SIDECAR, sidecar)
    return out


def export_volumes(volumes: Sequence[Volume], out: str | Path, fmt: str, *,
                   provenance: dict | None = None) -> Path:
    """Write synthetic 3D ``volumes`` (each (Z, Y, X) with its LPS affine) into the new folder ``out``.

    ``fmt``: ``'dicom'`` -> ``volume-001/IMG00001.dcm`` … one synthetic series per volume with per-slice
    geometry (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceLocation, one Frame of
    Reference); ``'dicom-enhanced'`` -> ``volume-001.dcm`` … one Enhanced multi-frame file per volume
    (:func:`~medsyn_imaging.io.dicom_write.write_enhanced_dicom`); ``'nifti'`` -> ``volume-001.nii.gz`` …
    with the volume's affine (sform/qform code ``aligned``). All volumes share one synthetic study; the
    folder also holds ``provenance.json`` (generator, seed, each volume's label and geometry). Atomic:
    nothing is left behind on error.
    """
    from medsyn_imaging.io.dicom_write import SyntheticStudy, write_enhanced_dicom

    fmt = fmt.lower().strip()
    if fmt not in VOLUME_FORMATS:
        raise ValueError(f"Unknown volume export format {fmt!r}; use one of: {', '.join(VOLUME_FORMATS)}.")
    volumes = list(volumes)
    if not volumes:
        raise ValueError("No volumes to export; generate at least one first.")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another output folder or remove it first.")
    model = str((provenance or {}).get("model", "")).strip()
    study = SyntheticStudy()
    entries = []
    with atomic_directory(out) as tmp:
        for i, volume in enumerate(volumes, start=1):
            if volume.is_4d or volume.rgb:
                raise ValueError(f"Volume {i} is not one grey 3D volume (Z, Y, X); it cannot be exported "
                                 "here.")
            label = volume.metadata.get("label")
            item = {k: v for k, v in (provenance or {}).items()}
            item.update(volume=i, **({"label": label} if label is not None else {}))
            description = f"{model} volume {i}" + (f" {label}" if label is not None else "")
            if fmt == "dicom":
                name = f"volume-{i:03d}"
                write_dicom_series(volume, tmp / name, description=description, provenance=item, bits=16,
                                   study=study, geometry=True)
            elif fmt == "dicom-enhanced":
                name = f"volume-{i:03d}.dcm"
                write_enhanced_dicom(volume, tmp / name, description=description, provenance=item,
                                     study=study)
            else:
                name = f"volume-{i:03d}.nii.gz"
                write_nifti(volume, tmp / name, synthetic=True,
                            description=f"SYNTHETIC MedSyn {model}".strip())
            z, y, x = volume.spacing
            entries.append({"file": name, "index": i, "label": label, "shape_zyx": list(volume.pixels.shape),
                            "spacing_zyx_mm": [z, y, x], "units": volume.units,
                            "affine_lps": [[round(float(v), 6) for v in row] for row in volume.affine]})
        atomic_write_json(tmp / SIDECAR, {"synthetic": True, "generator": "MedSyn",
                                          "medsyn_version": __version__,
                                          "format": fmt, "provenance": dict(provenance or {}),
                                          "n_volumes": len(volumes), "volumes": entries})
    return out
