"""Reading real DICOM, NIfTI, PNG and MedMNIST into Volume; bad inputs give clear messages."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless, generate_uid

from medsyn_imaging.io.datasets import bundled_dicom_series_dir
from medsyn_imaging.io.dicom_read import (
    DicomReadError,
    read_dicom,
    read_dicom_file,
    read_dicom_files,
    read_dicom_folder,
    read_dicomdir,
)
from medsyn_imaging.io.image_io import read_image, read_images, read_medmnist, write_png
from medsyn_imaging.io.nifti_io import read_nifti, volume_to_nifti
from medsyn_imaging.io.windowing import PRESETS, apply_window, auto_window, display_slice, window_names

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
NIBABEL_FILES = Path(nib.__file__).parent / "tests" / "data"
GE_FILES = sorted(bundled_dicom_series_dir().glob("*.dcm"))

# pydicom test files that need decoders MedSyn does not ship (JPEG-LS, JPEG extended/lossless need
# pylibjpeg or GDCM): a clear "cannot be decoded here … Decompress" message, or pixels if one is installed.
PYDICOM_NEEDS_DECODER = {
    "JPEG-lossy.dcm", "JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm", "JPGExtended.dcm",
    "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jls_lossy_line.dcm", "SC_rgb_jls_lossy_sample.dcm",
    "SC_rgb_jpeg_gdcm.dcm", "GDCMJ2K_TextGBR.dcm", "JPEG2000-embedded-sequence-delimiter.dcm",
}
# Files that are broken on purpose or hold no image: always a clear DicomReadError naming the file.
PYDICOM_NOT_IMAGES = {
    "MR_truncated.dcm", "badVR.dcm", "meta_missing_tsyntax.dcm", "nested_priv_SQ.dcm",
    "no_meta_group_length.dcm", "priv_SQ.dcm", "reportsi.dcm", "reportsi_with_empty_number_tags.dcm",
    "rtplan.dcm", "rtplan_truncated.dcm", "rtstruct.dcm", "test-SR.dcm", "waveform_ecg.dcm",
    "UN_sequence.dcm", "empty_charset_LEI.dcm",
    "ExplVR_BigEndNoMeta.dcm", "ExplVR_LitEndNoMeta.dcm",  # RT Ion Plans: no pixels
    "no_meta.dcm",  # a bare data set fragment with no SOP class
}


@pytest.fixture(scope="module")
def ge_volume():
    return read_dicom(bundled_dicom_series_dir())


def test_ge_fmri_series_reads_as_4d_and_matches_the_reference_nifti(ge_volume, shared_data):
    assert ge_volume.pixels.shape == (10, 15, 64, 64)
    assert ge_volume.pixels.dtype == np.int16
    assert ge_volume.spacing == pytest.approx((5.0, 3.75, 3.75))
    ref = nib.load(shared_data / "nifti" / "dcm_qa_nih_ref" / "DCM2NIIX_regression_test_4.nii")
    ours = nib.as_closest_canonical(volume_to_nifti(ge_volume))
    ref = nib.as_closest_canonical(ref)
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asanyarray(ours.dataobj), np.asanyarray(ref.dataobj))
    # the reader and dcm2niix agree; the slices really go inferior -> superior along the normal
    z = [ge_volume.affine @ np.array([0, 0, k, 1]) for k in range(15)]
    assert np.all(np.diff([p[2] for p in z]) == pytest.approx(5.0))


def test_slice_order_does_not_depend_on_file_order(ge_volume, tmp_path):
    rng = np.random.default_rng(0)
    shuffled = list(rng.permutation([str(p) for p in GE_FILES]))
    result = read_dicom_files(shuffled)
    np.testing.assert_array_equal(result.volumes[0].pixels, ge_volume.pixels)


def test_header_is_deidentified_before_it_reaches_metadata(ge_volume):
    meta = ge_volume.metadata
    assert meta["PatientIdentityRemoved"] == "YES"
    assert meta["PatientName"] == "" and meta["PatientID"] == ""
    assert "InstitutionName" not in meta and "StationName" not in meta
    assert "Test^Regression" not in repr(meta) and "NIH FMRIF" not in repr(meta)
    assert not any(k.startswith("(00") for k in meta), "private tags leaked into the metadata"


def test_ct_slices_read_in_hounsfield_units(shared_data):
    folder = shared_data / "dicom" / "tcia_covid19_ny_sbu_ct_slices"
    result = read_dicom_folder(folder)
    assert len(result.volumes) == 2  # prior and current scan: two series
    assert result.problems == []  # data-readme.md is not even tried (text suffix)
    for volume in result.volumes:
        assert volume.units == "HU" and volume.pixels.shape == (1, 512, 512)
        raw = None
        for path in folder.glob("*.dcm"):
            ds = pydicom.dcmread(path)
            if np.isclose(float(ds.PixelSpacing[0]), volume.spacing[1]):
                raw = ds
        assert raw is not None
        expected = raw.pixel_array * float(raw.RescaleSlope) + float(raw.RescaleIntercept)
        np.testing.assert_allclose(volume.pixels[0], expected)
        hu = volume.pixels
        assert np.mean((hu > -1050) & (hu < -950)) > 0.05  # air around the patient and in the lungs
        assert np.mean((hu > 0) & (hu < 100)) > 0.05  # soft tissue
        assert volume.window is not None


@pytest.mark.parametrize("path", sorted(PYDICOM_FILES.glob("*.dcm")), ids=lambda p: p.name)
def test_every_pydicom_test_file_reads_or_says_why(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.name in PYDICOM_NOT_IMAGES:
            with pytest.raises(DicomReadError) as info:
                read_dicom_file(path)
            assert str(info.value).startswith(path.name) and "skipped" in str(info.value)
            return
        try:
            volume = read_dicom_file(path)
        except DicomReadError as exc:
            assert path.name in PYDICOM_NEEDS_DECODER, exc
            assert str(exc).startswith(path.name) and "skipped" in str(exc)
            return
    assert volume.pixels.size > 0
    if volume.rgb:
        assert volume.pixels.shape[-1] == 3
    assert volume.metadata.get("PatientIdentityRemoved") == "YES"


def test_multiframe_files_keep_their_frames_and_geometry():
    dose = read_dicom_file(PYDICOM_FILES / "rtdose.dcm")
    ds = pydicom.dcmread(PYDICOM_FILES / "rtdose.dcm")
    assert dose.pixels.shape == (15, 10, 10)
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert dose.spacing[0] == pytest.approx(abs(offsets[1] - offsets[0]))
    rgb = read_dicom_file(PYDICOM_FILES / "SC_rgb_rle_2frame.dcm")
    assert rgb.rgb and rgb.pixels.shape == (2, 100, 100, 3)
    ybr = read_dicom_file(PYDICOM_FILES / "examples_ybr_color.dcm")  # JPEG baseline, 30 frames
    assert ybr.rgb and ybr.pixels.shape == (30, 240, 320, 3)


def test_enhanced_multiframe_with_per_frame_positions_in_shuffled_order(tmp_path, ge_volume):
    """An enhanced-style file built from the 15 real slices of time point 1, frames in random order and
    geometry only in the functional groups: the reader must restore the order and the affine."""
    slices = [pydicom.dcmread(p) for p in GE_FILES[:15]]
    order = np.random.default_rng(3).permutation(15)
    ds = slices[0]
    shared, orientation, measures = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = ds.ImageOrientationPatient
    measures.PixelSpacing = ds.PixelSpacing
    measures.SliceThickness = ds.SliceThickness
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for i in order:
        group, plane = Dataset(), Dataset()
        plane.ImagePositionPatient = slices[i].ImagePositionPatient
        group.PlanePositionSequence = [plane]
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
        delattr(ds, keyword)
    ds.NumberOfFrames = 15
    ds.PixelData = b"".join(slices[i].PixelData for i in order)
    ds.save_as(tmp_path / "enhanced.dcm")
    volume = read_dicom_file(tmp_path / "enhanced.dcm")
    np.testing.assert_array_equal(volume.pixels, ge_volume.pixels[0])
    np.testing.assert_allclose(volume.affine, ge_volume.affine, atol=1e-4)


def test_dicomdir_lists_its_series():
    result = read_dicomdir(PYDICOM_FILES / "dicomdirtests" / "DICOMDIR")
    assert result.volumes, [p.message for p in result.problems]
    for volume in result.volumes:
        assert volume.pixels.ndim >= 3
    for problem in result.problems:
        assert "skipped" in problem.message


@pytest.mark.parametrize("path", sorted(NIBABEL_FILES.glob("*.nii*")), ids=lambda p: p.name)
def test_every_nibabel_test_nifti_reads_or_says_why(path):
    if path.name.endswith(".dconn.nii"):  # CIFTI-2 connectivity matrix, not an image
        with pytest.raises(ValueError, match="not NIfTI|dimensions"):
            read_nifti(path)
        return
    volume = read_nifti(path)
    img = nib.load(path)
    assert volume.pixels.size == int(np.prod(img.shape))
    assert volume.pixels.dtype.isnative
    np.testing.assert_allclose(volume_to_nifti(volume).affine, img.affine, atol=1e-5)


def test_nifti_4d_axes(shared_data):
    img = nib.load(NIBABEL_FILES / "example4d.nii.gz")
    volume = read_nifti(NIBABEL_FILES / "example4d.nii.gz")
    x, y, z, t = img.shape
    assert volume.pixels.shape == (t, z, y, x)
    np.testing.assert_array_equal(volume.pixels[1, 2, :, :].T, np.asanyarray(img.dataobj)[:, :, 2, 1])


def _bad_folder(tmp_path: Path) -> Path:
    """The GE series plus one of each kind of bad file, all built from the real files."""
    folder = tmp_path / "messy"
    folder.mkdir()
    for path in GE_FILES:
        shutil.copy(path, folder / path.name)
    (folder / "notes.dcm").write_bytes(b"This is a text file, not DICOM.\n" * 20)
    data = GE_FILES[0].read_bytes()
    (folder / "cut_in_pixels.dcm").write_bytes(data[:-1000])
    (folder / "cut_in_header.dcm").write_bytes(data[: len(data) // 2])
    ds = pydicom.dcmread(GE_FILES[1])
    del ds.PixelData
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.11.1"  # GSPS
    ds.save_as(folder / "presentation_state.dcm")
    ds = pydicom.dcmread(GE_FILES[2])
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([ds.PixelData])
    ds.save_as(folder / "jpeg_ls.dcm", enforce_file_format=True)
    return folder


def test_bad_files_are_named_and_the_rest_of_the_folder_is_still_read(tmp_path):
    result = read_dicom_folder(_bad_folder(tmp_path))
    assert [v.pixels.shape for v in result.volumes] == [(10, 15, 64, 64)]
    messages = {Path(p.path).name: p.message for p in result.problems}
    assert set(messages) == {"notes.dcm", "cut_in_pixels.dcm", "cut_in_header.dcm",
                             "presentation_state.dcm", "jpeg_ls.dcm"}
    assert "not a DICOM file" in messages["notes.dcm"]
    assert "truncated" in messages["cut_in_pixels.dcm"]
    assert "truncated" in messages["cut_in_header.dcm"]
    assert "no pixel data" in messages["presentation_state.dcm"]
    assert "JPEG-LS" in messages["jpeg_ls.dcm"] and "Decompress" in messages["jpeg_ls.dcm"]
    for name, message in messages.items():
        assert message.startswith(name) and "skipped" in message


def test_mixed_series_in_one_folder_are_read_separately(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    other = generate_uid()
    for path in GE_FILES:
        ds = pydicom.dcmread(path)
        if int(ds.InstanceNumber) > 135:  # the last time point becomes its own series
            ds.SeriesInstanceUID = other
        ds.save_as(folder / path.name)
    result = read_dicom_folder(folder)
    assert sorted(v.pixels.shape for v in result.volumes) == [(9, 15, 64, 64), (15, 64, 64)]
    with pytest.raises(DicomReadError, match="holds 2 series"):
        read_dicom(folder)


def test_inconsistent_slice_spacing_is_reported(tmp_path, ge_volume):
    folder = tmp_path / "gap"
    folder.mkdir()
    for path in GE_FILES[:15]:
        if not path.name.endswith("00007.dcm"):
            shutil.copy(path, folder / path.name)
    volume = read_dicom(folder)
    assert volume.pixels.shape == (14, 64, 64)
    assert any("not uniform" in w and "5 to 10 mm" in w for w in volume.warnings), volume.warnings
    np.testing.assert_array_equal(volume.pixels[6], ge_volume.pixels[0, 7])


def test_incomplete_4d_series_is_a_clear_problem(tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    for path in GE_FILES[:-1]:
        shutil.copy(path, folder / path.name)
    result = read_dicom_folder(folder)
    assert result.volumes == []
    assert "not the same number at each position" in result.problems[0].message


def test_png_jpeg_and_medmnist(tmp_path):
    grey = (np.arange(20 * 30) % 256).astype(np.uint8).reshape(20, 30)
    write_png(grey, tmp_path / "a.png")
    write_png(grey[::-1], tmp_path / "b.png")
    stack = read_images([tmp_path / "b.png", tmp_path / "a.png"])
    np.testing.assert_array_equal(stack.pixels[0], grey)
    from PIL import Image

    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "c.jpg", quality=95)
    jpeg = read_image(tmp_path / "c.jpg")
    assert jpeg.rgb and jpeg.pixels.shape == (1, 20, 30, 3)
    Image.fromarray(grey[:10]).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="small.png"):
        read_images([tmp_path / "a.png", tmp_path / "small.png"])
    (tmp_path / "fake.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="fake.png is not a readable"):
        read_image(tmp_path / "fake.png")
    mnist = read_medmnist("pneumoniamnist", split="val", limit=7)
    assert mnist.pixels.shape == (7, 28, 28) and len(mnist.metadata["labels"]) == 7


def test_windowing():
    ct = np.array([[-1000.0, -600.0, 150.0]])
    center, width = PRESETS["lung"]
    np.testing.assert_array_equal(apply_window(ct, center, width), [[60, 128, 255]])
    center, width = auto_window(np.arange(101.0))
    assert (center, width) == pytest.approx((50.0, 98.0))
    with pytest.raises(ValueError, match="positive"):
        apply_window(ct, 0, 0)


def test_window_choices_follow_the_volume(ge_volume, shared_data):
    assert window_names(ge_volume) == ["auto", "from file"]  # MR: no CT presets
    ct = read_dicom_file(next((shared_data / "dicom" / "tcia_covid19_ny_sbu_ct_slices").glob("*.dcm")))
    names = window_names(ct)
    assert names[:2] == ["auto", "from file"] and "lung" in names and "bone" in names
    image = display_slice(ct, 0, window="lung")
    assert image.dtype == np.uint8 and image.shape == (512, 512)
