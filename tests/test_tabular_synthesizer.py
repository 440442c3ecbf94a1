"""TabularSynthesizer end to end on real tables, with tiny training runs (1-3 epochs)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import needs_shared_data
from tabular_helpers import one_torch_thread

from medsyn_core.storage import Store
from medsyn_tabular.data.conditions import ConditionError
from medsyn_tabular.data.io import read_table
from medsyn_tabular.data.schema import SchemaError
from medsyn_tabular.synthesizer import TabularSynthesizer
from medsyn_tabular.transformers.table import TableTransformer


@pytest.fixture(scope="module")
def heart():
    from conftest import REFERENCE_DATA

    return read_table(REFERENCE_DATA / "tabular/heart.csv")


@pytest.fixture(scope="module")
def heart_ctgan(heart):
    # module scope runs before conftest's per-test clean-up of MEDSYN_DEVICE, so clear it here too
    with pytest.MonkeyPatch.context() as mp, one_torch_thread():
        mp.delenv("MEDSYN_DEVICE", raising=False)
        return TabularSynthesizer("ctgan", epochs=3, batch_size=100, seed=7).fit(heart)


def test_ctgan_on_heart_keeps_columns_types_ranges_and_categories(heart, heart_ctgan):
    with one_torch_thread():
        rows = heart_ctgan.sample(1000)
    assert list(rows.columns) == list(heart.columns)
    assert rows.dtypes.to_dict() == heart.dtypes.to_dict()
    assert not rows.isna().any().any()  # the real table has no missing values
    schema = heart_ctgan.schema
    for col in heart.columns:
        kind = schema[col].kind
        if kind in ("categorical", "boolean"):
            assert set(rows[col].unique()) <= set(heart[col].unique()), col
        else:
            assert rows[col].min() >= heart[col].min() and rows[col].max() <= heart[col].max(), col
            if kind == "integer":
                assert (rows[col] % 1 == 0).all()
    assert len(heart_ctgan.model.loss_history) == 3
    assert {"loss_g", "loss_d", "epoch"} <= set(heart_ctgan.model.loss_history[-1])


def test_exact_range_and_combined_conditions_hold_on_every_row(heart_ctgan):
    with one_torch_thread():
        one = heart_ctgan.sample(200, conditions=["thal=1"])
        both = heart_ctgan.sample(150, conditions={"sex": 0, "cp": 2})
        mixed = heart_ctgan.sample(100, conditions=["sex=1", "age>=60", "chol<250", "target!=1"])
    assert len(one) == 200 and (one["thal"] == 1).all()
    assert len(both) == 150 and (both["sex"] == 0).all() and (both["cp"] == 2).all()
    assert len(mixed) == 100 and (mixed["sex"] == 1).all() and (mixed["age"] >= 60).all()
    assert (mixed["chol"] < 250).all() and (mixed["target"] != 1).all()


def test_bad_conditions_are_clear_errors(heart_ctgan):
    with pytest.raises(ConditionError, match="Unknown column 'weight'"):
        heart_ctgan.sample(10, conditions=["weight>3"])
    with pytest.raises(ConditionError, match=r"Unknown value in condition 1: column 'thal' has no such"):
        heart_ctgan.sample(10, conditions=["thal=9"])
    with pytest.raises(ConditionError, match="cannot be met"):
        heart_ctgan.sample(10, conditions=["age>=200"])
    with pytest.raises(ConditionError, match="use = or !="):
        heart_ctgan.sample(10, conditions=["thal>1"])
    with pytest.raises(ConditionError, match="too rare"), one_torch_thread():
        heart_ctgan.sample(50, conditions=["age>=76.9", "chol<=127", "trestbps>=199"], max_tries=3000)


def test_same_seed_same_rows_and_save_load_round_trip(heart, heart_ctgan, tmp_path, medsyn_home):
    with one_torch_thread():
        a = heart_ctgan.sample(300, seed=11)
        assert a.equals(heart_ctgan.sample(300, seed=11))
        assert not a.equals(heart_ctgan.sample(300, seed=12))
        path = heart_ctgan.save(tmp_path / "heart-ctgan")
        loaded = TabularSynthesizer.load(path)
        assert loaded.sample(300, seed=11).equals(a)
        assert loaded.sample(50, conditions=["sex=0"], seed=5).equals(
            heart_ctgan.sample(50, conditions=["sex=0"], seed=5))
    assert {p.name for p in path.iterdir()} == {"weights.safetensors", "config.json", "transformer.json",
                                                "schema.json", "model_card.json"}
    card = json.loads((path / "model_card.json").read_text())
    assert card["rows"] == 303 and card["seed"] == 7 and card["model"] == "ctgan"
    assert card["parameters"]["pac"] == 10 and card["phi_handling"][0]["column"] == "age"
    with Store() as store:
        models = store.list_models(kind="ctgan")
    assert [m.name for m in models] == ["heart-ctgan"] and models[0].card["rows"] == 303
    with pytest.raises(FileExistsError):
        heart_ctgan.save(path)


def test_same_seed_same_data_same_model(heart):
    with one_torch_thread():
        runs = [TabularSynthesizer("tvae", epochs=1, batch_size=100, seed=4).fit(heart).sample(200)
                for _ in range(2)]
        other = TabularSynthesizer("tvae", epochs=1, batch_size=100, seed=5).fit(heart).sample(200)
    assert runs[0].equals(runs[1])
    assert not runs[0].equals(other)


@needs_shared_data
def test_tvae_learns_missing_values_at_the_real_rate(shared_data):
    stroke = read_table(shared_data / "tabular/healthcare-dataset-stroke-data.csv").drop(columns=["id"])
    with one_torch_thread():
        synth = TabularSynthesizer("tvae", epochs=10, batch_size=500, seed=0).fit(stroke)
        rows = synth.sample(4000)
    real_rate = stroke["bmi"].isna().mean()  # 201 / 5110 = 3.9 %
    assert 0.2 * real_rate < rows["bmi"].isna().mean() < 3 * real_rate
    assert rows.drop(columns=["bmi"]).notna().all().all()
    assert set(rows["smoking_status"].unique()) <= set(stroke["smoking_status"].unique())
    with one_torch_thread():
        only = synth.sample(100, conditions=["work_type=Private", "age>=50"])
    assert (only["work_type"] == "Private").all() and (only["age"] >= 50).all()


def test_transformer_round_trip_and_statistics_provenance(shared_data):
    df = read_table(shared_data / "tabular/processed.cleveland.data")
    synth = TabularSynthesizer("ctgan", epochs=1, batch_size=100,
                               schema={"columns": {"col_0": {"min": 18, "max": 100},
                                                   "col_12": {"categories": [3, 6, 7]}}})
    table, schema = synth.prepare(df)
    tr = TableTransformer(seed=0).fit(table, schema, metadata=synth.overrides)
    back = tr.inverse_transform(tr.transform(table))
    for col in table.columns:
        a, b = table[col].astype(float).to_numpy(), back[col].astype(float).to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), col
        assert np.allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-5, atol=1e-6), col
    assert tr.provenance["col_0"]["bounds"] == "metadata" and tr.provenance["col_3"]["bounds"] == "data"
    assert tr.provenance["col_12"]["categories"] == "metadata"
    assert tr.provenance["col_11"]["missing_rate"] == "data" and tr.provenance["col_3"]["modes"] == "data"
    restored = TableTransformer.from_dict(json.loads(json.dumps(tr.to_dict())))
    assert np.array_equal(restored.transform(table, seed=1), tr.transform(table, seed=1))


def test_rare_categories_are_grouped_and_decoded_to_real_values():
    rng = np.random.default_rng(0)
    common = rng.choice(["a", "b", "c"], 2000)
    rare = np.array([f"r{i}" for i in range(6)])
    df = pd.DataFrame({"cat": np.concatenate([common, rare]), "x": rng.normal(size=2006)})
    synth = TabularSynthesizer("ctgan", epochs=1, batch_size=100)
    table, schema = synth.prepare(df)
    tr = TableTransformer().fit(table, schema)
    enc = tr.columns[0]
    assert enc.slots[-1] == "__other__" and set(enc.other_values) == set(rare)
    back = tr.inverse_transform(tr.transform(table))
    assert set(back["cat"]) <= set(df["cat"])


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": 0}, "epochs must be a whole number of at least 1"),
    ({"epochs": -3}, "epochs must be a whole number of at least 1"),
    ({"model": "gan"}, "Unknown model"),
    ({"model": "ctgan", "batch_size": 55}, "multiple of pac"),  # CTGAN is no longer the default
])
def test_bad_parameters_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TabularSynthesizer(**kwargs)


def test_bad_tables_are_clear_errors(heart):
    synth = TabularSynthesizer("ctgan", epochs=1, batch_size=100)
    with pytest.raises(SchemaError, match="1 row"):
        synth.fit(heart.iloc[:1])
    with pytest.raises(SchemaError, match="at least 2"):
        synth.fit(heart[["age"]])
    with_empty = heart.assign(notes=np.nan)
    with pytest.raises(SchemaError, match="'notes' is entirely missing"):
        synth.fit(with_empty)
    bad = heart.assign(chol=heart["chol"].astype(str).where(heart.index != 5, "high"))
    with pytest.raises(SchemaError, match="'chol' is declared integer but 1 cell .* does not hold a number"):
        TabularSynthesizer("ctgan", epochs=1, batch_size=100,
                           schema={"columns": {"chol": {"kind": "integer"}}}).fit(bad)
    with pytest.raises(SchemaError, match="not in the table"):
        TabularSynthesizer("ctgan", epochs=1, batch_size=100,
                           schema={"columns": {"nope": "integer"}}).fit(heart)


def test_time_zone_aware_datetimes_round_trip(shared_data):
    encounters = read_table(shared_data / "tabular/synthea_csv/encounters.csv")  # '2019-02-16T21:50:11Z'
    synth = TabularSynthesizer("tvae", epochs=1, batch_size=100,
                               phi_actions={"START": "keep", "STOP": "shift"})
    table, schema = synth.prepare(encounters)
    assert schema["START"].kind == "datetime" and schema["STOP"].kind == "datetime"
    assert {r["column"]: r["action"] for r in synth.phi_record}["STOP"] == "shift"
    tr = TableTransformer().fit(table, schema)
    back = tr.inverse_transform(tr.transform(table))
    # float32 encoding: exact to about a minute over decades of timestamps
    assert (back["START"] - table["START"]).abs().max() < pd.Timedelta(minutes=2)
    assert back["START"].min() >= table["START"].min() and back["STOP"].max() <= table["STOP"].max()
