"""Saving, finding, loading and sampling 3D generators (latent diffusion models).

A 3D generator folder holds:

* ``autoencoder.safetensors`` and ``unet.safetensors`` — the weights (safetensors: loading runs no code;
  the discriminator is a training aid and is not kept);
* ``config.json`` — format, kind ``ldm3d``, the architecture, the latent scale factor and the training
  grid (shape, spacing, orientation, intensity mapping, class names) the samples are written on;
* ``model_card.json`` — the common card (:mod:`medsyn_core.model_card`): data, parameters, metrics,
  the exact command, steps, wall time, device and why there is no differential privacy.

They are registered in the SQLite store with kind ``ldm3d`` like every other model. Sampling is
deterministic: the same seed, labels and DDIM steps give the same volumes.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsyn_core import model_card
from medsyn_core.files import atomic_directory, atomic_write_json

CONFIG_FORMAT = 1
KIND = "ldm3d"
AE_FILE = "autoencoder.safetensors"
UNET_FILE = "unet.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "model_card.json"


@dataclass
class LoadedVolumeGenerator:
    """A 3D generator read from its folder, ready to sample on ``device``."""

    path: Path
    name: str
    config: dict[str, Any]
    card: dict[str, Any]
    autoencoder: Any = field(repr=False)
    unet: Any = field(repr=False)
    device: Any = None

    @property
    def arch(self):
        from medsyn_imaging.networks.ldm import LDMArch

        return LDMArch.from_dict(self.config["arch"])

    @property
    def class_names(self) -> list[str]:
        return list(self.config["data"]["class_names"])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.config["data"]["shape"])

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.config["data"]["spacing"])

    def label_index(self, label: int | str) -> int:
        if isinstance(label, str) and not label.strip().lstrip("-").isdigit():
            lowered = [c.lower() for c in self.class_names]
            if label.strip().lower() in lowered:
                return lowered.index(label.strip().lower())
            raise ValueError(f"Unknown class {label!r}; this model knows {', '.join(self.class_names)}.")
        index = int(label)
        if not 0 <= index < len(self.class_names):
            raise ValueError(
                f"Label {index} is out of range; this model knows {', '.join(self.class_names)}."
            )
        return index

    def sample_arrays(
        self, n: int, label: int | str | None = None, seed: int = 0, ddim_steps: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(volumes (n, 1, X, Y, Z) float32 in [0, 1] on the training grid, labels (n,) int64).
        ``label`` None cycles through the classes."""
        from medsyn_imaging.training.ldm_training import sample_ldm

        if n < 1:
            raise ValueError("Sample at least one volume.")
        k = max(len(self.class_names), 1)
        labels = np.arange(n) % k if label is None else np.full(n, self.label_index(label))
        params = self.config["training"]
        volumes = sample_ldm(
            self.autoencoder,
            self.unet,
            self.arch,
            self.shape,
            float(self.config["scale_factor"]),
            n,
            labels=labels,
            seed=seed,
            ddim_steps=int(ddim_steps or params["ddim_steps"]),
            device=self.device,
            decode_roi=params.get("decode_roi"),
        )
        return volumes, labels.astype(np.int64)

    def to_volumes(self, arrays: np.ndarray, labels: np.ndarray, seed: int = 0) -> list:
        """Generated arrays -> :class:`~medsyn_imaging.io.volume.Volume` objects with geometry and units."""
        from medsyn_imaging.training.volume_data import IntensityMapping, to_volume

        intensity = IntensityMapping.from_dict(self.config["data"]["intensity"])
        modality = self.config["data"].get("modality", "")
        return [
            to_volume(
                a,
                self.spacing,
                intensity,
                modality=modality,
                source=f"synthetic {self.name} #{i + 1}",
                metadata={"label": self.class_names[int(lab)], "seed": int(seed), "index": i},
            )
            for i, (a, lab) in enumerate(zip(arrays, labels, strict=True))
        ]

    def sample(
        self, n: int, label: int | str | None = None, seed: int = 0, ddim_steps: int | None = None
    ) -> list:
        """``n`` synthetic Volumes ``(Z, Y, X)`` with the training grid's LPS affine and units."""
        arrays, labels = self.sample_arrays(n, label, seed, ddim_steps)
        return self.to_volumes(arrays, labels, seed)


