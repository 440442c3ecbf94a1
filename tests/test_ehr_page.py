"""The EHR page (Streamlit AppTest): a researcher reviews the Synthea sample's tables, trains in a
background job, samples patients, sees a timeline and gets the CSV zip and FHIR downloads; a clinician
samples the saved model but gets no training controls."""

from app_helpers import finish_job, logged_in

PAGE = "pages/ehr.py"


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def _numbers(at) -> dict:
    return {n.label: n for n in at.number_input}


def test_ehr_page_trains_in_a_job_and_samples_patients_with_downloads():
    at = logged_in(PAGE, "researcher").run()
    assert not at.exception, at.exception
    assert [h.value for h in at.subheader][:2] == ["Tables, keys and time columns", "Train"]
    roles = at.dataframe[0].value.set_index("table")["role"].to_dict()
    assert roles["patients"] == "patients" and roles["encounters"] == "visits"
    assert roles["observations"] == "events"
    numbers = _numbers(at)
    numbers["Epochs"].set_value(2)
    numbers["Patients per batch"].set_value(4)
    numbers["Network width"].set_value(16)
    _button(at, "Train").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = finish_job(at.session_state["ehr_job_id"])
    assert job["status"] == "finished", job["error"]
    at.run()
    assert not at.exception, at.exception
    assert any("saved it as" in s.value and "DP: off" in s.value for s in at.success)
    _numbers(at)["Patients"].set_value(4)
    _button(at, "Generate").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    name, data = at.session_state["ehr_sample"]
    assert name == job["result"]["model_name"] and data.n_patients == 4
    labels = [b.label for b in at.get("download_button")]
    assert "Download tables (CSV zip)" in labels and "Download FHIR R4 Bundles (zip, validated)" in labels
    assert any(s.label == "Synthetic patient" for s in at.selectbox)  # the timeline's patient chooser

    clinician = logged_in(PAGE, "clinician").run()
    assert not clinician.exception, clinician.exception
    assert clinician.radio[0].options == ["Sample from a saved model"]
    assert not any(b.label == "Train" for b in clinician.button)
    saved = next(s for s in clinician.selectbox if s.label == "Saved EHR model")
    assert any(o.startswith(name) for o in saved.options)
