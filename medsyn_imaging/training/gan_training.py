"""The GAN training loop shared by StyleGAN2 and the DCGAN baseline.

One step (batch ``B``): a discriminator update with the non-saturating logistic loss on DiffAugmented
real and generated images; every ``r1_interval`` steps a lazy R1 penalty ``gamma/2 * |grad D(real)|^2``
(scaled by the interval, with Adam's lr/betas adjusted as in the StyleGAN2 paper); a generator update
(with style mixing for StyleGAN2); then the exponential moving average (EMA) of the generator's weights,
whose half-life is ``ema_kimg`` thousand images (ramped up over the first 5 % of training). The EMA
generator is the one that is saved and sampled.

Lengths count **images shown to the discriminator** (``kimg`` = thousands of real images). Mixed
precision (bf16 where supported, else fp16 with gradient scaling) is used on CUDA only. Checkpoints hold
the models, optimisers, scalers, counters and every random-number-generator state, so a resumed run
continues exactly as if it had not been interrupted (bit for bit on the CPU).

**Differential privacy** (``TrainConfig.dp_epsilon``): only D sees real images, so only D is trained with
DP-SGD (Opacus, through :mod:`medsyn_core.privacy`); G's updates read only D and are post-processing.
σ is calibrated by ``plan_dpsgd`` before training for ``ceil(kimg * 1000 / batch)`` steps over the ``n``
training images (one image with its label = one record). Real batches come from Opacus' Poisson sampler;
real and generated images go through D in ONE forward/backward, so one optimizer step is one accountant
step. Under DP: minibatch stddev is off (it mixes samples), R1 is off (double backward does not work
with per-sample gradients), mixed precision is off, generated images get uniformly drawn labels (the
real class mix would be an unaccounted statistic), and no checkpoints are written (a DP run cannot be
resumed: the accountant and sampler state are not checkpointed). The StyleGAN2 discriminator's custom
equalised-lr layers have no Opacus grad sampler; Opacus computes their per-sample gradients with
functorch (tested in ``tests/test_imaging_dp.py``).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medsyn_core.device import choose_device, seed_everything
from medsyn_imaging.networks.diffaugment import DEFAULT_POLICY, diff_augment, parse_policy
from medsyn_imaging.networks.gan_models import build_discriminator, build_generator, make_arch_config
from medsyn_imaging.training.training_data import ImageTrainingSet

CHECKPOINT_FORMAT = 1
DICOM_DP_REFUSAL = (
    "Differentially private training on DICOM images is not available yet: the slices and frames of one "
    "patient would be protected as separate records, so the guarantee would not hold for a patient. Train on "
    "DICOM without DP, or with DP on a folder that holds one image per patient.")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (architecture settings go in ``arch``)."""

    model: str = "stylegan2"  # 'stylegan2' or 'dcgan'
    kimg: float = 100.0  # training length, thousands of real images shown to D
    batch_size: int = 32
    seed: int = 0
    lr: float = 0.0025  # Adam learning rate of G and D (DCGAN: 0.0002 is usual)
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float | None = None  # None: StyleGAN2-ADA's heuristic 0.0002 * R^2 / B
    r1_interval: int = 16  # lazy regularisation: R1 every this many steps (0 = no R1)
    ema_kimg: float | None = None  # None: 10 * B / 32 (StyleGAN2-ADA)
    ema_rampup: float = 0.05
    mixing_prob: float = 0.9  # style mixing probability (StyleGAN2 only)
    diffaugment: str = DEFAULT_POLICY
    checkpoint_kimg: float = 10.0  # checkpoint every this many kimg (0 = only at the end)
    grid_kimg: float = 2.0  # live sample grid every this many kimg (0 = never)
    arch: dict[str, Any] = field(default_factory=dict)  # e.g. {"channel_base": 2048, "channel_max": 128}
    # differential privacy (DP-SGD on D); dp_epsilon None = off
    dp_epsilon: float | None = None  # total ε for the run (no preprocessing share: nothing else is read)
    dp_delta: float | None = None  # None: min(1e-5, 1 / (10 n))
    dp_max_grad_norm: float = 1.0  # per-sample clipping norm C
    dp_accountant: str = "rdp"
    dp_preset: str | None = None  # the preset name the ε came from, for the record

    @property
    def private(self) -> bool:
        return self.dp_epsilon is not None

    @property
    def privacy(self):
        """The run's :class:`~medsyn_core.privacy.settings.PrivacySettings` (all of ε for training)."""
        from medsyn_core.privacy.settings import PrivacySettings

        return PrivacySettings.create(self.dp_epsilon, self.dp_delta, self.dp_preset, self.dp_max_grad_norm,
                                      0.0, self.dp_accountant)

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2.")
        if self.kimg <= 0:
            raise ValueError("kimg must be positive (thousands of training images to show).")
        if not 0 <= self.mixing_prob <= 1:
            raise ValueError("mixing_prob must lie in [0, 1].")
        parse_policy(self.diffaugment)
        if self.private:
            if self.r1_interval > 0 and self.r1_gamma not in (None, 0, 0.0):
                raise ValueError("R1 regularisation cannot be used with differential privacy (its double "
                                 "backward breaks per-sample gradients); leave r1_gamma unset.")
            self.r1_interval = 0  # DP: no lazy R1
            if self.arch.get("mbstd_group", 0):
                raise ValueError("Minibatch standard deviation mixes samples and cannot be used with "
                                 "differential privacy; leave mbstd_group unset (DP turns it off).")

    @property
    def total_images(self) -> int:
        return int(round(self.kimg * 1000))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def plan_private_training(cfg: TrainConfig, n: int):
    """(PrivacyBudget, DPSGDPlan) for a DP run on ``n`` training images: σ calibrated for
    ceil(total_images / batch) steps at q = 1 / ceil(n / batch). Raises PrivacyError with advice when the
    budget is unreachable; uses only public numbers (n, batch, kimg), so the app can check it before
    submitting a job."""
    from medsyn_core.privacy.dpsgd import plan_dpsgd

    budget = cfg.privacy.budget(n)  # no preprocessing share: only the discriminator reads the images
    steps = math.ceil(cfg.total_images / cfg.batch_size)
    plan = plan_dpsgd(budget.epsilon, budget.delta, n, cfg.batch_size, steps, cfg.dp_max_grad_norm,
                      cfg.dp_accountant)
    return budget, plan