def load_volume_generator(path: str | Path, device=None) -> LoadedVolumeGenerator:
    """Load a 3D generator folder (weights via safetensors, architecture from config.json)."""
    from safetensors.torch import load_file

    from medsyn_core.device import choose_device
    from medsyn_imaging.networks.ldm import LDMArch, build_autoencoder, build_unet

    path = Path(path)
    if (
        not (path / CONFIG_FILE).is_file()
        or not (path / AE_FILE).is_file()
        or not (path / UNET_FILE).is_file()
    ):
        raise FileNotFoundError(
            f"{path} is not a MedSyn 3D generator folder (it needs {AE_FILE}, {UNET_FILE} and "
            f"{CONFIG_FILE}); train one with `medsyn imaging train-3d`."
        )
    config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("format") != CONFIG_FORMAT or config.get("model") != KIND:
        raise ValueError(f"{path / CONFIG_FILE} is not a {KIND} config of format {CONFIG_FORMAT}.")
    card_path = path / CARD_FILE
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
    device = choose_device(str(device)) if device is not None else choose_device()
    arch = LDMArch.from_dict(config["arch"])
    autoencoder, unet = build_autoencoder(arch), build_unet(arch)
    autoencoder.load_state_dict(load_file(str(path / AE_FILE)), strict=True)
    unet.load_state_dict(load_file(str(path / UNET_FILE)), strict=True)
    for net in (autoencoder, unet):
        net.to(device).eval().requires_grad_(False)
    return LoadedVolumeGenerator(path, card.get("name", path.name), config, card, autoencoder, unet, device)


