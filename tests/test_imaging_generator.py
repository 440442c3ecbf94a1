"""Image generators: shapes, learning signal, exact resume, determinism, the demo model and the CLI.

All models here are tiny (a few channels) so the whole file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medsyn_cli.main import main
from medsyn_imaging.networks.dcgan import DCGANConfig, DCGANDiscriminator, DCGANGenerator
from medsyn_imaging.networks.diffaugment import diff_augment, parse_policy
from medsyn_imaging.networks.stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator
from medsyn_imaging.training.gan_training import GANTrainer, TrainConfig
from medsyn_imaging.training.generator_store import (
    demo_generator_path,
    list_generators,
    load_generator,
    save_generator,
)
from medsyn_imaging.training.training_data import ImageTrainingSet, load_training_images


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and OpenMP threads that wait on each other slow
    to a crawl when the 2 cores are shared with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_SG2 = {"channel_base": 128, "channel_max": 16, "z_dim": 16, "w_dim": 16, "mapping_layers": 2}


def toy_set(n: int = 64, size: int = 32, channels: int = 1) -> ImageTrainingSet:
    """Class 0: a bright disc, class 1: a bright square, on a dark noisy background (uint8)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    images = rng.integers(0, 40, size=(n, channels, size, size)).astype(np.uint8)
    labels = np.arange(n) % 2
    for i in range(n):
        cy, cx = rng.integers(10, size - 10, size=2)
        r = int(rng.integers(4, 8))
        shape = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) if labels[i] == 0 else \
            ((abs(yy - cy) <= r) & (abs(xx - cx) <= r))
        images[i, :, shape] = 220
    return ImageTrainingSet(images, labels.astype(np.int64), ["disc", "square"], "toy shapes", size,
                            "none", 0, [n // 2, n // 2])


def tiny_config(**overrides) -> TrainConfig:
    values = dict(kimg=0.1, batch_size=8, seed=3, r1_interval=2, checkpoint_kimg=0, grid_kimg=0,
                  arch=dict(TINY_SG2))
    values.update(overrides)
    return TrainConfig(**values)


# -- shapes and dtypes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
@pytest.mark.parametrize("channels", [1, 3])
def test_stylegan2_shapes_and_dtypes(resolution, channels):
    cfg = StyleGAN2Config(resolution=resolution, img_channels=channels, n_classes=2,
                          channel_base=4 * resolution, channel_max=8, z_dim=8, w_dim=8, mapping_layers=1)
    torch.manual_seed(0)
    G, D = StyleGAN2Generator(cfg), StyleGAN2Discriminator(cfg)
    z, labels = torch.randn(4, 8), torch.tensor([0, 1, 0, 1])
    img = G(z, labels, mixing_prob=1.0)
    assert img.shape == (4, channels, resolution, resolution) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    logits = D(img, labels)
    assert logits.shape == (4,) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    logits.sum().backward()  # gradients reach the generator through the discriminator
    assert G.mapping.layers[0].weight.grad is not None
    assert cfg.num_ws == 2 * int(np.log2(resolution)) - 2


def test_unconditional_stylegan2_and_truncation():
    cfg = StyleGAN2Config(resolution=32, n_classes=0, **TINY_SG2)
    G = StyleGAN2Generator(cfg)
    z = torch.randn(3, cfg.z_dim)
    G.mapping(z, update_w_avg=True)
    assert G.mapping.w_avg.abs().sum() > 0
    w_full, w_trunc = G.mapping(z), G.mapping(z, truncation=0.0)
    # truncation 0 collapses every w onto the tracked average
    assert torch.allclose(w_trunc, G.mapping.w_avg.expand_as(w_trunc))
    assert not torch.allclose(w_full, w_trunc)
    assert G(z).shape == (3, 1, 32, 32)


@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
def test_dcgan_baseline_shapes(resolution, channels):
    cfg = DCGANConfig(resolution=resolution, img_channels=channels, n_classes=2, z_dim=8, base_channels=4,
                      max_channels=16)
    G, D = DCGANGenerator(cfg), DCGANDiscriminator(cfg)
    labels = torch.tensor([0, 1, 1])
    img = G(torch.randn(3, 8), labels)
    assert img.shape == (3, channels, resolution, resolution) and img.abs().max() <= 1
    assert D(img, labels).shape == (3,)


def test_bad_settings_are_readable_errors():
    with pytest.raises(ValueError, match="Resolution 48 is not supported"):
        StyleGAN2Config(resolution=48)
    with pytest.raises(ValueError, match="Unknown DiffAugment"):
        parse_policy("color,zoom")
    G = StyleGAN2Generator(StyleGAN2Config(resolution=32, n_classes=2, **TINY_SG2))
    with pytest.raises(ValueError, match="Labels must lie in 0..1"):
        G(torch.randn(1, 16), torch.tensor([2]))
    with pytest.raises(ValueError, match="pass a label"):
        G(torch.randn(1, 16))


def test_diffaugment_is_differentiable_and_keeps_shape():
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    y = diff_augment(x * 2 - 1)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# -- data fitting ---------------------------------------------------------------------------------------
def test_medmnist_is_edge_padded_to_32_and_png_folders_are_resized(tmp_path):
    data = load_training_images("breastmnist", 32)
    assert data.images.shape == (546, 1, 32, 32) and data.fit == "pad" and data.pad == 2
    assert data.class_names == ["malignant", "normal or benign"] and sum(data.class_counts) == 546
    from medsyn_imaging.io.datasets import load_medmnist

    raw = load_medmnist("breastmnist").images["train"]
    assert np.array_equal(data.images[:, 0, 2:-2, 2:-2], raw)  # padding is exactly reversible

    from PIL import Image

    for name, value in (("normal", 40), ("pneumonia", 200)):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 50), value + i, dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    folder = load_training_images(tmp_path, 32)
    assert folder.images.shape == (6, 1, 32, 32) and folder.class_names == ["normal", "pneumonia"]
    assert folder.fit == "resize" and list(folder.labels) == [0, 0, 0, 1, 1, 1]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="one folder per class"):
        load_training_images(empty, 32)


