"""Clinical constraints (issue 14, item 6): declared rules that every synthetic row satisfies, for every
model; rules that cannot hold are clear errors; the evaluation reports the share of real rows that break
them (without DP only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tabular_helpers import CLINICAL_RULES, clinical_table, one_torch_thread

from medsyn_tabular.data.constraints import ConstraintError, ConstraintSet
from medsyn_tabular.synthesizer import TabularSynthesizer

PHI_KEEP = {"birth_date": "keep", "visit_date": "keep", "admission": "keep", "discharge": "keep"}


def breaking(rows: pd.DataFrame) -> dict[str, int]:
    """Rows breaking each rule, checked here independently of the library's rule engine."""
    both = rows["admission"].notna() & rows["discharge"].notna()
    bp = rows["systolic"].notna() & rows["diastolic"].notna()
    years = (rows["visit_date"].dt.year - rows["birth_date"].dt.year
             - ((rows["visit_date"].dt.month < rows["birth_date"].dt.month)
                | ((rows["visit_date"].dt.month == rows["birth_date"].dt.month)
                   & (rows["visit_date"].dt.day < rows["birth_date"].dt.day))).astype(int))
    bmi = (rows["weight"] / (rows["height"] / 100) ** 2).round(2)
    return {
        "admission <= discharge": int((both & (rows["admission"] > rows["discharge"])).sum()),
        "diastolic < systolic": int((bp & (rows["diastolic"] >= rows["systolic"])).sum()),
        "pregnancies = 0 if sex = M": int(((rows["sex"] == "M") & (rows["pregnancies"] != 0)).sum()),
        "systolic range if F": int(((rows["sex"] == "F") & ~rows["systolic"].between(90, 200)).sum()),
        "pregnant only if F": int(((rows["sex"] == "M") & (rows["pregnant"] == "yes")).sum()),
        "bmi derived": int((~np.isclose(rows["bmi"], bmi)).sum()),
        "age derived": int((rows["age"] != years).sum()),
    }


def test_the_real_table_breaks_some_rules_and_the_checker_sees_it():
    df = clinical_table()
    broken = breaking(df)
    assert broken["admission <= discharge"] == 1 and broken["diastolic < systolic"] == 1
    assert broken["pregnant only if F"] == 1 and broken["bmi derived"] == 0 and broken["age derived"] == 0


@pytest.mark.parametrize("model", ["ctgan", "tvae", "argn",
                                   pytest.param("mst", marks=pytest.mark.slow),
                                   pytest.param("aim", marks=pytest.mark.slow)])
def test_every_model_satisfies_every_rule_on_every_row(model):
    """Without the rules, a 2-epoch model breaks them (checked below for the networks); with them, no
    synthetic row breaks any, conditions still hold, derived columns are computed and the model card
    reports the share of real rows that break each rule."""
    df = clinical_table()
    kwargs = {"epochs": 2, "batch_size": 100} if model in ("ctgan", "tvae", "argn") else {}
    schema = {"constraints": CLINICAL_RULES}
    with one_torch_thread():
        synth = TabularSynthesizer(model, seed=0, schema=schema, phi_actions=PHI_KEEP, **kwargs).fit(df)
        rows = synth.sample(1500)
        only_women = synth.sample(200, conditions=["sex=F", "bmi>=20"])
    assert list(rows.columns) == list(df.columns)
    assert all(v == 0 for v in breaking(rows).values()), breaking(rows)
    assert all(v == 0 for v in breaking(only_women).values())
    assert (only_women["sex"] == "F").all() and (only_women["bmi"] >= 20).all()
    assert rows["age"].dtype == df["age"].dtype
    card = {r["declared as"]: r["share breaking it"] for r in synth.card["constraints"]["rules"]}
    assert card["admission <= discharge"] == pytest.approx(1 / len(df))
    assert card["derive age = years_between(birth_date, visit_date)"] == 0
    assert synth.card["constraints"]["derived"] == {"bmi": "continuous", "age": "integer"}
    if model in ("ctgan", "tvae"):  # the same model without rules breaks them: the rules do the work
        with one_torch_thread():
            free = TabularSynthesizer(model, seed=0, phi_actions=PHI_KEEP, **kwargs).fit(df).sample(1500)
        assert sum(breaking(free).values()) > 0


