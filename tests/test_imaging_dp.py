"""Differentially private image-generator training: DP-SGD on the discriminator through the shared privacy
module. Opacus is really attached (per-sample gradients, noise), ε from the ledger matches an independent
accountant, the saved model shows ε, bad budgets are readable errors. Tiny models: a few seconds each.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from test_imaging_generator import TINY_SG2, toy_set

from medsyn_cli.main import main
from medsyn_core.privacy import PrivacyError
from medsyn_imaging.training.gan_training import GANTrainer, TrainConfig


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def dp_config(**overrides) -> TrainConfig:
    values = dict(kimg=0.08, batch_size=8, seed=3, checkpoint_kimg=0, grid_kimg=0, arch=dict(TINY_SG2),
                  dp_epsilon=5.0)
    values.update(overrides)
    return TrainConfig(**values)


def test_dp_turns_off_minibatch_stddev_r1_and_plans_sigma_before_training():
    trainer = GANTrainer(toy_set(64), dp_config())
    assert trainer.D.mbstd is None and trainer.arch["mbstd_group"] == 0
    assert trainer.config.r1_interval == 0 and trainer.amp_dtype is None
    plan = trainer.dp_plan
    assert plan.steps == 10 and plan.sample_rate == pytest.approx(8 / 64)  # 80 images / batch 8
    assert plan.delta == pytest.approx(1e-5) and 0.05 < plan.noise_multiplier < 10  # min(1e-5, 1/(10 n))
    assert trainer.images_seen == 0 and trainer.privacy_engine.accountant.history == []


def test_opacus_gives_exact_per_sample_gradients_and_adds_noise():
    trainer = GANTrainer(toy_set(64), dp_config())
    D, opt = trainer.D_private, trainer.D_opt
    torch.manual_seed(0)
    images, labels = torch.rand(5, 1, 32, 32) * 2 - 1, torch.tensor([0, 1, 0, 1, 1])
    target = torch.tensor([1.0, 1, 0, 0, 1])
    opt.zero_grad(set_to_none=True)
    F.binary_cross_entropy_with_logits(D(images, labels), target).backward()
    params = [p for p in trainer.D.parameters() if p.requires_grad]
    assert params and all(p.grad_sample is not None and p.grad_sample.shape == (5, *p.shape)
                          for p in params)  # the custom equalised-lr layers included (functorch)
    # each per-sample gradient equals the gradient of that image alone (no sample mixing in D)
    per_sample = [p.grad_sample.clone() for p in params]
    D.disable_hooks()
    for i in range(5):
        grads = torch.autograd.grad(F.binary_cross_entropy_with_logits(
            trainer.D(images[i:i + 1], labels[i:i + 1]), target[i:i + 1]), params)
        for g, ps in zip(grads, per_sample, strict=True):
            torch.testing.assert_close(ps[i], g, rtol=1e-4, atol=1e-6)
    D.enable_hooks()

    # a zero loss: after clipping and noising, the gradient is pure noise with s.d. σ C / expected batch
    opt.zero_grad(set_to_none=True)
    (0.0 * D(images, labels).sum()).backward()
    opt.pre_step()
    noise = torch.cat([p.grad.flatten() for p in params])
    plan = trainer.dp_plan
    expected_sd = plan.noise_multiplier * plan.max_grad_norm / opt.expected_batch_size
    assert noise.abs().max() > 0
    assert noise.std().item() == pytest.approx(expected_sd, rel=0.1)


@pytest.mark.parametrize("model", ["stylegan2", "dcgan"])
def test_dp_training_spends_the_planned_epsilon_and_it_recomputes(model):
    from medsyn_core.privacy.ledger import dpsgd_epsilon

    extra = {} if model == "stylegan2" else dict(model="dcgan", lr=2e-4, beta1=0.5, arch={})
    trainer = GANTrainer(toy_set(64), dp_config(**extra))  # DCGAN: MONAI's InstanceNorm is per image
    trainer.train()
    assert trainer.step == 10 and trainer.images_seen == 80
    assert trainer.privacy_engine.accountant.history  # one accountant step per optimizer step
    assert sum(h[2] for h in trainer.privacy_engine.accountant.history) == 10
    ledger = trainer.privacy_ledger()
    (entry,) = ledger.entries  # DP-SGD only: nothing else reads the images
    assert entry.mechanism == "dp-sgd" and entry.target == "discriminator" and entry.steps == 10
    plan = trainer.dp_plan
    independent = dpsgd_epsilon("rdp", plan.noise_multiplier, 1 / 8, 10, 1e-5)
    assert entry.epsilon == pytest.approx(independent, rel=0.01)
    assert independent <= 5.0 and independent == pytest.approx(5.0, rel=0.01)  # σ fits the target
    assert ledger.total()[0] == pytest.approx(independent, rel=1e-9)


def test_bad_budgets_and_settings_are_clear_errors():
    with pytest.raises(PrivacyError, match="ε must be a positive"):
        GANTrainer(toy_set(64), dp_config(dp_epsilon=-1.0))
    with pytest.raises(PrivacyError, match="cannot be met"):
        GANTrainer(toy_set(64), dp_config(dp_epsilon=0.01, kimg=2.0))
    with pytest.raises(PrivacyError, match="not below 1/n"):
        GANTrainer(toy_set(64), dp_config(dp_delta=0.1))
    with pytest.raises(PrivacyError, match="batch size"):
        GANTrainer(toy_set(16), dp_config(batch_size=16))
    with pytest.raises(ValueError, match="R1"):
        dp_config(r1_gamma=1.0)
    with pytest.raises(ValueError, match="Minibatch standard deviation"):
        dp_config(arch={**TINY_SG2, "mbstd_group": 4})


def test_cli_dp_run_saves_a_model_whose_card_and_ledger_show_epsilon(tmp_path, capsys):
    from medsyn_core.storage import Store

    data = toy_set(n=64)
    npz = tmp_path / "toy.npz"
    import numpy as np

    arrays = {"images": data.images[:, 0], "labels": data.labels[:, None]}
    np.savez(npz, **{f"{split}_{key}": value for split in ("train", "val", "test")
                     for key, value in arrays.items()})
    out = tmp_path / "dpgen"
    args = ["imaging", "train", str(npz), "--kimg", "0.04", "--batch", "8", "--out", str(out),
            "--channel-base", "128", "--channel-max", "8", "--report-kimg", "0.02", "--epsilon", "4"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "DP-SGD: target ε = 4" in printed and "DP: ε = " in printed
    card = json.loads((out / "model_card.json").read_text())
    dp = card["differential_privacy"]
    ledger = json.loads((out / "privacy_ledger.json").read_text())
    assert dp["enabled"] and dp["steps"] == 5 and dp["dataset_rows"] == 64
    assert dp["epsilon_total"] == pytest.approx(ledger["total_epsilon"]) and 0 < dp["epsilon_total"] <= 4.0
    assert dp["epsilon_total"] == pytest.approx(4.0, rel=0.01)
    assert card["dp_label"].startswith("DP: ε = 4")
    assert "class_counts" not in card["data"] and "d_loss" not in card["training"]["final_losses"]
    assert "--epsilon 4" in card["training"]["command"]
    with Store() as store:
        (record,) = [m for m in store.list_models() if m.name == "dpgen"]
    assert record.dp_epsilon == pytest.approx(dp["epsilon_total"])

    # DP runs cannot be resumed; unreachable budgets fail before training, with advice
    again = args[:args.index("--out") + 1] + [str(tmp_path / "other")] + args[args.index("--out") + 2:]
    assert main(again + ["--resume"]) == 2
    assert "cannot be resumed" in capsys.readouterr().err
    assert main(again[:-1] + ["0.01"]) == 2
    err = capsys.readouterr().err
    assert "cannot be met" in err and "raise ε" in err
    assert main(again[:-2] + ["--clip", "2"]) == 2
    assert "--epsilon" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_non_dp_card_says_dp_is_off(tmp_path):
    from medsyn_imaging.training.generator_store import save_generator

    trainer = GANTrainer(toy_set(16), TrainConfig(kimg=0.008, batch_size=8, checkpoint_kimg=0, grid_kimg=0,
                                                  arch=dict(TINY_SG2)))
    trainer.train()
    assert trainer.privacy_ledger() is None and trainer.D.mbstd is not None
    save_generator(trainer, tmp_path / "g", register=False)
    card = json.loads((tmp_path / "g" / "model_card.json").read_text())
    assert card["dp_label"] == "DP: off" and not card["differential_privacy"]["enabled"]
    assert not (tmp_path / "g" / "privacy_ledger.json").exists()


def test_poisson_batches_vary_in_size_and_empty_ones_still_take_a_step():
    # the batches come from OS entropy (not the seed): 200 steps make "no empty batch" (15/16)^200 ~ 2e-6
    trainer = GANTrainer(toy_set(4), dp_config(kimg=0.4, batch_size=2, seed=1, dp_epsilon=200.0))
    sizes, draw = [], trainer._private_real_batch

    def recording_draw():
        real, labels = draw()
        sizes.append(len(real))
        return real, labels

    trainer._private_real_batch = recording_draw
    trainer.train()
    assert trainer.step == 200 and 0 in sizes and max(sizes) > 2  # q = 1/2 over 4 images
    assert sum(h[2] for h in trainer.privacy_engine.accountant.history) == 200


# -- privacy audit: replay, real-image losses, duplicates ----------------------------------------------
def test_a_dp_image_gan_cannot_be_replayed_from_its_config_and_seed():
    """Finding 1 for images: the discriminator's DP-SGD noise and Poisson batches came from the seeded
    global RNG, so re-running the released config reproduced the generator exactly."""
    released = GANTrainer(toy_set(64), dp_config())
    released.train()
    replayed = GANTrainer(toy_set(64), dp_config())  # same data, config and seed: what an auditor can do
    replayed.train()
    pairs = zip(released.G_ema.state_dict().values(), replayed.G_ema.state_dict().values(), strict=True)
    assert not all(torch.equal(a, b) for a, b in pairs)


def test_dp_run_never_reports_or_writes_the_discriminator_loss(tmp_path, capsys):
    """Finding 4: D's loss on real images went into the job payload and the run log of DP runs."""
    import numpy as np

    data = toy_set(n=64)
    npz = tmp_path / "toy.npz"
    arrays = {"images": data.images[:, 0], "labels": data.labels[:, None]}
    np.savez(npz, **{f"{split}_{key}": value for split in ("train", "val", "test")
                     for key, value in arrays.items()})
    work = tmp_path / "work"
    args = ["imaging", "train", str(npz), "--kimg", "0.04", "--batch", "8", "--out", str(tmp_path / "g"),
            "--channel-base", "128", "--channel-max", "8", "--report-kimg", "0.02", "--epsilon", "4",
            "--work-dir", str(work)]
    assert main(args) == 0, capsys.readouterr().err
    assert " D " not in capsys.readouterr().out
    log = (work / "log.jsonl").read_text()
    assert log and "d_loss" not in log
    for path in (tmp_path / "g").iterdir():
        assert "d_loss" not in path.read_text(errors="ignore"), path.name


def test_duplicated_images_are_removed_before_dp_training_and_counted(tmp_path):
    import numpy as np

    from medsyn_imaging.training.generator_store import save_generator
    from medsyn_imaging.training.training_data import ImageTrainingSet

    base = toy_set(48)
    images = np.concatenate([base.images, base.images[:16]])  # 16 images stored twice
    labels = np.concatenate([base.labels, base.labels[:16]])
    doubled = ImageTrainingSet(images, labels, base.class_names, "toy", 32, "none", 0, [32, 32])
    trainer = GANTrainer(doubled, dp_config(kimg=0.016))
    assert len(trainer.data.images) == 48 and trainer.data.duplicates_removed == 16
    assert trainer.dp_plan.sample_rate == pytest.approx(1 / 6)  # planned on the 48 distinct images
    trainer.train()
    save_generator(trainer, tmp_path / "g", register=False)
    card = json.loads((tmp_path / "g" / "model_card.json").read_text())
    assert card["data"]["duplicates_removed"] == 16 and card["differential_privacy"]["dataset_rows"] == 48
    assert "duplicate" in card["differential_privacy"]["unit"]