# -- training -------------------------------------------------------------------------------------------
def _d_loss(trainer: GANTrainer, real, labels, z) -> float:
    """Discriminator loss on a fixed batch, without augmentation."""
    with torch.no_grad():
        fake = trainer.G(z, labels, noise_mode="const")
        return float(F.softplus(trainer.D(fake, labels)).mean() + F.softplus(-trainer.D(real, labels)).mean())


@pytest.mark.parametrize("model", ["stylegan2", "dcgan"])
def test_a_few_steps_lower_the_discriminator_loss(model):
    data = toy_set()
    arch = (dict(TINY_SG2, channel_base=256, channel_max=32) if model == "stylegan2"
            else {"base_channels": 8, "max_channels": 32, "z_dim": 16})
    trainer = GANTrainer(data, tiny_config(model=model, arch=arch, batch_size=16, diffaugment="none",
                                           lr=0.0025 if model == "stylegan2" else 0.0005),
                         device="cpu")
    real = torch.from_numpy(data.images[:32]).float() / 127.5 - 1
    labels = torch.from_numpy(data.labels[:32])
    z = torch.randn(32, trainer.G.z_dim, generator=torch.Generator().manual_seed(7))
    before = _d_loss(trainer, real, labels, z)
    for _ in range(25):
        losses = trainer.train_step()
        assert np.isfinite(losses["d_loss"]) and np.isfinite(losses["g_loss"])
    after = _d_loss(trainer, real, labels, z)
    assert after < before - 0.1, (before, after)
    assert trainer.images_seen == 25 * 16


