"""Training of the latent diffusion model (LDM) for volumes, in two stages, with checkpoints and resume.

Stage 1, **autoencoder** (``ae_steps`` steps): MONAI ``AutoencoderKL`` with an L1 reconstruction loss, a KL
term (``kl_weight``), a patch-adversarial loss from MONAI's ``PatchDiscriminator`` and
``PatchAdversarialLoss`` (least squares, from ``adv_start``; weight ``adv_weight``) and, when a local
weights file is given, MONAI's ``PerceptualLoss`` (2.5D ResNet-50 features, ``perceptual_weight``; MedSyn
never downloads weights, so without the file there is no perceptual term and the card says so).
Between the stages the latent **scale factor** ``1 / std(z)`` is measured on the training latents (as in
the MONAI LDM tutorials) so that the diffusion model sees unit-variance latents.
Stage 2, **diffusion** (``diffusion_steps`` steps): MONAI ``DiffusionModelUNet`` on the frozen
autoencoder's latents, noise-prediction MSE with MONAI's ``DDPMScheduler`` through
``LatentDiffusionInferer``; class-conditional through the UNet's class embedding.
Sampling: MONAI ``DDIMScheduler`` with ``ddim_steps`` steps in latent space, then the decoder, optionally
with MONAI's ``SlidingWindowInferer`` over latent tiles (``decode_roi``) so that 128³-256³ volumes decode
in bounded GPU memory.

GPU path (CUDA only; the CPU runs in float32 as is): mixed precision (bf16 where supported, else fp16
with gradient scaling), channels-last-3D memory format, optionally ``torch.compile`` of the UNet.

Checkpoints hold both stages' networks, optimisers, scalers, counters, the scale factor and every
random-number-generator state, written atomically; :meth:`LDMTrainer.from_checkpoint` continues exactly
where a run stopped (on the CPU bit for bit).

**Differential privacy is not offered for the LDM** (``dp_epsilon`` is refused): both stages read the
real volumes (the autoencoder and its discriminator the voxels, the diffusion model their latents, and the
scale factor is a statistic of them), so DP-SGD would have to cover three networks plus that statistic;
with the tens to hundreds of volumes a hospital has, the noise DP-SGD needs at any useful ε leaves the
networks nothing to learn (figures in docs/imaging_3d.md). The 2D GAN keeps its DP option.
"""

from __future__ import annotations

import functools
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
from medsyn_imaging.networks.ldm import (
    LDMArch,
    build_networks,
    build_sampling_scheduler,
    build_train_scheduler,
    make_arch,
)
from medsyn_imaging.training.volume_data import VolumeTrainingSet

CHECKPOINT_FORMAT = 1
STAGES = ("autoencoder", "diffusion", "done")
DP_REFUSAL = (
    "Differential privacy is not available for the 3D latent diffusion model: both of its stages "
    "(autoencoder with its discriminator, then the diffusion model) and the latent scale factor read "
    "the real volumes, and with the tens to hundreds of volumes a hospital has, DP-SGD's noise at "
    "a useful ε leaves nothing to learn (docs/imaging_3d.md). Train without --epsilon, or use the "
    "2D generator, which has DP-SGD."
)


