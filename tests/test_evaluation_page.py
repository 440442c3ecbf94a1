"""The Evaluation page runs a real evaluation and renders the report (Streamlit's AppTest)."""

from pathlib import Path

from app_helpers import logged_in

ROOT = Path(__file__).resolve().parents[1]


def test_reference_run_renders_metrics_warnings_figures_and_downloads():
    at = logged_in("pages/evaluation.py", "researcher", timeout=300).run()
    assert not at.exception, at.exception
    assert [b.label for b in at.button] == ["Evaluate the synthetic table", "Reference run: real vs real"]
    at.button[0].click().run()  # no synthetic table uploaded: a plain error, no crash
    assert not at.exception, at.exception
    assert any("Upload the synthetic table" in e.value for e in at.error)
    at.button[1].click().run()
    assert not at.exception, at.exception
    assert at.header[0].value.startswith("Reference: real vs real")
    titles = [s.value for s in at.subheader]
    assert any(t.startswith("Fidelity") for t in titles) and any(t.startswith("Privacy") for t in titles)
    assert len(at.dataframe) >= 4  # metric tables of the sections
    assert any("k-anonymity" in w.value for w in at.warning)
    assert len(at.get("download_button")) == 2
    assert len(at.get("image")) == 3  # marginals, correlations, DCR histogram
