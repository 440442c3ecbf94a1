"""The Tabular page: train in the background, then sample under a condition (Streamlit AppTest)."""

from pathlib import Path

from app_helpers import logged_in
from tabular_helpers import one_torch_thread

ROOT = Path(__file__).resolve().parents[1]


def test_tabular_page_trains_and_samples_with_a_condition():
    at = logged_in("pages/tabular.py", "researcher").run()
    assert not at.exception, at.exception
    assert [h.value for h in at.subheader][:2] == ["Schema and identifiers", "Train"]
    at.number_input[0].set_value(2)  # epochs
    at.number_input[1].set_value(100)  # batch size
    with one_torch_thread():
        at.button[0].click().run()
        job = at.session_state["tabular_job"]
        job.wait(120)
        assert job.status == "finished", job.error
        at.run()
        assert not at.exception, at.exception
        assert any("Trained ctgan" in s.value for s in at.success)
        at.text_area[0].set_value("sex=0")
        generate = next(b for b in at.button if b.label == "Generate")
        generate.click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    rows = at.session_state["tabular_rows"]
    assert len(rows) == 500 and (rows["sex"] == 0).all()
