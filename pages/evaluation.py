"""Evaluation: fidelity, utility, privacy and fairness report of a synthetic table, or FID/KID, PRDC,
TSTR and memorisation of synthetic images.

Thin page: it calls ``medsyn_tabular.evaluation.evaluate_tabular`` / ``compare_models`` (saved models against
the real table and the holdout their training kept back, or uploaded tables), or queues the imaging
evaluation as a background job (``imaging-evaluate``); the same functions as ``medsyn tabular evaluate``,
``medsyn imaging evaluate`` and the tests. Every evaluation is audited with the user as actor.
"""

import numpy as np
import pandas as pd
import streamlit as st

from medsyn_app.report_view import render_report
from medsyn_app.session import audit_upload, fragment_guard, page_guard
from medsyn_tabular.data.datasets import load_heart_cleveland
from medsyn_tabular.data.io import read_table
from medsyn_tabular.evaluation import evaluate_tabular
from medsyn_tabular.evaluation.privacy import default_quasi_identifiers

st.title("Evaluation")
user = page_guard("evaluate")
kind = st.radio("Evaluate", ["Synthetic table", "Synthetic images"], horizontal=True)


def imaging_evaluation() -> None:
    """FID/KID and PRDC against the real-vs-real floor, TSTR vs TRTR, memorisation, as a background job
    (minutes: classifiers and features); saved reports below, newest first."""
    from medsyn_core import jobs
    from medsyn_core.storage import Store
    from medsyn_imaging.evaluation.imaging_report import list_saved_reports
    from medsyn_imaging.training.generator_store import list_generators

    st.markdown(
        "Compare synthetic labelled images with a real dataset: FID/KID and precision/recall/density/"
        "coverage against the real-vs-real floor, a ResNet9 disease classifier trained on synthetic images "
        "and tested on real ones (TSTR) next to train-on-real (TRTR), and a memorisation check. It runs as a "
        "background job (several minutes on a CPU; follow it here or on the Jobs page). Same as "
        "`medsyn imaging evaluate`. For a generator, the result becomes its quality everywhere (sampling "
        "page, model store) and decides whether clinicians are offered it.")
    generators = {f"{g.name} ({g.source})": g.name for g in list_generators()}
    with st.form("imaging_evaluation"):
        real_name = st.selectbox("Real data (bundled)", ["pneumoniamnist", "breastmnist"])
        choice = st.selectbox("Synthetic images", [*generators, "a path (.npz or folder of PNGs by class)"])
        synthetic_path = st.text_input("Path (when not sampling a generator)")
        epochs = st.number_input("Classifier epochs (each model; about a minute per epoch on a CPU)",
                                 1, 200, 5)
        modes = st.multiselect("Utility modes besides TRTR", ["tstr", "mix"], default=["tstr"])
        submitted = st.form_submit_button("Evaluate")
    if submitted:
        params = {"real": real_name, "epochs": int(epochs), "modes": modes}
        if choice in generators:
            params["generator"] = generators[choice]
        elif synthetic_path.strip():
            params["synthetic"] = synthetic_path.strip()
        else:
            st.error("Give the path of the synthetic images (.npz or folder of PNGs by class).")
            return
        with Store() as store:
            st.session_state["imaging_eval_job"] = jobs.submit(store, user, "imaging-evaluate", params)

    def evaluation_progress() -> None:
        me = fragment_guard("evaluate")
        job_id = st.session_state.get("imaging_eval_job")
        if job_id is None:
            return
        with Store() as store:
            job = jobs.job_for(store, me, job_id)
        st.progress(job["progress"], text=f"Job #{job['id']} {job['status']}: {job['message'] or 'waiting'}")
        if job["status"] in ("queued", "running") and st.button("Cancel the evaluation"):
            with Store() as store:
                jobs.request_cancel(store, me, job_id)
        if job["status"] == "failed":
            st.error(f"The evaluation failed: {job['error']}")
        elif job["status"] == "finished" and st.session_state.get("imaging_eval_shown") != job_id:
            st.session_state["imaging_eval_shown"] = job_id
            st.rerun(scope="app")  # list the new report below

    polling = False  # only while the job is queued or running (a poll would close open menus)
    if (job_id := st.session_state.get("imaging_eval_job")) is not None:
        with Store() as store:
            polling = jobs.job_for(store, user, job_id)["status"] in ("queued", "running")
    st.fragment(run_every=2.0 if polling else None)(evaluation_progress)()
    st.subheader("Saved imaging reports")
    saved_reports = list_saved_reports()
    if not saved_reports:
        st.write("No imaging evaluation yet.")
        return
    labels = {f"{r.created_at} · {r.title}": (p, r) for p, r in saved_reports}
    path, report = labels[st.selectbox("Saved imaging report", list(labels))]
    render_report(report, key=f"imaging-{path.stem}")


