"""Open whatever the user gives: a path or uploaded files (DICOM, DICOM zip, NIfTI, PNG/JPEG, .npz); and
de-identify DICOM from the same inputs into a zip for sharing (:func:`deidentify_to_zip`).

The app and the CLI call these; each returns a :class:`LoadResult` with one Volume per series/file and
the inputs that were skipped with the reason. Uploaded files and unpacked zips are written to a private
temporary folder under the MedSyn home (never the shared system temp folder) only for the time it takes
to read them (real DICOM is de-identified while it is read), then deleted.

Hostile inputs: zips are unpacked by :func:`medsyn_core.archives.extract_zip` (size, ratio and count
limits checked while streaming, no path outside the folder); everything decoded in one call counts
against one voxel budget (:func:`medsyn_core.limits.voxel_budget`); an out-of-memory or runaway nesting
while reading becomes a readable :class:`~medsyn_core.limits.InputLimitError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from medsyn_core.archives import extract_zip
from medsyn_core.limits import reading_input, voxel_budget
from medsyn_core.settings import private_temp_dir
from medsyn_imaging.io.deidentify import (
    BlackoutRecipe,
    DeidentificationReport,
    Deidentifier,
    deidentify_folder,
)
from medsyn_imaging.io.dicom_read import FileProblem, read_dicom_file, read_dicom_files, read_dicom_folder
from medsyn_imaging.io.image_io import IMAGE_SUFFIXES, read_images, read_medmnist
from medsyn_imaging.io.nifti_io import is_nifti, read_nifti
from medsyn_imaging.io.volume import Volume

_NOT_DICOM_SUFFIXES = (".txt", ".md", ".json", ".csv", ".npz", ".zip", ".html", ".pdf")


@dataclass
class LoadResult:
    volumes: list[Volume] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)


def load_path(path: str | Path) -> LoadResult:
    """A DICOM file/folder/DICOMDIR, a NIfTI, a PNG/JPEG, a MedMNIST .npz (test split) or a zip of these."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    with voxel_budget(), reading_input(path.name):
        return _load_path(path)


def _load_path(path: Path, label: str = "") -> LoadResult:
    """``label`` names ``path`` in messages (an unpacked zip's temporary folder is named after the zip)."""
    label = label or path.name
    result = LoadResult()
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        niftis = sorted(p for p in path.iterdir() if is_nifti(p))
        if images:
            result.volumes.append(read_images(images, name=label))
        for nifti in niftis:
            _try(result, nifti, lambda p=nifti: [read_nifti(p)])
        others = [p for p in sorted(path.rglob("*")) if p.is_file() and p not in images and p not in niftis
                  and not p.name.startswith(".") and p.suffix.lower() not in _NOT_DICOM_SUFFIXES
                  and not p.name.upper().startswith(("LICENSE", "README"))]
        if (path / "DICOMDIR").is_file():
            folder = read_dicom_folder(path, name=label)
        elif others:
            folder = read_dicom_files(others, name=label)
        elif not result.volumes:
            raise ValueError(f"{label} holds no DICOM, NIfTI or PNG/JPEG files; choose another folder.")
        else:
            folder = None
        if folder is not None:
            result.volumes.extend(folder.volumes)
            result.problems.extend(folder.problems)
        return result
    name = path.name.lower()
    if name.endswith(".zip"):
        with private_temp_dir("medsyn-zip-") as tmp:
            extract_zip(path, tmp)
            inner = _load_path(tmp, label=path.name)
        for volume in inner.volumes:
            volume.source = volume.source.replace(tmp.name, path.stem)
        result.volumes.extend(inner.volumes)
        result.problems.extend(FileProblem(Path(p.path).name, p.message) for p in inner.problems)
    elif is_nifti(path):
        result.volumes.append(read_nifti(path))
    elif name.endswith(IMAGE_SUFFIXES):
        result.volumes.append(read_images([path], name=path.name))
    elif name.endswith(".npz"):
        result.volumes.append(read_medmnist(path, split="test"))
    else:
        result.volumes.append(read_dicom_file(path))
    return result


def _try(result: LoadResult, path: Path, load) -> None:
    try:
        result.volumes.extend(load())
    except ValueError as exc:
        result.problems.append(FileProblem(str(path), str(exc)))


def load_uploaded(files: Iterable[tuple[str, bytes]]) -> LoadResult:
    """Read uploaded ``(file name, content)`` pairs together: DICOM files form series, PNGs one stack,
    each NIfTI, zip or .npz its own volume(s)."""
    files = list(files)
    if not files:
        raise ValueError("No files were uploaded; choose DICOM files, a DICOM zip, a NIfTI or PNGs.")
    with private_temp_dir("medsyn-upload-") as tmp, voxel_budget():
        folder = tmp / "upload"
        folder.mkdir()
        singles = []
        for index, (name, content) in enumerate(files):
            safe = Path(name).name or f"file-{index}"
            lowered = safe.lower()
            single = lowered.endswith((".zip", ".npz")) or is_nifti(lowered)
            target = (tmp / f"{index:05d}" if single else folder) / safe
            if target.exists():  # two uploads with the same name
                target = target.with_name(f"{index:05d}-{safe}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            if single:
                singles.append(target)
        result = LoadResult()
        for path in singles:
            try:
                with reading_input(path.name):
                    part = _load_path(path)
            except (ValueError, FileNotFoundError) as exc:
                result.problems.append(FileProblem(path.name, str(exc)))
                continue
            result.volumes.extend(part.volumes)
            result.problems.extend(part.problems)
        if any(folder.iterdir()):
            with reading_input("the uploaded files"):
                part = _load_path(folder)
            result.volumes.extend(part.volumes)
            result.problems.extend(part.problems)
    for problem in result.problems:  # temporary paths mean nothing to the user: keep the file name
        problem.path = Path(problem.path).name
    return result


def deidentify_to_zip(source: str | Path | Iterable[tuple[str, bytes]], deidentifier: Deidentifier, *,
                      allow_burned_in: bool = False, blackout: BlackoutRecipe | None = None,
                      ) -> tuple[bytes, DeidentificationReport]:
    """De-identify a DICOM file/folder, or uploaded ``(file name, content)`` pairs (zips are unpacked),
    into a zip for download: ``(zip bytes, report)``. The report names input files only (no temporary
    paths); written files are paths inside the zip. ValueError when nothing could be de-identified."""
    from medsyn_imaging.io.dicom_write import zip_folder

    with private_temp_dir("medsyn-deid-") as tmp:
        if isinstance(source, str | Path):
            folder = Path(source)
        else:
            folder = Path(tmp) / "upload"
            folder.mkdir()
            for index, (name, content) in enumerate(source):
                safe = Path(name).name or "file"
                target = folder / f"{index:05d}"  # one folder per upload: names may repeat
                target.mkdir()
                if safe.lower().endswith(".zip"):
                    archive = Path(tmp) / f"{index:05d}.zip"
                    archive.write_bytes(content)
                    extract_zip(archive, target, label=safe)
                else:
                    (target / safe).write_bytes(content)
        out = Path(tmp) / "deidentified"
        report = deidentify_folder(folder, out, deidentifier=deidentifier, allow_burned_in=allow_burned_in,
                                   blackout=blackout)
        data = zip_folder(out).read_bytes()
    report.problems = [(Path(path).name, message) for path, message in report.problems]
    report.written = [path.relative_to(out.parent) for path in report.written]
    return data, report
