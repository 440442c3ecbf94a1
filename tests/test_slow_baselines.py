"""Long runs kept runnable on demand (`make test-slow`); excluded from `make test` and CI.

They repeat the published-baseline check of ``bench/resnet9_medmnist.py`` for one seed: ResNet9 on the
bundled PneumoniaMNIST (28 px, real only, official splits) must beat MedMNIST v2's ResNet-18 (28) test
AUC 0.944 and accuracy 0.854. About 8-20 minutes on a 2-core CPU.
"""

import pytest

from medsyn_imaging.evaluation.classifier import TrainConfig, run_training
from medsyn_imaging.evaluation.labelled_images import load_image_dataset


@pytest.mark.slow
def test_resnet9_beats_the_medmnist_resnet18_baseline_on_pneumoniamnist():
    data = load_image_dataset("pneumoniamnist")
    _, summary = run_training(data, "trtr", config=TrainConfig(epochs=10, width=16, seed=0))
    test = summary["test"]
    assert test["auc"] >= 0.944 and test["accuracy"] >= 0.854, test