@dataclass
class LDMConfig:
    """Hyper-parameters of one LDM run (architecture: ``preset`` plus ``arch`` overrides)."""

    preset: str = "small"
    arch: dict[str, Any] = field(default_factory=dict)
    ae_steps: int = 2000
    diffusion_steps: int = 4000
    batch_size: int = 2
    lr_autoencoder: float = 1e-4
    lr_discriminator: float = 2e-4
    lr_diffusion: float = 1e-4
    kl_weight: float = 1e-6
    adv_weight: float = 0.01  # 0 = no adversarial loss
    adv_start: int | None = None  # step of stage 1 the adversarial loss starts (None: a quarter in)
    perceptual_weight: float = 0.001
    perceptual_weights: str | None = None  # local torchvision ResNet-50 state dict; None = no perceptual loss
    ddim_steps: int = 50
    seed: int = 0
    checkpoint_every: int = 250  # steps (0 = only at the end of each stage)
    amp: bool = True  # CUDA only
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the UNet (CUDA only; first steps are slow while it compiles)
    decode_roi: list[int] | None = None  # latent tile for sliding-window decoding (None = whole volume)
    dp_epsilon: float | None = None  # refused: see the module docstring

    def __post_init__(self) -> None:
        if self.dp_epsilon is not None:
            raise ValueError(DP_REFUSAL)
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        if self.ae_steps < 1 or self.diffusion_steps < 1:
            raise ValueError("ae_steps and diffusion_steps must be at least 1.")
        if self.ddim_steps < 1:
            raise ValueError("ddim_steps must be at least 1.")
        if self.perceptual_weights is not None and not Path(self.perceptual_weights).is_file():
            raise FileNotFoundError(
                f"Perceptual-loss weights not found at {self.perceptual_weights}; give a "
                "local torchvision ResNet-50 state dict (.pth), or leave it out (no "
                "perceptual loss). MedSyn never downloads weights."
            )

    @property
    def total_steps(self) -> int:
        return self.ae_steps + self.diffusion_steps

    @property
    def adversarial_start(self) -> int:
        return self.ae_steps // 4 if self.adv_start is None else int(self.adv_start)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LDMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown 3D training setting(s) {unknown}; valid: {', '.join(sorted(known))}.")
        return cls(**data)


@dataclass
class LDMProgress:
    """What the CLI and the app show while training (losses: means since the previous report)."""

    stage: str
    step: int  # steps done over both stages
    total_steps: int
    losses: dict[str, float]
    elapsed_s: float  # training wall time, summed over resumed sessions
    steps_per_s: float  # this session
    volumes_per_s: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / max(1, self.total_steps))


def _amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def kl_loss(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    """KL divergence of N(mu, sigma²) from N(0, 1), summed over the latent voxels, mean over the batch."""
    dims = list(range(1, z_mu.ndim))
    kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2) + 1e-12) - 1).sum(dim=dims)
    return kl.mean()


