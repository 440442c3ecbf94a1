"""2D generators beyond 28 px: StyleGAN2 trains and samples at 64 and 128 px on a folder of PNGs (through the
CLI), and the latent diffusion model trains on 64 px images with the same trainer as the 3D one. Tiny
settings: a handful of steps each, on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsyn_cli.main import main


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def png_folder(root, n: int = 16, height: int = 150, width: int = 120):
    """root/disc/*.png and root/square/*.png: grey shapes on noise, non-square 150 x 120 px."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:height, :width]
    for i in range(n):
        label = ("disc", "square")[i % 2]
        image = rng.integers(0, 40, (height, width)).astype(np.uint8)
        cy, cx, r = rng.integers(40, height - 40), rng.integers(40, width - 40), rng.integers(15, 30)
        inside = (
            (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            if label == "disc"
            else (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        )
        image[inside] = 220
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / label / f"{i}.png")
    return root


@pytest.mark.parametrize("resolution", [64, 128])
def test_stylegan2_trains_and_samples_at_64_and_128_px_on_a_png_folder(tmp_path, capsys, resolution):
    from medsyn_imaging.training.generator_store import load_generator

    folder = png_folder(tmp_path / "pngs")
    out = tmp_path / f"gen{resolution}"
    assert (
        main(
            [
                "imaging",
                "train",
                str(folder),
                "--resolution",
                str(resolution),
                "--kimg",
                "0.016",
                "--batch",
                "4",
                "--channel-base",
                "512",
                "--channel-max",
                "16",
                "--out",
                str(out),
                "--report-kimg",
                "0.008",
                "--checkpoint-kimg",
                "0.008",
                "--no-register",
            ]
        )
        == 0
    ), capsys.readouterr().err
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["native_size"] == resolution and "resized" in card["data"]["fitting"]
    generator = load_generator(out, device="cpu")
    images, labels = generator.sample(4, seed=1)
    assert images.shape == (4, 1, resolution, resolution) and list(labels) == [0, 1, 0, 1]
    assert np.isfinite(images).all() and 0 <= images.min() and images.max() <= 1
    grid = tmp_path / "grid.png"
    assert main(["imaging", "sample", str(out), "-n", "2", "--grid", str(grid)]) == 0
    assert grid.stat().st_size > 0


def test_latent_diffusion_trains_and_samples_2d_images_at_64_px(tmp_path):
    from medsyn_imaging.training.ldm_training import LDMConfig, LDMTrainer
    from medsyn_imaging.training.training_data import load_training_images
    from medsyn_imaging.training.volume_data import images_as_training_set

    images = load_training_images(png_folder(tmp_path / "pngs", n=8), 64)
    data = images_as_training_set(images.images, images.labels, images.class_names, images.source)
    trainer = LDMTrainer(
        data,
        LDMConfig(preset="tiny", ae_steps=2, diffusion_steps=2, batch_size=2, adv_start=1, ddim_steps=2),
        device="cpu",
    )
    assert trainer.arch.spatial_dims == 2 and trainer.arch.conditional
    trainer.train()
    samples = trainer.sample(2, labels=[0, 1], seed=3)
    assert samples.shape == (2, 1, 64, 64) and np.isfinite(samples).all()
    assert np.array_equal(samples, trainer.sample(2, labels=[0, 1], seed=3))


def test_dicom_class_folders_train_at_64_px_ct_windowed_by_preset_mr_by_percentiles(tmp_path):
    """CT slices (HU) through a named window, MR through its percentiles; every frame one image."""
    from medsyn_imaging.io.dicom_write import write_dicom_series
    from medsyn_imaging.io.volume import Volume
    from medsyn_imaging.training.training_data import load_training_images

    rng = np.random.default_rng(0)
    ct = np.full((4, 80, 80), -1000.0)  # air, with a soft-tissue disc (40 HU) and a bone spot (1000 HU)
    yy, xx = np.mgrid[:80, :80]
    ct[:, (yy - 40) ** 2 + (xx - 40) ** 2 < 30**2] = 40.0
    ct[:, (yy - 40) ** 2 + (xx - 50) ** 2 < 5**2] = 1000.0
    for cls in ("a", "b"):
        volume = Volume(ct + rng.normal(0, 1, ct.shape), units="HU", modality="CT")
        write_dicom_series(volume, tmp_path / "ct" / cls / "series", geometry=False)
        for f in (tmp_path / "ct" / cls / "series").glob("*.dcm"):
            f.rename(tmp_path / "ct" / cls / f.name)
        (tmp_path / "ct" / cls / "series").rmdir()
    soft = load_training_images(tmp_path / "ct", 64)  # default CT window: soft tissue 40 / 400
    bone = load_training_images(tmp_path / "ct", 64, window="bone")
    assert soft.images.shape == (8, 1, 64, 64) and soft.source == "DICOM folder ct"
    centre = (slice(None), 0, 30, 25)  # inside the disc, away from the bone spot
    assert np.all(np.abs(soft.images[centre].astype(int) - 128) <= 3)  # 40 HU = the soft tissue level
    assert np.all(np.abs(bone.images[centre].astype(int) - 77) <= 3)  # (40 + 500) / 1800 in the bone window
    with pytest.raises(ValueError, match="Unknown window"):
        load_training_images(tmp_path / "ct", 64, window="sunset")

    mr = rng.uniform(100, 900, (3, 64, 64))  # MR: arbitrary units, a multi-frame file of three images
    for cls in ("x", "y"):
        (tmp_path / "mr" / cls).mkdir(parents=True)
        write_dicom_series(Volume(mr, modality="MR"), tmp_path / "mr" / cls / "mf", multiframe=True, bits=16)
        (tmp_path / "mr" / cls / "mf" / "IMG00001.dcm").rename(tmp_path / "mr" / cls / "frames.dcm")
    by_percentile = load_training_images(tmp_path / "mr", 64)
    assert by_percentile.images.shape == (6, 1, 64, 64)  # every frame one image
    assert by_percentile.images.min() <= 5 and by_percentile.images.max() >= 250  # spread over 0-255
    with pytest.raises(ValueError, match="Hounsfield"):
        load_training_images(tmp_path / "mr", 64, window="lung")


def test_dp_training_on_dicom_images_is_refused(tmp_path):
    """Several slices of one patient would be separate DP records: refused until grouped by patient."""
    from medsyn_imaging.io.dicom_write import write_dicom_series
    from medsyn_imaging.io.volume import Volume
    from medsyn_imaging.training.gan_training import GANTrainer, TrainConfig
    from medsyn_imaging.training.training_data import load_training_images

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "ct" / cls).mkdir(parents=True)
        write_dicom_series(Volume(rng.uniform(-1000, 400, (3, 32, 32)), units="HU", modality="CT"),
                           tmp_path / "ct" / cls / "mf", multiframe=True, bits=16)
        (tmp_path / "ct" / cls / "mf" / "IMG00001.dcm").rename(tmp_path / "ct" / cls / "slices.dcm")
    data = load_training_images(tmp_path / "ct", 32)
    assert data.from_dicom
    with pytest.raises(ValueError, match="slices and frames of one patient"):
        GANTrainer(data, TrainConfig(kimg=0.01, batch_size=4, dp_epsilon=5.0), device="cpu")
