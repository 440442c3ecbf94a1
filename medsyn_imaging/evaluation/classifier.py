"""Disease classifier on images: ResNet9 with one-cycle training, TRTR / TSTR / mix, AUC and accuracy.

Training modes (the real test split is only ever used for the final score):

* ``trtr`` - train on real, test on real (the reference);
* ``tstr`` - train on synthetic, test on real (is the synthetic data useful?);
* ``mix``  - train on real plus synthetic (does synthetic data help as augmentation?).

In every mode the epoch with the best AUC on the **real validation split** is kept, and training stops
early once that AUC has not improved for ``patience`` epochs. :func:`default_config` chooses epochs, width,
batch size and learning rate from the number of training images and classes (what ``medsyn imaging
classifier train DATA`` uses when no option is given). A trained
classifier is saved as a folder: ``weights.safetensors``, ``config.json``, ``metrics.json`` and
``model_card.json``, and registered in the SQLite store (engine ``resnet9``).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsyn_imaging.evaluation.labelled_images import ImageDataset, LabelledImages

MODES = ("trtr", "tstr", "mix")
ENGINE = "resnet9"


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (defaults tuned for 28 px MedMNIST on a CPU)."""

    epochs: int = 10
    batch_size: int = 128
    width: int = 16  # ResNet9 width; 64 is the DAWNBench original (bench/resnet9_medmnist.py uses 16)
    lr_max: float = 0.1  # peak learning rate of the one-cycle schedule (SGD, Nesterov momentum 0.9)
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    hflip: bool = True  # random horizontal flips
    max_shift: float = 2.0  # random translation, pixels (28 px scale)
    max_rotation: float = 10.0  # random rotation, degrees
    seed: int = 0
    patience: int = 0  # early stopping: stop after this many epochs without a better val AUC (0 = off)


#: Images shown per training run that :func:`default_config` aims for (epochs = this / n, clamped).
DEFAULT_IMAGE_BUDGET = 22_000
MIN_EPOCHS, MAX_EPOCHS = 10, 60


