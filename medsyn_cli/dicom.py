"""``medsyn dicom …`` commands: inspect, de-identify and convert DICOM.

* ``medsyn dicom info PATH``: series found in a file/folder/DICOMDIR/NIfTI, their shape, voxel size,
  de-identified key header fields, warnings and the files that were skipped (and why).
* ``medsyn dicom deidentify IN OUT``: PS3.15 Basic Profile de-identification (allowlist) of every DICOM
  file under IN into the new folder OUT, with the profile options and the burned-in text switches.
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
    from medsyn_imaging.io.dicom_read import read_dicom_file, read_dicom_folder, read_dicomdir
    from medsyn_imaging.io.nifti_io import is_nifti, read_nifti

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


def deid_options_from_args(args: argparse.Namespace):
    """The :class:`DeidOptions` of the ``--retain-*`` / ``--clean-descriptors`` switches."""
    from medsyn_imaging.io.deidentify import DeidOptions

    if args.date_shift_days is not None and not args.retain_dates:
        raise ValueError("--date-shift-days only applies with --retain-dates (dates are removed otherwise).")
    return DeidOptions(retain_longitudinal_modified_dates=args.retain_dates,
                       retain_patient_characteristics=args.retain_patient_characteristics,
                       retain_device_identity=args.retain_device_identity,
                       clean_descriptors=args.clean_descriptors, date_shift_days=args.date_shift_days)


def cmd_deidentify(args: argparse.Namespace) -> int:
    from medsyn_imaging.io.deidentify import BlackoutRecipe, Deidentifier, deidentify_folder

    blackout = BlackoutRecipe.load(args.blackout) if args.blackout else None
    deidentifier = Deidentifier(options=deid_options_from_args(args))
    report = deidentify_folder(args.input, args.output, overwrite=args.overwrite, deidentifier=deidentifier,
                               allow_burned_in=args.allow_burned_in, blackout=blackout)
    print(f"Wrote {len(report.written)} de-identified DICOM files to {args.output}"
          + (f" ({report.blacked_out} with burned-in text blacked out)" if report.blacked_out else ""))
    if report.refused:
        print(f"Refused {report.refused} file(s) with burned-in text (see below).")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    for path, message in report.problems:
        print(f"  skipped {path}: {message}")
    return 0


def cmd_to_nifti(args: argparse.Namespace) -> int:
    from medsyn_imaging.io.dicom_read import read_dicom
    from medsyn_imaging.io.nifti_io import write_nifti

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} already exists; choose another name or pass --overwrite.")
    volume = read_dicom(args.input)
    write_nifti(volume, output)
    print(f"Wrote {output}: {volume.describe()}")
    for note in volume.warnings:
        print(f"  warning: {note}")
    return 0


def add_deid_options(parser: argparse.ArgumentParser) -> None:
    """The PS3.15 profile options and the burned-in text switches of ``medsyn dicom deidentify``."""
    group = parser.add_argument_group("PS3.15 profile options (docs/deidentification.md)")
    group.add_argument("--retain-dates", action="store_true",
                       help="Retain Longitudinal Temporal Information, Modified Dates: shift every date by "
                            "one secret offset per run instead of removing it")
    group.add_argument("--date-shift-days", type=int, metavar="N",
                       help="with --retain-dates: shift by N days (negative = earlier) instead of a secret "
                            "random offset")
    group.add_argument("--retain-patient-characteristics", action="store_true",
                       help="keep sex, age, size, weight and similar")
    group.add_argument("--retain-device-identity", action="store_true",
                       help="keep station name, device serial number and similar")
    group.add_argument("--clean-descriptors", action="store_true",
                       help="keep study/series/protocol descriptions that pass a safety check (plain text, "
                            "no 4+ digit numbers, no word of the names and IDs in the file); remove the rest")
    pixels = parser.add_argument_group("burned-in text (ultrasound, screenshots, BurnedInAnnotation=YES)")
    pixels.add_argument("--blackout", metavar="FILE",
                        help="JSON/YAML recipe of rectangles to black out per manufacturer and model")
    pixels.add_argument("--allow-burned-in", action="store_true",
                        help="export such files with their pixels unchanged (only after checking them)")


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
    add_deid_options(deid)
    deid.set_defaults(func=cmd_deidentify)
    nifti = sub.add_parser("to-nifti", help="convert one DICOM series (file or folder) to NIfTI")
    nifti.add_argument("input", metavar="IN")
    nifti.add_argument("output", metavar="OUT.nii.gz")
    nifti.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    nifti.set_defaults(func=cmd_to_nifti)