@dataclass
class TrainingProgress:
    """What the CLI and the app show while training (losses are means since the previous report)."""

    images_seen: int
    total_images: int
    step: int
    d_loss: float | None  # None under DP (computed on real images, not covered by DP-SGD)
    g_loss: float
    r1_penalty: float | None
    elapsed_s: float  # training wall time, summed over resumed sessions
    images_per_s: float  # over this session
    grid: np.ndarray | None = None  # (H, W, C) uint8 sample grid from the EMA generator, rows by class

    @property
    def fraction(self) -> float:
        return min(1.0, self.images_seen / max(1, self.total_images))


def data_fingerprint(data: ImageTrainingSet) -> str:
    """:func:`medsyn_core.training.fingerprint` of the training images and labels (to refuse resuming on
    different data)."""
    from medsyn_core.training import fingerprint

    return fingerprint(data.images, data.labels)


def _amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA GPUs that support it, else fp16 on CUDA; None (full precision) elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class GANTrainer:
    """Trains a generator/discriminator pair on an :class:`ImageTrainingSet`.

    >>> trainer = GANTrainer(data, TrainConfig(kimg=50))          # doctest: +SKIP
    >>> trainer.train(callback=print, checkpoint_path="run/checkpoint.pt")   # doctest: +SKIP
    >>> images = trainer.sample(labels=[0, 1], seed=1)            # (2, C, R, R) in [0, 1]  # doctest: +SKIP
    """

    def __init__(self, data: ImageTrainingSet, config: TrainConfig, device: str | torch.device | None = None):
        self.config = config
        if config.private and data.from_dicom:
            raise ValueError(DICOM_DP_REFUSAL)
        if config.private and data.duplicates_removed is None:
            from medsyn_imaging.training.training_data import deduplicate

            data = deduplicate(data)  # DP protects one record: an image stored twice is counted once
        self.data = data
        self.device = choose_device(str(device)) if device is not None else choose_device()
        arch_values = dict(config.arch)
        if config.private and config.model == "stylegan2":
            arch_values["mbstd_group"] = 0  # minibatch stddev mixes samples: off under DP
        arch = make_arch_config(config.model, resolution=data.resolution, img_channels=data.channels,
                                n_classes=data.n_classes if data.n_classes > 1 else 0, **arch_values)
        self.arch = arch.to_dict()
        seed_everything(config.seed)
        self.G = build_generator(config.model, self.arch).to(self.device)
        self.D = build_discriminator(config.model, self.arch).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)

        self.r1_gamma = (config.r1_gamma if config.r1_gamma is not None
                         else 0.0002 * data.resolution**2 / config.batch_size)
        c = config.r1_interval / (config.r1_interval + 1) if config.r1_interval > 0 else 1.0
        self.G_opt = torch.optim.Adam(self.G.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
        self.D_opt = torch.optim.Adam(self.D.parameters(), lr=config.lr * c,
                                      betas=(config.beta1**c, config.beta2**c))
        self.amp_dtype = None if config.private else _amp_dtype(self.device)
        use_scaler = self.amp_dtype == torch.float16
        self.G_scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.D_scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)

        self.images = torch.from_numpy(np.ascontiguousarray(data.images)).to(self.device)
        self.labels = torch.from_numpy(np.ascontiguousarray(data.labels)).to(self.device)
        self.data_rng = torch.Generator().manual_seed(config.seed)  # batch indices, on the CPU
        self.fingerprint = data_fingerprint(data)
        self.images_seen = 0
        self.step = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, float]] = []  # one row per progress report
        self.dp_plan = self.privacy_engine = self.replaced_layers = None
        if config.private:
            self._make_private()
        grid_rng = torch.Generator().manual_seed(config.seed + 1)
        self.grid_per_class = 8
        self.grid_z = torch.randn(max(data.n_classes, 1) * self.grid_per_class, self.G.z_dim,
                                  generator=grid_rng)

    # -- differential privacy ---------------------------------------------------------------------
    def plan_privacy(self):
        """(PrivacyBudget, DPSGDPlan) for this run; see :func:`plan_private_training`."""
        return plan_private_training(self.config, len(self.data.images))

    def _make_private(self) -> None:
        """Plan σ, then attach Opacus to D, its optimizer and a Poisson loader over the real images."""
        from torch.utils.data import DataLoader, TensorDataset

        from medsyn_core.privacy.dpsgd import make_private, replace_unsupported_layers

        self.dp_budget, self.dp_plan = self.plan_privacy()  # before any real image is read
        self.D, self.replaced_layers = replace_unsupported_layers(self.D)
        self.D_opt = torch.optim.Adam(self.D.parameters(), lr=self.config.lr,
                                      betas=(self.config.beta1, self.config.beta2))
        dataset = TensorDataset(torch.from_numpy(np.ascontiguousarray(self.data.images)),
                                torch.from_numpy(np.ascontiguousarray(self.data.labels)))
        loader = DataLoader(dataset, batch_size=self.config.batch_size)
        self.privacy_engine, self.D_private, self.D_opt, self.real_loader = make_private(
            self.dp_plan, self.D, self.D_opt, loader)
        self._real_iter = iter(self.real_loader)

    def _private_real_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next Poisson-sampled real batch (size varies, may be empty); a new epoch when one ends."""
        try:
            images, labels = next(self._real_iter)
        except StopIteration:
            self._real_iter = iter(self.real_loader)
            images, labels = next(self._real_iter)
        return images.to(self.device).float() / 127.5 - 1.0, labels.to(self.device).long()

    def _uniform_labels(self, b: int) -> torch.Tensor:
        """Labels for generated images under DP: uniform over the (public) class names."""
        return torch.randint(max(self.data.n_classes, 1), (b,), generator=self.data_rng).to(self.device)

    def privacy_ledger(self):
        """The :class:`~medsyn_core.privacy.PrivacyLedger` of this run (ε read back from the accountant
        and checked against a recomputation); None without DP. The only entry is DP-SGD on D: no
        statistic of the images is computed anywhere else (resize/pad are data-independent)."""
        if self.privacy_engine is None:
            return None
        from medsyn_core.privacy import PrivacyLedger
        from medsyn_core.privacy.dpsgd import training_entry

        ledger = PrivacyLedger(dataset_rows=len(self.data.images), budget=self.dp_budget.to_dict())
        ledger.add(training_entry(self.dp_plan, self.privacy_engine, target="discriminator"))
        return ledger

    def _train_step_private(self) -> dict[str, float]:
        """One DP-SGD step of D on a Poisson batch of real images plus B generated ones (one
        forward/backward, per-sample clipping and noise by Opacus), then the G step and EMA."""
        cfg, b = self.config, self.config.batch_size
        mixing = cfg.mixing_prob if cfg.model == "stylegan2" else 0.0
        real, real_c = self._private_real_batch()
        gen_c = self._uniform_labels(b)
        z = torch.randn(b, self.G.z_dim, device=self.device)
        with torch.no_grad():
            fake = self.G(z, gen_c, mixing_prob=mixing)
        images = torch.cat([self._augment(real), self._augment(fake)])  # augmentations are per image
        scores = self.D_private(images, torch.cat([real_c, gen_c]))
        target = torch.cat([torch.ones(len(real), device=self.device), torch.zeros(b, device=self.device)])
        # mean over the records of the batch, as Opacus' loss_reduction="mean" expects
        d_loss = F.binary_cross_entropy_with_logits(scores, target)
        self.D_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.D_opt.step()

        self.D_private.disable_hooks()  # the G step reads D; no per-sample gradients, no privacy cost
        z = torch.randn(b, self.G.z_dim, device=self.device)
        gen_c2 = self._uniform_labels(b)
        fake = self.G(z, gen_c2, mixing_prob=mixing, update_w_avg=True)
        g_loss = F.softplus(-self.D(self._augment(fake), gen_c2)).mean()
        self.G_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.G_opt.step()
        self.D_private.enable_hooks()
        self.D_opt.zero_grad(set_to_none=True)  # drop D's gradients from the G pass

        self.images_seen += b  # expected real images per step (Poisson batches vary around b)
        self.step += 1
        self._update_ema()
        # 2 x the mean: comparable with the non-DP loss softplus(D(fake)).mean() + softplus(-D(real)).mean()
        return {"d_loss": 2 * float(d_loss.detach()), "g_loss": float(g_loss.detach()), "r1": math.nan}

    # -- one step ---------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, b = len(self.images), self.config.batch_size
        idx = torch.randint(n, (b,), generator=self.data_rng).to(self.device)
        gen_idx = torch.randint(n, (b,), generator=self.data_rng).to(self.device)
        real = self.images[idx].float() / 127.5 - 1.0
        return real, self.labels[idx], self.labels[gen_idx]  # fake labels follow the data's class mix

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.config.diffaugment)

    def train_step(self) -> dict[str, float]:
        """One D step (+ lazy R1), one G step and the EMA update; returns the losses."""
        if self.config.private:
            return self._train_step_private()
        cfg, b = self.config, self.config.batch_size
        real, real_c, gen_c = self._batch()
        mixing = cfg.mixing_prob if cfg.model == "stylegan2" else 0.0

        # discriminator: softplus(D(fake)) + softplus(-D(real))
        self.D.requires_grad_(True)
        z = torch.randn(b, self.G.z_dim, device=self.device)
        with torch.no_grad(), self._autocast():
            fake = self.G(z, gen_c, mixing_prob=mixing)
        with self._autocast():
            d_fake = self.D(self._augment(fake.float()), gen_c)
            d_real = self.D(self._augment(real), real_c)
            d_loss = F.softplus(d_fake.float()).mean() + F.softplus(-d_real.float()).mean()
        self.D_opt.zero_grad(set_to_none=True)
        self.D_scaler.scale(d_loss).backward()
        self.D_scaler.step(self.D_opt)
        self.D_scaler.update()

        r1_value = None
        if cfg.r1_interval > 0 and self.r1_gamma > 0 and self.step % cfg.r1_interval == 0:
            real_in = real.detach().requires_grad_(True)  # full precision: double backward
            scores = self.D(self._augment(real_in), real_c)
            (grad,) = torch.autograd.grad(scores.sum(), real_in, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            self.D_opt.zero_grad(set_to_none=True)
            (r1 * (self.r1_gamma / 2) * cfg.r1_interval).backward()
            self.D_opt.step()
            r1_value = float(r1.detach())

        # generator: softplus(-D(G(z)))
        self.D.requires_grad_(False)
        z = torch.randn(b, self.G.z_dim, device=self.device)
        _, _, gen_c2 = self._batch()
        with self._autocast():
            fake = self.G(z, gen_c2, mixing_prob=mixing, update_w_avg=True)
            g_loss = F.softplus(-self.D(self._augment(fake.float()), gen_c2).float()).mean()
        self.G_opt.zero_grad(set_to_none=True)
        self.G_scaler.scale(g_loss).backward()
        self.G_scaler.step(self.G_opt)
        self.G_scaler.update()

        self.images_seen += b
        self.step += 1
        self._update_ema()
        return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()),
                "r1": r1_value if r1_value is not None else math.nan}

    @torch.no_grad()
    def _update_ema(self) -> None:
        cfg = self.config
        ema_nimg = (cfg.ema_kimg if cfg.ema_kimg is not None else 10 * cfg.batch_size / 32) * 1000
        if cfg.ema_rampup:
            ema_nimg = min(ema_nimg, self.images_seen * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch_size / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)

    # -- the loop ---------------------------------------------------------------------------------
    def train(self, callback: Callable[[TrainingProgress], None] | None = None,
              checkpoint_path: str | Path | None = None, should_stop: Callable[[], bool] | None = None,
              report_every_images: int = 1000) -> TrainingProgress:
        """Train until ``config.kimg`` thousand images (or ``should_stop()``), checkpointing every
        ``checkpoint_kimg`` and at the end, and calling ``callback`` every ``report_every_images``."""
        cfg = self.config
        if cfg.private:
            checkpoint_path = None  # DP runs cannot be resumed (see the module docstring)
        total = cfg.total_images
        ckpt_every = int(cfg.checkpoint_kimg * 1000) if cfg.checkpoint_kimg > 0 else 0
        grid_every = int(cfg.grid_kimg * 1000) if cfg.grid_kimg > 0 else 0
        session_start, session_images = time.perf_counter(), 0
        sums = {"d_loss": 0.0, "g_loss": 0.0, "r1": 0.0, "n": 0, "n_r1": 0}
        last_tick = time.perf_counter()
        progress = self._progress(sums, session_start, session_images, grid=None)
        while self.images_seen < total:
            if should_stop is not None and should_stop():
                break
            before = self.images_seen
            losses = self.train_step()
            now = time.perf_counter()
            self.train_seconds += now - last_tick
            last_tick = now
            session_images += self.images_seen - before
            sums["d_loss"] += losses["d_loss"]
            sums["g_loss"] += losses["g_loss"]
            sums["n"] += 1
            if not math.isnan(losses["r1"]):
                sums["r1"] += losses["r1"]
                sums["n_r1"] += 1
            def crossed(every: int, before: int = before) -> bool:
                return bool(every) and before // every != self.images_seen // every

            done = self.images_seen >= total
            if checkpoint_path is not None and (crossed(ckpt_every) or done):
                self.save_checkpoint(checkpoint_path)
            if crossed(report_every_images) or done:
                grid = self.sample_grid() if (crossed(grid_every) or done) else None
                progress = self._progress(sums, session_start, session_images, grid)
                row = {"kimg": self.images_seen / 1000, "g_loss": progress.g_loss}
                if progress.d_loss is not None:
                    row["d_loss"] = progress.d_loss
                self.history.append(row)
                sums = {"d_loss": 0.0, "g_loss": 0.0, "r1": 0.0, "n": 0, "n_r1": 0}
                if callback is not None:
                    callback(progress)
            last_tick = time.perf_counter()  # time spent reporting/checkpointing is not training
        if checkpoint_path is not None and self.images_seen < total:
            self.save_checkpoint(checkpoint_path)  # stopped early: keep what was done
        if sums["n"]:
            progress = self._progress(sums, session_start, session_images, grid=None)
        return progress

    def _progress(self, sums, session_start, session_images, grid) -> TrainingProgress:
        n = max(sums["n"], 1)
        wall = max(time.perf_counter() - session_start, 1e-9)
        return TrainingProgress(
            images_seen=self.images_seen, total_images=self.config.total_images, step=self.step,
            # under DP, D's loss on real images is a statistic DP-SGD does not cover: never reported
            d_loss=None if self.config.private else sums["d_loss"] / n if sums["n"] else math.nan,
            g_loss=sums["g_loss"] / n if sums["n"] else math.nan,
            r1_penalty=sums["r1"] / sums["n_r1"] if sums["n_r1"] else None,
            elapsed_s=self.train_seconds, images_per_s=session_images / wall, grid=grid,
        )

    # -- sampling from the EMA generator ------------------------------------------------------
    @torch.no_grad()
    def sample(self, labels, seed: int = 0, truncation: float = 1.0) -> np.ndarray:
        """(N, C, R, R) float32 in [0, 1] from the EMA generator, one image per label."""
        from medsyn_imaging.training.generator_store import generate

        return generate(self.G_ema, labels, seed=seed, truncation=truncation, device=self.device)

    def sample_grid(self) -> np.ndarray:
        """(H, W, C) uint8 grid from the EMA generator with fixed latents: one row per class."""
        from medsyn_imaging.io.image_grid import make_grid
        from medsyn_imaging.training.generator_store import generate_from_latents

        k = max(self.data.n_classes, 1)
        labels = torch.arange(k).repeat_interleave(self.grid_per_class)
        images = generate_from_latents(self.G_ema, self.grid_z, labels, device=self.device)
        return make_grid(images, ncol=self.grid_per_class, scale=2)

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "arch": self.arch,
            "data": {"source": self.data.source, "fingerprint": self.fingerprint,
                     "class_names": list(self.data.class_names)},
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "G_opt": self.G_opt.state_dict(), "D_opt": self.D_opt.state_dict(),
            "G_scaler": self.G_scaler.state_dict(), "D_scaler": self.D_scaler.state_dict(),
            "images_seen": self.images_seen, "step": self.step, "train_seconds": self.train_seconds,
            "history": self.history,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                          "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
                "python": random.getstate(),
                "data": self.data_rng.get_state(),
            },
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the full training state to ``path`` atomically (``torch.save`` of tensors and plain
        Python values only, loadable with ``weights_only=True``)."""
        from medsyn_core.training import write_checkpoint

        return write_checkpoint(path, self.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"Checkpoint format {state.get('format')} is not {CHECKPOINT_FORMAT}.")
        if state["data"]["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"This checkpoint was trained on different images ({state['data']['source']}); resume "
                "with the same data, resolution and split, or start a new run in another folder."
            )
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.G_opt.load_state_dict(state["G_opt"])
        self.D_opt.load_state_dict(state["D_opt"])
        self.G_scaler.load_state_dict(state["G_scaler"])
        self.D_scaler.load_state_dict(state["D_scaler"])
        self.images_seen, self.step = int(state["images_seen"]), int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.history = list(state["history"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        npr = rng["numpy"]
        np.random.set_state(("MT19937", npr["keys"].numpy().astype(np.uint32), npr["pos"],
                             npr["has_gauss"], npr["cached_gaussian"]))
        random.setstate(_as_tuple(rng["python"]))
        self.data_rng.set_state(rng["data"])

    @classmethod
    def from_checkpoint(cls, path: str | Path, data: ImageTrainingSet,
                        device: str | torch.device | None = None, kimg: float | None = None) -> GANTrainer:
        """Rebuild a trainer from ``path`` to continue training on ``data`` (optionally longer: ``kimg``)."""
        state = read_checkpoint(path)
        config = TrainConfig.from_dict(state["config"])
        if config.private:
            raise ValueError("Differentially private runs cannot be resumed (the privacy accountant and "
                             "the Poisson sampler are not checkpointed, so ε could not be guaranteed); "
                             "start a new run.")
        if kimg is not None:
            config.kimg = float(kimg)
        trainer = cls(data, config, device=device)
        trainer.load_state_dict(state)
        return trainer


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :meth:`GANTrainer.save_checkpoint` (tensors only, no code)."""
    from medsyn_core import training

    return training.read_checkpoint(path)


def _as_tuple(value):
    """Python's random state round-trips through torch.save as nested lists/tuples; make it tuples."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuple(v) for v in value)
    return value