def save_volume_generator(
    trainer,
    out_dir: str | Path,
    name: str | None = None,
    command: str | None = None,
    register: bool = True,
    replace: bool = False,
    actor: str = "cli",
) -> Path:
    """Write a trained :class:`~medsyn_imaging.training.ldm_training.LDMTrainer` as a model folder
    (atomically) and register it. A registered name or existing folder is refused unless ``replace``
    (then audited as ``actor``)."""
    from safetensors.torch import save_file

    from medsyn_core import model_store, names
    from medsyn_core.device import device_info

    if trainer.stage != "done" or trainer.scale_factor is None:
        raise ValueError("Training has not finished both stages; resume it before saving the model.")
    out_dir = Path(out_dir)
    name = name or out_dir.name
    if register:
        model_store.ensure_model_name_free(name, replace=replace)
    existed = out_dir.exists()
    data, cfg = trainer.data, trainer.config
    config = {
        "format": CONFIG_FORMAT,
        "model": KIND,
        "arch": trainer.arch.to_dict(),
        "scale_factor": float(trainer.scale_factor),
        "training": {"ddim_steps": cfg.ddim_steps, "decode_roi": cfg.decode_roi},
        "data": {
            "class_names": list(data.class_names),
            "shape": list(data.shape),
            "spacing": list(data.spacing),
            "orientation": "RAS (MONAI axis order X, Y, Z); written as LPS DICOM/NIfTI geometry",
            "intensity": data.intensity.to_dict(),
            "modality": data.modality,
            "source": data.source,
        },
    }
    try:
        device_text = device_info(str(trainer.device)).summary()
    except Exception:  # noqa: BLE001 — the card must still be written
        device_text = str(trainer.device)
    final = {}
    for row in trainer.history:  # the last losses of each stage
        final.update({f"{row['stage']} {k}": v for k, v in row.items() if k not in ("step", "stage")})
    perceptual = (
        f"2.5D ResNet-50 features from a local weights file (weight {cfg.perceptual_weight:g})"
        if trainer.perceptual is not None
        else "none (no local perceptual-network weights were given; MedSyn never downloads weights)"
    )
    card = {
        "card_format": model_card.CARD_FORMAT,
        "name": name,
        "engine": "imaging",
        "kind": KIND,
        "task": "3D volume generation (latent diffusion)",
        "model": KIND,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "data_source": data.source,
        "parameters": {"arch": trainer.arch.to_dict(), **cfg.to_dict()},
        "metrics": {k: round(float(v), 6) for k, v in final.items()},
        "data": {
            "source": data.source,
            "n_volumes": int(len(data.volumes)),
            "class_names": list(data.class_names),
            "class_counts": data.class_counts,
            "shape": list(data.shape),
            "spacing_mm": list(data.spacing),
            "intensity": data.intensity.to_dict(),
            "modality": data.modality,
            "notes": list(data.notes),
        },
        "training": {
            "command": command,
            "steps": {"autoencoder": trainer.ae_step, "diffusion": trainer.diffusion_step},
            "wall_time_s": round(trainer.train_seconds, 1),
            "device": device_text,
            "mixed_precision": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off",
            "channels_last": bool(trainer.channels_last),
            "perceptual_loss": perceptual,
            "adversarial_loss": (
                f"patch discriminator, least squares, weight {cfg.adv_weight:g} from "
                f"step {cfg.adversarial_start}"
            )
            if cfg.adv_weight > 0
            else "none",
            "latent_scale_factor": float(trainer.scale_factor),
        },
        "evaluation": {
            "note": "Not evaluated yet: run `medsyn imaging evaluate-3d MODEL_DIR --data FOLDER` "
            "(FID on three planes, FRD, 3D memorisation, each beside its real-vs-real floor)."
        },
        "differential_privacy": model_card.off_block(
            "Trained without differential privacy: the 3D latent diffusion model offers none "
            "(docs/imaging_3d.md says why)."
        ),
        "intended_use": "Method development and previews with synthetic volumes; not for diagnosis.",
        "limitations": "Small training sets give blurry or repetitive volumes; check memorisation with "
        "`medsyn imaging evaluate-3d` before sharing samples.",
    }
    card["dp_label"] = model_card.dp_label(card)
    with atomic_directory(out_dir, overwrite=replace) as tmp:
        for file, net in ((AE_FILE, trainer.autoencoder), (UNET_FILE, trainer.unet)):
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp / file)
            )
        atomic_write_json(tmp / CONFIG_FILE, config)
        atomic_write_json(tmp / CARD_FILE, card)
    if register:
        from medsyn_core.storage import Store

        try:
            with Store() as store:
                store.register_model(name, KIND, out_dir.resolve(), card, replace=replace, actor=actor)
                store.append_event(actor, "imaging.generator.register", {"name": name, "model": KIND})
        except names.NameTaken:  # taken meanwhile: leave no unregistered folder behind
            if not existed:
                shutil.rmtree(out_dir, ignore_errors=True)
            raise
    return out_dir


@dataclass(frozen=True)
class VolumeGeneratorEntry:
    name: str
    path: Path
    card: dict[str, Any]


def list_volume_generators() -> list[VolumeGeneratorEntry]:
    """The 3D generators registered in the store (none ships with MedSyn: docs/imaging_3d.md says why)."""
    from medsyn_core.storage import Store

    with Store() as store:
        return [
            VolumeGeneratorEntry(r.name, Path(r.path), r.card)
            for r in store.list_models()
            if r.kind == KIND and Path(r.path).is_dir()
        ]


def export_samples(
    generator: LoadedVolumeGenerator,
    volumes: list,
    out: str | Path,
    fmt: str,
    seed: int,
    ddim_steps: int | None = None,
) -> Path:
    """Write sampled Volumes through :func:`medsyn_imaging.io.export.export_volumes` with provenance that
    marks them synthetic and names the generator."""
    from medsyn_core import __version__
    from medsyn_imaging.io.export import export_volumes

    provenance = {
        "synthetic": True,
        "generator": generator.name,
        "model": KIND,
        "seed": int(seed),
        "ddim_steps": int(ddim_steps or generator.config["training"]["ddim_steps"]),
        "software": f"MedSyn {__version__}",
        "training_data": generator.config["data"].get("source"),
    }
    return export_volumes(volumes, out, fmt, provenance=provenance)
