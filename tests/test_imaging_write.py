"""Writing synthetic DICOM and NIfTI: dciodvfy accepts every kind of file, and pydicom/nibabel read
back the same pixels and geometry."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medsyn_imaging.io.datasets import bundled_dicom_series_dir
from medsyn_imaging.io.dicom_read import read_dicom, read_dicom_folder
from medsyn_imaging.io.dicom_write import SyntheticStudy, quantize, write_dicom_series, zip_folder
from medsyn_imaging.io.export import export_images
from medsyn_imaging.io.image_io import read_images
from medsyn_imaging.io.nifti_io import read_nifti, write_nifti
from medsyn_imaging.io.volume import Volume

PROVENANCE = {"model": "stylegan2-test", "seed": 11, "truncation": 0.7}


def dciodvfy_errors(path: Path) -> list[str]:
    """The 'Error' lines dciodvfy prints for one file (warnings are allowed)."""
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy is not installed: install the Debian package dicom3tools (.ci/run does)")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def assert_synthetic_and_valid(folder: Path) -> list[pydicom.Dataset]:
    files = sorted(folder.glob("*.dcm"))
    assert files, f"no DICOM written in {folder}"
    datasets = []
    for path in files:
        assert dciodvfy_errors(path) == [], path.name
        ds = pydicom.dcmread(path)
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.ConversionType == "SYN" and ds.BurnedInAnnotation == "NO"
        assert ds.PatientIdentityRemoved == "YES" and ds.Manufacturer == "MedSyn"
        assert ds.SeriesDescription.startswith("SYNTHETIC")
        assert str(ds.PatientName) == "SYNTHETIC^MEDSYN" and ds.PatientID.startswith("MEDSYN-SYN-")
        assert ds.SOPClassUID.startswith(pydicom.uid.SecondaryCaptureImageStorage)  # SC or multi-frame SC
        datasets.append(ds)
    assert len({d.SeriesInstanceUID for d in datasets}) == 1
    assert len({d.StudyInstanceUID for d in datasets}) == 1
    assert len({d.SOPInstanceUID for d in datasets}) == len(datasets)
    return datasets


@pytest.fixture(scope="module")
def mr_volume() -> Volume:
    volume = read_dicom(bundled_dicom_series_dir())
    return volume.with_pixels(volume.pixels[0])  # first time point: (15, 64, 64) int16


def test_16bit_volume_series_keeps_pixels_and_geometry(mr_volume, tmp_path):
    out = write_dicom_series(mr_volume, tmp_path / "mr", description="MR volume", provenance=PROVENANCE)
    datasets = assert_synthetic_and_valid(out)
    first = datasets[0]
    # MR magnitudes are >= 0: unsigned 16-bit, no rescale needed
    bits = (first.BitsAllocated, first.BitsStored, first.HighBit, first.PixelRepresentation)
    assert bits == (16, 16, 15, 0)
    assert float(first.RescaleSlope) == 1.0 and float(first.RescaleIntercept) == 0.0
    assert float(first.SliceThickness) == pytest.approx(5.0)
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([3.75, 3.75])
    assert json.loads(first.ImageComments.split("Provenance: ", 1)[1])["seed"] == 11
    back = read_dicom(out)
    np.testing.assert_array_equal(back.pixels, mr_volume.pixels)
    np.testing.assert_allclose(back.affine, mr_volume.affine, atol=1e-4)
    assert len({d.FrameOfReferenceUID for d in datasets}) == 1
    signed = mr_volume.with_pixels((mr_volume.pixels - 100).astype(np.int16))
    out = write_dicom_series(signed, tmp_path / "signed")
    assert assert_synthetic_and_valid(out)[0].PixelRepresentation == 1
    np.testing.assert_array_equal(read_dicom(out).pixels, signed.pixels)


def test_float_volume_is_quantised_with_rescale(tmp_path):
    rng = np.random.default_rng(1)
    hu = rng.uniform(-1024.0, 2500.0, size=(3, 16, 20)).astype(np.float32)
    affine = np.diag([0.7, 0.7, 2.5, 1.0])
    affine[:3, 3] = [-100.0, -120.0, 30.0]
    volume = Volume(hu, affine=affine, units="HU", modality="CT")
    out = write_dicom_series(volume, tmp_path / "ct", description="CT")
    datasets = assert_synthetic_and_valid(out)
    slope = float(datasets[0].RescaleSlope)
    assert datasets[0].PixelRepresentation == 0 and datasets[0].RescaleType == "HU"
    back = read_dicom(out)
    assert np.abs(back.pixels - hu).max() <= slope / 2 + 1e-3
    np.testing.assert_allclose(back.affine, affine, atol=1e-4)


def test_quantize_rules():
    small = quantize(np.array([[0, 200]], dtype=np.int32), 8)
    assert small.stored.dtype == np.uint8 and small.slope == 1.0
    signed = quantize(np.array([[-5, 3000]], dtype=np.int32), 16)
    assert signed.stored.dtype == np.int16
    unit = quantize(np.linspace(0, 1, 11), 8)
    assert unit.stored.min() == 0 and unit.stored.max() == 255
    assert len(unit.slope_text) <= 16
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([np.nan]), 16)


def test_8bit_samples_and_rgb(tmp_path):
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    out = write_dicom_series(Volume(grey), tmp_path / "grey", provenance=PROVENANCE)
    datasets = assert_synthetic_and_valid(out)
    assert datasets[0].BitsAllocated == 8 and "ImagePositionPatient" not in datasets[0]
    np.testing.assert_array_equal(np.stack([d.pixel_array for d in datasets]), grey)
    rgb = rng.integers(0, 256, size=(2, 30, 20, 3), dtype=np.uint8)
    study = SyntheticStudy()
    out_rgb = write_dicom_series(Volume(rgb, rgb=True), tmp_path / "rgb", study=study)
    datasets_rgb = assert_synthetic_and_valid(out_rgb)
    assert datasets_rgb[0].PhotometricInterpretation == "RGB"
    np.testing.assert_array_equal(np.stack([d.pixel_array for d in datasets_rgb]), rgb)
    write_dicom_series(Volume(grey), tmp_path / "grey2", study=study)  # second series, same study
    second = pydicom.dcmread(next((tmp_path / "grey2").glob("*.dcm")))
    assert second.StudyInstanceUID == datasets_rgb[0].StudyInstanceUID
    assert second.SeriesInstanceUID != datasets_rgb[0].SeriesInstanceUID and second.SeriesNumber == 2


@pytest.mark.parametrize("kind", ["byte", "word", "signed word", "rgb"])
def test_multiframe_secondary_capture(tmp_path, kind):
    rng = np.random.default_rng(5)
    pixels = {"byte": rng.integers(0, 256, (3, 12, 10), dtype=np.uint8),
              "word": rng.integers(0, 4096, (3, 12, 10), dtype=np.uint16),
              "signed word": rng.integers(-1000, 3000, (3, 12, 10)).astype(np.int16),
              "rgb": rng.integers(0, 256, (3, 12, 10, 3), dtype=np.uint8)}[kind]
    volume = Volume(pixels, rgb=kind == "rgb")
    out = write_dicom_series(volume, tmp_path / "mf", multiframe=True, provenance=PROVENANCE,
                             per_image=[{"label": i % 2} for i in range(3)])
    (ds,) = assert_synthetic_and_valid(out)
    assert ds.NumberOfFrames == 3 and "MultiFrame" in ds.SOPClassUID.keyword
    assert json.loads(ds.ImageComments.split("Provenance: ", 1)[1])["frames"][1] == {"label": 1}
    np.testing.assert_array_equal(read_dicom(out / "IMG00001.dcm").pixels, pixels)
    with pytest.raises(ValueError, match="no slice positions"):
        write_dicom_series(volume, tmp_path / "mf2", multiframe=True, geometry=True)


def test_write_is_atomic_and_refuses_overwrite(tmp_path):
    grey = np.zeros((2, 8, 8), dtype=np.uint8)
    write_dicom_series(Volume(grey), tmp_path / "a")
    with pytest.raises(FileExistsError, match="already exists"):
        write_dicom_series(Volume(grey), tmp_path / "a")
    bad = np.full((2, 8, 8), np.inf)
    with pytest.raises(ValueError, match="NaN or infinity"):
        write_dicom_series(Volume(bad), tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_nifti_round_trip_keeps_pixels_affine_and_dtype(mr_volume, tmp_path):
    path = write_nifti(mr_volume, tmp_path / "mr.nii.gz")
    img = nib.load(path)
    assert img.get_data_dtype() == np.int16
    assert img.header["sform_code"] == 1 and img.header["qform_code"] == 1
    back = read_nifti(path)
    np.testing.assert_array_equal(back.pixels, mr_volume.pixels)
    np.testing.assert_allclose(back.affine, mr_volume.affine, atol=1e-4)
    floats = Volume(np.random.default_rng(3).random((2, 5, 6)), affine=np.diag([2.0, 3.0, 4.0, 1.0]))
    synthetic = write_nifti(floats, tmp_path / "syn.nii", synthetic=True)
    img = nib.load(synthetic)
    assert img.get_data_dtype() == np.float32 and img.header["sform_code"] == 2
    np.testing.assert_allclose(read_nifti(synthetic).pixels, floats.pixels, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\.nii"):
        write_nifti(floats, tmp_path / "x.img")


def test_4d_nifti_round_trip(tmp_path):
    volume = read_dicom(bundled_dicom_series_dir())
    back = read_nifti(write_nifti(volume, tmp_path / "fmri.nii.gz"))
    assert back.pixels.shape == (10, 15, 64, 64)
    np.testing.assert_array_equal(back.pixels, volume.pixels)
    assert nib.load(tmp_path / "fmri.nii.gz").header.get_zooms()[3] == pytest.approx(5.0)  # TR in s


@pytest.mark.parametrize("channels", [1, 3])
def test_export_images_all_formats(tmp_path, channels):
    rng = np.random.default_rng(4)
    images = rng.random((3, channels, 28, 28)).astype(np.float32)
    expected = np.round(images * 255).astype(np.uint8)
    expected = expected[:, 0] if channels == 1 else np.moveaxis(expected, 1, -1)
    kwargs = {"labels": [0, 1, 1], "label_names": ["normal", "pneumonia"], "provenance": PROVENANCE}

    png = export_images(images, tmp_path / "png", "png", **kwargs)
    np.testing.assert_array_equal(read_images(sorted(png.glob("*.png"))).pixels, expected)
    assert "image-00002.png,1,pneumonia" in (png / "labels.csv").read_text()
    assert json.loads((png / "provenance.json").read_text())["provenance"]["seed"] == 11

    dicom = export_images(images, tmp_path / "dicom", "dicom", **kwargs)
    datasets = assert_synthetic_and_valid(dicom)
    np.testing.assert_array_equal(np.stack([d.pixel_array for d in datasets]), expected)
    comment = json.loads(datasets[1].ImageComments.split("Provenance: ", 1)[1])
    assert comment["label_name"] == "pneumonia" and comment["model"] == "stylegan2-test"
    assert read_dicom_folder(dicom).volumes[0].pixels.shape[0] == 3
    archive = zip_folder(dicom)
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert "dicom/IMG00001.dcm" in names and "dicom/provenance.json" in names
        assert zf.testzip() is None

    nifti = export_images(images, tmp_path / "samples", "nifti", **kwargs)
    assert nifti.name == "samples.nii.gz"
    back = read_nifti(nifti)
    np.testing.assert_array_equal(back.pixels, expected)
    assert b"SYNTHETIC" in nib.load(nifti).header["descrip"].tobytes()
    assert json.loads((tmp_path / "samples.json").read_text())["images"][2]["label"] == 1


def test_export_rejects_bad_input_clearly(tmp_path):
    good = np.zeros((2, 1, 8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        export_images(np.zeros((2, 8, 8)), tmp_path / "x", "png")
    with pytest.raises(ValueError, match=r"\[0, 1\].*rescale"):
        export_images(np.full((1, 1, 4, 4), -1.0), tmp_path / "x", "png")
    with pytest.raises(ValueError, match="one label per image"):
        export_images(good, tmp_path / "x", "png", labels=[0])
    with pytest.raises(ValueError, match="Unknown export format"):
        export_images(good, tmp_path / "x", "jpeg2000")
    export_images(good, tmp_path / "x", "dicom")
    with pytest.raises(FileExistsError, match="already exists"):
        export_images(good, tmp_path / "x", "png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_clinician_export_is_exactly_the_preview_with_modality_spacing_and_window(tmp_path):
    """Issue 19: the exported images were not the previewed ones (another sampling call), and the DICOM
    was OT with no pixel spacing and no window. Now the preview batch is what is exported, pixel for
    pixel, as Secondary Capture (the modality-neutral IOD) with the source's modality, a nominal pixel
    spacing and the window that shows the 8-bit pixels as previewed; dciodvfy still accepts it."""
    from medsyn_imaging.io.image_grid import make_grid
    from medsyn_imaging.training.generator_store import demo_generator_path, export_samples, load_generator

    gen = load_generator(demo_generator_path(), device="cpu")
    images, labels = gen.preview_batch(per_class=3, seed=5, truncation=0.7)
    grid = make_grid(images, ncol=3, scale=4)  # what the page shows (nearest-neighbour upscaling)
    out = export_samples(gen, images, labels, tmp_path / "export", "dicom", seed=5, truncation=0.7)
    datasets = assert_synthetic_and_valid(out)
    assert [d.Modality for d in datasets] == ["DX"] * 6
    assert all(float(d.PixelSpacing[0]) == pytest.approx(300 / 28) for d in datasets)
    assert all((float(d.WindowCenter), float(d.WindowWidth)) == (128.0, 256.0) for d in datasets)
    for i, ds in enumerate(datasets):
        r, c = divmod(i, 3)
        tile = grid[2 + r * (28 * 4 + 2):, 2 + c * (28 * 4 + 2):][:28 * 4:4, :28 * 4:4, 0]
        assert np.array_equal(ds.pixel_array, tile)  # the previewed pixels, exactly
    labels = [json.loads(d.ImageComments.split("Provenance: ")[1])["label"] for d in datasets]
    assert labels == [0] * 3 + [1] * 3
