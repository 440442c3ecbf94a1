"""Privacy tested as an auditor would attack it: replay a DP fit from what is released, fit on neighbouring
tables and diff every saved byte. Tiny runs (1-2 epochs) on the bundled heart table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from privacy_helpers import saved_fields
from safetensors.torch import load_file
from tabular_helpers import one_torch_thread

from medsyn_core.device import seed_everything
from medsyn_core.privacy import PrivacyLedger
from medsyn_core.privacy.dpsgd import DPSGDPlan
from medsyn_core.privacy.ledger import ZCDP_MECHANISMS
from medsyn_tabular.data.datasets import heart_cleveland_metadata, load_heart_cleveland
from medsyn_tabular.models.aim import AIMPlan
from medsyn_tabular.synthesizer import TabularSynthesizer
from medsyn_tabular.transformers.table import TableTransformer


@pytest.fixture(scope="module")
def heart():
    return load_heart_cleveland()


def fit_dp(table, model: str, seed: int = 7, epochs: int = 2, **kwargs) -> TabularSynthesizer:
    with one_torch_thread():
        return TabularSynthesizer(model, epochs=epochs, batch_size=50, seed=seed, epsilon=3.0,
                                  metadata=heart_cleveland_metadata(), **kwargs).fit(table)


def replay(folder: Path, table) -> dict[str, torch.Tensor]:
    """What an adversary holding the released model folder (config with the seed, transformer, ledger)
    and a candidate table does: re-run DP training with the same seed and the released encoding."""
    config = json.loads((folder / "config.json").read_text())
    ledger = PrivacyLedger.load(folder / "privacy_ledger.json")
    synth = TabularSynthesizer.load(folder)
    transformer = TableTransformer.from_dict(json.loads((folder / "transformer.json").read_text()))
    table, _ = synth.prepare(table)
    encoded = transformer.transform(table)
    sgd = next((e for e in ledger.entries if e.mechanism == "dp-sgd"), None)
    if sgd is None:  # a marginal model (MST/AIM): the zCDP plan is in its ledger entry
        entry = next(e for e in ledger.entries if e.mechanism in ZCDP_MECHANISMS)
        plan = AIMPlan(entry.details["rho_budget"], entry.delta, entry.details["target_epsilon"])
    else:
        plan = DPSGDPlan(sgd.details["target_epsilon"], sgd.delta, sgd.sample_rate,
                         sgd.details["planned_steps"], sgd.noise_multiplier, sgd.max_grad_norm,
                         sgd.accountant)
    with one_torch_thread():
        seed_everything(config["seed"])
        model = synth._build_model(torch.device("cpu"))
        seed_everything(config["seed"])
        model.fit_private(encoded, plan)
    return {k: v.detach().cpu() for k, v in model.state_tensors().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


#: every DP model; the marginal one compiles its graphical model (JAX) at each fit: slow on 2 cores
DP_MODELS = ["ctgan", "tvae", "argn", pytest.param("mst", marks=pytest.mark.slow)]


@pytest.mark.parametrize("model", DP_MODELS)
def test_a_dp_fit_cannot_be_replayed_from_the_released_folder_and_seed(heart, tmp_path, model):
    """Finding 1: with the noise and batches drawn from the seeded global RNG, replaying the fit on the
    table with the patient reproduced the released weights bit for bit (certain membership)."""
    released = fit_dp(heart, model)
    folder = released.save(tmp_path / "released", register=False)
    weights = load_file(str(folder / "weights.safetensors"))
    with_patient = replay(folder, heart)
    without_patient = replay(folder, heart.drop(index=17).reset_index(drop=True))
    assert not same_weights(weights, with_patient)
    assert not same_weights(weights, without_patient)
    # a second DP fit with the same seed on the same table gives other weights too
    again = fit_dp(heart, model)
    assert not same_weights(released.model.state_tensors(), again.model.state_tensors())


# -- neighbouring tables: no saved field may be an exact function of the rows ----------------------------
#: Fields that may differ between the two tables because they are functions of n (the number of privacy
#: units, public by declaration: it sets the sample rate, hence σ and the step count) or of the clock.
PUBLIC_N_OR_CLOCK = ("dataset_rows", "rows", "sample_rate", "steps", "planned_steps", "noise_multiplier",
                     "num_batches_tracked", "trained_at", "seconds", "epsilon", "target_epsilon",
                     "description", "public", "dp_label")


#: Whole fields that hold n itself (public by declaration): the marginal model's known total.
PUBLIC_N_FIELDS = {"weights.safetensors/total"}


def neighbour_tables() -> tuple:
    """A 1,200-row table and the same table plus one patient who is unusual in every way."""
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 1200
    base = pd.DataFrame({
        "age": rng.integers(20, 89, n),
        "ward": rng.choice(["cardio", "neuro", "onco"], n, p=[0.5, 0.3, 0.2]),
        "glucose": rng.normal(100, 15, n).round(1),
        "sex": rng.choice(["F", "M"], n),
    })
    patient = pd.DataFrame({"age": [95], "ward": ["one-patient-ward"], "glucose": [np.nan], "sex": ["F"]})
    return base, pd.concat([base, patient], ignore_index=True)


DECLARATION = {"unit": "row", "phi": {"age": "age90"},
               "columns": {"age": {"kind": "integer", "min": 0, "max": 120}, "ward": {"kind": "categorical"},
                           "glucose": {"kind": "continuous", "min": 0, "max": 400},
                           "sex": {"kind": "categorical", "categories": ["F", "M"], "nullable": False}}}


@pytest.mark.parametrize("model", DP_MODELS)
def test_no_saved_field_is_an_exact_function_of_the_rows(tmp_path, model):
    """Finding 2: schema.json kept missing/distinct counts, the card counted PHI cells, and one added
    patient flipped kinds and dtypes. Fit twice on a table and twice on it plus one patient: a field that
    is identical across the repeated fits of each table but differs between the tables is an exact
    statistic of the rows (a noisy field would have to repeat itself exactly in both pairs)."""
    base, neighbour = neighbour_tables()

    def fit(table, name):
        with one_torch_thread():
            synth = TabularSynthesizer(model, epochs=1, batch_size=200, seed=5, epsilon=4.0,
                                       preprocessing_share=0.5, schema=DECLARATION).fit(table)
        return saved_fields(synth.save(tmp_path / name, register=False))

    a1, a2, b1, b = fit(base, "a1"), fit(base, "a2"), fit(neighbour, "b1"), fit(neighbour, "b")
    # (the number of mixture modes is itself noisy, so some paths exist in one fit and not another)
    exact = sorted(k for k in a1 if all(k in f for f in (a2, b1, b)) and a1[k] == a2[k] and b1[k] == b[k]
                   and b[k] != a1[k] and not any(part in k for part in PUBLIC_N_OR_CLOCK)
                   and k not in PUBLIC_N_FIELDS)
    assert exact == [], f"fields that are exact functions of the rows: {exact}"
    ward = [v for k, v in sorted(b.items()) if k.startswith("transformer.json/columns[1]/slots")]
    assert "one-patient-ward" not in ward and ward == [v for k, v in sorted(a1.items())
                                                       if k.startswith("transformer.json/columns[1]/slots")]
    schema = json.loads((tmp_path / "b" / "schema.json").read_text())
    assert all(c["n_missing"] == 0 and c["n_unique"] == 0 for c in schema["columns"])
    card = json.loads((tmp_path / "b" / "model_card.json").read_text())
    assert "cells" not in json.dumps(card["phi_handling"])
    assert "n = 1201" in " ".join(card["differential_privacy"]["public"])


# -- Safe Harbor holds on every path ------------------------------------------------------------------
def test_age90_caps_sampled_ages_with_and_without_dp(heart):
    """Finding 8: the PHI review said age -> age90, yet a DP CTGAN sampled ages 91-100 in 29 of 303 rows
    (its bounds came from the metadata, 18-100, ignoring the PHI action)."""
    meta = heart_cleveland_metadata()  # declares age 18-100: the PHI action must narrow it
    with one_torch_thread():
        plain = TabularSynthesizer("tvae", epochs=1, batch_size=50, seed=2, phi_actions={"age": "age90"},
                                   schema={"columns": {"age": {"min": 18, "max": 100}}})
        plain.fit(heart)
        private = TabularSynthesizer("ctgan", epochs=1, batch_size=50, seed=2, epsilon=3.0, metadata=meta,
                                     phi_actions={"age": "age90"}).fit(heart)
        for synth in (plain, private):
            assert synth.sample(2000)["age"].max() <= 90
    enc = next(c for c in private.transformer.columns if c.name == "age")
    assert enc.high == 90.0 and private.transformer.provenance["age"]["bounds"] == "metadata+phi"


def test_every_phi_action_is_checked_on_sampled_rows():
    import pandas as pd

    from medsyn_tabular.data.phi import PhiError, check_phi_output, enforce_phi_output

    rows = pd.DataFrame({"age": [40, 91], "dob": [1950, 1960], "zip": ["021", "02139"], "name": ["a", "b"]})
    cases = {"age90": "age", "year": "dob", "zip3": "zip", "drop": "name"}
    for action, column in cases.items():
        record = [{"column": column, "action": action}]
        bad = rows if action != "year" else rows.assign(dob=["1950-03-04", "1960-01-01"])
        with pytest.raises(PhiError, match=column):
            check_phi_output(bad, record)
        good = {"age90": rows.iloc[:1], "year": rows, "zip3": rows.iloc[:1],
                "drop": rows.drop(columns="name")}
        check_phi_output(good[action], record)
    # what sample() returns: the actions applied to the output as well
    fixed = enforce_phi_output(rows, [{"column": c, "action": a} for a, c in cases.items() if a != "year"])
    assert fixed["age"].tolist() == [40, 90] and fixed["zip"].tolist() == ["021", "021"]
    assert "name" not in fixed.columns


def test_date_shift_comes_from_a_home_key_not_the_seed(tmp_path, monkeypatch):
    """Finding 3: the 'secret' date shift was default_rng(seed), and the seed is on the model card."""
    import os
    import stat

    import pandas as pd

    from medsyn_core import home_keys
    from medsyn_tabular.data.phi import apply_phi, plan_phi

    df = pd.DataFrame({"admitted": pd.to_datetime(["2020-01-01", "2020-06-30"])})
    plan = plan_phi([], {"admitted": "shift"}, ["admitted"])

    def shifted_days(home: Path) -> int:
        monkeypatch.setenv("MEDSYN_HOME", str(home))
        out, _ = apply_phi(df, plan)
        return int((out["admitted"] - df["admitted"]).dt.days.iloc[0])

    shifts = [shifted_days(tmp_path / f"home{i}") for i in range(4)]
    assert shifted_days(tmp_path / "home0") == shifts[0]  # refits in one home stay consistent
    assert len(set(shifts)) > 1  # other homes: other secrets (4 equal draws of 731 values: ~1e-9)
    assert all(abs(d) <= home_keys.MAX_DATE_SHIFT_DAYS for d in shifts)
    key = tmp_path / "home0" / "keys" / "date-shift.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key.parent).st_mode) == 0o700


def test_default_delta_is_far_below_one_over_n():
    from medsyn_core.privacy import PrivacyBudget
    from medsyn_core.privacy.budget import default_delta

    assert default_delta(303) == 1e-5 and default_delta(10**6) == pytest.approx(1e-7)
    assert PrivacyBudget.create(303, epsilon=1.0).delta == 1e-5


# -- the privacy unit ---------------------------------------------------------------------------------
def visits_table():
    """120 patients with 3 visits each; PATIENT is the key."""
    import pandas as pd

    rng = np.random.default_rng(1)
    n = 120
    ids = np.repeat([f"P{i:04d}" for i in range(n)], 3)
    return pd.DataFrame({"PATIENT": ids, "age": np.repeat(rng.integers(20, 80, n), 3),
                         "sbp": rng.normal(130, 15, 3 * n).round(),
                         "ward": rng.choice(["a", "b"], 3 * n)})


VISITS_SCHEMA = {"columns": {"PATIENT": {"kind": "identifier"},
                             "age": {"kind": "integer", "min": 0, "max": 110},
                             "sbp": {"kind": "continuous", "min": 60, "max": 250, "nullable": False},
                             "ward": {"kind": "categorical", "categories": ["a", "b"], "nullable": False}}}


def test_several_rows_per_patient_are_refused_without_a_declared_unit():
    from medsyn_core.privacy import PrivacyError

    with pytest.raises(PrivacyError, match="look like patient or record identifiers.*patient_key"):
        TabularSynthesizer("tvae", epochs=1, batch_size=40, epsilon=5.0, schema=VISITS_SCHEMA).fit(
            visits_table())


def test_a_patient_key_bounds_each_patient_to_one_row_and_the_card_says_so(tmp_path):
    from medsyn_core.privacy import PrivacyError

    table = visits_table()
    declared = {**VISITS_SCHEMA, "patient_key": "PATIENT"}
    with one_torch_thread():
        synth = TabularSynthesizer("tvae", epochs=1, batch_size=20, epsilon=5.0, schema=declared).fit(table)
    assert synth.ledger.dataset_rows == 120 and synth.card["rows"] == 120  # patients, not visits
    unit = synth.card["privacy_unit"]
    assert unit["kind"] == "patient" and unit["key"] == "PATIENT" and unit["max_rows"] == 1
    assert "patient" in synth.card["differential_privacy"]["unit"]
    assert "PATIENT" not in synth.sample(50).columns
    folder = synth.save(tmp_path / "m", register=False)
    assert "P0001" not in "".join(p.read_text(errors="ignore") for p in folder.glob("*.json"))
    with pytest.raises(PrivacyError, match="at most 1 row per patient"):
        TabularSynthesizer("tvae", epochs=1, batch_size=20, epsilon=5.0,
                           schema={**declared, "max_rows_per_patient": 3}).fit(table)


def test_a_dp_tabular_job_stores_no_loss_computed_on_real_rows(medsyn_home):
    """Finding 4: the critic's loss (CTGAN) and the reconstruction loss (TVAE) of DP runs went into the
    jobs table payload, on every researcher's Jobs page and in the database file."""
    from app_helpers import finish_job

    from medsyn_core import auth, jobs
    from medsyn_core.catalog import bundled
    from medsyn_core.storage import Store

    with Store() as store:
        user = auth.create_first_admin(store, "alice", "a long test password", via="test")
    for model in ("ctgan", "tvae"):  # one at a time: finish_job waits for every job process it started
        with Store() as store:
            job_id = jobs.submit(store, user, "tabular-fit", {
                "data_path": str(bundled("heart_cleveland").path), "source": "heart_cleveland",
                "name": f"dp-{model}", "model": model, "epochs": 2, "batch_size": 50, "seed": 0,
                "schema": {}, "phi_actions": {},
                "privacy": {"epsilon": 3.0, "metadata": heart_cleveland_metadata()}})
        job = finish_job(job_id)
        assert job["status"] == "finished", job["error"]
        losses = job["payload"]["losses"]
        assert losses and all("loss_d" not in r and "loss" not in r for r in losses)
    db = b"".join(p.read_bytes() for p in medsyn_home.glob("medsyn.sqlite3*"))
    assert b"loss_d" not in db and b'"loss":' not in db