class LDMTrainer:
    """Trains the two stages of an LDM on a :class:`VolumeTrainingSet`.

    >>> trainer = LDMTrainer(data, LDMConfig(preset="tiny", ae_steps=4, diffusion_steps=4))  # doctest: +SKIP
    >>> trainer.train(checkpoint_path="run/checkpoint.pt")                               # doctest: +SKIP
    >>> volumes = trainer.sample(2, labels=[0, 1], seed=1)   # (2, 1, X, Y, Z) in [0, 1]   # doctest: +SKIP
    """

    def __init__(self, data: VolumeTrainingSet, config: LDMConfig, device: str | torch.device | None = None):
        self.config = config
        self.data = data
        self.device = choose_device(str(device)) if device is not None else choose_device()
        self.arch: LDMArch = make_arch(
            config.preset,
            **{**config.arch, "spatial_dims": len(data.shape), "in_channels": int(data.volumes.shape[1]),
               "n_classes": data.n_classes},
        )
        self.arch.check_shape(data.shape)
        seed_everything(config.seed)
        nets = build_networks(self.arch)
        self.autoencoder = nets.autoencoder.to(self.device)
        self.discriminator = nets.discriminator.to(self.device)
        self.unet = nets.unet.to(self.device)
        self.amp_dtype = _amp_dtype(self.device, config.amp)
        self.channels_last = (
            config.channels_last and self.device.type == "cuda" and self.arch.spatial_dims == 3
        )
        if self.channels_last:
            for net in (self.autoencoder, self.discriminator, self.unet):
                net.to(memory_format=torch.channels_last_3d)
        self._unet_compiled = (
            torch.compile(self.unet) if config.compile and self.device.type == "cuda" else self.unet
        )
        self.opt_ae = torch.optim.Adam(self.autoencoder.parameters(), lr=config.lr_autoencoder)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_discriminator)
        self.opt_unet = torch.optim.Adam(self.unet.parameters(), lr=config.lr_diffusion)
        use_scaler = self.amp_dtype == torch.float16
        self.scaler_ae = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.scaler_unet = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.scheduler = build_train_scheduler()
        self.perceptual = None
        if config.perceptual_weights is not None and config.perceptual_weight > 0:
            from monai.losses import PerceptualLoss

            self.perceptual = (
                PerceptualLoss(
                    spatial_dims=self.arch.spatial_dims,
                    network_type="resnet50",
                    is_fake_3d=self.arch.spatial_dims == 3,
                    fake_3d_ratio=0.25,
                    pretrained=True,
                    pretrained_path=config.perceptual_weights,
                )
                .to(self.device)
                .eval()
            )
        from monai.losses import PatchAdversarialLoss

        self.adversarial = PatchAdversarialLoss(criterion="least_squares")
        self.volumes = torch.from_numpy(np.ascontiguousarray(data.volumes))  # stays on the CPU
        self.labels = torch.from_numpy(np.ascontiguousarray(data.labels))
        self.data_rng = torch.Generator().manual_seed(config.seed)
        self.fingerprint = data.fingerprint()
        self.stage = "autoencoder"
        self.ae_step = self.diffusion_step = 0
        self.scale_factor: float | None = None
        self.train_seconds = 0.0
        self.history: list[dict[str, float]] = []

    # -- helpers ----------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.ae_step + self.diffusion_step

    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).float()
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else x

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.volumes), (self.config.batch_size,), generator=self.data_rng)
        return self._to_device(self.volumes[idx]), self.labels[idx].to(self.device)

    def _unet_fn(self, labels: torch.Tensor | None):
        """The UNet as MONAI's inferers call it, with the class labels bound (None: unconditional)."""
        if not self.arch.conditional:
            return self._unet_compiled
        return functools.partial(self._unet_compiled, class_labels=labels)

    # -- stage 1 ----------------------------------------------------------------------------------
    def train_step_autoencoder(self) -> dict[str, float]:
        cfg = self.config
        x, _ = self._batch()
        self.autoencoder.train()
        adversarial = cfg.adv_weight > 0 and self.ae_step >= cfg.adversarial_start
        with self._autocast():
            recon, z_mu, z_sigma = self.autoencoder(x)
            recon_loss = F.l1_loss(recon.float(), x)
            kl = kl_loss(z_mu.float(), z_sigma.float())
            loss = recon_loss + cfg.kl_weight * kl
            out = {"recon_l1": float(recon_loss.detach()), "kl": float(kl.detach())}
            if self.perceptual is not None:
                p = self.perceptual(recon.float(), x)
                loss = loss + cfg.perceptual_weight * p
                out["perceptual"] = float(p.detach())
            if adversarial:
                self.discriminator.requires_grad_(False)
                logits = self.discriminator(recon.contiguous().float())[-1]
                g_adv = self.adversarial(logits, target_is_real=True, for_discriminator=False)
                loss = loss + cfg.adv_weight * g_adv
                out["g_adv"] = float(g_adv.detach())
        self.opt_ae.zero_grad(set_to_none=True)
        self.scaler_ae.scale(loss).backward()
        self.scaler_ae.step(self.opt_ae)
        self.scaler_ae.update()
        if adversarial:
            self.discriminator.requires_grad_(True)
            with self._autocast():
                fake = self.discriminator(recon.detach().contiguous().float())[-1]
                real = self.discriminator(x)[-1]
                d_loss = 0.5 * (
                    self.adversarial(fake, target_is_real=False, for_discriminator=True)
                    + self.adversarial(real, target_is_real=True, for_discriminator=True)
                )
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler_d.scale(cfg.adv_weight * d_loss).backward()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            out["d_adv"] = float(d_loss.detach())
        self.ae_step += 1
        return out

    @torch.no_grad()
    def measure_scale_factor(self, n: int = 16) -> float:
        """1 / std of the autoencoder's latents over up to ``n`` training volumes (MONAI LDM tutorial)."""
        self.autoencoder.eval()
        latents = []
        for start in range(0, min(n, len(self.volumes)), self.config.batch_size):
            x = self._to_device(self.volumes[start : start + self.config.batch_size])
            with self._autocast():
                latents.append(self.autoencoder.encode_stage_2_inputs(x).float().cpu())
        std = float(torch.cat(latents).std())
        return 1.0 / max(std, 1e-6)

    # -- stage 2 ----------------------------------------------------------------------------------
    def train_step_diffusion(self) -> dict[str, float]:
        from monai.inferers import LatentDiffusionInferer

        x, labels = self._batch()
        self.autoencoder.eval()
        self.unet.train()
        inferer = LatentDiffusionInferer(self.scheduler, scale_factor=self.scale_factor)
        noise = torch.randn((len(x), *self.arch.latent_shape(self.data.shape)), device=self.device)
        timesteps = torch.randint(0, self.scheduler.num_train_timesteps, (len(x),), device=self.device).long()
        with self._autocast():
            prediction = inferer(
                inputs=x,
                autoencoder_model=self.autoencoder,
                diffusion_model=self._unet_fn(labels),
                noise=noise,
                timesteps=timesteps,
            )
            loss = F.mse_loss(prediction.float(), noise)
        self.opt_unet.zero_grad(set_to_none=True)
        self.scaler_unet.scale(loss).backward()
        self.scaler_unet.step(self.opt_unet)
        self.scaler_unet.update()
        self.diffusion_step += 1
        return {"noise_mse": float(loss.detach())}

    # -- the loop ---------------------------------------------------------------------------------
    def train(
        self,
        callback: Callable[[LDMProgress], None] | None = None,
        checkpoint_path: str | Path | None = None,
        should_stop: Callable[[], bool] | None = None,
        report_every: int = 10,
    ) -> LDMProgress:
        """Run stage 1 then stage 2 until their step counts (or ``should_stop()``), checkpointing every
        ``checkpoint_every`` steps and at each stage's end, reporting every ``report_every`` steps."""
        cfg = self.config
        session_start, session_steps = time.perf_counter(), 0
        sums: dict[str, float] = {}
        count = 0
        last_tick = time.perf_counter()
        progress = self._progress({}, session_start, 0)
        while self.stage != "done":
            if should_stop is not None and should_stop():
                break
            if self.stage == "autoencoder":
                losses = self.train_step_autoencoder()
                if self.ae_step >= cfg.ae_steps:
                    self.scale_factor = self.measure_scale_factor()
                    self.stage = "diffusion"
            else:
                losses = self.train_step_diffusion()
                if self.diffusion_step >= cfg.diffusion_steps:
                    self.stage = "done"
            now = time.perf_counter()
            self.train_seconds += now - last_tick
            session_steps += 1
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            stage_end = (self.stage == "diffusion" and self.diffusion_step == 0) or self.stage == "done"
            if checkpoint_path is not None and (
                (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or stage_end
            ):
                self.save_checkpoint(checkpoint_path)
            if self.step % max(1, report_every) == 0 or stage_end:
                progress = self._progress(
                    {k: v / count for k, v in sums.items()}, session_start, session_steps
                )
                self.history.append({"step": self.step, "stage": progress.stage, **progress.losses})
                sums, count = {}, 0
                if callback is not None:
                    callback(progress)
            last_tick = time.perf_counter()
        if checkpoint_path is not None and self.stage != "done":
            self.save_checkpoint(checkpoint_path)  # stopped early: keep what was done
        return progress

    def _progress(self, losses, session_start, session_steps) -> LDMProgress:
        wall = max(time.perf_counter() - session_start, 1e-9)
        return LDMProgress(
            self.stage,
            self.step,
            self.config.total_steps,
            dict(losses),
            self.train_seconds,
            session_steps / wall,
            session_steps * self.config.batch_size / wall,
        )

    # -- sampling -----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, labels=None, seed: int = 0, ddim_steps: int | None = None) -> np.ndarray:
        """(n, 1, *shape) float32 in [0, 1]; see :func:`sample_ldm`."""
        if self.scale_factor is None:
            raise ValueError("The autoencoder stage has not finished; train longer before sampling.")
        return sample_ldm(
            self.autoencoder,
            self.unet,
            self.arch,
            self.data.shape,
            self.scale_factor,
            n,
            labels=labels,
            seed=seed,
            ddim_steps=ddim_steps or self.config.ddim_steps,
            device=self.device,
            decode_roi=self.config.decode_roi,
            amp_dtype=self.amp_dtype,
        )

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "arch": self.arch.to_dict(),
            "data": {
                "source": self.data.source,
                "fingerprint": self.fingerprint,
                "class_names": list(self.data.class_names),
            },
            "autoencoder": self.autoencoder.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "unet": self.unet.state_dict(),
            "opt_ae": self.opt_ae.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "opt_unet": self.opt_unet.state_dict(),
            "scaler_ae": self.scaler_ae.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "scaler_unet": self.scaler_unet.state_dict(),
            "stage": self.stage,
            "ae_step": self.ae_step,
            "diffusion_step": self.diffusion_step,
            "scale_factor": self.scale_factor,
            "train_seconds": self.train_seconds,
            "history": self.history,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": {
                    "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                    "pos": int(np_state[2]),
                    "has_gauss": int(np_state[3]),
                    "cached_gaussian": float(np_state[4]),
                },
                "python": random.getstate(),
                "data": self.data_rng.get_state(),
            },
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        """The full training state, atomically (tensors and plain values: ``weights_only`` loadable;
        :func:`medsyn_core.training.write_checkpoint`)."""
        from medsyn_core.training import write_checkpoint

        return write_checkpoint(path, self.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"Checkpoint format {state.get('format')} is not {CHECKPOINT_FORMAT}.")
        if state["data"]["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"This checkpoint was trained on other volumes ({state['data']['source']}); resume "
                "with the same folder, shape, spacing and window, or start a new run."
            )
        for name in (
            "autoencoder",
            "discriminator",
            "unet",
            "opt_ae",
            "opt_d",
            "opt_unet",
            "scaler_ae",
            "scaler_d",
            "scaler_unet",
        ):
            getattr(self, name).load_state_dict(state[name])
        self.stage, self.ae_step = state["stage"], int(state["ae_step"])
        self.diffusion_step = int(state["diffusion_step"])
        self.scale_factor = state["scale_factor"]
        self.train_seconds, self.history = float(state["train_seconds"]), list(state["history"])
        if self.stage == "done" and self.diffusion_step < self.config.diffusion_steps:
            self.stage = "diffusion"  # resumed with more diffusion steps
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        npr = rng["numpy"]
        np.random.set_state(
            (
                "MT19937",
                npr["keys"].numpy().astype(np.uint32),
                npr["pos"],
                npr["has_gauss"],
                npr["cached_gaussian"],
            )
        )
        random.setstate(_as_tuple(rng["python"]))
        self.data_rng.set_state(rng["data"])

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        data: VolumeTrainingSet,
        device: str | torch.device | None = None,
        diffusion_steps: int | None = None,
    ) -> LDMTrainer:
        """Rebuild a trainer from ``path`` to continue on ``data`` (optionally longer:
        ``diffusion_steps``)."""
        from medsyn_core.training import read_checkpoint

        state = read_checkpoint(path)
        config = LDMConfig.from_dict(state["config"])
        if diffusion_steps is not None:
            config.diffusion_steps = int(diffusion_steps)
        trainer = cls(data, config, device=device)
        trainer.load_state_dict(state)
        return trainer


