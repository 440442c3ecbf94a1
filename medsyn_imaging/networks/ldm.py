"""Builders of the latent diffusion model (LDM) for volumes (and 2D images): MONAI's generative networks.

Nothing here is hand-written: the three networks are MONAI's (``monai.networks.nets``), the noise
schedules MONAI's (``monai.networks.schedulers``):

* :class:`~monai.networks.nets.AutoencoderKL` compresses a ``(1, X, Y, Z)`` volume into a latent
  ``(latent_channels, X/f, Y/f, Z/f)`` with ``f = 2 ** (len(ae_channels) - 1)``;
* :class:`~monai.networks.nets.PatchDiscriminator` is the adversarial critic of the autoencoder's
  reconstructions (patch-wise least-squares GAN loss, as in MAISI and the MONAI LDM tutorials);
* :class:`~monai.networks.nets.DiffusionModelUNet` predicts the noise in the latent space, conditioned on
  the class through its class embedding (``num_class_embeds``) when there is more than one class;
* :class:`~monai.networks.schedulers.DDPMScheduler` adds noise during training and
  :class:`~monai.networks.schedulers.DDIMScheduler` samples in few steps (same beta schedule).

:data:`PRESETS` name architecture sizes: ``tiny`` for tests and CPU demos at 32³, ``small`` for 64³ on a
CPU or a quick GPU run, ``standard`` for 128³ and beyond on a GPU (see docs/imaging_3d.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Beta schedule of the MONAI LDM tutorials (scaled linear, 1000 steps): shared by DDPM and DDIM.
SCHEDULE = {
    "num_train_timesteps": 1000,
    "schedule": "scaled_linear_beta",
    "beta_start": 0.0015,
    "beta_end": 0.0195,
}


@dataclass
class LDMArch:
    """Architecture of the autoencoder, the discriminator and the diffusion UNet.

    ``spatial_dims``: 3 for volumes, 2 for images. ``ae_channels``: widths of the autoencoder levels (the
    latent is ``2 ** (len - 1)`` times smaller per axis). ``norm_groups`` must divide every width.
    ``n_classes``: 0 or 1 = unconditional; more = class-conditional UNet.
    """

    spatial_dims: int = 3
    in_channels: int = 1
    ae_channels: tuple[int, ...] = (32, 64, 64)
    ae_res_blocks: int = 1
    ae_attention: bool = False  # self-attention in the deepest autoencoder level (memory-hungry in 3D)
    latent_channels: int = 4
    ae_norm_groups: int = 16
    unet_channels: tuple[int, ...] = (64, 128, 256)
    unet_res_blocks: int = 2
    unet_attention: tuple[bool, ...] = (False, True, True)
    unet_norm_groups: int = 32
    num_head_channels: int = 32
    disc_channels: int = 32
    disc_layers: int = 3
    n_classes: int = 0

    def __post_init__(self) -> None:
        self.ae_channels = tuple(int(c) for c in self.ae_channels)
        self.unet_channels = tuple(int(c) for c in self.unet_channels)
        self.unet_attention = tuple(bool(a) for a in self.unet_attention)
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, not {self.spatial_dims}.")
        if len(self.unet_attention) != len(self.unet_channels):
            raise ValueError(f"unet_attention needs one entry per UNet level ({len(self.unet_channels)}).")
        for name, widths, groups in (
            ("ae_channels", self.ae_channels, self.ae_norm_groups),
            ("unet_channels", self.unet_channels, self.unet_norm_groups),
        ):
            if any(w % groups for w in widths):
                raise ValueError(
                    f"Every width in {name} {widths} must be a multiple of its norm groups ({groups})."
                )

    @property
    def downsampling(self) -> int:
        """Factor by which the autoencoder shrinks each spatial axis."""
        return 2 ** (len(self.ae_channels) - 1)

    @property
    def conditional(self) -> bool:
        return self.n_classes > 1

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """(latent_channels, *spatial / downsampling) for an image of spatial ``shape``."""
        return (self.latent_channels, *(int(s) // self.downsampling for s in shape))

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Refuse spatial shapes the networks cannot take (clear message with the fix)."""
        if len(shape) != self.spatial_dims:
            raise ValueError(f"A {self.spatial_dims}D model needs {self.spatial_dims} sizes, got {shape}.")
        # the UNet halves the latent once per extra level
        factor = self.downsampling * 2 ** (len(self.unet_channels) - 1)
        bad = [s for s in shape if s % factor or s < factor]
        if bad:
            raise ValueError(
                f"Every side of the training shape {tuple(shape)} must be a multiple of {factor} "
                f"(autoencoder x{self.downsampling}, UNet x{factor // self.downsampling}); "
                f"e.g. {tuple(max(factor, round(s / factor) * factor) for s in shape)}."
            )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("ae_channels", "unet_channels", "unet_attention"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LDMArch:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown LDM architecture setting(s) {unknown}; valid: {', '.join(sorted(known))}."
            )
        return cls(**data)


