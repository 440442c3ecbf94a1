"""Classifier settings chosen from the data (``medsyn imaging classifier train DATA`` with no options):
epochs, width, batch and learning rate from the data size and classes, early stopping on the val split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsyn_imaging.evaluation.classifier import default_config, train_classifier
from medsyn_imaging.evaluation.labelled_images import LabelledImages


def test_settings_follow_the_data_size_and_the_classes():
    breast = default_config(546, 2)  # BreastMNIST: small, so more passes
    pneumonia = default_config(4708, 2)
    many = default_config(30_000, 11)
    tiny = default_config(100, 2)
    assert (breast.batch_size, breast.epochs, breast.width) == (128, 40, 16)
    assert (pneumonia.batch_size, pneumonia.epochs, pneumonia.width) == (128, 10, 16)
    assert (many.batch_size, many.epochs, many.width) == (128, 10, 64)
    assert (tiny.batch_size, tiny.epochs, tiny.lr_max) == (32, 60, pytest.approx(0.025))  # at most 60 passes
    assert breast.lr_max == pytest.approx(0.1) and pneumonia.lr_max == pytest.approx(0.1)
    assert breast.patience == 13 and pneumonia.patience == 8
    assert default_config(546, 2, epochs=5, width=8).epochs == 5  # explicit options win
    with pytest.raises(ValueError, match="Unknown classifier setting"):
        default_config(546, 2, colour="blue")


def test_training_stops_early_once_the_val_auc_stops_improving():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    labels = np.arange(64) % 2
    images = rng.integers(0, 30, (64, 1, 16, 16)).astype(np.uint8)
    images[labels == 1, :, 4:12, 4:12] = 250  # trivially separable: the val AUC reaches 1 at once
    train, val = LabelledImages(images[:48], labels[:48]), LabelledImages(images[48:], labels[48:])
    config = default_config(48, 2, epochs=30, width=4, patience=2)
    log = []
    clf = train_classifier(train, val, ["a", "b"], config, log=log.append)
    epochs_run = [h["epoch"] for h in clf.history if "epoch" in h]
    best = clf.history[-1]["selected_epoch"]
    assert len(epochs_run) < 30 and epochs_run[-1] == best + 2  # stopped two epochs after the best
    assert any("early stop" in line for line in log)


def test_cli_without_options_uses_the_data_driven_settings(tmp_path, capsys):
    from medsyn_cli.main import main

    assert main(["imaging", "classifier", "train", "breastmnist", "--epochs", "1", "--out",
                 str(tmp_path / "clf")]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "classifier: 1 epochs at most (early stop after 13), width 16, batch 128, lr 0.1" in printed
