"""Feature extractors for FID/KID, precision/recall and the memorisation check.

Both are ``nn.Module`` objects that take uint8 images (N, C, H, W) and return float features (N, F),
so they plug straight into torchmetrics' ``FrechetInceptionDistance(feature=module)``:

* :class:`ClassifierFeatures` (default): the penultimate layer of a ResNet9 trained on the real training
  split. Works offline at any image size and sees medical-domain features; its numbers are comparable
  only between runs that use the same extractor (the report says which).
* :class:`InceptionFeatures`: the standard FID InceptionV3 (2048-d pool features), only when the user
  has its weights file locally (``pt_inception-2015-12-05-6726825d.pth``); MedSyn never downloads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn


class ClassifierFeatures(nn.Module):
    """Penultimate ResNet9 features of a :class:`~medsyn_imaging.evaluation.classifier.TrainedClassifier`.

    ``forward(x)``: x (N, C, H, W) uint8 tensor -> (N, 8 * width) float32; normalised like the training
    images. Always in evaluation mode (batch-norm statistics frozen).
    """

    def __init__(self, classifier):
        super().__init__()
        import torch

        self.net = classifier.model
        self.image_shape = tuple(classifier.image_shape)
        self.register_buffer("mean", torch.tensor(classifier.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(classifier.std, dtype=torch.float32).view(1, -1, 1, 1))
        self.num_features = int(classifier.model.num_features)
        self.name = f"ResNet9 penultimate layer ({self.num_features}-d), trained on the real training split"
        self.to(next(classifier.model.parameters()).device)  # buffers follow the trained network
        self.eval()

    def train(self, mode: bool = True) -> ClassifierFeatures:  # never leave eval mode
        return super().train(False)

    def forward(self, x):
        import torch

        with torch.no_grad():
            return self.net.features((x.float() / 255 - self.mean) / self.std).float()


class InceptionFeatures(nn.Module):
    """InceptionV3 pool features (N, 2048) from a local FID weights file (torch-fidelity's layout).

    ``forward(x)``: x (N, 1 or 3, H, W) uint8 -> (N, 2048); grey images are repeated to 3 channels and
    torchmetrics resizes to 299x299.
    """

    def __init__(self, weights_path: str | Path):
        super().__init__()
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"InceptionV3 weights not found at {path}. MedSyn never downloads weights: copy the FID "
                "InceptionV3 file (pt_inception-2015-12-05-6726825d.pth) here, or use the default ResNet9 "
                "feature extractor."
            )
        import torch

        try:  # torch-fidelity loads the file with weights_only=False: first prove it holds only tensors
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"{path} is not a plain PyTorch weights file (refused to unpickle code): {exc}"
            ) from exc
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError("The InceptionV3 extractor needs torchmetrics with torch-fidelity.") from exc
        try:
            self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                          feature_extractor_weights_path=str(path))
        except ModuleNotFoundError as exc:
            raise RuntimeError(
                "The InceptionV3 extractor needs the package torch-fidelity (pip install torch-fidelity)."
            ) from exc
        self.num_features = 2048
        self.name = "InceptionV3 pool3 (2048-d), local weights"

    def forward(self, x):
        import torch

        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        with torch.no_grad():
            return self.net(x.to(torch.uint8)).reshape(len(x), -1).float()


def extractor_device(extractor: nn.Module):
    """The device of the extractor's parameters (CPU when it has none)."""
    import torch

    for p in extractor.parameters():
        return p.device
    for b in extractor.buffers():
        return b.device
    return torch.device("cpu")


def extract_features(extractor: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run ``extractor`` over uint8 images (N, C, H, W) in batches; returns (N, F) float64."""
    import torch

    device = extractor_device(extractor)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)
            out.append(extractor(x).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, getattr(extractor, "num_features", 0)))
