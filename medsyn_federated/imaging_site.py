"""What a site does with its own images in an imaging federation (inside the site's Flower ClientApp).

The images never leave this module. Each round the site rebuilds the image engine's trainer
(:class:`~medsyn_imaging.training.gan_training.GANTrainer`) with the federation's settings, loads the
global generator, discriminator and EMA generator, trains ``local_kimg`` thousand images and returns the
three networks' weights. The images seen so far (a global counter) keep the EMA ramp-up and DiffAugment
schedule of one long run. With DP, the trainer is planned for every round at once (σ for all steps the
site will take) and D is trained with DP-SGD; the site's ledger is written before each round.

Class names are public metadata of the federation (``imaging.class_names``): a site's labels must be
0..K-1 in that order; how many images of each class a site holds is never sent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

NETS = ("G", "D", "G_ema")


def load_site_images(path: str | Path, resolution: int, class_names: list[str]):
    """The site's images fitted to ``resolution`` (MedMNIST ``.npz`` train split or class folders),
    labelled with the federation's class names."""
    from medsyn_imaging.training.training_data import load_training_images

    data = load_training_images(path, resolution)
    if data.n_classes != len(class_names) and not Path(path).is_dir():
        if int(data.labels.max()) >= len(class_names):
            raise ValueError(f"This site's labels go up to {int(data.labels.max())}, but the federation "
                             f"declares {len(class_names)} classes; use the same class list.")
    elif Path(path).is_dir() and list(data.class_names) != list(class_names):
        raise ValueError(f"This site's class folders ({len(data.class_names)}) are not the federation's "
                         f"classes ({len(class_names)}, in order): rename them to match.")
    return dataclasses.replace(data, class_names=list(class_names), source="federated site images")


def train_config(settings: dict[str, Any], epsilon: float | None = None, delta: float | None = None):
    """The image engine's :class:`TrainConfig` for the whole federated run (kimg = rounds × local)."""
    from medsyn_imaging.training.gan_training import TrainConfig

    imaging = settings.get("imaging") or {}
    privacy = settings.get("privacy") or {}
    return TrainConfig(
        model=settings["model"], kimg=float(settings["rounds"]) * float(settings["local_epochs"]),
        batch_size=int(settings["batch_size"]), seed=int(settings.get("seed", 0)),
        arch=dict(imaging.get("arch") or {}), checkpoint_kimg=0, grid_kimg=0,
        **{k: v for k, v in (settings.get("hyperparameters") or {}).items()},
        dp_epsilon=epsilon, dp_delta=delta, dp_max_grad_norm=float(privacy.get("max_grad_norm", 1.0)))


def state_of(trainer) -> dict[str, np.ndarray]:
    """Floating-point weights and buffers of G, D and the EMA generator (what leaves a site)."""
    out = {}
    for net in NETS:
        for k, v in getattr(trainer, net).state_dict().items():
            if v.dtype.is_floating_point:
                out[f"{net}.{k}"] = v.detach().cpu().numpy()
    return out


def load_state(trainer, arrays: dict[str, np.ndarray]) -> None:
    """Load global weights into the trainer's networks (integer buffers stay as they are)."""
    import torch

    for net in NETS:
        module = getattr(trainer, net)
        state = module.state_dict()
        for k in state:
            name = f"{net}.{k}"
            if name in arrays:
                value = torch.as_tensor(np.asarray(arrays[name]))
                state[k] = value.to(state[k].dtype).reshape(state[k].shape)
        module.load_state_dict(state)


def initial_state(settings: dict[str, Any], n_classes: int, channels: int = 1):
    """(starting weights, architecture) at the server: the image engine's networks built from the
    federation's settings alone (no image is read); under DP, D's unsupported layers are replaced as every
    site's trainer replaces them."""
    import copy

    from medsyn_core.device import seed_everything
    from medsyn_imaging.networks.gan_models import build_discriminator, build_generator, make_arch_config

    imaging = settings.get("imaging") or {}
    arch = make_arch_config(settings["model"], resolution=int(imaging.get("resolution", 32)),
                            img_channels=channels, n_classes=n_classes if n_classes > 1 else 0,
                            **({**dict(imaging.get("arch") or {}), "mbstd_group": 0}
                               if settings.get("privacy") and settings["model"] == "stylegan2"
                               else dict(imaging.get("arch") or {}))).to_dict()
    seed_everything(int(settings.get("seed", 0)))
    g, d = build_generator(settings["model"], arch), build_discriminator(settings["model"], arch)
    if settings.get("privacy"):
        from medsyn_core.privacy.dpsgd import replace_unsupported_layers

        d, _ = replace_unsupported_layers(d)
    nets = {"G": g, "D": d, "G_ema": copy.deepcopy(g)}
    return {f"{net}.{k}": v.detach().cpu().numpy() for net, m in nets.items()
            for k, v in m.state_dict().items() if v.dtype.is_floating_point}, arch


def train_round(data, settings: dict[str, Any], arrays: dict[str, np.ndarray], server_round: int,
                epsilon: float | None = None, delta: float | None = None, before_training=None):
    """One round: ``local_epochs`` thousand images from the global weights. Returns (weights, metrics,
    trainer). ``before_training(plan, steps)`` is called first under DP (the caller writes the ledger)."""
    from medsyn_imaging.training.gan_training import GANTrainer

    cfg = train_config(settings, epsilon, delta)
    steps = int(np.ceil(float(settings["local_epochs"]) * 1000 / cfg.batch_size))  # per round
    local = steps * cfg.batch_size
    cfg.kimg = int(settings["rounds"]) * local / 1000  # DP: σ planned for every step of every round
    trainer = GANTrainer(data, cfg, device="cpu")
    load_state(trainer, arrays)
    trainer.images_seen = (server_round - 1) * local  # the global schedule (EMA ramp-up) goes on
    if cfg.private and before_training is not None:
        before_training(trainer.dp_plan, steps)
    trainer.train(should_stop=lambda: trainer.step >= steps, report_every_images=cfg.batch_size)
    metrics = {"num-examples": float(len(data.images)), "uniform-weight": 1.0}
    if trainer.history:
        metrics["g_loss"] = float(trainer.history[-1]["g_loss"])  # post-processing under DP
        if not cfg.private and "d_loss" in trainer.history[-1]:
            metrics["d_loss"] = float(trainer.history[-1]["d_loss"])
    if cfg.private:
        taken = int(sum(h[2] for h in trainer.privacy_engine.accountant.history))
        if taken != steps:
            raise RuntimeError("DP-SGD ran another number of steps than the ledger records.")
    return state_of(trainer), metrics, trainer
