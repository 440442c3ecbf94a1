"""``medsyn dicom …`` commands: inspect, de-identify and convert DICOM.

* ``medsyn dicom info PATH``: series found in a file/folder/DICOMDIR/NIfTI, their shape, voxel size,
  de-identified key header fields, warnings and the files that were skipped (and why).
* ``medsyn dicom deidentify IN OUT``: PS3.15 Basic Profile de-identification of every DICOM file under
  IN into the new folder OUT.
* ``medsyn dicom to-nifti IN OUT.nii.gz``: one DICOM series (file or folder) to NIfTI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

_INFO_FIELDS = ("Modality", "SOPClassUID", "PatientName", "PatientID", "PatientIdentityRemoved",
                "DeidentificationMethod", "Manufacturer", "BurnedInAnnotation", "RepetitionTime")


def _print_volume(volume) -> None:
    print(f"- {volume.source}: {volume.describe()}")
    for key in _INFO_FIELDS:
        if key in volume.metadata:
            print(f"    {key}: {volume.metadata[key]!r}")
    for note in volume.warnings:
        print(f"    warning: {note}")


def cmd_info(args: argparse.Namespace) -> int:
    from medsyn_imaging.dicom_read import read_dicom_file, read_dicom_folder, read_dicomdir
    from medsyn_imaging.nifti_io import is_nifti, read_nifti

    path = Path(args.path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give a DICOM file, a folder, a DICOMDIR or a NIfTI.")
    if path.is_file() and is_nifti(path):
        _print_volume(read_nifti(path))
        return 0
    if path.is_file() and path.name != "DICOMDIR":
        _print_volume(read_dicom_file(path))
        return 0
    result = read_dicomdir(path) if path.is_file() else read_dicom_folder(path)
    print(f"{len(result.volumes)} series in {path}")
    for volume in result.volumes:
        _print_volume(volume)
    for problem in result.problems:
        print(f"  skipped {problem.path}: {problem.message}")
    return 0 if result.volumes else 1


def cmd_deidentify(args: argparse.Namespace) -> int:
    from medsyn_imaging.deidentify import deidentify_folder

    report = deidentify_folder(args.input, args.output, overwrite=args.overwrite)
    print(f"Wrote {len(report.written)} de-identified DICOM files to {args.output}")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    for path, message in report.problems:
        print(f"  skipped {path}: {message}")
    return 0


def cmd_to_nifti(args: argparse.Namespace) -> int:
    from medsyn_imaging.dicom_read import read_dicom
    from medsyn_imaging.nifti_io import write_nifti

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} already exists; choose another name or pass --overwrite.")
    volume = read_dicom(args.input)
    write_nifti(volume, output)
    print(f"Wrote {output}: {volume.describe()}")
    for note in volume.warnings:
        print(f"  warning: {note}")
    return 0


def register(subparsers) -> None:
    """Add ``medsyn dicom`` and its sub-commands to the main parser."""
    dicom = subparsers.add_parser("dicom", help="inspect, de-identify and convert DICOM")
    sub = dicom.add_subparsers(dest="dicom_command", metavar="DICOM_COMMAND", required=True)
    info = sub.add_parser("info", help="series, shape, voxel size and de-identified header of a DICOM "
                                       "file/folder/DICOMDIR (or a NIfTI)")
    info.add_argument("path")
    info.set_defaults(func=cmd_info)
    deid = sub.add_parser("deidentify", help="de-identify every DICOM file under IN into the new folder OUT "
                                             "(DICOM PS3.15 Basic Profile)")
    deid.add_argument("input", metavar="IN")
    deid.add_argument("output", metavar="OUT")
    deid.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    deid.set_defaults(func=cmd_deidentify)
    nifti = sub.add_parser("to-nifti", help="convert one DICOM series (file or folder) to NIfTI")
    nifti.add_argument("input", metavar="IN")
    nifti.add_argument("output", metavar="OUT.nii.gz")
    nifti.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    nifti.set_defaults(func=cmd_to_nifti)
