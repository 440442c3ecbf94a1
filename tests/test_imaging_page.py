"""The Imaging page with Streamlit's AppTest: bundled datasets, sliders, window presets, header."""

import json

from app_helpers import logged_in

PAGE = "pages/imaging.py"


def test_bundled_fmri_series_has_time_and_slice_sliders_and_deidentified_header():
    at = logged_in(PAGE, "clinician").run()
    assert not at.exception, at.exception
    at.selectbox[0].set_value("ge_mr_fmri").run()
    assert not at.exception, at.exception
    sliders = {s.label: s for s in at.slider}
    assert sliders["Time point"].max == 10 and sliders["Slice"].max == 15
    sliders["Slice"].set_value(3).run()
    sliders = {s.label: s for s in at.slider}
    assert sliders["Slice"].value == 3
    header = at.dataframe[0].value
    values = dict(zip(header["attribute"], header["value"], strict=True))
    assert values["PatientIdentityRemoved"] == "YES" and values["PatientName"] == ""
    assert "InstitutionName" not in values
    assert any("Voxel size:** 5 x 3.75 x 3.75 mm" in m.value for m in at.markdown)


def test_medmnist_preview_and_window_selector():
    at = logged_in(PAGE, "clinician").run()
    at.selectbox[0].set_value("pneumoniamnist").run()
    assert not at.exception, at.exception
    assert [s.label for s in at.slider] == ["Image"]
    window = next(s for s in at.selectbox if s.label == "Window")
    assert window.options == ["auto"]
    assert any("Label of this image" in m.value for m in at.markdown)


def test_deidentified_dicom_download_with_options_is_audited():
    """A researcher de-identifies the bundled DICOM series with an option; clinicians are not offered it."""
    from medsyn_core.storage import Store

    at = logged_in(PAGE, "researcher").run()
    at.selectbox[0].set_value("ge_mr_fmri").run()
    assert not at.exception, at.exception
    boxes = {c.label: c for c in at.checkbox}
    boxes["Retain patient characteristics (sex, age, size, weight)"].check()
    next(b for b in at.button if b.label == "De-identify").click().run()
    assert not at.exception, at.exception
    assert any("150 DICOM files de-identified" in s.value for s in at.success), [s.value for s in at.success]
    assert any(b.label == "Download de-identified DICOM (.zip)" for b in at.get("download_button"))
    with Store() as store:
        events = [e for e in store.audit_events() if e["action"] == "export"]
    assert events and json.loads(events[-1]["details_json"])["options"] == ["retain_patient_characteristics"]

    clinician = logged_in(PAGE, "clinician").run()
    clinician.selectbox[0].set_value("ge_mr_fmri").run()
    assert not any(b.label == "De-identify" for b in clinician.button)
