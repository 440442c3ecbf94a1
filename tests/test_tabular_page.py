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
        assert run["model_id"] == store.model_id(job["result"]["model_name"]) is not None
    at.run()
    assert not at.exception, at.exception
    # "auto" without DP is ARGN (best measured utility, docs/tabular.md)
    assert any("Trained argn" in s.value and "DP: off" in s.value for s in at.success)
    next(t for t in at.text_area if t.label.startswith("Conditions")).set_value("sex=0")
    _button(at, "Generate").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    name, rows = at.session_state["tabular_rows"]
    assert name == job["result"]["model_name"]
    assert len(rows) == 500 and (rows["sex"] == 0).all()
    # the sampled rows are evaluated on the page (target: 'num', the last column)
    _button(at, "Evaluate").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Fidelity") for s in at.subheader)

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