def test_rules_survive_save_and_load(tmp_path):
    df = clinical_table()
    with one_torch_thread():
        synth = TabularSynthesizer("tvae", epochs=2, batch_size=100, seed=0, phi_actions=PHI_KEEP,
                                   schema={"constraints": CLINICAL_RULES}).fit(df)
        again = TabularSynthesizer.load(synth.save(tmp_path / "m", register=False))
        rows = again.sample(500, seed=4)
    assert all(v == 0 for v in breaking(rows).values())
    assert rows.equals(synth.sample(500, seed=4))


@pytest.mark.parametrize("rule, message", [
    ("systolic in [300, 400] if sex = F", "can never hold"),
    ("discharge < birth_date", "can never hold"),
    ("pregnant = maybe if sex = F", "has no such category"),
    ("sex < pregnant", "both must be numbers, or both dates"),
    ("derive sex = weight * 2", "must be a number or a date"),
    ("derive bmi = __import__('os').system('true')", "may use numbers, column names"),
    ("weight <= height_cm", None),  # a value rule on an unknown ... column name read as a number
    ("blood_type = A", "not in the table"),
    ("admission >> discharge", "cannot read"),
])
def test_a_rule_that_cannot_hold_or_be_read_is_refused_before_training(rule, message):
    df = clinical_table(n=120)
    synth = TabularSynthesizer("tvae", epochs=1, batch_size=60, seed=0, phi_actions=PHI_KEEP,
                               schema={"constraints": [rule]})
    with pytest.raises(ConstraintError, match=message or "needs a number"), one_torch_thread():
        synth.fit(df)
    assert synth.model is None


def test_a_rule_the_model_almost_never_meets_is_a_clear_error():
    df = clinical_table(n=200)
    with one_torch_thread():
        synth = TabularSynthesizer("tvae", epochs=1, batch_size=100, seed=0, phi_actions=PHI_KEEP,
                                   schema={"constraints": ["weight in [75, 75.05]"]}).fit(df)
        with pytest.raises(ConstraintError, match=r"rule 1 \(value or range on 'weight'\) held in"):
            synth.sample(100, max_tries=3000)


def test_rules_on_missing_cells_are_not_checkable_and_conditions_on_missing_do_not_apply():
    df = pd.DataFrame({"a": [1.0, None, 5.0], "b": [2.0, 1.0, None], "sex": ["M", None, "F"],
                       "n": [0, 3, 2]})
    rules = ConstraintSet.parse(["a < b", "n = 0 if sex = M"], list(df.columns))
    rules.bind({"a": "continuous", "b": "continuous", "sex": "categorical", "n": "integer"})
    assert rules.holds(df).tolist() == [True, True, True]
    df.loc[0, "n"] = 1
    assert rules.holds(df).tolist() == [False, True, True]


def test_the_evaluation_reports_the_real_share_without_dp_and_says_why_not_under_dp():
    from medsyn_tabular.evaluation import evaluate_tabular

    df = clinical_table(n=300)
    synthetic = clinical_table(n=300, seed=5).iloc[3:]  # without the three data-entry errors
    synthetic = synthetic[synthetic["systolic"].between(90, 200)]  # and within the declared range
    report = evaluate_tabular(df, synthetic, target="sex", constraints=CLINICAL_RULES, figures=False)
    section = report.section("constraints")
    rows = {r["declared as"]: r for r in section.tables[0].rows}
    assert rows["diastolic < systolic"]["real rows breaking it"] == pytest.approx(1 / 300)
    assert rows["diastolic < systolic"]["synthetic rows breaking it"] == 0
    assert section.metric("synthetic_breaking").value == 0
    private = evaluate_tabular(df, synthetic, target="sex", constraints=CLINICAL_RULES, figures=False,
                               dp_model=True).section("constraints")
    assert all(r["real rows breaking it"] is None for r in private.tables[0].rows)
    assert "differential privacy" in private.summary
