"""The Evaluation page runs a real evaluation and renders the report (Streamlit's AppTest)."""

from pathlib import Path

from app_helpers import logged_in

ROOT = Path(__file__).resolve().parents[1]


def test_reference_run_renders_metrics_warnings_figures_and_downloads():
    at = logged_in("pages/evaluation.py", "researcher", timeout=300).run()
    assert not at.exception, at.exception
    at.radio[1].set_value("Bundled heart-disease table (303 patients)").run()
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


def test_two_saved_models_are_compared_on_their_table_and_holdout():
    """Issue 19: model comparison on one real table, against the holdout their training kept back."""
    import json

    import torch

    from medsyn_core.storage import Store
    from medsyn_tabular.data.datasets import load_heart_cleveland
    from medsyn_tabular.data.holdout import split_holdout
    from medsyn_tabular.synthesizer import TabularSynthesizer

    train, _, spec = split_holdout(load_heart_cleveland(), stratify="num")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for model in ("ctgan", "tvae"):
            synth = TabularSynthesizer(model, epochs=1, batch_size=100).fit(train, source="heart_cleveland")
            synth.card["holdout"] = {**spec.to_dict(), "rows_held_out": spec.n_holdout}
            synth.save(name=f"heart-{model}")
    finally:
        torch.set_num_threads(threads)
    at = logged_in("pages/evaluation.py", "researcher", timeout=300).run()
    assert not at.exception, at.exception
    at.multiselect[0].set_value(["heart-ctgan", "heart-tvae"]).run()
    assert any("61 held-out rows" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Compare 2 models").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    report = at.session_state["evaluation_report"]
    rows = report.section("comparison").tables[0].rows
    assert [r["model"] for r in rows] == ["heart-ctgan", "heart-tvae"]
    assert all(0 <= r["membership AUC (0.5 = guessing)"] <= 1 for r in rows)
    assert at.header[0].value == "Comparison of 2 models on one real table"
    with Store() as store:
        event = store.audit_events()[-1]
    assert (event["actor"], event["action"]) == ("test-researcher", "evaluate")
    assert json.loads(event["details_json"])["models"] == ["heart-ctgan", "heart-tvae"]
