"""The generator architectures MedSyn can train, by name: ``stylegan2`` and the ``dcgan`` baseline.

Every generator is called as ``G(z, labels, truncation=1.0, mixing_prob=0.0, noise_mode="random",
update_w_avg=False)`` -> (B, C, R, R) in [-1, 1] and every discriminator as ``D(images, labels)`` -> (B,)
logits, so one training loop (:mod:`medsyn_imaging.training.gan_training`) drives both.
"""

from __future__ import annotations

from typing import Any

MODEL_KINDS = ("stylegan2", "dcgan")


def _classes(kind: str):
    if kind == "stylegan2":
        from medsyn_imaging.networks.stylegan2 import (
            StyleGAN2Config,
            StyleGAN2Discriminator,
            StyleGAN2Generator,
        )

        return StyleGAN2Config, StyleGAN2Generator, StyleGAN2Discriminator
    if kind == "dcgan":
        from medsyn_imaging.networks.dcgan import DCGANConfig, DCGANDiscriminator, DCGANGenerator

        return DCGANConfig, DCGANGenerator, DCGANDiscriminator
    raise ValueError(f"Unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}.")


def make_arch_config(kind: str, **values: Any):
    """The architecture config of ``kind`` (unknown keys are an error, with the valid ones listed)."""
    from dataclasses import fields

    config_cls = _classes(kind)[0]
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{kind} has no setting(s) {unknown}; valid: {', '.join(sorted(known))}.")
    return config_cls(**values)


def build_generator(kind: str, arch: dict[str, Any]):
    """A freshly initialised generator of ``kind`` from its architecture dict."""
    config_cls, gen_cls, _ = _classes(kind)
    return gen_cls(config_cls.from_dict(arch))


def build_discriminator(kind: str, arch: dict[str, Any]):
    """A freshly initialised discriminator of ``kind`` from its architecture dict."""
    config_cls, _, disc_cls = _classes(kind)
    return disc_cls(config_cls.from_dict(arch))