def _as_tuple(value):
    if isinstance(value, list | tuple):
        return tuple(_as_tuple(v) for v in value)
    return value


@torch.no_grad()
def decode_latents(
    autoencoder, latents: torch.Tensor, roi: list[int] | None = None, amp_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Latents (B, L, *s) -> images (B, 1, *S). With ``roi`` (a latent tile size), MONAI's
    ``SlidingWindowInferer`` decodes overlapping tiles (Gaussian-blended), so memory follows the tile,
    not the volume: how 256³ volumes decode on a 24-48 GB GPU."""
    device = latents.device
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        if roi is None or all(r >= s for r, s in zip(roi, latents.shape[2:], strict=True)):
            return autoencoder.decode_stage_2_outputs(latents).float()
        from monai.inferers import SlidingWindowInferer

        inferer = SlidingWindowInferer(
            roi_size=tuple(int(r) for r in roi),
            sw_batch_size=1,
            overlap=0.25,
            mode="gaussian",
            progress=False,
        )
        return inferer(latents, autoencoder.decode_stage_2_outputs).float()


@torch.no_grad()
def sample_ldm(
    autoencoder,
    unet,
    arch: LDMArch,
    shape: tuple[int, ...],
    scale_factor: float,
    n: int,
    labels=None,
    seed: int = 0,
    ddim_steps: int = 50,
    device=None,
    decode_roi=None,
    amp_dtype: torch.dtype | None = None,
    batch: int = 1,
) -> np.ndarray:
    """``n`` volumes (n, 1, *shape) float32 in [0, 1] from DDIM in latent space, then the decoder.

    ``labels``: class indices (one per volume) for a conditional model, else ignored. The latent noise is
    drawn from ``seed`` on the CPU, so the same seed gives the same volumes on any device (up to floating
    point)."""
    from monai.inferers import DiffusionInferer

    if n < 1:
        raise ValueError("Sample at least one volume.")
    device = device or next(unet.parameters()).device
    labels_t = torch.as_tensor(
        np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels), dtype=torch.long
    ).reshape(-1)
    if len(labels_t) != n:
        raise ValueError(f"{n} volumes but {len(labels_t)} labels.")
    if arch.conditional and (labels_t.min() < 0 or labels_t.max() >= arch.n_classes):
        raise ValueError(f"Labels must be between 0 and {arch.n_classes - 1}.")
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((n, *arch.latent_shape(shape)), generator=generator)
    scheduler = build_sampling_scheduler(ddim_steps)
    inferer = DiffusionInferer(scheduler)
    was = (autoencoder.training, unet.training)
    autoencoder.eval()
    unet.eval()
    out = []
    try:
        for start in range(0, n, batch):
            z = noise[start : start + batch].to(device)
            lab = labels_t[start : start + batch].to(device)
            model = functools.partial(unet, class_labels=lab) if arch.conditional else unet
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                latent = inferer.sample(
                    input_noise=z, diffusion_model=model, scheduler=scheduler, verbose=False
                )
            image = decode_latents(autoencoder, latent.float() / scale_factor, decode_roi, amp_dtype)
            out.append(image.clamp(0, 1).cpu().numpy().astype(np.float32))
    finally:
        autoencoder.train(was[0])
        unet.train(was[1])
    result = np.concatenate(out)
    if not np.all(np.isfinite(result)):
        raise ValueError("The generator produced NaN or infinite voxels; it is broken (train it again).")
    return result


def throughput_note(progress: LDMProgress) -> str:
    eta = (progress.total_steps - progress.step) / max(progress.steps_per_s, 1e-9)
    return f"{progress.steps_per_s:.2f} steps/s, about {math.ceil(eta / 60)} min left"
