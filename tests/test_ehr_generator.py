"""The EHR generator on the bundled Synthea sample: synthetic patients with visits and event rows whose
keys are new, references resolve, times are in order, codes come from the real vocabularies with their
descriptions, no real identifier appears, the folder has the input's layout and re-ingests, FHIR Bundles
validate, and saved models sample the same patients. Tiny fits (seconds)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from ehr_helpers import TINY, one_thread, sample_data

from medsyn_tabular.ehr import fhir
from medsyn_tabular.ehr.checks import dataset_texts, integrity, real_identifiers, real_identifiers_in
from medsyn_tabular.ehr.codecs import code_key
from medsyn_tabular.ehr.dataset import read_folder, write_folder
from medsyn_tabular.ehr.synthesizer import EHRSynthesizer


@pytest.fixture(scope="module")
def real():
    return sample_data()


@pytest.fixture(scope="module")
def fitted(real):
    with one_thread():
        return EHRSynthesizer(seed=3, **TINY).fit(real)


@pytest.fixture(scope="module")
def synthetic(fitted):
    return fitted.sample(25, seed=1)


def test_synthetic_patients_have_full_referential_integrity_and_valid_time_order(real, synthetic):
    check = integrity(synthetic)
    assert check.referential_integrity == 1.0 and check.duplicate_keys == 0
    assert check.time_order == 1.0, [r for r in check.time_rules if r["violations"]]
    assert synthetic.n_patients == 25 and len(synthetic.tables["encounters"]) > 0
    assert all(len(synthetic.tables[t]) > 0 for t in ("conditions", "observations", "procedures"))
    # the real export itself has deceased patients with visits after their death date: the generator
    # does not learn to break the rule
    assert integrity(real).time_order < 1.0


def test_no_real_identifier_anywhere_in_the_synthetic_tables(real, synthetic):
    """The attack: search every synthetic cell for the real patients' keys, names, SSNs, addresses, and the
    keys of their visits, organisations, providers and payers."""
    secrets = real_identifiers(real)
    assert {"patients.Id", "patients.SSN", "patients.FIRST", "patients.ADDRESS", "encounters.Id",
            "encounters.ORGANIZATION"} <= set(secrets)
    assert real_identifiers_in(real, dataset_texts(synthetic)) == {}
    for name, df in synthetic.tables.items():
        spec = synthetic.schema.tables[name]
        for col, action in spec.phi.items():  # PHI columns are empty, ZIP codes 3 digits
            present = df[col].dropna()
            assert present.empty if action == "drop" else present.str.fullmatch(r"\d{3}").all(), (name, col)


def test_free_text_answers_that_are_real_addresses_are_never_learned(real, fitted):
    """Finding: Synthea's observations answer 'What address do you live at?' (LOINC 56799-0) with the
    patient's address, so a text vocabulary read from VALUE held every real address and the sampler wrote
    them back. Labels equal to a real identifier, PHI-shaped, or of one patient only are withheld."""
    obs = real.tables["observations"]
    addresses = set(obs.loc[obs["CODE"] == "56799-0", "VALUE"])
    assert addresses & set(real.tables["patients"]["ADDRESS"])  # the real data does hold them
    value = next(v for v in fitted.encoder.row_vars["observations"] if v.name == "value")
    assert not addresses & set(value.codec.text.values)
    assert value.codec.text.values  # other text answers (shared by patients) are still learned
    assert fitted.card["data_counts"]["labels withheld (PHI-like, or free text of one patient)"] > 0


def test_codes_come_from_the_real_vocabularies_with_their_descriptions(real, synthetic):
    for name in ("encounters", "conditions", "medications", "observations", "procedures"):
        r, s = real.tables[name], synthetic.tables[name]
        real_pairs = set(zip(r["CODE"].map(code_key), r["DESCRIPTION"], strict=True))
        syn_pairs = set(zip(s["CODE"].map(code_key), s["DESCRIPTION"], strict=True))
        assert syn_pairs <= real_pairs, name
        # one description per code in the synthetic data (the real export sometimes has two)
        assert s.groupby(s["CODE"].map(code_key))["DESCRIPTION"].nunique().max() == 1
    obs_r, obs_s = real.tables["observations"], synthetic.tables["observations"]
    units = obs_r.groupby(obs_r["CODE"].map(code_key))["UNITS"].agg(lambda x: set(x.dropna()))
    for code, unit in zip(obs_s["CODE"].map(code_key), obs_s["UNITS"], strict=True):
        assert (pd.isna(unit) and not units[code]) or unit in units[code]


def test_new_keys_and_the_input_layout_that_reingests(tmp_path, real, synthetic):
    real_keys = set(real.tables["patients"]["Id"]) | set(real.tables["encounters"]["Id"])
    new_keys = set(synthetic.tables["patients"]["Id"]) | set(synthetic.tables["encounters"]["Id"])
    assert not real_keys & new_keys
    out = write_folder(synthetic, tmp_path / "synthetic")
    assert sorted(p.name for p in out.iterdir()) == sorted(real.files.values())
    for name, df in real.tables.items():
        header = pd.read_csv(out / real.files[name], nrows=0).columns.tolist()
        assert header == df.columns.tolist(), name
    again = read_folder(out)  # `medsyn ehr schema` on the synthetic folder
    assert again.schema.layout == "synthea"
    assert again.schema.visits[1].key == "Id"
    assert dict(again.schema.events).keys() == dict(real.schema.events).keys()
    first = pd.read_csv(out / "encounters.csv", nrows=1)
    assert first["START"].iloc[0].endswith("Z")
    assert len(pd.read_csv(out / "conditions.csv")["START"].iloc[0]) == 10  # dates stay dates
    assert integrity(again).ok


def test_fhir_bundles_validate_and_an_invalid_one_is_refused(synthetic):
    seen = set()
    for _, bundle in fhir.bundles(synthetic):
        fhir.validate(bundle)
        for entry in bundle["entry"]:
            res = entry["resource"]
            seen.add(res["resourceType"])
            assert entry["fullUrl"] == f"urn:uuid:{res['id']}"
            if res["resourceType"] == "Patient":
                assert res.get("gender") in ("male", "female", "other", "unknown")
    assert {"Patient", "Encounter", "Condition", "MedicationRequest", "Observation"} <= seen
    bundle = next(fhir.bundles(synthetic))[1]
    broken = json.loads(json.dumps(bundle))
    broken["entry"][0]["resource"]["birthDate"] = "1990-02-30T10:00"
    with pytest.raises(ValueError, match="birthDate"):
        fhir.validate(broken)


def test_a_saved_model_samples_the_same_patients(tmp_path, fitted):
    folder = fitted.save(tmp_path / "ehr-model", register=False)
    again = EHRSynthesizer.load(folder)
    a, b = fitted.sample(6, seed=9), again.sample(6, seed=9)
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    card = json.loads((folder / "model_card.json").read_text())
    assert card["engine"] == "tabular" and card["kind"] == "ehr-ar" and card["dp_label"] == "DP: off"
    assert card["patients"] == 12


def test_training_resumes_from_a_checkpoint_to_the_same_weights(tmp_path, real):
    from medsyn_core.training import Checkpointer

    settings = {**TINY, "epochs": 3}
    with one_thread():
        whole = EHRSynthesizer(seed=5, **settings).fit(real)
        cp = Checkpointer(tmp_path / "cp.pt", every_s=0)
        stopped = EHRSynthesizer(seed=5, **{**settings, "epochs": 3})

        class Stop(Exception):
            pass

        def stop_after_two(record):
            if record["epoch"] == 2:
                raise Stop

        with pytest.raises(Stop):
            stopped.fit(real, progress=stop_after_two, checkpoint=cp)
        resumed = EHRSynthesizer(seed=5, **settings).fit(real, resume_from=tmp_path / "cp.pt")
    for k, v in whole.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k
    assert [r["epoch"] for r in resumed.loss_history] == [1, 2, 3]
    assert np.isclose(whole.loss_history[-1]["loss"], resumed.loss_history[-1]["loss"])


def test_the_omop_layout_in_gives_the_omop_layout_out(tmp_path):
    """The OMOP CDM subset end to end: integer keys regenerated as 1..n, a year of birth, concept ids as
    codes; the written folder reads back as OMOP with intact references."""
    from test_ehr_schema import omop_subset

    src = tmp_path / "omop"
    src.mkdir()
    omop_subset(src)
    real = read_folder(src)
    with one_thread():
        fake = EHRSynthesizer(seed=2, **TINY).fit(real).sample(8, seed=4)
    assert integrity(fake).ok
    person = fake.tables["person"]
    assert person["person_id"].tolist() == list(range(1, 9))
    assert person["year_of_birth"].between(*real.tables["person"]["year_of_birth"].agg(["min", "max"])).all()
    visits = fake.tables["visit_occurrence"]
    assert set(visits["visit_concept_id"].map(code_key)) <= {"9201", "9202", "9203"}
    again = read_folder(write_folder(fake, tmp_path / "out"))
    assert again.schema.layout == "omop" and integrity(again).ok


def test_an_empty_poisson_batch_gives_an_empty_loss(real, fitted):
    """DP-SGD's Poisson sampling sometimes draws no patient at all: the network's forward failed on a
    batch of 0 patients (a reshape of 0 elements) and so did the DP fit, at random."""
    encoded = fitted.encoder.encode(real, np.random.default_rng(0))
    empty = [torch.as_tensor(a.astype(np.int32))[:0] for a in encoded.arrays()]
    loss = fitted.net(*[t.to(next(fitted.net.parameters()).device) for t in empty])
    assert loss.shape == (0,)
