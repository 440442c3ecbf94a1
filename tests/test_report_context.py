"""Reports that carry their context and their verdicts (issue 19): header with model, data source, ε and
version; 'No problems found' only when nothing failed; plain k-anonymity; model comparison; the imaging
verdicts against the real-vs-real floor."""

import json

import numpy as np

from medsyn_core.report import Metric, Report, Section, model_context
from medsyn_imaging.evaluation.image_metrics import DistributionScores
from medsyn_imaging.evaluation.imaging_report import evaluation_metrics, fidelity_section
from medsyn_tabular.data.datasets import load_heart_cleveland
from medsyn_tabular.data.holdout import split_holdout
from medsyn_tabular.evaluation import evaluate_tabular
from medsyn_tabular.evaluation.comparison import compare_models

DP_CARD = {"card_format": 2, "name": "heart-dp", "engine": "tabular", "kind": "ctgan",
           "created": "2026-11-30T10:00:00Z", "data_source": "heart_cleveland",
           "data_sha256_prefix": "0123456789abcdef",
           "holdout": {"share": 0.2, "stratify": "num", "seed": 0, "rows_held_out": 61},
           "differential_privacy": {"enabled": True, "epsilon_total": 3.0, "delta_total": 9e-6,
                                    "unit": "one row (every row a different patient)"}}


def test_the_header_names_model_data_epsilon_unit_date_and_version():
    report = Report("r", "tabular", context=model_context(DP_CARD))
    header = report.header()
    assert header["model"] == "heart-dp" and header["trained on"] == "heart_cleveland"
    assert header["differential privacy"] == "ε = 3 (δ = 9e-06)"
    assert header["protected unit"].startswith("one row") and header["data file (SHA-256 prefix)"]
    assert header["holdout"] == "61 real rows kept back from training, stratified by num"
    assert "MedSyn version" in header and "evaluated" in header
    again = Report.from_dict(json.loads(report.to_json()))
    assert again.header() == header
    html = report.to_html()
    assert "heart-dp" in html and "ε = 3" in html
    off = model_context({**DP_CARD, "differential_privacy": {"enabled": False}})
    assert off["privacy"] == "off (no guarantee)" and "privacy_unit" not in off


def test_no_problems_found_only_when_no_metric_is_below_its_bar_and_no_emoji():
    report = Report("r", "imaging")
    report.add(Section("s", "S", metrics=[Metric("a", "A", 1.0, "x", good=True)]))
    assert report.headline() == "No problems found by the checks below." and report.problems() == []
    report.sections[0].metrics.append(Metric("recall", "Recall", 0.19, "x", good=False, reference=0.87,
                                             reference_label="floor"))
    assert report.headline().startswith("Problems found: 1 metric below its bar")
    assert report.problems() == ["Recall: 0.19, below the bar (compare with 0.87, floor)"]
    html = report.to_html()
    assert "below the bar" in html and not any(ord(c) > 0x2600 for c in html)  # no emoji, no ⚠


def scores(**kw):
    base = dict(fid=10.0, kid_mean=0.04, kid_std=0.01, kid_subset_size=100, precision=0.9, recall=0.85,
                density=1.0, coverage=0.45, n_reference=100, n_compared=100)
    return DistributionScores(**{**base, **kw})


def test_imaging_fidelity_gets_a_verdict_for_every_metric_with_a_floor():
    """The demo's report said 'No problems found' with recall 0.19 against a floor of 0.87 and coverage
    0.23 against 0.43."""
    section = fidelity_section({"synthetic": scores(fid=46.2, recall=0.19, coverage=0.23),
                                "real_floor": scores(fid=11.3, recall=0.87, coverage=0.43)}, "ResNet9")
    verdicts = {m.key: m.good for m in section.metrics}
    assert verdicts == {"fid": False, "kid": True, "precision": True, "recall": False, "density": True,
                        "coverage": False}
    report = Report("demo", "imaging")
    report.add(section)
    assert report.headline().startswith("Problems found: 3 metrics")
    metrics = evaluation_metrics(report)
    assert metrics["fid"] == 46.2 and metrics["fid_real_floor"] == 11.3
    assert metrics["verdicts"]["recall"] == "below the bar"


def test_a_report_from_a_holdout_has_membership_auc_and_plain_k_anonymity():
    df = load_heart_cleveland()
    train, holdout, _ = split_holdout(df, stratify="num")
    rng = np.random.default_rng(0)
    synthetic = train.sample(len(train), replace=True, random_state=1).reset_index(drop=True)
    synthetic["chol"] = synthetic["chol"] + rng.integers(-5, 5, len(synthetic))
    report = evaluate_tabular(train, synthetic, target="num", holdout=holdout, figures=False,
                              context=model_context(DP_CARD))
    privacy = report.section("privacy")
    auc = privacy.metric("mia_distance_auc").value
    assert auc is not None and np.isfinite(auc)
    assert privacy.metric("k_anonymity").good is None  # a DP model: ε is the guarantee, k informational
    plain = next(t for t in privacy.tables if t.key == "k_anonymity_plain")
    assert "not real patients" in plain.rows[0]["in plain words"]
    assert report.header()["model"] == "heart-dp"


def test_two_models_side_by_side_on_one_real_table():
    df = load_heart_cleveland()
    train, holdout, _ = split_holdout(df, stratify="num")
    copies = train.reset_index(drop=True)  # a model that memorised its training rows
    noisy = train.sample(frac=1.0, random_state=2).reset_index(drop=True)
    noisy["age"] = np.random.default_rng(1).integers(29, 78, len(noisy))
    result = compare_models(train, {"copycat": copies, "noisy": noisy}, target="num", holdout=holdout,
                            contexts={"copycat": {"model": "copycat", "privacy": "off (no guarantee)"},
                                      "noisy": {"model": "noisy", "privacy": "ε = 3 (δ = 1e-05)"}})
    table = result.report.section("comparison").tables[0].rows
    assert [r["model"] for r in table] == ["copycat", "noisy"]
    by = {r["model"]: r for r in table}
    assert by["copycat"]["exact copies (share)"] == 1.0 and by["noisy"]["ε"] == "ε = 3 (δ = 1e-05)"
    best = result.report.section("comparison").metric("best_exact_copies")
    assert best.value == "noisy"
    assert set(result.reports) == {"copycat", "noisy"}
