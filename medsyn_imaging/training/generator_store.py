"""Saving, finding, loading and sampling trained image generators.

A generator folder holds:

* ``generator.safetensors`` — the EMA generator's weights (safetensors: loading cannot run code);
* ``config.json`` — model kind, architecture and how the training images were fitted (to undo padding);
* ``model_card.json`` — data, exact command, images seen, wall time, device, evaluation, limitations.

User-trained generators are registered in the SQLite store (engine = model kind); the demo generators
shipped in ``models/`` are found by scanning that folder. Sampling is deterministic: the same seed,
labels and truncation give the same images (noise inputs are the stored constants).
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsyn_core import model_card
from medsyn_core.files import atomic_directory, atomic_write_json
from medsyn_core.settings import BUNDLED_MODELS_DIR

CONFIG_FORMAT = 1
WEIGHTS_FILE = "generator.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "model_card.json"
DEMO_MODEL_NAME = "pneumoniamnist-stylegan2"
_SAMPLE_CHUNK = 64


# -- sampling a generator module ------------------------------------------------------------------------
def generate_from_latents(generator, z, labels, truncation: float = 1.0, device=None) -> np.ndarray:
    """Run ``generator`` on latents ``z`` (N, z_dim) and labels (N,) -> (N, C, R, R) float32 in [0, 1].

    Noise inputs use their stored constants, so the output depends only on the arguments.
    """
    import torch

    device = device if device is not None else next(generator.parameters()).device
    z = torch.as_tensor(z, dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    if len(labels) != len(z):
        raise ValueError(f"{len(z)} latents but {len(labels)} labels.")
    out = []
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(z), _SAMPLE_CHUNK):
                zc = z[start:start + _SAMPLE_CHUNK].to(device)
                lc = labels[start:start + _SAMPLE_CHUNK].to(device)
                img = generator(zc, lc, truncation=truncation, noise_mode="const")
                out.append(((img.float() + 1) / 2).clamp(0, 1).cpu().numpy())
    finally:
        generator.train(was_training)
    if not out:
        return np.zeros((0, generator.cfg.img_channels, generator.cfg.resolution,
                         generator.cfg.resolution), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)


def generate(generator, labels, seed: int = 0, truncation: float = 1.0, device=None) -> np.ndarray:
    """One image per label from latents drawn with ``seed`` (independent of torch's global RNG)."""
    import torch

    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    z = torch.randn(len(labels), generator.z_dim, generator=torch.Generator().manual_seed(int(seed)))
    return generate_from_latents(generator, z, labels, truncation=truncation, device=device)


# -- a loaded generator ---------------------------------------------------------------------------------
@dataclass
class LoadedGenerator:
    """A generator read from its folder, ready to sample on ``device``."""

    path: Path
    name: str
    model: str  # 'stylegan2' or 'dcgan'
    config: dict[str, Any]
    card: dict[str, Any]
    module: Any = field(repr=False)
    device: Any = None

    @property
    def class_names(self) -> list[str]:
        return list(self.config["data"]["class_names"])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def pad(self) -> int:
        return int(self.config["data"].get("pad", 0))

    @property
    def image_size(self) -> int:
        """Side of the sampled images after undoing the padding (e.g. 28)."""
        return int(self.config["arch"]["resolution"]) - 2 * self.pad

    @property
    def channels(self) -> int:
        return int(self.config["arch"]["img_channels"])

    def label_index(self, label: int | str) -> int:
        """A class index from an index or a class name (clear error otherwise)."""
        if isinstance(label, str) and not label.strip().lstrip("-").isdigit():
            lowered = [c.lower() for c in self.class_names]
            if label.strip().lower() in lowered:
                return lowered.index(label.strip().lower())
            raise ValueError(f"Unknown class {label!r}; this model knows {self._classes_text()}.")
        index = int(label)
        if not 0 <= index < self.n_classes:
            raise ValueError(f"Label {index} is out of range; this model knows {self._classes_text()}.")
        return index

    def _classes_text(self) -> str:
        return ", ".join(f"{i} = {c}" for i, c in enumerate(self.class_names))

    def sample(self, n: int, label: int | str | Sequence[int | str] | None = None, seed: int = 0,
               truncation: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Generate ``n`` images -> (images (n, C, S, S) float32 in [0, 1], labels (n,) int64).

        ``label``: one class (index or name) for all, a sequence of ``n`` labels, or None to cycle
        through the classes (0, 1, 0, 1, ...). ``truncation`` in (0, 1] trades variety for typicality.
        """
        if n < 0:
            raise ValueError("The number of images must be >= 0.")
        if not 0 < truncation <= 2:
            raise ValueError(f"Truncation must be in (0, 2] (1 = no truncation), not {truncation}.")
        if label is None:
            labels = np.arange(n) % max(self.n_classes, 1)
        elif isinstance(label, str | int | np.integer):
            labels = np.full(n, self.label_index(label) if self.n_classes else 0)
        else:
            labels = np.asarray([self.label_index(x) for x in label], dtype=np.int64)
            if len(labels) != n:
                raise ValueError(f"Got {len(labels)} labels for {n} images.")
        from medsyn_imaging.training.training_data import crop_to_native

        images = generate(self.module, labels, seed=seed, truncation=truncation, device=self.device)
        images = crop_to_native(images, self.pad)
        return np.ascontiguousarray(images), labels.astype(np.int64)

    def preview_batch(self, per_class: int = 8, label: int | str | None = None, seed: int = 0,
                      truncation: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """The images a preview shows and an export writes (one call, so they are the same pixels):
        ``per_class`` images of each class (``label`` None) or of one class, grouped by class ->
        (images (n, C, S, S) float32 in [0, 1], labels (n,))."""
        classes = range(max(self.n_classes, 1)) if label is None else [self.label_index(label)]
        labels = np.repeat(np.asarray(list(classes), dtype=np.int64), per_class)
        return self.sample(len(labels), label=labels.tolist(), seed=seed, truncation=truncation)

    @property
    def acquisition(self) -> tuple[str | None, tuple[float, float] | None]:
        """(DICOM modality, nominal pixel spacing (row, column) in mm) of the data this generator learned
        from: from its config when recorded there, else from the bundled dataset it names; (None, None)
        when unknown (e.g. a folder of PNGs)."""
        data = self.config.get("data", {})
        modality, fov = data.get("modality"), data.get("nominal_fov_mm")
        if modality is None or fov is None:
            from medsyn_core.catalog import BUNDLED

            source = str(data.get("source", ""))
            match = next((d for d in BUNDLED if d.kind == "imaging" and d.modality
                          and source.split(",")[0].split()[-1:] == [d.name]), None)
            if match is not None:
                modality, fov = modality or match.modality, fov or match.nominal_fov_mm
        size = self.image_size
        return modality, ((fov / size, fov / size) if fov else None)

    def class_grid(self, per_class: int = 8, seed: int = 0, truncation: float = 1.0,
                   scale: int = 2) -> np.ndarray:
        """(H, W, C) uint8 preview grid: one row per class, ``per_class`` images each."""
        from medsyn_imaging.io.image_grid import make_grid

        labels = np.repeat(np.arange(max(self.n_classes, 1)), per_class)
        images, _ = self.sample(len(labels), label=labels.tolist(), seed=seed, truncation=truncation)
        return make_grid(images, ncol=per_class, scale=scale)


def load_generator(path: str | Path, device=None) -> LoadedGenerator:
    """Load a generator folder (``generator.safetensors`` + ``config.json`` + ``model_card.json``)."""
    from safetensors.torch import load_file

    from medsyn_core.device import choose_device
    from medsyn_imaging.networks.gan_models import build_generator

    path = Path(path)
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(
            f"{path} is not a MedSyn generator folder (it needs {WEIGHTS_FILE} and {CONFIG_FILE}); "
            "train one with `medsyn imaging train` or pick one from `medsyn imaging sample --list`."
        )
    config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("format") != CONFIG_FORMAT:
        raise ValueError(f"{path / CONFIG_FILE} has format {config.get('format')}, not {CONFIG_FORMAT}.")
    card_path = path / CARD_FILE
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
    card = model_card.with_latest_evaluation(card, card.get("name", path.name))  # one FID everywhere
    device = choose_device(str(device)) if device is not None else choose_device()
    module = build_generator(config["model"], config["arch"])
    module.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=True)
    module.to(device).eval().requires_grad_(False)
    return LoadedGenerator(path=path, name=card.get("name", path.name), model=config["model"],
                           config=config, card=card, module=module, device=device)


# -- saving ---------------------------------------------------------------------------------------------
LEDGER_FILE = "privacy_ledger.json"


def privacy_card(ledger, unit: str = "one image with its label (add/remove one image)") -> dict:
    """The model card's ``differential_privacy`` block (the one writer, :func:`model_card.privacy_block`)."""
    return model_card.privacy_block(
        ledger, unit,
        mechanism="DP-SGD on the discriminator (Opacus, Poisson sampling, flat per-sample clipping)",
        note="Only the discriminator reads real images; the generator's updates are post-processing. "
             "No other statistic of the images is computed (resize/pad are data-independent), so the "
             "ledger has only the DP-SGD entry. Class counts and D's loss are left out of this card.")


dp_label = model_card.dp_label  # one label for every engine


def save_generator(trainer, out_dir: str | Path, name: str | None = None, command: str | None = None,
                   register: bool = True, overwrite: bool = False, *, replace: bool | None = None,
                   actor: str = "cli") -> Path:
    """Write the trainer's EMA generator as a generator folder (atomically) and register it.

    ``command`` is the exact command line that trained it (recorded in the model card). ``name``
    (default: the folder's name) must be a safe slug; a registered name or an existing folder is refused
    before anything is written unless ``replace`` (default: ``overwrite``) / ``overwrite`` is given, and a
    replacement is audited as ``actor`` (see :mod:`medsyn_core.names`).
    """
    from safetensors.torch import save_file

    from medsyn_core import model_store, names
    from medsyn_core.device import device_info

    out_dir = Path(out_dir)
    name = name or out_dir.name
    replace = overwrite if replace is None else replace
    if register:
        model_store.ensure_model_name_free(name, replace=replace)
    existed = out_dir.exists()
    data = trainer.data
    config = {
        "format": CONFIG_FORMAT,
        "model": trainer.config.model,
        "arch": trainer.arch,
        "data": {"class_names": list(data.class_names), "channels": data.channels,
                 "native_size": data.native_size, "fit": data.fit, "pad": data.pad, "source": data.source},
    }
    try:
        device_text = device_info(str(trainer.device)).summary()
    except Exception:  # noqa: BLE001 — the card must still be written
        device_text = str(trainer.device)
    card = {
        "card_format": model_card.CARD_FORMAT,
        "name": name,
        "engine": "imaging",
        "kind": trainer.config.model,
        "task": "image generation",
        "model": trainer.config.model,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "data_source": data.source,
        "parameters": {"arch": trainer.arch, **trainer.config.to_dict()},
        "metrics": {},
        "data": {
            "source": data.source,
            "n_images": int(len(data.images)),
            "class_names": list(data.class_names),
            "class_counts": list(data.class_counts),
            "native_size": data.native_size,
            "fitting": {"none": "used as is", "pad": f"edge-padded by {data.pad} px per side to "
                        f"{data.resolution} px; samples are cropped back to {data.native_size} px",
                        "resize": f"resized to {data.resolution} px with MONAI Resize"}[data.fit],
        },
        "training": {
            "command": command,
            "images_seen": int(trainer.images_seen),
            "kimg": round(trainer.images_seen / 1000, 3),
            "steps": int(trainer.step),
            "wall_time_s": round(trainer.train_seconds, 1),
            "device": device_text,
            "mixed_precision": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off",
            "config": trainer.config.to_dict(),
            "final_losses": trainer.history[-1] if trainer.history else None,
        },
        "weights": "exponential moving average (EMA) of the generator",
        "evaluation": {"fid": None, "note": "Not evaluated yet: run `medsyn imaging evaluate MODEL_DIR "
                                            "--data DATA` (FID/KID, PRDC, TSTR, memorisation)."},
        "differential_privacy": model_card.off_block(
            "Trained without differential privacy; train with `medsyn imaging train ... --epsilon E` for "
            "DP-SGD."),
        "intended_use": "Previews and method development with synthetic scans; not for diagnosis.",
        "limitations": "Trained on a small dataset at low resolution; samples may reproduce "
                       "features of training images and have not been checked for memorisation.",
    }
    ledger = trainer.privacy_ledger()
    if ledger is not None:
        card["differential_privacy"] = privacy_card(ledger, unit=(
            "one image (exact-duplicate images removed before training: "
            f"{int(data.duplicates_removed or 0)}); the source does not say which images belong to one "
            "patient, so a patient with several images is protected per image only"))
        # statistics of the real images that DP does not cover are left out of the released card
        del card["data"]["class_counts"]
        card["data"]["duplicates_removed"] = int(data.duplicates_removed or 0)
        losses = card["training"]["final_losses"]
        if losses:
            losses.pop("d_loss", None)  # computed on real images without noise; G's loss is post-processing
    card["dp_label"] = dp_label(card)
    from medsyn_imaging.networks.gan_models import build_generator

    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in trainer.G_ema.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        atomic_write_json(tmp / CONFIG_FILE, config)
        atomic_write_json(tmp / CARD_FILE, card)
        if ledger is not None:
            ledger.save(tmp / LEDGER_FILE)
        build_generator(config["model"], config["arch"])  # the saved config must rebuild the model
    if register:
        try:
            register_generator(out_dir, name=name, replace=replace, actor=actor)
        except names.NameTaken:  # taken meanwhile (another job): leave no unregistered folder behind
            if not existed:
                shutil.rmtree(out_dir, ignore_errors=True)
            raise
    return out_dir


def register_generator(path: str | Path, name: str | None = None, *, replace: bool = False,
                       actor: str = "cli") -> int:
    """Record a generator folder in the SQLite store (engine = model kind); returns the model id.
    A name already registered is refused unless ``replace`` (then audited as ``actor``)."""
    from medsyn_core.storage import Store

    path = Path(path).resolve()
    config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    card = json.loads((path / CARD_FILE).read_text(encoding="utf-8"))
    name = name or card.get("name", path.name)
    with Store() as store:
        dp = card.get("differential_privacy")
        dp_epsilon = dp.get("epsilon_total") if isinstance(dp, dict) and dp.get("enabled") else None
        model_id = store.register_model(name, config["model"], path, card, dp_epsilon=dp_epsilon,
                                        replace=replace, actor=actor)
        store.append_event(actor, "imaging.generator.register", {"name": name, "model": config["model"]})
    return model_id


# -- exporting samples ------------------------------------------------------------------------------------
def export_samples(generator: LoadedGenerator, images: np.ndarray, labels: np.ndarray, out: str | Path,
                   fmt: str, seed: int, truncation: float) -> Path:
    """Write sampled images (N, C, S, S) in [0, 1] as PNG, DICOM or NIfTI through the imaging I/O
    writers, with provenance that marks them synthetic and names the generator. Returns what was written."""
    from medsyn_core import __version__
    from medsyn_imaging.io.export import export_images

    provenance = {
        "synthetic": True,
        "generator": generator.name,
        "model": generator.model,
        "seed": int(seed),
        "truncation": float(truncation),
        "software": f"MedSyn {__version__}",
        "training_data": generator.config["data"].get("source"),
    }
    modality, spacing = generator.acquisition
    if spacing is not None:
        provenance["pixel_spacing_mm"] = f"{spacing[0]:.4g} (nominal: the source data gives no pixel size)"
    return export_images(images, out, fmt, labels=[int(x) for x in labels],
                         label_names=generator.class_names, provenance=provenance, modality=modality,
                         pixel_spacing=spacing)


# -- finding generators ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneratorEntry:
    name: str
    path: Path
    source: str  # 'bundled' or 'store'
    model: str
    card: dict[str, Any]


def list_generators(include_bundled: bool = True) -> list[GeneratorEntry]:
    """Bundled demo generators (``models/``) first, then those registered in the store (one listing:
    :func:`medsyn_core.model_store.all_models`)."""
    from medsyn_core.model_store import all_models
    from medsyn_core.storage import Store
    from medsyn_imaging.networks.gan_models import MODEL_KINDS

    with Store() as store:
        models = [m for m in all_models(store) if m.kind in MODEL_KINDS and m.path.is_dir()
                  and (include_bundled or m.source != "bundled")]
    models.sort(key=lambda m: m.source != "bundled")  # bundled first, each group in its order
    return [GeneratorEntry(m.name, m.path, m.source, m.kind, m.card) for m in models]


def demo_generator_path() -> Path:
    """Folder of the bundled demo generator (PneumoniaMNIST, StyleGAN2)."""
    return BUNDLED_MODELS_DIR / DEMO_MODEL_NAME


# -- which generators a user is offered ---------------------------------------------------------------------
@dataclass(frozen=True)
class OfferedGenerator:
    """A generator with its quality check and approval, as the sampling page lists it."""

    entry: GeneratorEntry
    quality: Any  # medsyn_imaging.evaluation.quality.QualityCheck
    approved_by: str | None = None

    @property
    def usable_by_clinicians(self) -> bool:
        return self.quality.passed or self.approved_by is not None


def offered_generators(user) -> list[OfferedGenerator]:
    """The generators ``user`` is offered: everyone who may train sees all of them with their quality;
    others (clinicians) only those that pass the quality bar or that an admin approved."""
    from medsyn_core import approvals
    from medsyn_core.auth import allowed
    from medsyn_core.model_card import read_card
    from medsyn_core.storage import Store
    from medsyn_imaging.evaluation.quality import quality_check

    with Store() as store:
        approved = {n: approvals.approval(store, n) for n in approvals.approved_names(store)}
    out = []
    for entry in list_generators():
        check = quality_check(read_card(entry.card, entry.path).metrics)
        grant = approved.get(entry.name.lower())
        offered = OfferedGenerator(entry, check, grant.approved_by if grant else None)
        if allowed(user, "train") or offered.usable_by_clinicians:
            out.append(offered)
    return out
