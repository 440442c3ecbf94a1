"""Imaging I/O speed: MedSyn's readers/writers against the bare library call they build on.

Peers (same run, same machine): plain ``pydicom.dcmread`` + ``pixel_array`` of every file (no grouping,
sorting, rescale or de-identification) for reading; ``nibabel.save`` for NIfTI; plain ``Dataset.save_as``
of the input files for de-identification. Prints the median of ``--repeats`` runs in milliseconds.

    .venv/bin/python bench/imaging_io.py [--repeats 5] [--samples 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=256, help="synthetic 64x64 images to export")
    args = parser.parse_args()

    from medsyn_imaging.io.datasets import bundled_dicom_series_dir
    from medsyn_imaging.io.deidentify import deidentify_folder
    from medsyn_imaging.io.dicom_read import read_dicom
    from medsyn_imaging.io.dicom_write import write_dicom_series
    from medsyn_imaging.io.export import export_images
    from medsyn_imaging.io.nifti_io import write_nifti

    folder = bundled_dicom_series_dir()
    files = sorted(folder.glob("*.dcm"))
    rows = []

    def plain_read():
        return [pydicom.dcmread(p).pixel_array for p in files]

    rows.append(("read GE fMRI series (150 files -> 10x15x64x64)", median_ms(lambda: read_dicom(folder),
                 args.repeats), "pydicom dcmread+pixel_array loop", median_ms(plain_read, args.repeats)))
    volume = read_dicom(folder)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        counter = iter(range(10**6))

        def deid():
            deidentify_folder(folder, tmp / f"deid{next(counter)}")

        def plain_copy():
            out = tmp / f"copy{next(counter)}"
            out.mkdir()
            for i, p in enumerate(files):
                pydicom.dcmread(p).save_as(out / f"{i}.dcm")

        rows.append(("de-identify 150 files (PS3.15 Basic)", median_ms(deid, args.repeats),
                     "pydicom read+save_as, no changes", median_ms(plain_copy, args.repeats)))

        def nifti():
            write_nifti(volume, tmp / f"v{next(counter)}.nii.gz")

        def plain_nifti():
            data = np.transpose(volume.pixels, (3, 2, 1, 0))
            nib.save(nib.Nifti1Image(data, np.eye(4)), tmp / f"n{next(counter)}.nii.gz")

        rows.append(("write 4D NIfTI .nii.gz (atomic, sform/qform)", median_ms(nifti, args.repeats),
                     "nibabel.save", median_ms(plain_nifti, args.repeats)))
        first = volume.with_pixels(volume.pixels[0])
        rows.append(("write synthetic DICOM series (15 x 64x64, 16-bit)",
                     median_ms(lambda: write_dicom_series(first, tmp / f"s{next(counter)}"), args.repeats),
                     "", float("nan")))
        rng = np.random.default_rng(0)
        images = rng.random((args.samples, 1, 64, 64)).astype(np.float32)
        for fmt in ("png", "dicom", "nifti"):
            rows.append((f"export_images {args.samples} x 64x64 as {fmt}",
                         median_ms(lambda f=fmt: export_images(images, tmp / f"e{next(counter)}", f),
                                   args.repeats), "", float("nan")))

    print(f"{'operation':<52} {'MedSyn ms':>10}   {'peer':<34} {'peer ms':>8}")
    for name, ours, peer, peer_ms in rows:
        peer_text = f"{peer_ms:8.1f}" if peer else ""
        print(f"{name:<52} {ours:10.1f}   {peer:<34} {peer_text}")


if __name__ == "__main__":
    main()
