"""Evaluation: fidelity, utility, privacy and fairness report of a synthetic table, or FID/KID, PRDC,
TSTR and memorisation of synthetic images.

Thin page: it calls ``medsyn_tabular.evaluation.evaluate_tabular`` or
``medsyn_imaging.evaluation.imaging_report.evaluate_synthetic_images`` (the same functions as ``medsyn tabular
evaluate``, ``medsyn imaging evaluate`` and the tests), then renders the report.
"""

import numpy as np
import pandas as pd
import streamlit as st

from medsyn_app.report_view import render_report
from medsyn_app.session import audit_upload, page_guard
from medsyn_tabular.data.datasets import load_heart_cleveland
from medsyn_tabular.data.io import read_table
from medsyn_tabular.evaluation import evaluate_tabular
from medsyn_tabular.evaluation.privacy import default_quasi_identifiers

st.title("Evaluation")
user = page_guard("evaluate")
kind = st.radio("Evaluate", ["Synthetic table", "Synthetic images"], horizontal=True)


def imaging_evaluation() -> None:
    """FID/KID and PRDC against the real-vs-real floor, TSTR vs TRTR, memorisation; saved reports."""
    from medsyn_imaging.evaluation.imaging_report import list_saved_reports
    from medsyn_imaging.training.generator_store import list_generators

    st.markdown(
        "Compare synthetic labelled images with a real dataset: FID/KID and precision/recall/density/"
        "coverage against the real-vs-real floor, a ResNet9 disease classifier trained on synthetic images "
        "and tested on real ones (TSTR) next to train-on-real (TRTR), and a memorisation check. Same as "
        "`medsyn imaging evaluate`.")
    generators = {f"{g.name} ({g.source})": str(g.path) for g in list_generators()}
    with st.form("imaging_evaluation"):
        real_name = st.selectbox("Real data (bundled)", ["pneumoniamnist", "breastmnist"])
        choice = st.selectbox("Synthetic images", [*generators, "a path (.npz or folder of PNGs by class)"])
        synthetic_path = st.text_input("Path (when not sampling a generator)")
        epochs = st.number_input("Classifier epochs (each model; about a minute per epoch on a CPU)",
                                 1, 200, 5)
        modes = st.multiselect("Utility modes besides TRTR", ["tstr", "mix"], default=["tstr"])
        submitted = st.form_submit_button("Evaluate")
    if submitted:
        from medsyn_imaging.evaluation.classifier import TrainConfig
        from medsyn_imaging.evaluation.imaging_report import evaluate_synthetic_images, save_report_copy
        from medsyn_imaging.evaluation.labelled_images import load_image_dataset, load_synthetic_images

        source = generators.get(choice) or synthetic_path.strip()
        if not source:
            st.error("Give the path of the synthetic images (.npz or folder of PNGs by class).")
            return
        try:
            with st.spinner("Sampling, training classifiers and computing metrics…"):
                real = load_image_dataset(real_name)
                synthetic = load_synthetic_images(source, real.class_names, real=real)
                report = evaluate_synthetic_images(real, synthetic, config=TrainConfig(epochs=int(epochs)),
                                                   modes=modes, synthetic_label=choice)
                saved = save_report_copy(report)
        except (ValueError, FileNotFoundError) as exc:
            st.error(str(exc))
        else:
            st.success(f"Report saved ({saved.name}); it is listed below.")
    st.subheader("Saved imaging reports")
    saved_reports = list_saved_reports()
    if not saved_reports:
        st.write("No imaging evaluation yet.")
        return
    labels = {f"{r.created_at} · {r.title}": (p, r) for p, r in saved_reports}
    path, report = labels[st.selectbox("Saved imaging report", list(labels))]
    render_report(report, key=f"imaging-{path.stem}")


if kind == "Synthetic images":
    imaging_evaluation()
    st.stop()

st.markdown(
    "Compare a synthetic table with the real table it was generated from: does it look alike "
    "(**fidelity**), do models trained on it work on real patients (**utility**), can a real patient be "
    "found in it (**privacy**), and is every subgroup represented (**fairness**)?"
)


def _read_upload(upload) -> pd.DataFrame:
    """An uploaded CSV read like `medsyn tabular evaluate` reads files (size/column/cell limits included)."""
    return read_table(upload.getvalue(), name=upload.name)


source = st.radio("Real data", ["Bundled heart-disease table (303 patients)", "Upload a CSV"],
                  horizontal=True)
real = None
if source.startswith("Bundled"):
    real = load_heart_cleveland()
else:
    upload = st.file_uploader("Real training table (CSV)", type=["csv"], key="real_csv")
    if upload is not None:
        audit_upload(user, "evaluation", [upload])  # real patient data: audited once per file
        try:
            real = _read_upload(upload)
        except ValueError as exc:
            st.error(str(exc))
            st.stop()

if real is None:
    st.info("Upload the real table to start.")
    st.stop()

synthetic_upload = st.file_uploader("Synthetic table (CSV, same columns)", type=["csv"], key="synthetic_csv")
holdout_upload = st.file_uploader(
    "Real holdout rows the generator never saw (CSV, optional; needed for membership-inference tests)",
    type=["csv"], key="holdout_csv")

columns = list(real.columns)
with st.form("evaluation_settings"):
    target = st.selectbox("Target column (predicted in the utility test)", columns,
                          index=columns.index("num") if "num" in columns else len(columns) - 1)
    qis = st.multiselect("Quasi-identifiers (for k-anonymity)", columns,
                         default=default_quasi_identifiers(columns))
    sensitive_choice = st.selectbox("Sensitive column (l-diversity, attribute inference, fairness)",
                                    ["(none)", *columns],
                                    index=1 + columns.index("sex") if "sex" in columns else 0)
    figures = st.checkbox("Include figures", value=True)
    run = st.form_submit_button("Evaluate the synthetic table", type="primary")
    reference = st.form_submit_button(
        "Reference run: real vs real",
        help="Splits the real table in three (train, holdout, stand-in 'synthetic') to show the scores "
             "of data that is as good as real, on this much data.")

sensitive = None if sensitive_choice == "(none)" else sensitive_choice

if run or reference:
    try:
        if reference:
            order = np.random.default_rng(0).permutation(len(real))
            third = len(real) // 3
            train, holdout, synthetic = (real.iloc[order[:third]], real.iloc[order[third:2 * third]],
                                         real.iloc[order[2 * third:]])
            title = "Reference: real vs real (the real table split in three)"
        else:
            if synthetic_upload is None:
                st.error("Upload the synthetic table first.")
                st.stop()
            train, synthetic = real, _read_upload(synthetic_upload)
            holdout = None
            if holdout_upload is not None:
                audit_upload(user, "evaluation-holdout", [holdout_upload])  # real rows too
                holdout = _read_upload(holdout_upload)
            title = "Synthetic table evaluation"
        with st.spinner("Evaluating (a few seconds to half a minute)…"):
            st.session_state["evaluation_report"] = evaluate_tabular(
                train, synthetic, target=target, holdout=holdout, quasi_identifiers=qis,
                sensitive=sensitive, figures=figures, title=title)
    except (ValueError, FileNotFoundError) as exc:
        st.error(str(exc))
        st.session_state.pop("evaluation_report", None)

report = st.session_state.get("evaluation_report")
if report is not None:
    st.header(report.title)
    render_report(report, key="evaluation")
else:
    st.caption("Choose the tables and press Evaluate. The reference run shows what real-vs-real scores "
               "look like on this table.")