def default_config(n_train: int, n_classes: int, seed: int = 0, **overrides: Any) -> TrainConfig:
    """Training settings chosen from the data: ``n_train`` images, ``n_classes`` classes.

    * batch size 128 from 512 images, 64 from 128, else 32; learning rate scaled with the batch (0.1 at 128,
      the DAWNBench setting);
    * epochs so that about :data:`DEFAULT_IMAGE_BUDGET` images are shown (small sets get more passes),
      rounded, clamped to 10..60; early stopping after a third of them (at least 8) without a better val
      AUC (the one-cycle schedule still spans all epochs, so a run stops only well after its best epoch);
    * width 16 (enough for 2-4 classes at 28 px), 32 from 5 classes or 20,000 images, 64 from 10 classes.

    On the bundled MedMNIST sets this gives BreastMNIST (546 images) 40 epochs and PneumoniaMNIST (4,708)
    10 epochs, both at batch 128 and width 16 (docs/imaging_classifier.md has the measured scores). Any
    field given in ``overrides`` (e.g. an explicit ``--epochs``) wins.
    """
    if n_train < 1 or n_classes < 2:
        raise ValueError(f"Need at least one image and two classes (got {n_train} images, "
                         f"{n_classes} classes).")
    batch = 128 if n_train >= 512 else 64 if n_train >= 128 else 32
    epochs = int(min(MAX_EPOCHS, max(MIN_EPOCHS, round(DEFAULT_IMAGE_BUDGET / n_train))))
    width = 64 if n_classes >= 10 else 32 if n_classes >= 5 or n_train >= 20_000 else 16
    values: dict[str, Any] = {"epochs": epochs, "batch_size": batch, "width": width,
                              "lr_max": 0.1 * batch / 128, "patience": max(8, epochs // 3), "seed": seed}
    unknown = set(overrides) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"Unknown classifier setting(s) {sorted(unknown)}.")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


@dataclass
class Scores:
    """Scores of a classifier on one labelled split."""

    auc: float  # ROC AUC: binary, or one-vs-rest macro average for > 2 classes
    accuracy: float  # arg-max prediction
    accuracy_val_threshold: float | None  # binary only: threshold on p(class 1) picked on the val split
    threshold: float | None
    confusion: list[list[int]]  # rows = true class, columns = predicted class (arg-max)
    n: int


@dataclass
class TrainedClassifier:
    """A trained ResNet9 with the normalisation and classes it was trained with."""

    model: Any  # medsyn_imaging.networks.resnet9.ResNet9
    mean: list[float]  # per-channel mean of the training images, in [0, 1]
    std: list[float]
    class_names: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W)
    config: TrainConfig
    mode: str = "trtr"
    history: list[dict[str, float]] = field(default_factory=list)
    threshold: float | None = None  # binary decision threshold picked on the val split
    train_seconds: float = 0.0

    # -- inference ------------------------------------------------------------------------------
    def _batches(self, images: np.ndarray, fn: Callable, batch_size: int = 512) -> np.ndarray:
        import torch

        from medsyn_core.device import choose_device

        device = choose_device()
        self.model.to(device).eval()
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)
                out.append(fn((x.float() / 255 - mean) / std).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def _check(self, images: np.ndarray) -> np.ndarray:
        from medsyn_imaging.evaluation.labelled_images import to_nchw_uint8

        images = to_nchw_uint8(images)
        if images.shape[1:] != tuple(self.image_shape):
            raise ValueError(
                f"This classifier was trained on {tuple(self.image_shape)} images (C, H, W); got "
                f"{images.shape[1:]}. Resize the images or train a classifier on this size."
            )
        return images

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, n_classes) for uint8 images (N, C, H, W)."""
        import torch

        return self._batches(self._check(images), lambda x: torch.softmax(self.model(x), dim=1))

    def features(self, images: np.ndarray) -> np.ndarray:
        """Penultimate-layer features (N, 8 * width) for uint8 images (N, C, H, W)."""
        return self._batches(self._check(images), self.model.features)

    def score(self, split: LabelledImages) -> Scores:
        return score_probabilities(split.labels, self.predict_proba(split.images), self.threshold)

    # -- storage --------------------------------------------------------------------------------
    def save(self, folder: str | Path, name: str | None = None, metrics: dict[str, Any] | None = None,
             extra_card: dict[str, Any] | None = None, register: bool = True,
             overwrite: bool = False, *, replace: bool | None = None, actor: str = "cli") -> Path:
        """Write the model folder atomically and (by default) register it in the SQLite store.

        ``name`` (default: the folder's name) must be a safe slug; a registered name or an existing folder
        is refused before writing unless ``replace`` (default: ``overwrite``) / ``overwrite`` is given; a
        replacement is audited as ``actor`` (see :mod:`medsyn_core.names`)."""
        import shutil

        from safetensors.torch import save_file

        from medsyn_core import model_store, names
        from medsyn_core.files import atomic_directory, atomic_write_json

        folder = Path(folder)
        name = name or folder.name
        replace = overwrite if replace is None else replace
        if register:
            model_store.ensure_model_name_free(name, replace=replace)
        existed = folder.exists()
        config = {
            "engine": ENGINE, "in_channels": self.image_shape[0], "n_classes": len(self.class_names),
            "width": self.config.width, "image_shape": list(self.image_shape), "mean": self.mean,
            "std": self.std, "class_names": self.class_names, "mode": self.mode,
            "threshold": self.threshold, "train_config": asdict(self.config),
        }
        from medsyn_core import model_card

        card = {
            "card_format": model_card.CARD_FORMAT, "name": name, "engine": "imaging", "kind": ENGINE,
            "task": "image classification", "data_source": (extra_card or {}).get("data_source", "unknown"),
            "parameters": {"width": self.config.width, **asdict(self.config)},
            "differential_privacy": model_card.off_block("Classifiers are trained without differential "
                                                         "privacy (they evaluate, they are not shared)."),
            "architecture": f"ResNet9 (DAWNBench), width {self.config.width}, adaptive max-pool",
            "input": f"{self.image_shape[0]}x{self.image_shape[1]}x{self.image_shape[2]} uint8 images",
            "classes": self.class_names, "training_mode": self.mode,
            "training": {**asdict(self.config), "seconds": round(self.train_seconds, 1),
                         "selection": "epoch with the best AUC on the real validation split"},
            "metrics": metrics or {}, "intended_use": "research evaluation of synthetic images; "
            "not a medical device", **(extra_card or {}),
        }
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        with atomic_directory(folder, overwrite=overwrite) as tmp:
            save_file(state, str(tmp / "weights.safetensors"))
            atomic_write_json(tmp / "config.json", config)
            atomic_write_json(tmp / "model_card.json", card)
            atomic_write_json(tmp / "history.json", self.history)
            if metrics is not None:
                atomic_write_json(tmp / "metrics.json", metrics)
        if register:
            from medsyn_core.storage import Store

            with Store() as store:
                try:
                    store.register_model(name, ENGINE, folder.resolve(), card, replace=replace, actor=actor)
                except names.NameTaken:  # taken meanwhile: leave no unregistered folder behind
                    if not existed:
                        shutil.rmtree(folder, ignore_errors=True)
                    raise
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TrainedClassifier:
        """Load a folder written by :meth:`save` (weights via safetensors: no code runs on load)."""
        from safetensors.torch import load_file

        from medsyn_imaging.networks.resnet9 import ResNet9

        folder = Path(folder)
        config_path = folder / "config.json"
        if not config_path.is_file() or not (folder / "weights.safetensors").is_file():
            raise FileNotFoundError(
                f"{folder} is not a ResNet9 classifier folder (it needs config.json and weights.safetensors)."
            )
        config = json.loads(config_path.read_text())
        if config.get("engine") != ENGINE:
            raise ValueError(f"{folder} holds a {config.get('engine')!r} model, not a ResNet9 classifier.")
        model = ResNet9(config["in_channels"], config["n_classes"], config["width"])
        model.load_state_dict(load_file(str(folder / "weights.safetensors")))
        model.eval()
        history_path = folder / "history.json"
        return cls(
            model=model, mean=config["mean"], std=config["std"], class_names=config["class_names"],
            image_shape=tuple(config["image_shape"]),
            config=TrainConfig(**{k: v for k, v in config["train_config"].items()
                                  if k in TrainConfig.__dataclass_fields__}),
            mode=config.get("mode", "trtr"), threshold=config.get("threshold"),
            history=json.loads(history_path.read_text()) if history_path.is_file() else [],
        )


def roc_auc(labels: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC of probabilities (N, K): binary on p(class 1), else one-vs-rest macro; NaN if undefined."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    present = np.unique(labels)
    if len(present) < 2:
        return float("nan")
    if proba.shape[1] == 2:
        return float(roc_auc_score(labels, proba[:, 1]))
    if len(present) < proba.shape[1]:  # macro AUC over the classes that occur
        aucs = [roc_auc_score(labels == c, proba[:, c]) for c in present]
        return float(np.mean(aucs))
    return float(roc_auc_score(labels, proba, multi_class="ovr", average="macro"))


def best_threshold(labels: np.ndarray, p_positive: np.ndarray) -> float:
    """Binary decision threshold on p(class 1) that maximises accuracy (ties: closest to 0.5)."""
    candidates = np.unique(np.concatenate([p_positive, [0.5]]))
    accs = np.array([np.mean((p_positive >= t) == (labels == 1)) for t in candidates])
    best = np.flatnonzero(accs == accs.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def score_probabilities(labels: np.ndarray, proba: np.ndarray, threshold: float | None = None) -> Scores:
    """AUC, arg-max accuracy, accuracy at ``threshold`` (binary) and the confusion matrix."""
    from sklearn.metrics import confusion_matrix

    labels = np.asarray(labels).reshape(-1)
    pred = proba.argmax(axis=1)
    k = proba.shape[1]
    acc_t = None
    if k == 2 and threshold is not None:
        acc_t = float(np.mean((proba[:, 1] >= threshold) == (labels == 1)))
    cm = confusion_matrix(labels, pred, labels=list(range(k)))
    return Scores(auc=roc_auc(labels, proba), accuracy=float(np.mean(pred == labels)),
                  accuracy_val_threshold=acc_t, threshold=threshold if k == 2 else None,
                  confusion=cm.tolist(), n=len(labels))


def _augment(x, config: TrainConfig, generator):
    """Random flip, shift and rotation of a normalised batch (N, C, H, W), one affine warp per image."""
    import math

    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    dev = x.device
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(config.max_rotation)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if config.hflip else torch.ones(n)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * config.max_shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
    theta[:, 0, 2] = shift[:, 0] * 2 / w  # affine_grid works in [-1, 1] units
    theta[:, 1, 2] = shift[:, 1] * 2 / h
    grid = F.affine_grid(theta.to(dev), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def train_classifier(
    train: LabelledImages, val: LabelledImages, class_names: list[str], config: TrainConfig | None = None,
    mode: str = "trtr", log: Callable[[str], None] | None = None,
) -> TrainedClassifier:
    """Train a ResNet9 on ``train`` with a one-cycle schedule and keep the epoch with the best val AUC
    (stopping early after ``config.patience`` epochs without improvement, when set).

    ``train``/``val``: uint8 images (N, C, H, W) with labels; ``class_names`` fixes the number of classes;
    ``config`` None = :func:`default_config` for this data.
    """
    import torch
    import torch.nn.functional as F

    from medsyn_core.device import choose_device, seed_everything
    from medsyn_imaging.networks.resnet9 import ResNet9

    config = config or default_config(len(train), len(class_names))
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError("epochs and batch size must be at least 1.")
    if len(train) < 2:
        raise ValueError(f"Cannot train a classifier on {len(train)} image(s); give a few per class.")
    if train.shape != val.shape:
        raise ValueError(f"Training images are {train.shape} (C, H, W) but validation images {val.shape}.")
    n_classes = len(class_names)
    if train.labels.max() >= n_classes:
        raise ValueError(f"Training labels go up to {train.labels.max()} but there are {n_classes} classes.")
    seed_everything(config.seed)
    device = choose_device()
    gen = torch.Generator().manual_seed(config.seed)
    c, h, w = train.shape
    x_all = torch.from_numpy(train.images)
    y_all = torch.from_numpy(train.labels)
    x_float = x_all.float() / 255
    mean = x_float.mean(dim=(0, 2, 3))
    std = x_float.std(dim=(0, 2, 3)).clamp_min(1e-3)
    del x_float
    mean_d, std_d = mean.view(1, -1, 1, 1).to(device), std.view(1, -1, 1, 1).to(device)

    model = ResNet9(c, n_classes, config.width).to(device)
    decay = [p for n_, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n_, p in model.named_parameters() if p.ndim <= 1]
    optimiser = torch.optim.SGD(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr_max, momentum=0.9, nesterov=True,
    )
    steps_per_epoch = max(1, len(train) // config.batch_size)  # drop the last partial batch
    total_steps = config.epochs * steps_per_epoch
    # One-cycle needs >= 2 steps per phase; tiny runs (under 8 steps) warm up over 2 steps instead.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr_max, total_steps=max(total_steps, 4),
        pct_start=max(0.25, 2 / max(total_steps, 4)), anneal_strategy="linear", div_factor=20,
        final_div_factor=200,
    )
    result = TrainedClassifier(model, mean.tolist(), std.tolist(), list(class_names), (c, h, w), config, mode)
    best_auc, best_state, best_epoch = -1.0, None, 0
    batch = min(config.batch_size, len(train))
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        total, count = 0.0, 0
        for step in range(steps_per_epoch):
            idx = order[step * batch:(step + 1) * batch]
            x = (x_all[idx].to(device).float() / 255 - mean_d) / std_d
            x = _augment(x, config, gen)
            y = y_all[idx].to(device)
            loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        val_scores = result.score(val)
        val_auc = val_scores.auc if not np.isnan(val_scores.auc) else val_scores.accuracy
        result.history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val_auc": val_scores.auc,
                               "val_accuracy": val_scores.accuracy,
                               "seconds": round(time.perf_counter() - started, 2)})
        if log:
            log(f"epoch {epoch:3d}/{config.epochs}  loss {total / max(count, 1):.4f}  "
                f"val AUC {val_scores.auc:.4f}  val acc {val_scores.accuracy:.4f}")
        if val_auc > best_auc:
            best_auc, best_epoch = val_auc, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif config.patience and epoch - best_epoch >= config.patience:
            if log:
                log(f"early stop: no better val AUC for {config.patience} epochs (best epoch {best_epoch})")
            break
    result.train_seconds = time.perf_counter() - started
    model.load_state_dict(best_state)
    model.eval()
    if n_classes == 2:
        result.threshold = best_threshold(val.labels, result.predict_proba(val.images)[:, 1])
    result.history.append({"selected_epoch": best_epoch})
    return result


def training_set(mode: str, real_train: LabelledImages, synthetic: LabelledImages | None) -> LabelledImages:
    """The images a classifier trains on in ``mode`` (``trtr``, ``tstr`` or ``mix``)."""
    if mode not in MODES:
        raise ValueError(f"Unknown training mode {mode!r}; use one of {', '.join(MODES)}.")
    if mode == "trtr":
        return real_train
    if synthetic is None:
        raise ValueError(f"Mode {mode!r} needs synthetic images (--synthetic PATH).")
    if synthetic.shape != real_train.shape:
        raise ValueError(
            f"Synthetic images are {synthetic.shape} (C, H, W) but the real images are {real_train.shape}; "
            "they must have the same size and number of channels."
        )
    if mode == "tstr":
        return synthetic
    return LabelledImages(np.concatenate([real_train.images, synthetic.images]),
                          np.concatenate([real_train.labels, synthetic.labels]))


def run_training(
    data: ImageDataset, mode: str = "trtr", synthetic: LabelledImages | None = None,
    config: TrainConfig | None = None, log: Callable[[str], None] | None = None,
) -> tuple[TrainedClassifier, dict[str, Any]]:
    """Train in ``mode`` and score on the real test split; returns the classifier and a JSON-ready summary.
    ``config`` None = :func:`default_config` for the training set of ``mode``."""
    train = training_set(mode, data.splits["train"], synthetic)
    config = config or default_config(len(train), len(data.class_names))
    clf = train_classifier(train, data.splits["val"], data.class_names, config, mode=mode, log=log)
    test = clf.score(data.splits["test"])
    val = clf.score(data.splits["val"])
    summary = {
        "dataset": data.name, "mode": mode, "n_train": len(train),
        "n_synthetic": len(synthetic) if synthetic is not None and mode != "trtr" else 0,
        "classes": data.class_names, "seed": config.seed, "epochs": config.epochs,
        "epochs_run": sum(1 for h in clf.history if "epoch" in h), "config": asdict(config),
        "selected_epoch": clf.history[-1]["selected_epoch"], "train_seconds": round(clf.train_seconds, 1),
        "test": asdict(test), "val": asdict(val),
    }
    return clf, summary
