"""One model card for every engine: new cards share one schema, and folders written by earlier versions
(tabular format 1, the bundled generator, classifier cards) still load and show ε, parameters, metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tabular_helpers import one_torch_thread

from medsyn_core import model_card
from medsyn_core.settings import BUNDLED_MODELS_DIR

OLD = Path(__file__).parent / "data" / "old_models"


def test_tabular_folders_written_by_the_previous_format_still_load_and_sample(tmp_path):
    from medsyn_tabular.synthesizer import TabularSynthesizer

    for name in ("heart-ctgan-v1", "heart-tvae-dp-v1"):
        folder = shutil.copytree(OLD / name, tmp_path / name)
        with one_torch_thread():
            synth = TabularSynthesizer.load(folder)
            rows = synth.sample(40)
        assert len(rows) == 40 and "age" in rows.columns
    dp = model_card.read_folder(tmp_path / "heart-tvae-dp-v1")
    assert dp.engine == "tabular" and dp.kind == "tvae" and dp.privacy.enabled
    assert 2.9 < dp.privacy.epsilon <= 3.0 and dp.privacy.label.startswith("DP: ε = 3")
    assert dp.parameters["epochs"] == 1 and "final loss_g" not in dp.metrics  # TVAE: no released loss
    plain = model_card.read_folder(tmp_path / "heart-ctgan-v1")
    assert plain.kind == "ctgan" and not plain.privacy.enabled and plain.privacy.label == "DP: off"
    assert "final loss_g" in plain.metrics and plain.data_source != "unknown"


def test_the_bundled_generator_card_reads_into_the_common_schema():
    view = model_card.read_folder(BUNDLED_MODELS_DIR / "pneumoniamnist-stylegan2")
    assert (view.engine, view.kind) == ("imaging", "stylegan2")
    assert view.metrics["fid"] == pytest.approx(46.17) and view.parameters["kimg"] == 60
    assert view.privacy.label == "DP: off" and "pneumoniamnist" in view.data_source


def test_a_classifier_card_of_the_previous_format_reads_too():
    old = {"name": "c", "engine": "resnet9", "task": "image classification",
           "training": {"epochs": 3, "width": 16, "seconds": 12.0}, "metrics": {"auc": 0.9}}
    view = model_card.read_card(old)
    assert (view.engine, view.kind, view.metrics, view.parameters) == (
        "imaging", "resnet9", {"auc": 0.9}, {"epochs": 3, "width": 16})


def test_new_cards_of_both_engines_share_one_schema(tmp_path):
    from medsyn_tabular.data.datasets import heart_cleveland_metadata, load_heart_cleveland
    from medsyn_tabular.synthesizer import TabularSynthesizer

    with one_torch_thread():
        synth = TabularSynthesizer("tvae", epochs=1, batch_size=50, epsilon=3.0,
                                   metadata=heart_cleveland_metadata()).fit(load_heart_cleveland())
    card = json.loads((synth.save(tmp_path / "t", register=False) / "model_card.json").read_text())
    for key in ("card_format", "name", "engine", "kind", "data_source", "parameters", "metrics",
                "differential_privacy", "dp_label"):
        assert key in card, key
    assert card["card_format"] == model_card.CARD_FORMAT and card["engine"] == "tabular"
    dp = card["differential_privacy"]
    assert dp["enabled"] and dp["unit"] and dp["ledger_file"] == "privacy_ledger.json"
    view = model_card.read_folder(tmp_path / "t")
    assert card["dp_label"] == model_card.dp_label(card) == view.privacy.label
