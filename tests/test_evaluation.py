"""The tabular evaluation engine: SDMetrics-exact fidelity, privacy attacks on real data, clear errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import needs_shared_data

from medsyn_cli.main import main
from medsyn_tabular.data.datasets import load_heart_cleveland
from medsyn_tabular.evaluation import evaluate_tabular, infer_column_kinds, prepare_tables, read_table_csv
from medsyn_tabular.evaluation.columns import sdmetrics_metadata
from medsyn_tabular.evaluation.fidelity import evaluate_fidelity
from medsyn_tabular.evaluation.privacy import evaluate_privacy, k_anonymity, l_diversity


def _split(df: pd.DataFrame, parts: int, seed: int = 0) -> list[pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(df))
    return [df.iloc[idx].reset_index(drop=True) for idx in np.array_split(order, parts)]


@pytest.fixture(scope="module")
def heart() -> pd.DataFrame:
    return load_heart_cleveland()


@pytest.fixture
def pima(shared_data) -> pd.DataFrame:
    """Pima Indians diabetes table (768 x 9) from the shared reference data."""
    return read_table_csv(shared_data / "tabular" / "diabetes.csv")


# -- column kinds -------------------------------------------------------------------------------------
def test_column_kinds_of_the_heart_table(heart):
    kinds = infer_column_kinds(heart)
    numeric = {c for c, k in kinds.items() if k == "numeric"}
    assert numeric == {"age", "trestbps", "chol", "thalach", "oldpeak"}
    assert kinds["ca"] == kinds["thal"] == kinds["sex"] == kinds["num"] == "categorical"
    assert infer_column_kinds(heart, {"num": "numeric"})["num"] == "numeric"
    with pytest.raises(ValueError, match="Unknown column types"):
        infer_column_kinds(heart, {"num": "ordinalish"})
    dates = pd.DataFrame({"seen": ["2020-01-03", "2021-05-06", None, "2019-12-31"]})
    assert infer_column_kinds(dates)["seen"] == "datetime"


# -- fidelity equals SDMetrics ------------------------------------------------------------------------
def _sdmetrics_scores(real, synthetic, kinds):
    """SDMetrics' single-table QualityReport (deprecated alias, same numbers) and its two properties."""
    metadata = sdmetrics_metadata(kinds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sdmetrics.reports.single_table import QualityReport
        from sdmetrics.reports.single_table._properties import ColumnPairTrends, ColumnShapes

        report = QualityReport()
        report.generate(real, synthetic, metadata, verbose=False)
        shapes = ColumnShapes().get_score(real, synthetic, metadata)
        all_pairs = ColumnPairTrends().get_score(real, synthetic, metadata)  # thresholds 0
    props = report.get_properties().set_index("Property")["Score"]
    return shapes, props["Column Pair Trends"], all_pairs, report.get_score()


def test_fidelity_equals_sdmetrics_on_the_heart_table(heart):
    real, other = _split(heart, 2)
    synthetic = other.copy()  # a real second draw, made a little worse
    synthetic["chol"] = synthetic["chol"] * 1.15
    synthetic.loc[:30, "thal"] = np.nan
    t = prepare_tables(real, synthetic, target="num")
    ours = evaluate_fidelity(t.train, t.synthetic, t.kinds)
    shapes, trends, all_pairs, quality = _sdmetrics_scores(t.train, t.synthetic, t.kinds)
    assert ours.column_shapes == pytest.approx(shapes, abs=0.01)
    assert ours.pair_trends == pytest.approx(trends, abs=0.01)
    assert ours.pair_trends_all_pairs == pytest.approx(all_pairs, abs=0.01)
    assert ours.quality == pytest.approx(quality, abs=0.01)
    assert 0.5 < ours.quality < 0.99


@needs_shared_data
def test_fidelity_equals_sdmetrics_with_text_categories_missing_values_and_dates(shared_data):
    stroke = read_table_csv(shared_data / "tabular" / "healthcare-dataset-stroke-data.csv").drop(columns="id")
    stroke = stroke.iloc[:1200].copy()
    stroke["admitted"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(stroke["age"] * 5, unit="D")
    real, synthetic = _split(stroke, 2, seed=1)
    t = prepare_tables(real, synthetic, target="stroke")
    assert t.kinds["bmi"] == "numeric" and t.kinds["admitted"] == "datetime"
    assert t.kinds["work_type"] == "categorical" and t.train["bmi"].isna().any()
    ours = evaluate_fidelity(t.train, t.synthetic, t.kinds)
    shapes, trends, all_pairs, quality = _sdmetrics_scores(t.train, t.synthetic, t.kinds)
    assert (ours.column_shapes, ours.pair_trends, ours.pair_trends_all_pairs, ours.quality) == pytest.approx(
        (shapes, trends, all_pairs, quality), abs=0.01)


def test_dcr_share_and_score_equal_sdmetrics_dcr_overfitting_protection(heart):
    from sdmetrics.single_table import DCROverfittingProtection

    train, holdout, synthetic = _split(heart, 3, seed=2)
    t = prepare_tables(train, synthetic, target="num", holdout=holdout)
    ours = evaluate_privacy(t.train, t.holdout, t.synthetic, t.kinds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = DCROverfittingProtection.compute_breakdown(
            t.train, t.synthetic, t.holdout, sdmetrics_metadata(t.kinds), "heart")
    assert ours.share_closer_to_train == pytest.approx(
        theirs["synthetic_data_percentages"]["closer_to_training"], abs=1e-9)
    assert ours.dcr_overfitting_score == pytest.approx(theirs["score"], abs=1e-9)


# -- whole report on real data ------------------------------------------------------------------------
def test_identical_data_scores_perfect_fidelity_and_is_caught_by_the_attacks(heart, tmp_path):
    train, holdout = _split(heart, 2)
    report = evaluate_tabular(train, train, target="num", holdout=holdout, sensitive="sex", figures=True)
    fid, priv = report.section("fidelity"), report.section("privacy")
    assert fid.metric("quality").value == pytest.approx(1.0)
    assert fid.metric("column_shapes").value == pytest.approx(1.0)
    assert priv.metric("mia_distance_auc").value > 0.95
    assert priv.metric("dcr_share_closer_to_train").value == pytest.approx(1.0)
    assert priv.metric("exact_copies").value == pytest.approx(1.0)
    assert any("100.0% of synthetic rows are exact copies" in w for w in report.warnings)
    assert priv.metric("attribute_inference_risk").value > 0.5
    assert any(w.startswith("Attribute inference: 'sex'") for w in report.warnings)
    assert {f.key for s in report.sections for f in s.figures} == {"marginals", "correlations", "dcr"}
    assert all(m.explanation for s in report.sections for m in s.metrics)
    data = json.loads(report.save(tmp_path / "r.json").read_text())
    assert [s["key"] for s in data["sections"]] == ["fidelity", "utility", "privacy", "fairness"]
    html = report.save(tmp_path / "r.html").read_text()
    assert "exact copies" in html and "data:image/png;base64," in html


def test_independent_real_draws_give_chance_level_membership_attacks(pima):
    train, holdout, synthetic = _split(pima, 3)
    report = evaluate_tabular(train, synthetic, target="Outcome", holdout=holdout, figures=False)
    priv = report.section("privacy")
    assert priv.metric("mia_distance_auc").value == pytest.approx(0.5, abs=0.08)
    assert priv.metric("mia_domias_auc").value == pytest.approx(0.5, abs=0.1)
    assert priv.metric("exact_copies").value == 0.0
    assert not any("membership attack" in w or "Attribute inference" in w for w in report.warnings)
    util = report.section("utility")
    assert util.metric("tstr").value == pytest.approx(util.metric("tstr").reference, abs=0.08)
    assert report.section("fidelity").metric("quality").value > 0.85


def test_copied_real_rows_are_counted_and_flagged(pima):
    train, holdout, synthetic = _split(pima, 3)
    synthetic = synthetic.copy()
    n_copies = round(0.03 * len(synthetic))
    synthetic.iloc[:n_copies] = train.iloc[:n_copies].to_numpy()
    report = evaluate_tabular(train, synthetic, target="Outcome", holdout=holdout, figures=False)
    share = report.section("privacy").metric("exact_copies").value
    assert share == pytest.approx(n_copies / len(synthetic))
    assert f"{100 * share:.1f}% of synthetic rows are exact copies of real rows" in " ".join(report.warnings)


def test_regression_target_missing_subgroup_and_no_holdout(heart):
    real, synthetic = _split(heart, 2)
    synthetic = synthetic[synthetic["sex"] == 1]  # women left out
    report = evaluate_tabular(real, synthetic, target="chol", sensitive="sex", figures=False)
    rows = report.section("utility").tables[0].rows
    assert {"real R2", "synthetic R2", "real MAE", "synthetic MAE"} <= set(rows[0])
    assert np.isfinite(rows[0]["real MAE"])
    assert any("missing from the synthetic data: 0" in w for w in report.warnings)
    assert any("No holdout was given" in w for w in report.warnings)
    assert report.section("privacy").metric("mia_distance_auc").value is None


@needs_shared_data
def test_dates_text_categories_and_missing_values_run_end_to_end(shared_data):
    stroke = read_table_csv(shared_data / "tabular" / "healthcare-dataset-stroke-data.csv").drop(columns="id")
    stroke = stroke.iloc[:900].copy()
    stroke["admitted"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(stroke["age"] * 5, unit="D")
    stroke.loc[stroke.index[::50], "admitted"] = pd.NaT
    train, holdout, synthetic = _split(stroke, 3)
    report = evaluate_tabular(train, synthetic, target="stroke", holdout=holdout, sensitive="admitted",
                              figures=False)
    groups = [r["subgroup"] for r in report.section("fairness").tables[0].rows]
    assert groups[0].startswith("… to 2020-") and groups[-1] == "missing" and len(groups) == 5
    assert report.section("fidelity").metric("missing_match").value > 0.95
    assert report.section("privacy").metric("exact_copies").value == 0.0


def test_synthetic_table_with_one_target_class_is_a_reported_utility_failure(heart):
    train, holdout, synthetic = _split(heart, 3)
    report = evaluate_tabular(train, synthetic.assign(num=0), target="num", holdout=holdout,
                              sensitive="sex", figures=False)
    assert any("single value of 'num'" in w for w in report.warnings)
    tstr = report.section("utility").metric("tstr")
    assert tstr.value is None or np.isnan(tstr.value)
    assert tstr.reference > 0.6  # the real-trained models still score


# -- k-anonymity / l-diversity ------------------------------------------------------------------------
def test_k_anonymity_and_l_diversity_on_a_hand_made_table():
    df = pd.DataFrame({
        "age": [30, 30, 30, 40, 40, 50, 50, 50, 50],
        "sex": ["F", "F", "F", "M", "M", "F", "F", "F", "F"],
        "dx": ["a", "b", "a", "c", "c", "a", "b", "c", "d"],
    })
    assert k_anonymity(df, ["age", "sex"]) == 2  # the (40, M) group has 2 rows
    assert k_anonymity(df, ["sex"]) == 2
    assert k_anonymity(df, ["age"]) == 2
    assert l_diversity(df, ["age", "sex"], "dx") == 1  # (40, M) has only 'c'
    assert l_diversity(df, ["sex"], "dx") == 1
    assert l_diversity(df.iloc[[0, 1, 5, 6, 7]], ["sex"], "dx") == 3


# -- bad inputs ---------------------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors(heart):
    real, synthetic = _split(heart, 2)
    with pytest.raises(ValueError, match=r"columns do not match.*missing \['chol'\]"):
        evaluate_tabular(real, synthetic.drop(columns="chol"), target="num")
    with pytest.raises(ValueError, match="Target column 'outcome' is not in the table"):
        evaluate_tabular(real, synthetic, target="outcome")
    constant = real.assign(num=0)
    with pytest.raises(ValueError, match="constant"):
        evaluate_tabular(constant, synthetic, target="num")
    with pytest.raises(ValueError, match="holdout has 5 rows"):
        evaluate_tabular(real, synthetic, target="num", holdout=real.iloc[:5])
    with pytest.raises(ValueError, match="too few to set aside"):
        evaluate_tabular(real.iloc[:30], synthetic, target="num")
    recoded = synthetic.assign(sex=synthetic["sex"].map({0.0: "female", 1.0: "male"}))
    with pytest.raises(ValueError, match="Column 'sex': none of the synthetic categories"):
        evaluate_tabular(real, recoded, target="num")
    with pytest.raises(ValueError, match="should hold numbers"):
        evaluate_tabular(real, synthetic.assign(chol="high"), target="num")


# -- CLI ----------------------------------------------------------------------------------------------
def test_cli_writes_a_json_report_and_reports_errors_in_one_line(heart, tmp_path, capsys):
    train, holdout, synthetic = _split(heart, 3)
    paths = {}
    for name, df in (("train", train), ("holdout", holdout), ("synth", synthetic)):
        paths[name] = tmp_path / f"{name}.csv"
        df.to_csv(paths[name], index=False, na_rep="?")
    out = tmp_path / "report.json"
    rc = main(["tabular", "evaluate", str(paths["train"]), str(paths["synth"]), "--target", "num",
               "--holdout", str(paths["holdout"]), "--out", str(out), "--no-figures",
               "--quasi-identifiers", "age,sex"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["inputs"]["quasi-identifiers"] == "age, sex"
    assert "Report written to" in capsys.readouterr().out
    assert main(["tabular", "evaluate", str(paths["train"]), str(paths["synth"]), "--target", "nope",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "Target column 'nope' is not in the table" in capsys.readouterr().err
    assert main(["tabular", "evaluate", str(paths["train"]), str(paths["synth"]), "--target", "num",
                 "--out", str(tmp_path / "x.pdf")]) == 2
    assert not (tmp_path / "x.json").exists()
