"""The Tabular page: train as a background job, sample under a condition; a clinician samples the
saved model but gets no training controls (Streamlit AppTest)."""

from app_helpers import finish_job, logged_in

from medsyn_core.storage import Store


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def test_tabular_page_trains_in_a_job_and_a_clinician_samples_the_saved_model():
    at = logged_in("pages/tabular.py", "researcher").run()
    assert not at.exception, at.exception
    assert [h.value for h in at.subheader][:2] == ["Schema and identifiers", "Train"]
    at.number_input[0].set_value(2)  # epochs
    at.number_input[1].set_value(100)  # batch size
    _button(at, "Train").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = finish_job(at.session_state["tabular_job_id"])
    assert job["status"] == "finished", job["error"]
    with Store() as store:  # the job recorded the dataset and the run with its metrics and model
        datasets = [(d["name"], d["n_rows"]) for d in store.list_datasets("tabular")]
        assert datasets == [("heart_cleveland", 303)]
        run = store.get_run(1)
        assert run["status"] == "finished" and run["params"]["epochs"] == 2
        # 20 % kept back by default, stratified by the outcome: never trained on
        assert run["params"]["holdout"]["n_holdout"] == 61 and run["params"]["holdout"]["stratify"] == "num"
        assert run["model_id"] == store.model_id(job["result"]["model_name"]) is not None
    at.run()
    assert not at.exception, at.exception
    # "auto" without DP is ARGN (best measured utility, docs/tabular.md)
    assert any("Trained argn" in s.value and "DP: off" in s.value for s in at.success)
    next(t for t in at.text_area if t.label.startswith("Conditions")).set_value("sex=1")
    _button(at, "Generate").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    name, rows = at.session_state["tabular_rows"]
    assert name == job["result"]["model_name"]
    assert len(rows) == 500 and (rows["sex"] == 1).all()
    # the sampled rows are evaluated on the page (target: 'num', the last column)
    _button(at, "Evaluate").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Fidelity") for s in at.subheader)
    report = at.session_state["tabular_report"][1]
    assert report.inputs["holdout rows"] == 61 and report.inputs["real rows (training)"] == 242
    auc = report.section("privacy").metric("mia_distance_auc").value
    assert 0.0 <= auc <= 1.0  # measured on the holdout, no longer "n/a"
    assert report.header()["model"] == name and report.header()["differential privacy"].startswith("off")

    clinician = logged_in("pages/tabular.py", "clinician").run()
    assert not clinician.exception, clinician.exception
    assert clinician.radio[0].options == ["Sample from a saved model"]
    assert any("cannot train models" in i.value for i in clinician.info)
    assert not any(b.label == "Train" for b in clinician.button)
    saved = next(s for s in clinician.selectbox if s.label == "Saved model")
    assert any(o.startswith(name) for o in saved.options)
    _button(clinician, "Generate").click().run()
    assert not clinician.exception and not clinician.error
    assert len(clinician.session_state["tabular_rows"][1]) == 500


def test_dp_with_the_defaults_plans_before_the_job_and_the_epsilon_slider_is_always_usable():
    """Issue 19: DP with the defaults was refused (batch 500 on 303 rows) after queueing, and the ε slider
    was greyed out unless the preset was 'custom ε'."""
    at = logged_in("pages/tabular.py", "researcher").run()
    at.selectbox(key="tabular_preset").set_value("balanced").run()
    slider = at.slider(key="tabular_epsilon")
    assert slider.value == 3.0 and not slider.disabled
    assert not at.error, [e.value for e in at.error]
    # "auto" at ε ≤ 3 is MST: noisy marginals, no DP-SGD steps to plan
    marginals = next(d for d in at.dataframe if "mechanism" in d.value.columns).value.iloc[0]
    assert marginals["model"] == "mst" and "zCDP" in marginals["mechanism"]
    next(s for s in at.selectbox if s.label == "Model").set_value("ctgan").run()  # a DP-SGD network
    plan = next(d for d in at.dataframe if "noise multiplier σ" in d.value.columns).value.iloc[0]
    assert plan["batch size"] == 10 and int(plan["epochs"]) >= 10  # 242 training rows at ε = 3
    at.slider(key="tabular_epsilon").set_value(5.0).run()
    assert at.selectbox(key="tabular_preset").value == "custom ε"  # the slider made it a custom ε
    at.number_input[1].set_value(500).run()  # the old fixed batch: refused now, before any job
    assert any("choose a batch size below" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Train").disabled
    at.number_input[1].set_value(None).run()
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    with Store() as store:
        job = store.job(at.session_state["tabular_job_id"])
    assert job["params"]["epochs"] is None and job["params"]["batch_size"] is None
    assert job["params"]["privacy"]["epsilon"] == 5.0
