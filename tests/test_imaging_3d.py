"""The 3D generator (MONAI latent diffusion) end to end on 32³ phantom volumes, on the CPU.

Phantoms: NIfTI volumes (int16 "HU") of a bright sphere or cube in air, with an LPS-flipped, anisotropic
affine, two classes of three. One tiny model is trained once through the CLI (a few steps of each stage) and
shared by the tests that sample, export (read back by dcm2niix, MedSyn's readers and dciodvfy) and evaluate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from medsyn_cli.main import main

SHAPE = (32, 32, 32)
DCM2NIIX = shutil.which("dcm2niix")
DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_phantoms(root: Path, per_class: int = 3, seed: int = 0) -> Path:
    """root/sphere/*.nii.gz and root/cube/*.nii.gz: 40x36x30 voxels of 1.5x1.5x2 mm, LPS-flipped affine."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    grid = np.mgrid[:40, :36, :30].astype(float)
    spacing = np.array([1.5, 1.5, 2.0])
    for cls in ("sphere", "cube"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            centre = np.array([20, 18, 15]) + rng.normal(0, 1.5, 3)
            offset = (grid - centre[:, None, None, None]) * spacing[:, None, None, None]  # mm
            radius = 11 + rng.normal(0, 1)
            dist = np.sqrt((offset**2).sum(0)) if cls == "sphere" else np.abs(offset).max(0)
            hu = np.where(dist < radius, 400.0, -1000.0) + rng.normal(0, 15, dist.shape)
            affine = np.diag([-1.5, -1.5, 2.0, 1.0])
            affine[:3, 3] = [30.0, 27.0, -29.0]
            img = nib.Nifti1Image(hu.astype(np.int16), affine)
            img.header.set_xyzt_units("mm")
            nib.save(img, str(root / cls / f"{cls}-{i}.nii.gz"))
    return root


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    return write_phantoms(tmp_path_factory.mktemp("phantoms"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phantoms) -> Path:
    """A tiny 3D generator trained through the CLI (3 autoencoder + 2 diffusion steps)."""
    base = tmp_path_factory.mktemp("ldm")
    out = base / "tiny-ldm"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MEDSYN_HOME", str(base / "home"))
            rc = main(
                [
                    "imaging",
                    "train-3d",
                    str(phantoms),
                    "--out",
                    str(out),
                    "--size",
                    "tiny",
                    "--shape",
                    "32",
                    "32",
                    "32",
                    "--spacing",
                    "2",
                    "2",
                    "2",
                    "--window",
                    "ct",
                    "--ae-steps",
                    "3",
                    "--diffusion-steps",
                    "2",
                    "--batch",
                    "1",
                    "--ddim-steps",
                    "3",
                    "--report-every",
                    "1",
                    "--checkpoint-every",
                    "0",
                    "--no-register",
                    "--work-dir",
                    str(base / "work"),
                ]
            )
    finally:
        torch.set_num_threads(before)
    assert rc == 0
    return out


def _generator(path):
    from medsyn_imaging.training.volume_generator_store import load_volume_generator

    return load_volume_generator(path, device="cpu")


# -- data ---------------------------------------------------------------------------------------------------
def test_volumes_are_reoriented_resampled_and_windowed_to_the_declared_grid(phantoms):
    from medsyn_imaging.training.volume_data import load_training_volumes

    data = load_training_volumes(phantoms, SHAPE, (2.0, 2.0, 2.0), window="ct")
    assert data.volumes.shape == (6, 1, 32, 32, 32) and data.volumes.dtype == np.float32
    assert data.class_names == ["cube", "sphere"] and data.class_counts == [3, 3]
    assert data.intensity.kind == "window" and (data.intensity.low, data.intensity.high) == (-1000.0, 1000.0)
    assert 0.0 <= data.volumes.min() and data.volumes.max() <= 1.0
    # the sphere keeps its physical size: radius ~11 mm -> ~4/3 pi 11³ / 8 mm³ voxels at 2 mm
    sphere = data.volumes[data.labels == 1][0, 0]
    expected = 4 / 3 * np.pi * 11**3 / 8
    assert abs((sphere > 0.6).sum() - expected) < 0.35 * expected
    # the phantom's centre lies at +x voxel index 20 (of 40, 1.5 mm, flipped to RAS): still near the middle
    centre = np.argwhere(sphere > 0.6).mean(axis=0)
    assert np.all(np.abs(centre - 15.5) < 4), centre

    with pytest.raises(ValueError, match="Unknown intensity window"):
        load_training_volumes(phantoms, SHAPE, (2.0, 2.0, 2.0), window="nonsense")
    with pytest.raises(ValueError, match="at least 8"):
        load_training_volumes(phantoms, (4, 32, 32), (2.0, 2.0, 2.0))


def test_dp_is_refused_with_the_reason(tmp_path, capsys, phantoms):
    from medsyn_imaging.training.ldm_training import LDMConfig

    with pytest.raises(ValueError, match="Differential privacy is not available"):
        LDMConfig(dp_epsilon=3.0)
    assert main(["imaging", "train-3d", str(phantoms), "--out", str(tmp_path / "m"), "--epsilon", "3"]) == 2
    assert "Differential privacy is not available" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


# -- training and sampling ---------------------------------------------------------------------------------
def test_ldm_trains_on_32_cubed_volumes_and_samples_deterministically(trained):
    config = json.loads((trained / "config.json").read_text())
    card = json.loads((trained / "model_card.json").read_text())
    assert config["model"] == "ldm3d" and config["data"]["shape"] == [32, 32, 32]
    assert card["kind"] == "ldm3d" and card["engine"] == "imaging" and card["dp_label"] == "DP: off"
    assert card["training"]["steps"] == {"autoencoder": 3, "diffusion": 2}
    assert card["training"]["command"].startswith("medsyn imaging train-3d ")
    assert "never downloads" in card["training"]["perceptual_loss"]
    assert all(np.isfinite(v) for v in card["metrics"].values()) and "diffusion noise_mse" in card["metrics"]

    gen = _generator(trained)
    a, labels = gen.sample_arrays(2, seed=5)
    b, _ = gen.sample_arrays(2, seed=5)
    c, _ = gen.sample_arrays(2, seed=6)
    assert a.shape == (2, 1, 32, 32, 32) and list(labels) == [0, 1]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0.0 <= a.min() and a.max() <= 1.0
    volume = gen.to_volumes(a, labels)[0]
    assert volume.pixels.shape == (32, 32, 32) and volume.units == "HU"
    assert np.allclose(volume.spacing, (2.0, 2.0, 2.0)) and -1000 <= volume.pixels.min()
    with pytest.raises(ValueError, match="Unknown class"):
        gen.sample_arrays(1, label="torus")


def test_resume_from_a_checkpoint_continues_exactly(tmp_path, phantoms):
    from medsyn_imaging.training.ldm_training import LDMConfig, LDMTrainer
    from medsyn_imaging.training.volume_data import load_training_volumes

    data = load_training_volumes(phantoms, (16, 16, 16), (4.0, 4.0, 4.0), window="ct")
    config = LDMConfig(
        preset="tiny",
        ae_steps=2,
        diffusion_steps=2,
        batch_size=1,
        adv_start=1,
        checkpoint_every=1,
        ddim_steps=2,
    )
    straight = LDMTrainer(data, config, device="cpu")
    straight.train()
    ckpt = tmp_path / "ckpt.pt"
    stopped = LDMTrainer(data, config, device="cpu")
    calls = iter(range(100))
    stopped.train(checkpoint_path=ckpt, should_stop=lambda: next(calls) >= 3)  # stops after 3 steps
    assert stopped.step == 3 and stopped.stage == "diffusion"
    resumed = LDMTrainer.from_checkpoint(ckpt, data, device="cpu")
    resumed.train(checkpoint_path=ckpt)
    assert resumed.stage == "done" and resumed.scale_factor == straight.scale_factor
    for name in ("autoencoder", "unet", "discriminator"):
        for (k, v), (_, w) in zip(
            getattr(straight, name).state_dict().items(),
            getattr(resumed, name).state_dict().items(),
            strict=True,
        ):
            assert torch.equal(v, w), f"{name}.{k}"
    other = load_training_volumes(phantoms, (16, 16, 16), (2.0, 2.0, 2.0), window="ct")
    with pytest.raises(ValueError, match="other volumes"):
        LDMTrainer.from_checkpoint(ckpt, other, device="cpu")


def test_sliding_window_decoding_covers_the_volume(trained):
    from medsyn_imaging.training.ldm_training import decode_latents

    gen = _generator(trained)
    torch.manual_seed(0)
    latents = torch.randn(1, *gen.arch.latent_shape(SHAPE))
    whole = decode_latents(gen.autoencoder, latents)
    assert torch.equal(decode_latents(gen.autoencoder, latents, roi=[16, 16, 16]), whole)  # one tile = whole
    tiled = decode_latents(gen.autoencoder, latents, roi=[12, 12, 12])
    assert whole.shape == tiled.shape == (1, 1, 32, 32, 32)
    # tiles see less context at their borders; blended, they still reproduce the whole decode closely
    assert float(torch.corrcoef(torch.stack([whole.flatten(), tiled.flatten()]))[0, 1]) > 0.9


# -- export read back by independent tools -------------------------------------------------------------------
def _canonical(path):
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))
    return img.affine, np.asarray(img.dataobj, dtype=np.float64)


def _dciodvfy_errors(path: Path) -> list[str]:
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def _dcm2niix(source: Path, out: Path) -> Path:
    out.mkdir()
    run = subprocess.run(
        [DCM2NIIX, "-z", "n", "-b", "n", "-f", "converted", "-o", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (converted,) = out.glob("converted*.nii")
    return converted


@pytest.mark.skipif(
    DCM2NIIX is None or DCIODVFY is None,
    reason="needs dcm2niix and dciodvfy (Debian dcm2niix, dicom3tools; .ci/run installs them)",
)
@pytest.mark.parametrize("fmt", ["dicom", "dicom-enhanced"])
def test_sampled_volume_exported_as_dicom_reads_back_with_the_same_geometry(trained, tmp_path, fmt):
    from medsyn_imaging.io.dicom_read import read_dicom
    from medsyn_imaging.io.nifti_io import write_nifti
    from medsyn_imaging.training.volume_generator_store import export_samples

    gen = _generator(trained)
    volume = gen.sample(1, label="sphere", seed=2)[0]
    out = export_samples(gen, [volume], tmp_path / "export", fmt, seed=2)
    item = out / ("volume-001" if fmt == "dicom" else "volume-001.dcm")
    sidecar = json.loads((out / "provenance.json").read_text())
    assert sidecar["synthetic"] and sidecar["volumes"][0]["label"] == "sphere"

    files = sorted(item.glob("*.dcm")) if item.is_dir() else [item]
    assert len(files) == (32 if fmt == "dicom" else 1)
    for file in (files[0], files[-1]):
        assert _dciodvfy_errors(file) == [], file

    import pydicom

    ds = pydicom.dcmread(files[0])
    assert ds.PatientName == "SYNTHETIC^MEDSYN" and ds.SeriesDescription.startswith("SYNTHETIC")
    assert "ImageComments" in ds and '"synthetic": true' in ds.ImageComments

    # the reference: the same volume written as NIfTI by MedSyn, with its affine
    reference = write_nifti(volume, tmp_path / "reference.nii.gz", synthetic=True)
    ref_affine, ref_data = _canonical(reference)
    # 1. an independent converter (dcm2niix): same shape, spacing, orientation and voxels
    conv_affine, conv_data = _canonical(_dcm2niix(item if item.is_dir() else out, tmp_path / "dcm2niix"))
    assert conv_data.shape == ref_data.shape == (32, 32, 32)
    assert np.allclose(conv_affine, ref_affine, atol=1e-3), (conv_affine, ref_affine)
    tolerance = 2000 / 65535 + 1e-3  # 16-bit quantisation of the -1000..1000 HU range
    assert np.abs(conv_data - ref_data).max() <= tolerance
    # 2. MedSyn's own reader
    back = read_dicom(item)
    assert back.pixels.shape == volume.pixels.shape
    assert np.allclose(back.affine, volume.affine, atol=1e-3) and np.allclose(back.spacing, volume.spacing)
    assert np.abs(back.pixels - volume.pixels).max() <= tolerance


def test_nifti_export_keeps_the_affine(trained, tmp_path):
    import nibabel as nib

    from medsyn_imaging.io.volume import LPS_TO_RAS
    from medsyn_imaging.training.volume_generator_store import export_samples

    gen = _generator(trained)
    volumes = gen.sample(2, seed=1)
    out = export_samples(gen, volumes, tmp_path / "nii", "nifti", seed=1)
    for i, volume in enumerate(volumes, start=1):
        img = nib.load(str(out / f"volume-{i:03d}.nii.gz"))
        assert img.shape == (32, 32, 32) and nib.aff2axcodes(img.affine) == ("R", "A", "S")
        assert np.allclose(img.affine, LPS_TO_RAS @ volume.affine)
        assert int(img.header["sform_code"]) == 2  # aligned: a synthetic, nominal patient frame
    with pytest.raises(FileExistsError):
        export_samples(gen, volumes, out, "nifti", seed=1)
    with pytest.raises(ValueError, match="Unknown volume export format"):
        export_samples(gen, volumes, tmp_path / "x", "png", seed=1)


def test_cli_samples_and_exports(trained, tmp_path, capsys):
    out = tmp_path / "cli-export"
    assert (
        main(
            [
                "imaging",
                "sample-3d",
                str(trained),
                "-n",
                "1",
                "--label",
                "cube",
                "--format",
                "nifti",
                "--ddim-steps",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    ), capsys.readouterr().err
    assert (out / "volume-001.nii.gz").is_file()
    assert main(["imaging", "sample-3d", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "No 3D generator" in capsys.readouterr().err


# -- fidelity and memorisation -----------------------------------------------------------------------------
def test_fid_on_three_planes_frd_and_memorisation_sit_beside_their_floors(phantoms):
    from medsyn_imaging.evaluation.volume_metrics import evaluate_volumes, split_real
    from medsyn_imaging.training.volume_data import load_training_volumes

    real = load_training_volumes(phantoms, SHAPE, (2.0, 2.0, 2.0), window="ct")
    reference_index, _ = split_real(len(real.volumes), seed=0)
    rng = np.random.default_rng(1)
    noise = rng.uniform(0, 1, (2, 1, *SHAPE)).astype(np.float32)  # a generator that learned nothing
    copy = real.volumes[reference_index[:1]]  # and one that copied a training volume
    report = evaluate_volumes(
        real,
        np.concatenate([noise, copy]),
        seed=0,
        feature_epochs=2,
        frd_image_types=["Original"],
        slice_size=32,
        per_volume=8,
    )
    fidelity = report.section("fidelity_3d")
    for plane in ("axial", "coronal", "sagittal"):
        m = fidelity.metric(f"fid_{plane}")
        assert np.isfinite(m.value) and np.isfinite(m.reference) and m.reference_label == "real-vs-real floor"
    fid = fidelity.metric("fid_3plane")
    assert fid.value > fid.reference  # noise is further from the real slices than other real volumes are
    frd = fidelity.metric("frd")
    assert np.isfinite(frd.value) and np.isfinite(frd.reference) and frd.value > frd.reference
    memorisation = report.section("memorisation_3d")
    assert memorisation.metric("n_flagged_3d").value == 1  # the copy, not the noise
    assert memorisation.metric("max_ssim_3d").value > 0.99
    assert any("near-copies" in w for w in report.warnings)
    assert json.loads(report.to_json())["sections"]  # serialisable for the app and the CLI


# -- job -----------------------------------------------------------------------------------------------------
def test_background_job_trains_saves_and_registers_a_3d_generator(phantoms):
    from app_helpers import finish_job, login_as

    from medsyn_core import jobs
    from medsyn_core.storage import Store

    user = login_as({}, "researcher")
    params = {
        "data": str(phantoms),
        "name": "job-ldm",
        "shape": [16, 16, 16],
        "spacing": [4, 4, 4],
        "window": "ct",
        "config": {
            "preset": "tiny",
            "ae_steps": 1,
            "diffusion_steps": 1,
            "batch_size": 1,
            "ddim_steps": 2,
            "checkpoint_every": 0,
        },
    }
    with Store() as store:
        job_id = jobs.submit(store, user, "imaging-train-3d", params)
    job = finish_job(job_id)
    assert job["status"] == "finished", job["error"]
    assert job["payload"]["stage"] == "done" and job["checkpoint"]
    with Store() as store:
        (model,) = store.list_models()
    assert model.name == "job-ldm" and model.kind == "ldm3d" and model.engine == "imaging"
    assert _generator(model.path).sample_arrays(1, seed=0)[0].shape == (1, 1, 16, 16, 16)


# -- the Synthetic scans page -------------------------------------------------------------------------------
def test_synthetic_scans_page_says_how_to_train_then_shows_a_sampled_volume_in_three_planes(trained):
    from app_helpers import logged_in

    from medsyn_core.storage import Store

    at = logged_in("pages/synthetic_scans.py", "clinician")
    at.run()
    assert not at.exception
    assert any("No 3D generator is available yet" in str(i.value) for i in at.info)

    with Store() as store:  # the tiny model, registered in this test's home
        card = json.loads((trained / "model_card.json").read_text())
        store.register_model("tiny-ldm", "ldm3d", trained, card)
    at = logged_in("pages/synthetic_scans.py", "researcher")
    at.run()
    at.button(key="vol-generate").click().run()
    assert not at.exception
    captions = " ".join(str(c.value) for c in at.caption)
    for plane in ("Axial 16/32", "Coronal 16/32", "Sagittal 16/32"):
        assert plane in captions, captions
    assert any(b.label == "Export this volume" for b in at.button)


def test_openly_licensed_volumes_that_ship_load_onto_a_training_grid(tmp_path):
    """The bundled GE MR series (a DICOM series folder, 4D) and nibabel's test NIfTIs, as a user would."""
    import nibabel

    from medsyn_imaging.io.datasets import bundled_dicom_series_dir
    from medsyn_imaging.training.volume_data import load_training_volumes

    ge = tmp_path / "ge"
    ge.mkdir()
    (ge / "series").symlink_to(bundled_dicom_series_dir(), target_is_directory=True)
    series = load_training_volumes(ge, (32, 32, 16), (4.0, 4.0, 4.0), timepoints="all")
    assert series.volumes.shape == (10, 1, 32, 32, 16) and series.modality == "MR"
    assert series.intensity.kind == "percentile" and series.class_names == ["all"]

    nii = tmp_path / "nii"
    nii.mkdir()
    tests_data = Path(nibabel.__file__).parent / "tests" / "data"
    for name in ("anatomical.nii", "example4d.nii.gz"):
        (nii / name).symlink_to(tests_data / name)
    niftis = load_training_volumes(nii, (32, 32, 32), (3.0, 3.0, 3.0))
    assert niftis.volumes.shape == (2, 1, 32, 32, 32) and any("4D" in note for note in niftis.notes)
    assert np.isfinite(niftis.volumes).all() and niftis.volumes.max() == pytest.approx(1.0)


def test_model_store_page_shows_the_3d_generator_card(trained):
    from app_helpers import logged_in

    from medsyn_core.storage import Store

    with Store() as store:
        store.register_model(
            "tiny-ldm", "ldm3d", trained, json.loads((trained / "model_card.json").read_text())
        )
    at = logged_in("pages/model_store.py", "researcher")
    at.run()
    box = next(s for s in at.selectbox if s.label == "Model")
    box.set_value(0).run()  # registered models come first, the bundled demo after
    assert not at.exception
    text = " ".join(str(m.value) for m in at.markdown)
    assert "imaging (ldm3d)" in text and "DP: off" in text