#: Named sizes. Parameters (3D, 1 class): tiny ~0.05 M autoencoder / 0.1 M UNet; small ~0.6 M / 6 M;
#: standard ~2.3 M / 40 M (see docs/imaging_3d.md for memory and time).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        ae_channels=(8, 16),
        ae_res_blocks=1,
        latent_channels=2,
        ae_norm_groups=4,
        unet_channels=(16, 32),
        unet_res_blocks=1,
        unet_attention=(False, False),
        unet_norm_groups=8,
        num_head_channels=16,
        disc_channels=8,
        disc_layers=2,
    ),
    "small": dict(
        ae_channels=(16, 32, 32),
        ae_res_blocks=1,
        latent_channels=3,
        ae_norm_groups=8,
        unet_channels=(32, 64, 128),
        unet_res_blocks=1,
        unet_attention=(False, False, True),
        unet_norm_groups=16,
        num_head_channels=32,
        disc_channels=16,
        disc_layers=3,
    ),
    "standard": dict(
        ae_channels=(32, 64, 64),
        ae_res_blocks=2,
        latent_channels=4,
        ae_norm_groups=16,
        unet_channels=(64, 128, 256),
        unet_res_blocks=2,
        unet_attention=(False, True, True),
        unet_norm_groups=32,
        num_head_channels=32,
        disc_channels=32,
        disc_layers=3,
    ),
}


def make_arch(preset: str = "small", **overrides: Any) -> LDMArch:
    """The :class:`LDMArch` of a preset, with ``overrides`` (e.g. ``n_classes=2, spatial_dims=3``)."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown LDM size {preset!r}; choose one of {', '.join(PRESETS)}.")
    return LDMArch.from_dict({**PRESETS[preset], **overrides})


def build_autoencoder(arch: LDMArch):
    """MONAI ``AutoencoderKL``: (B, in_channels, *S) -> reconstruction, z_mu, z_sigma."""
    from monai.networks.nets import AutoencoderKL

    levels = len(arch.ae_channels)
    return AutoencoderKL(
        spatial_dims=arch.spatial_dims,
        in_channels=arch.in_channels,
        out_channels=arch.in_channels,
        channels=arch.ae_channels,
        num_res_blocks=arch.ae_res_blocks,
        latent_channels=arch.latent_channels,
        attention_levels=tuple([False] * (levels - 1) + [arch.ae_attention]),
        norm_num_groups=arch.ae_norm_groups,
        with_encoder_nonlocal_attn=arch.ae_attention,
        with_decoder_nonlocal_attn=arch.ae_attention,
    )


def build_unet(arch: LDMArch):
    """MONAI ``DiffusionModelUNet`` on the latents, with a class embedding when ``arch.conditional``."""
    from monai.networks.nets import DiffusionModelUNet

    return DiffusionModelUNet(
        spatial_dims=arch.spatial_dims,
        in_channels=arch.latent_channels,
        out_channels=arch.latent_channels,
        channels=arch.unet_channels,
        attention_levels=arch.unet_attention,
        num_res_blocks=arch.unet_res_blocks,
        norm_num_groups=arch.unet_norm_groups,
        num_head_channels=arch.num_head_channels,
        num_class_embeds=arch.n_classes if arch.conditional else None,
    )


def build_discriminator(arch: LDMArch):
    """MONAI ``PatchDiscriminator`` (instance norm, so its loss does not mix the samples of a batch)."""
    from monai.networks.nets import PatchDiscriminator

    return PatchDiscriminator(
        spatial_dims=arch.spatial_dims,
        channels=arch.disc_channels,
        in_channels=arch.in_channels,
        num_layers_d=arch.disc_layers,
        norm="INSTANCE",
    )


def build_train_scheduler():
    """DDPM noise schedule for training (1000 steps, scaled linear betas)."""
    from monai.networks.schedulers import DDPMScheduler

    return DDPMScheduler(**SCHEDULE)


def build_sampling_scheduler(steps: int):
    """DDIM with ``steps`` denoising steps over the same schedule as training."""
    from monai.networks.schedulers import DDIMScheduler

    if steps < 1 or steps > SCHEDULE["num_train_timesteps"]:
        raise ValueError(f"DDIM steps must be between 1 and {SCHEDULE['num_train_timesteps']}, not {steps}.")
    scheduler = DDIMScheduler(**SCHEDULE, clip_sample=False)
    scheduler.set_timesteps(num_inference_steps=int(steps))
    return scheduler


@dataclass
class LDMNetworks:
    """The three networks of one LDM, built from one :class:`LDMArch`."""

    arch: LDMArch
    autoencoder: Any = field(repr=False)
    unet: Any = field(repr=False)
    discriminator: Any = field(default=None, repr=False)


def build_networks(arch: LDMArch, discriminator: bool = True) -> LDMNetworks:
    return LDMNetworks(
        arch, build_autoencoder(arch), build_unet(arch), build_discriminator(arch) if discriminator else None
    )