def test_cli_asks_for_a_declared_schema_under_dp_and_writes_one_to_review(tmp_path, capsys):
    import yaml

    from medsyn_cli.main import main

    data = str(Path(__file__).resolve().parents[1] / "data/tabular/heart_cleveland.csv")
    fit = ["tabular", "fit", data, "--model", "tvae", "--epochs", "1", "--batch-size", "50",
           "--epsilon", "5", "--out", str(tmp_path / "m")]
    assert main(fit) == 2
    assert "declared schema" in capsys.readouterr().err
    assert main(["tabular", "schema", data, "--out", str(tmp_path / "schema.yaml")]) == 0
    text = (tmp_path / "schema.yaml").read_text()
    declared = yaml.safe_load(text)
    assert set(declared["columns"]) == {"age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach",
                                        "exang", "oldpeak", "slope", "ca", "thal", "num"}
    columns_part = text.split("columns:")[1].split("phi:")[0]
    assert declared["unit"] == "row" and not any(ch.isdigit() for ch in columns_part)
    # the reviewed file, completed with public bounds from the data dictionary, trains
    meta = str(Path(data).with_name("heart_cleveland.metadata.yaml"))
    with one_torch_thread():
        assert main(fit + ["--schema", str(tmp_path / "schema.yaml"), "--metadata", meta, "--quiet"]) == 0
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["privacy_unit"]["kind"] == "row" and card["privacy_unit"]["declared"]