def saved_models_evaluation() -> None:
    """Evaluate one saved tabular model, or compare several, against the real table they were trained on and
    the holdout their training kept back (re-derived from the table: nothing else was stored)."""
    from medsyn_core import model_store
    from medsyn_core.report import model_context
    from medsyn_core.storage import Store
    from medsyn_tabular.data.datasets import LOADERS, load_bundled_table
    from medsyn_tabular.data.holdout import apply_spec
    from medsyn_tabular.evaluation.comparison import compare_models
    from medsyn_tabular.synthesizer import TabularSynthesizer

    with Store() as store:
        models = {m.name: m for m in model_store.list_models(store, user) if m.engine == "tabular"}
    if not models:
        st.info("No tabular model is saved yet: train one on the Tabular page.")
        return
    chosen = st.multiselect("Models (one to evaluate, two or more to compare on the same real table)",
                            list(models), default=list(models)[:1])
    if not chosen:
        return
    cards = [models[n].card for n in chosen]
    sources = {c.get("data_source") for c in cards}
    splits = {str({k: (c.get("holdout") or {}).get(k) for k in ("share", "stratify", "seed")}) for c in cards}
    if len(splits) > 1:
        st.error("These models kept back different holdouts (share, column or seed); compare models trained "
                 "on the same split.")
        return
    source = next(iter(sources)) if len(sources) == 1 else None
    if source in LOADERS:
        real = load_bundled_table(source)
        st.caption(f"Real table: the bundled {source}.")
    else:
        upload = st.file_uploader("The real table these models were trained on (the same file)",
                                  type=["csv", "tsv", "txt", "parquet", "pq", "xlsx"], key="saved_real")
        if upload is None:
            st.info("Upload the table the models were trained on; its holdout is drawn again from it.")
            return
        audit_upload(user, "evaluation", [upload])
        try:
            real = _read_upload(upload)
        except ValueError as exc:
            st.error(str(exc))
            return
    try:
        train, holdout = apply_spec(real, cards[0].get("holdout"))
    except ValueError as exc:
        st.error(str(exc))
        return
    st.caption(f"{len(train)} training rows; " + (f"{len(holdout)} held-out rows the models never saw."
                                                  if holdout is not None else "no holdout was kept."))
    columns = list(train.columns)
    c1, c2 = st.columns(2)
    target = c1.selectbox("Target column", columns,
                          index=columns.index("num") if "num" in columns else len(columns) - 1)
    seed = int(c2.number_input("Sampling seed", min_value=0, value=0, step=1))
    if not st.button("Evaluate" if len(chosen) == 1 else f"Compare {len(chosen)} models", type="primary"):
        return
    try:
        with st.spinner("Sampling and evaluating…"):
            synthetic, contexts = {}, {}
            for name in chosen:
                synth = TabularSynthesizer.load(models[name].path)
                synthetic[name] = synth.sample(len(train), seed=seed)
                contexts[name] = model_context(models[name].card, name)
            shared = [c for c in columns if all(c in rows.columns for rows in synthetic.values())]
            hold = holdout[shared] if holdout is not None else None
            if len(chosen) == 1:
                from medsyn_tabular.evaluation import evaluate_tabular

                report = evaluate_tabular(train[shared], synthetic[chosen[0]][shared], target=target,
                                          holdout=hold, title=f"Evaluation of {chosen[0]}",
                                          context=contexts[chosen[0]])
                st.session_state["evaluation_report"] = report
                st.session_state["evaluation_reports"] = {}
            else:
                result = compare_models(train[shared], {n: r[shared] for n, r in synthetic.items()},
                                        target=target, holdout=hold, contexts=contexts)
                st.session_state["evaluation_report"] = result.report
                st.session_state["evaluation_reports"] = result.reports
        from medsyn_core.storage import Store

        with Store() as store:
            store.append_event(user.username, "evaluate", {"kind": "tabular", "models": chosen,
                                                           "target": target})
    except (ValueError, FileNotFoundError) as exc:
        st.error(str(exc))


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


source = st.radio("Real data", ["Saved models (evaluate or compare)",
                                 "Bundled heart-disease table (303 patients)", "Upload a CSV"],
                  horizontal=True)
real = None
if source.startswith("Saved models"):
    saved_models_evaluation()
    report = st.session_state.get("evaluation_report")
    if report is not None:
        st.header(report.title)
        render_report(report, key="evaluation")
        for name, own in (st.session_state.get("evaluation_reports") or {}).items():
            with st.expander(f"Full report of {name}"):
                render_report(own, key=f"evaluation-{name}")
    st.stop()
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
                sensitive=sensitive, figures=figures, title=title,
                context={"model": "uploaded synthetic table" if not reference else "none (reference run)",
                         "data_source": "uploaded real table" if not source.startswith("Bundled")
                         else "heart_cleveland"})
        from medsyn_core.storage import Store

        with Store() as store:
            store.append_event(user.username, "evaluate", {"kind": "tabular", "reference": bool(reference),
                                                           "target": target})
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