def test_resume_from_checkpoint_continues_exactly(tmp_path):
    data = toy_set(n=32)
    config = tiny_config(kimg=0.048)  # 6 steps of 8 images, R1 on steps 0, 2, 4, style mixing on

    straight = GANTrainer(data, config, device="cpu")
    straight.train()

    first = GANTrainer(data, TrainConfig.from_dict({**config.to_dict(), "kimg": 0.024}), device="cpu")
    first.train(checkpoint_path=tmp_path / "ckpt.pt")
    assert first.images_seen == 24
    torch.manual_seed(12345)  # disturb the global RNG: the checkpoint must restore it
    resumed = GANTrainer.from_checkpoint(tmp_path / "ckpt.pt", data, device="cpu", kimg=0.048)
    assert resumed.images_seen == 24
    resumed.train(checkpoint_path=tmp_path / "ckpt.pt")

    assert resumed.images_seen == straight.images_seen == 48
    for name in ("G", "D", "G_ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs after resume"
    assert straight.D_opt.state_dict()["state"][0]["exp_avg"].equal(
        resumed.D_opt.state_dict()["state"][0]["exp_avg"])

    other = toy_set(n=30)
    with pytest.raises(ValueError, match="different images"):
        GANTrainer.from_checkpoint(tmp_path / "ckpt.pt", other, device="cpu")


def test_progress_callback_reports_images_losses_and_grid():
    data = toy_set(n=32)
    seen = []
    trainer = GANTrainer(data, tiny_config(kimg=0.032, grid_kimg=0.016), device="cpu")
    trainer.train(callback=seen.append, report_every_images=16)
    assert [p.images_seen for p in seen] == [16, 32]
    assert all(np.isfinite(p.d_loss) and np.isfinite(p.g_loss) for p in seen)
    assert seen[-1].fraction == 1.0 and seen[-1].grid is not None
    grid = seen[-1].grid
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[-1] == 1
    # two classes -> two rows of 8 images of 2x-enlarged 32 px (plus 2 px borders)
    assert grid.shape[:2] == (2 * (64 + 2) + 2, 8 * (64 + 2) + 2)


def test_same_seed_same_images_and_save_load_round_trip(tmp_path):
    data = toy_set(n=32)
    trainer = GANTrainer(data, tiny_config(kimg=0.016), device="cpu")
    trainer.train()
    a = trainer.sample([0, 1, 1], seed=5)
    b = trainer.sample([0, 1, 1], seed=5)
    c = trainer.sample([0, 1, 1], seed=6)
    assert a.shape == (3, 1, 32, 32) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)

    path = save_generator(trainer, tmp_path / "toy-gen", command="pytest", register=True)
    assert {p.name for p in path.iterdir()} == {"generator.safetensors", "config.json", "model_card.json"}
    loaded = load_generator(path, device="cpu")
    images, labels = loaded.sample(3, label=[0, 1, 1], seed=5)
    assert np.array_equal(images, a) and list(labels) == [0, 1, 1]
    assert loaded.label_index("square") == 1
    with pytest.raises(ValueError, match="Unknown class"):
        loaded.sample(1, label="triangle")
    card = json.loads((path / "model_card.json").read_text())
    assert card["training"]["images_seen"] == 16 and card["evaluation"]["fid"] is None
    assert any(e.name == "toy-gen" and e.source == "store" for e in list_generators())
    with pytest.raises(FileExistsError):
        save_generator(trainer, path)


# -- the bundled demo model -----------------------------------------------------------------------------
def test_demo_model_samples_each_class():
    path = demo_generator_path()
    assert path.is_dir(), f"the demo generator {path} is missing"
    assert sum(f.stat().st_size for f in path.iterdir()) < 20 * 2**20
    demo = load_generator(path, device="cpu")
    card = demo.card
    assert card["data"]["source"].startswith("bundled pneumoniamnist")
    assert card["training"]["command"].startswith("medsyn imaging train pneumoniamnist")
    assert card["training"]["images_seen"] > 0
    evaluation = card["evaluation"]  # measured by `medsyn imaging evaluate`, with its floor
    assert evaluation["fid"] > evaluation["fid_real_floor"] > 0 and 0.5 < evaluation["tstr_auc"] <= 1
    assert demo.class_names == ["normal", "pneumonia"]
    per_class = []
    for k, name in enumerate(demo.class_names):
        images, labels = demo.sample(6, label=name, seed=1, truncation=0.7)
        assert images.shape == (6, 1, 28, 28) and images.dtype == np.float32
        assert 0 <= images.min() and images.max() <= 1 and set(labels) == {k}
        assert images.std(axis=0).mean() > 0.005  # different latents give different images
        per_class.append(images)
    assert not np.array_equal(per_class[0], per_class[1])
    assert any(e.source == "bundled" and e.path == path for e in list_generators())


