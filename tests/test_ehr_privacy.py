"""Differential privacy of the EHR generator with the patient (all their rows, every table) as the unit,
tested as an auditor would attack it: the ε recomputes from the ledger; one DP-SGD sample is one patient;
the fit cannot be replayed from the released folder and seed; and no saved field is an exact function of
the data when one unusual patient with all their rows is added (the neighbour). Tiny DP fits."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from ehr_helpers import one_thread, sample_data
from privacy_helpers import saved_fields
from safetensors.torch import load_file

from medsyn_core.device import seed_everything
from medsyn_core.privacy import PrivacyError, PrivacyLedger
from medsyn_core.privacy.dpsgd import DPSGDPlan, dpsgd_epsilon
from medsyn_tabular.ehr.dataset import EHRDataset
from medsyn_tabular.ehr.synthesizer import EHRSynthesizer

DP = {"epochs": 1, "batch_size": 4, "dim": 16, "epsilon": 5.0}
ODD = "593aaa05-d864-1df7-5b96-155fbdb19f28"  # the patient who is made unusual for the neighbour test


@pytest.fixture(scope="module")
def real():
    return sample_data()


@pytest.fixture(scope="module")
def declared(real, tmp_path_factory):
    from ehr_helpers import declared_schema

    return declared_schema(real.subset(set(real.tables["patients"]["Id"]) - {ODD}),
                           tmp_path_factory.mktemp("vocabularies"))


def fit_dp(data: EHRDataset, schema: dict, seed: int = 7) -> EHRSynthesizer:
    with one_thread():
        return EHRSynthesizer(schema, seed=seed, **DP).fit(data)


def test_a_dp_run_recomputes_its_patient_level_epsilon_from_its_ledger(tmp_path, real, declared):
    synth = fit_dp(real, declared)
    folder = synth.save(tmp_path / "dp-ehr", register=False)
    ledger = PrivacyLedger.load(folder / "privacy_ledger.json")
    assert ledger.dataset_rows == 12  # patients, not the 3,000 rows they hold
    (sgd,) = ledger.entries  # nothing is released in preprocessing: every statistic is declared
    assert sgd.mechanism == "dp-sgd" and sgd.sample_rate == pytest.approx(1 / math.ceil(12 / 4))
    assert sgd.steps == DP["epochs"] * 3
    recomputed = dpsgd_epsilon(sgd.accountant, sgd.noise_multiplier, sgd.sample_rate, sgd.steps, sgd.delta)
    assert ledger.total()[0] == pytest.approx(recomputed) and recomputed <= DP["epsilon"] + 1e-6
    card = json.loads((folder / "model_card.json").read_text())
    block = card["differential_privacy"]
    assert block["epsilon_total"] == pytest.approx(recomputed) and "patient" in block["unit"]
    assert card["privacy_unit"]["kind"] == "patient" and "n = 12 (number of patients)" in block["public"]
    config = json.loads((folder / "config.json").read_text())
    assert config["loss_history"] and all("loss" not in r for r in config["loss_history"])
    assert "data_counts" not in card  # counts of visits and rows are statistics of the data


def test_dp_needs_a_declared_schema_and_declared_vocabularies(real, declared):
    with pytest.raises(PrivacyError, match="declared EHR schema"):
        EHRSynthesizer(None, **DP).fit(real)
    undeclared = {**real.schema.to_dict(), "birth_years": [1900, 2030], "end_date": "2023-12-31"}
    with pytest.raises(PrivacyError, match=r"vocabulary declared.*patients\.GENDER"):
        EHRSynthesizer(undeclared, **DP).fit(real)
    with pytest.raises(PrivacyError, match="birth_years"):
        EHRSynthesizer({**declared, "birth_years": None}, **DP).fit(real)
    with pytest.raises(PrivacyError, match="end_date"):
        EHRSynthesizer({**declared, "end_date": None}, **DP).fit(real)


def test_one_dp_sgd_sample_is_one_patient_with_all_their_rows(real, declared):
    """Per-patient sampling and clipping: Opacus sees one item per patient, and the per-sample gradients
    it clips have one row per patient in the batch, whatever the number of visits and rows they hold."""
    from medsyn_core.privacy.dpsgd import make_private
    from medsyn_tabular.ehr.encoding import EHREncoder
    from medsyn_tabular.ehr.schema import load_schema

    data = EHRDataset(real.tables, load_schema(declared), "sample", real.files)
    synth = EHRSynthesizer(declared, **DP)
    synth.encoder = EHREncoder(data.schema).fit(data, private=True)
    encoded = synth.encoder.encode(data, np.random.default_rng(0))
    assert encoded.n == 12 and encoded.rows["observations"].shape[0] == 12
    _, plan = synth.plan_privacy(encoded.n)
    synth.net = synth._build(torch.device("cpu"))
    tensors = [torch.as_tensor(a.astype(np.int32)) for a in encoded.arrays()]
    dataset = torch.utils.data.TensorDataset(*tensors)
    assert len(dataset) == 12
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    optimizer = torch.optim.Adam(synth.net.parameters())
    with one_thread():
        _, module, optimizer, loader = make_private(plan, synth.net, optimizer, loader)
        batch = next(b for b in loader if len(b[0]) > 0)
        losses = module(*batch)
        assert losses.shape == (len(batch[0]),)
        (losses.sum() / len(losses)).backward()
    for p in module.parameters():
        assert p.grad_sample.shape[0] == len(batch[0])  # one clipped gradient per patient


def replay(folder, data: EHRDataset) -> dict[str, torch.Tensor]:
    """What an adversary holding the released folder (config with the seed, encoder, ledger) and a
    candidate dataset does: re-run the DP training with the same seed, encoding and noise plan."""
    config = json.loads((folder / "config.json").read_text())
    sgd = PrivacyLedger.load(folder / "privacy_ledger.json").entries[0]
    synth = EHRSynthesizer.load(folder)
    encoded = synth.encoder.encode(EHRDataset(data.tables, synth.encoder.schema, "x", data.files),
                                   np.random.default_rng(0))
    plan = DPSGDPlan(sgd.details["target_epsilon"], sgd.delta, sgd.sample_rate, sgd.details["planned_steps"],
                     sgd.noise_multiplier, sgd.max_grad_norm, sgd.accountant)
    with one_thread():
        seed_everything(config["seed"])
        synth.net = synth._build(torch.device("cpu"))
        synth._train_private(encoded, plan, torch.device("cpu"), None)
    return {k: v.detach().cpu() for k, v in synth.net.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_dp_ehr_fit_cannot_be_replayed_from_the_released_folder_and_seed(tmp_path, real, declared):
    released = fit_dp(real, declared)
    folder = released.save(tmp_path / "released", register=False)
    weights = load_file(str(folder / "weights.safetensors"))
    with_patient = replay(folder, real)
    without_patient = replay(folder, real.subset(set(real.tables["patients"]["Id"]) - {ODD}))
    assert not same(weights, with_patient) and not same(weights, without_patient)
    again = fit_dp(real, declared)
    assert not same(released.net.state_dict(), again.net.state_dict())


#: Fields that may differ between the datasets because they are functions of n (the number of patients,
#: public: it sets the sample rate, hence σ and the steps) or of the clock.
PUBLIC_N_OR_CLOCK = ("dataset_rows", "patients", "sample_rate", "steps", "planned_steps", "noise_multiplier",
                     "trained_at", "created", "seconds", "epsilon", "target_epsilon", "public", "dp_label",
                     "description", "delta")


def unusual(real: EHRDataset) -> EHRDataset:
    """The real sample with patient ODD made unusual in every table: a gender, an encounter class and a
    condition code that nobody else has (none of them declared), and an extreme observation value."""
    tables = {n: df.copy() for n, df in real.tables.items()}
    P, V = tables["patients"], tables["encounters"]
    P.loc[P["Id"] == ODD, "GENDER"] = "one-patient-gender"
    mine = V["PATIENT"] == ODD
    V.loc[mine, "ENCOUNTERCLASS"] = "one-patient-class"
    first = V[mine].iloc[0]
    row = {"START": first["START"][:10], "STOP": np.nan, "PATIENT": ODD, "ENCOUNTER": first["Id"],
           "CODE": 999999999, "DESCRIPTION": "One-patient disease (disorder)"}
    tables["conditions"] = pd.concat([tables["conditions"], pd.DataFrame([row])], ignore_index=True)
    obs = tables["observations"]
    obs.loc[(obs["PATIENT"] == ODD) & (obs["TYPE"] == "numeric"), "VALUE"] = "123456.7"
    return EHRDataset(tables, real.schema, real.source, real.files)


def test_no_saved_field_is_an_exact_function_of_the_patients(tmp_path, real, declared):
    """Fit twice without patient ODD and twice with ODD and all their rows (made unusual); a field that
    repeats exactly within each pair but differs between the pairs is an exact statistic of the data."""
    base = real.subset(set(real.tables["patients"]["Id"]) - {ODD})
    neighbour = unusual(real)

    def fit(data, name):
        return saved_fields(fit_dp(data, declared).save(tmp_path / name, register=False))

    a1, a2, b1, b2 = fit(base, "a1"), fit(base, "a2"), fit(neighbour, "b1"), fit(neighbour, "b2")
    exact = sorted(k for k in a1 if all(k in f for f in (a2, b1, b2)) and a1[k] == a2[k] and b1[k] == b2[k]
                   and b2[k] != a1[k] and not any(part in k for part in PUBLIC_N_OR_CLOCK))
    assert exact == [], f"fields that are exact functions of the data: {exact}"
    blob = b"".join(p.read_bytes() for p in (tmp_path / "b2").iterdir())
    for secret in (b"999999999", b"One-patient", b"one-patient-class", b"one-patient-gender", b"123456",
                   ODD.encode()):
        assert secret not in blob
