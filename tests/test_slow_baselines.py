"""Long runs kept runnable on demand (`make test-slow`); excluded from `make test` and CI.

They repeat the published-baseline check of ``bench/resnet9_medmnist.py`` for one seed with the settings
``medsyn imaging classifier train DATA`` uses when given no option (:func:`default_config`: epochs, width,
batch and learning rate from the data, early stopping on the val split): ResNet9 on the bundled MedMNIST
sets (28 px, real only, official splits) must reach MedMNIST v2's ResNet-18 (28) test AUC and accuracy.
Run them with ``nice -n 10``: about 10-20 minutes each on a 2-core CPU.
"""

import pytest

from medsyn_imaging.evaluation.classifier import run_training
from medsyn_imaging.evaluation.labelled_images import load_image_dataset

#: MedMNIST v2, Table 3: ResNet-18 (28) test AUC and ACC.
PUBLISHED = {"pneumoniamnist": (0.944, 0.854), "breastmnist": (0.901, 0.863)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_default_classifier_reaches_the_medmnist_resnet18_baseline(name):
    _, summary = run_training(load_image_dataset(name), "trtr")  # no config: chosen from the data
    test = summary["test"]
    auc, accuracy = PUBLISHED[name]
    assert test["auc"] >= auc and test["accuracy"] >= accuracy, test