# -- CLI ------------------------------------------------------------------------------------------------
def test_cli_trains_on_a_png_folder_and_samples_a_grid(tmp_path, capsys):
    from PIL import Image

    data = toy_set(n=24)
    for i, img in enumerate(data.images):
        folder = tmp_path / "pngs" / data.class_names[data.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(folder / f"{i}.png")
    out = tmp_path / "gen"
    args = ["imaging", "train", str(tmp_path / "pngs"), "--kimg", "0.016", "--batch", "8", "--out", str(out),
            "--channel-base", "128", "--channel-max", "8", "--report-kimg", "0.008",
            "--checkpoint-kimg", "0.008"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "kimg" in printed and "Saved the EMA generator" in printed
    card = json.loads((out / "model_card.json").read_text())
    assert card["training"]["command"].startswith("medsyn imaging train ")
    assert card["data"]["class_names"] == ["disc", "square"]

    assert main(args) == 2  # the output folder exists now: refused, nothing overwritten
    assert "already exists" in capsys.readouterr().err

    grid = tmp_path / "grid.png"
    assert main(["imaging", "sample", str(out), "-n", "4", "--label", "square", "--grid", str(grid)]) == 0
    from PIL import Image as PILImage

    with PILImage.open(grid) as im:
        assert im.size == (4 * (64 + 2) + 2, 64 + 4)  # 32 px images enlarged 2x
    assert main(["imaging", "sample", str(out), "-n", "2", "--label", "7", "--grid", str(grid)]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["imaging", "sample", "--list"]) == 0
    assert "gen" in capsys.readouterr().out


def test_cli_sample_exports_through_the_imaging_io_writers(tmp_path, capsys):
    pytest.importorskip("medsyn_imaging.io.export", reason="the imaging I/O writers are merged separately")
    for fmt in ("png", "dicom", "nifti"):
        out = tmp_path / f"export-{fmt}"
        assert main(["imaging", "sample", "demo", "-n", "4", "--label", "normal", "--format", fmt,
                     "--out", str(out)]) == 0, capsys.readouterr().err
        written = capsys.readouterr().out.strip().rsplit(" to ", 1)[1]
        assert Path(written).exists()
    assert len(list((tmp_path / "export-dicom").glob("*.dcm"))) == 4
    assert len(list((tmp_path / "export-png").glob("*.png"))) == 4


def _png_folder(root, n: int = 24):
    from PIL import Image

    data = toy_set(n=n)
    for i, img in enumerate(data.images):
        folder = root / data.class_names[data.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(folder / f"{i}.png")
    return root


def _submit_training(name: str, folder, **config):
    from app_helpers import login_as

    from medsyn_core import jobs
    from medsyn_core.storage import Store

    user = login_as({}, "researcher")
    params = {"data": str(folder), "name": name, "resolution": 32, "config": tiny_config(**config).to_dict()}
    with Store() as store:
        return jobs.submit(store, user, "imaging-train", params), user


def test_background_training_job_reports_progress_saves_and_registers(tmp_path):
    from app_helpers import finish_job

    from medsyn_core.storage import Store
    from medsyn_imaging.training.training_job import check_model_name

    job_id, _ = _submit_training("job-gen", _png_folder(tmp_path / "pngs"), kimg=0.016, grid_kimg=0.008,
                                 checkpoint_kimg=0.008)
    job = finish_job(job_id)
    assert job["status"] == "finished", job["error"]
    assert job["payload"]["images_seen"] == 16 and Path(job["payload"]["grid"]).is_file()
    assert job["checkpoint"] and Path(job["checkpoint"]).is_file()
    assert load_generator(job["result"]["model_path"], device="cpu").class_names == ["disc", "square"]
    with Store() as store:
        assert [m.name for m in store.list_models()] == ["job-gen"]
        run = store.get_run(1)
        assert run["status"] == "finished" and run["metrics"]["images_seen"] == 16
        assert run["model_id"] == store.model_id("job-gen")
    with pytest.raises(FileExistsError, match="already exists"):
        check_model_name("job-gen")
    with pytest.raises(ValueError, match="a path, not a name"):
        check_model_name("../escape")


def test_cancelled_job_saves_no_model(tmp_path):
    from app_helpers import finish_job

    from medsyn_core import jobs, settings
    from medsyn_core.storage import Store

    job_id, user = _submit_training("cancelled-gen", _png_folder(tmp_path / "pngs"), kimg=50)
    with Store() as store:
        jobs.request_cancel(store, user, job_id)  # before the first progress report
    job = finish_job(job_id)
    assert job["status"] == "cancelled" and job["result"] is None
    assert not (settings.models_dir() / "cancelled-gen").exists()


def test_synthetic_scans_page_previews_the_demo_model_and_exports():
    from app_helpers import logged_in

    from medsyn_core.storage import Store

    at = logged_in("pages/synthetic_scans.py", "clinician").run()
    assert not at.exception, at.exception
    assert at.selectbox[0].value.startswith("pneumoniamnist-stylegan2")
    assert "FID 46.2 (real-vs-real floor 11.3)" in at.selectbox[0].value  # its quality, on the label
    assert len(at.get("image")) >= 1  # the preview grid
    # a clinician gets no training tab at all (issue 19): the previews and the 3D volumes only
    assert [t.label for t in at.tabs] == ["Preview and export", "3D volumes"]
    export = next(b for b in at.button if b.label == "Export the 8 previewed images")
    export.click().run()
    assert not at.exception, at.exception
    assert at.success and "8 synthetic images" in at.success[0].value
    with Store() as store:
        event = store.audit_events()[-1]
    assert (event["actor"], event["action"]) == ("test-clinician", "export")
    assert json.loads(event["details_json"])["generator"] == "pneumoniamnist-stylegan2"


def test_synthetic_scans_page_trains_a_generator_as_a_job_for_researchers_only():
    from app_helpers import finish_job, logged_in

    clinician = logged_in("pages/synthetic_scans.py", "clinician").run()
    # no tab it cannot use, so no red refusal either
    assert [t.label for t in clinician.tabs] == ["Preview and export", "3D volumes"] and not clinician.error
    assert not any(b.label == "Start training" for b in clinician.button)

    at = logged_in("pages/synthetic_scans.py", "researcher").run()
    assert not at.exception, at.exception
    next(n for n in at.number_input if n.label.startswith("Length")).set_value(0.1)
    next(t for t in at.text_input if t.label == "Model name").set_value("page-gen")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = finish_job(at.session_state["imaging_job_id"])
    assert job["status"] == "finished", job["error"]
    at.run()
    assert any("Saved as page-gen" in s.value for s in at.success)


def test_synthetic_scans_page_trains_with_a_dp_preset_and_refuses_unreachable_budgets():
    import json

    from app_helpers import finish_job, logged_in

    at = logged_in("pages/synthetic_scans.py", "researcher").run()
    length = next(n for n in at.number_input if n.label.startswith("Length"))
    next(s for s in at.selectbox if s.label == "Differential privacy").set_value("strict")
    length.set_value(25000.0)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert any("cannot be met" in e.value for e in at.error), [e.value for e in at.error]
    assert "imaging_job_id" not in at.session_state

    next(n for n in at.number_input if n.label.startswith("Length")).set_value(0.1)
    next(t for t in at.text_input if t.label == "Model name").set_value("dp-page-gen")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.error, [e.value for e in at.error]
    job = finish_job(at.session_state["imaging_job_id"])
    assert job["status"] == "finished", job["error"]
    model = Path(job["result"]["model_path"])
    ledger = json.loads((model / "privacy_ledger.json").read_text())
    assert 0 < ledger["total_epsilon"] <= 1.0


def test_a_folder_with_splits_trains_on_its_train_part_only(tmp_path):
    """The evaluation tests on the folder's test/ images; training must never see them (the holdout)."""
    from PIL import Image

    from medsyn_imaging.training.training_data import load_training_images

    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for cls in ("a", "b"):
            folder = tmp_path / "data" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((28, 28), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    data = load_training_images(tmp_path / "data", 32)
    assert data.class_names == ["a", "b"] and len(data.images) == 12
