"""Differential privacy in the tabular engine: DP preprocessing, DP-SGD (Opacus) for CTGAN and TVAE, the
ledger, errors, CLI and page. Tiny runs (1-2 epochs) on the bundled heart table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tabular_helpers import one_torch_thread

from medsyn_cli.main import main
from medsyn_core.privacy import PrivacyBudget, PrivacyError, PrivacyLedger
from medsyn_core.privacy.ledger import dpsgd_epsilon
from medsyn_core.storage import Store
from medsyn_tabular.data.datasets import heart_cleveland_metadata, load_heart_cleveland
from medsyn_tabular.data.schema import infer_schema
from medsyn_tabular.synthesizer import TabularSynthesizer
from medsyn_tabular.transformers.table import OTHER, TableTransformer

ROOT = Path(__file__).resolve().parents[1]
METADATA = ROOT / "data/tabular/heart_cleveland.metadata.yaml"


@pytest.fixture(scope="module")
def heart():
    return load_heart_cleveland()


@pytest.fixture(scope="module")
def dp_ctgan(heart):
    with pytest.MonkeyPatch.context() as mp, one_torch_thread():
        mp.delenv("MEDSYN_DEVICE", raising=False)
        return TabularSynthesizer("ctgan", epochs=2, batch_size=50, seed=3, epsilon=1.0,
                                  metadata=METADATA).fit(heart)


def independent_epsilon(ledger: PrivacyLedger) -> float:
    """ε recomputed here from the saved numbers: Laplace releases add up, DP-SGD via a fresh accountant."""
    total = 0.0
    for e in ledger.entries:
        if e.mechanism == "dp-sgd":
            total += dpsgd_epsilon(e.accountant, e.noise_multiplier, e.sample_rate, e.steps, e.delta)
        else:
            total += e.epsilon
    return total


def test_dp_ctgan_on_heart_at_epsilon_1_has_the_right_schema(heart, dp_ctgan):
    with one_torch_thread():
        rows = dp_ctgan.sample(400)
    assert list(rows.columns) == list(heart.columns)
    meta = heart_cleveland_metadata()["columns"]
    for col in heart.columns:
        spec = meta[col]
        if "categories" in spec:
            assert set(rows[col].dropna()) <= {float(c) for c in spec["categories"]}, col
        else:
            assert rows[col].min() >= spec["min"] and rows[col].max() <= spec["max"], col
            assert rows[col].notna().all()  # declared never missing
    assert dp_ctgan.model.params.pac == 1
    card = dp_ctgan.card["differential_privacy"]
    assert dp_ctgan.card["dp_label"].startswith("DP: ε = ")
    assert card["epsilon_total"] <= 1.0 + 1e-9 and card["epsilon_total"] > 0.95
    assert card["breakdown"]["preprocessing"]["epsilon"] == pytest.approx(0.1)
    assert card["steps"] == 2 * 7 and card["sample_rate"] == pytest.approx(1 / 7)


def test_reported_epsilon_equals_an_independent_recomputation_from_the_ledger(dp_ctgan):
    ledger = PrivacyLedger.from_dict(json.loads(json.dumps(dp_ctgan.ledger.to_dict())))
    reported = dp_ctgan.card["differential_privacy"]["epsilon_total"]
    assert independent_epsilon(ledger) == pytest.approx(reported, rel=0.01)
    training = [e for e in ledger.entries if e.stage == "training"]
    assert len(training) == 1 and training[0].target == "critic"
    # the training ε was read back from Opacus' accountant and agrees with the recomputation
    assert training[0].epsilon == pytest.approx(
        dpsgd_epsilon("rdp", training[0].noise_multiplier, training[0].sample_rate, training[0].steps,
                      training[0].delta), rel=0.01)
    assert {e.mechanism for e in ledger.entries if e.stage == "preprocessing"} == {
        "numeric-histogram", "laplace-histogram"}  # bounds and categories were declared public


def test_opacus_is_really_attached_to_the_critic(dp_ctgan):
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    critic, optimizer = dp_ctgan.model.private_critic, dp_ctgan.model.private_optimizer
    assert isinstance(critic, GradSampleModule) and isinstance(optimizer, DPOptimizer)
    assert optimizer.noise_multiplier == pytest.approx(dp_ctgan.ledger.entries[-1].noise_multiplier)
    assert optimizer.noise_multiplier > 0.5 and optimizer.max_grad_norm == 1.0
    x = torch.randn(8, critic._module.pac_dim)
    optimizer.zero_grad()
    critic(x).sum().backward()
    assert all(p.grad_sample is not None and p.grad_sample.shape[0] == 8 for p in critic.parameters())
    # a zero loss still moves the weights: the Gaussian noise is real
    before = [p.detach().clone() for p in critic.parameters()]
    optimizer.zero_grad()
    (0.0 * critic(x).sum()).backward()
    optimizer.original_optimizer.param_groups[0]["lr"] = 1.0
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, critic.parameters(), strict=True))


def test_dp_model_save_load_keeps_the_ledger_and_is_marked_in_the_store(dp_ctgan, tmp_path, medsyn_home):
    path = dp_ctgan.save(tmp_path / "heart-dp")
    assert (path / "privacy_ledger.json").exists()
    card = json.loads((path / "model_card.json").read_text())
    assert card["differential_privacy"]["noise_multiplier"] > 0 and card["dp_label"].startswith("DP: ε")
    assert card["differential_privacy"]["library_versions"]["opacus"]
    # the critic's loss on real rows is not covered by DP-SGD: it stays out of what leaves with the model
    config = json.loads((path / "config.json").read_text())
    assert "loss_d" in dp_ctgan.model.loss_history[-1]  # shown live to the researcher during training
    assert "loss_d" not in card["final_loss"] and "loss_g" in card["final_loss"]
    assert all("loss_d" not in r for r in config["loss_history"])
    again = TabularSynthesizer.load(path)
    assert again.ledger.total() == pytest.approx(dp_ctgan.ledger.total())
    assert again.model.params.pac == 1
    with one_torch_thread():
        assert len(again.sample(20)) == 20
    with Store() as store:
        (record,) = store.list_models()
    assert record.dp_epsilon == pytest.approx(dp_ctgan.ledger.total()[0])


def test_dp_tvae_clips_sigma_with_the_rest(heart):
    from opacus import GradSampleModule

    with one_torch_thread():
        synth = TabularSynthesizer("tvae", epochs=1, batch_size=50, seed=1, preset="balanced",
                                   metadata=METADATA).fit(heart)
        module = synth.model.private_module
        assert isinstance(module, GradSampleModule)
        x = torch.as_tensor(synth.transformer.transform(synth.prepare(heart)[0])[:6])
        synth.model.private_optimizer.zero_grad()
        synth.model._elbo(x, *module(x)).backward()
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert "_module.sigma.weight" in trainable and "_module.decoder.sigma" not in trainable
    assert all(p.grad_sample is not None for p in module.parameters() if p.requires_grad)
    assert torch.equal(synth.model.decoder.sigma, module._module.sigma.weight[:, 0].detach())
    assert synth.ledger.entries[-1].target == "encoder+decoder"
    assert "loss" not in synth.card["final_loss"] and "loss" in synth.model.loss_history[-1]
    assert independent_epsilon(synth.ledger) == pytest.approx(synth.ledger.total()[0], rel=0.01) \
        and synth.ledger.total()[0] <= 3.0 + 1e-9


def _fit_private(df: pd.DataFrame, epsilon: float = 20.0, metadata=None):
    schema = infer_schema(df)
    budget = PrivacyBudget.create(len(df), epsilon=epsilon, preprocessing_share=0.5)
    ledger = PrivacyLedger(len(df), budget.to_dict())
    from medsyn_tabular.transformers.private import fit_private

    return fit_private(TableTransformer(), df, schema, metadata, budget, ledger), ledger


def test_dp_preprocessing_never_reads_raw_statistics():
    rng = np.random.default_rng(0)
    n = 4000
    base = pd.DataFrame({"glucose": rng.normal(100, 15, n).round(1),
                         "ward": rng.choice(["cardio", "neuro", "onco"], n, p=[0.5, 0.3, 0.2])})
    neighbour = base.copy()
    neighbour.loc[0, ["glucose", "ward"]] = [987654.3, "one-patient-ward"]  # one extreme, rare row
    for df in (base, neighbour):
        for _ in range(3):
            tr, ledger = _fit_private(df)
            ward = next(c for c in tr.columns if c.name == "ward")
            glucose = next(c for c in tr.columns if c.name == "glucose")
            assert "one-patient-ward" not in ward.slots + ward.other_values
            assert set(ward.slots) == {"cardio", "neuro", "onco", OTHER, "__missing__"}
            # bounds are edges of public power-of-two bins, not the raw min/max
            assert glucose.low in (32.0, 64.0) and glucose.high in (128.0, 256.0)
            assert all(v == "dp" for prov in tr.provenance.values() for v in prov.values())
            assert len(ledger.entries) == 3 and not ledger.public_statistics
            assert ledger.total()[0] == pytest.approx(10.0)
            # the rare row is still encodable (into OTHER) and decodes as missing, never as its label
            encoded = tr.transform(df.iloc[:2])
            decoded = tr.inverse_transform(encoded)
            assert "one-patient-ward" not in set(decoded["ward"].dropna())
    # declared metadata is used as is and listed as public
    declared = {"glucose": {"min": 0, "max": 400, "nullable": False},
                "ward": {"categories": ["cardio", "neuro", "onco"]}}
    tr, ledger = _fit_private(base, metadata={"columns": declared})
    glucose = next(c for c in tr.columns if c.name == "glucose")
    assert (glucose.low, glucose.high, glucose.has_missing_slot) == (0.0, 400.0, False)
    assert tr.provenance["glucose"]["bounds"] == "metadata"
    assert tr.provenance["ward"]["categories"] == "metadata"
    assert set(ledger.public_statistics) == {"glucose: bounds", "glucose: never missing", "ward: categories"}
    assert {e.mechanism for e in ledger.entries} == {"numeric-histogram", "laplace-histogram"}


def test_impossible_privacy_settings_are_clear_errors(heart):
    with pytest.raises(PrivacyError, match="positive"):
        TabularSynthesizer("ctgan", epsilon=0)
    with pytest.raises(PrivacyError, match="positive"):
        TabularSynthesizer("tvae", epsilon=-2)
    with pytest.raises(PrivacyError, match="Unknown privacy preset"):
        TabularSynthesizer("tvae", preset="paranoid")
    with pytest.raises(PrivacyError, match="pac = 1"):
        TabularSynthesizer("ctgan", epsilon=1, pac=10)
    with pytest.raises(PrivacyError, match="not below 1/n"):
        TabularSynthesizer("tvae", epsilon=1, delta=1 / 303, batch_size=50, metadata=METADATA).fit(heart)
    with pytest.raises(PrivacyError, match=r"cannot be met.*at most \d+ training steps"):
        TabularSynthesizer("tvae", epsilon=0.3, epochs=300, batch_size=50, metadata=METADATA).fit(heart)
    with pytest.raises(PrivacyError, match="smaller than the number of rows"):
        TabularSynthesizer("tvae", epsilon=1, batch_size=500).fit(heart)
    # under DP the schema must be declared (kinds read from the rows would leak): say how
    with pytest.raises(PrivacyError, match="needs a declared schema.*medsyn tabular schema DATA --out"):
        TabularSynthesizer("tvae", epsilon=1, epochs=1, batch_size=50).fit(heart)
    # declared kinds but no bounds: 303 rows are too few to learn a range at ε = 1: say what to declare
    kinds_only = {"unit": "row", "columns": {c: {"kind": v["kind"]} for c, v in
                                             heart_cleveland_metadata()["columns"].items()}}
    with pytest.raises(PrivacyError, match="Declare its bounds"):
        TabularSynthesizer("tvae", epsilon=1, epochs=1, batch_size=50, schema=kinds_only).fit(heart)


def test_cli_fit_with_dp_prints_the_breakdown_and_off_is_labelled(tmp_path, capsys):
    data = str(ROOT / "data/tabular/heart_cleveland.csv")
    with one_torch_thread():
        assert main(["tabular", "fit", data, "--model", "tvae", "--epochs", "1", "--batch-size", "50",
                     "--preset", "strict", "--metadata", str(METADATA), "--clip", "0.5",
                     "--out", str(tmp_path / "dp"), "--quiet"]) == 0
        out = capsys.readouterr().out
        assert "DP: ε = " in out and "preprocessing  ε = 0.1" in out and "clipping norm 0.5" in out
        assert main(["tabular", "privacy", str(tmp_path / "dp")]) == 0
        assert "laplace-histogram on sex" in capsys.readouterr().out
        assert main(["tabular", "fit", data, "--model", "tvae", "--epochs", "1", "--batch-size", "50",
                     "--out", str(tmp_path / "plain"), "--quiet"]) == 0
        assert "DP: off" in capsys.readouterr().out
        assert main(["tabular", "fit", data, "--epsilon", "0", "--out", str(tmp_path / "bad")]) == 2
        assert "ε must be a positive number" in capsys.readouterr().err
    card = json.loads((tmp_path / "plain/model_card.json").read_text())
    assert not card["differential_privacy"]["enabled"] and card["dp_label"] == "DP: off"
    assert not (tmp_path / "plain/privacy_ledger.json").exists()


def test_tabular_page_trains_with_a_preset_and_shows_the_ledger():
    from app_helpers import finish_job, logged_in

    at = logged_in("pages/tabular.py", "researcher").run()
    assert not at.exception, at.exception
    at.number_input[0].set_value(1)  # epochs
    at.number_input[1].set_value(50)  # batch size
    preset = next(s for s in at.selectbox if s.label == "Preset")
    preset.set_value("strict").run()
    assert not at.exception, at.exception
    next(b for b in at.button if b.label == "Train").click().run()
    job = finish_job(at.session_state["tabular_job_id"])
    assert job["status"] == "finished", job["error"]
    # the reviewed table was recorded as the declared schema, by this user, with the privacy unit
    card = json.loads((Path(job["result"]["model_path"]) / "model_card.json").read_text())
    assert card["schema_declared_by"] == "test-researcher" and card["privacy_unit"]["kind"] == "row"
    at.run()
    assert not at.exception, at.exception
    assert any("DP: ε = " in s.value for s in at.success)
    assert any(m.label.startswith("ε total") for m in at.metric)
    # an unreachable budget is reported before training, with advice, and Train cannot be pressed
    # (a DP-SGD model: MST has no steps)
    next(s for s in at.selectbox if s.label == "Model").set_value("ctgan").run()
    preset = next(s for s in at.selectbox if s.label == "Preset")
    preset.set_value("custom ε").run()
    next(s for s in at.slider if s.label == "ε (total)").set_value(0.1).run()
    next(s for s in at.selectbox if s.label == "Model").set_value("ctgan").run()  # auto: MST, no DP-SGD
    at.number_input[0].set_value(2000).run()
    assert any("cannot be met" in e.value for e in at.error), [e.value for e in at.error]
    assert next(b for b in at.button if b.label == "Train").disabled
