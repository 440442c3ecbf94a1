"""Tabular: train CTGAN/TVAE generators on EHR-like tables and sample synthetic rows.

Thin page: reading, schema, PHI, training, sampling and saving are the engine's functions
(``medsyn_tabular``), the same ones the CLI and the tests use. Training runs in a background thread
(:class:`medsyn_tabular.jobs.TrainingJob`) polled by a fragment, so the page never freezes.
"""

import pandas as pd
import streamlit as st

from medsyn_core.app_session import page_guard, refusal
from medsyn_tabular.datasets import LOADERS, load_bundled_table
from medsyn_tabular.io import read_table
from medsyn_tabular.phi import ACTIONS, detect_phi
from medsyn_tabular.schema import KINDS, infer_schema

st.title("Tabular")
user = page_guard("sample")
# Server-side: real data and the training controls are only built for roles allowed to train.
if (message := refusal(user, "train")) is not None:
    st.error(message)
    st.stop()
st.caption("Synthetic EHR tables with CTGAN or TVAE (Xu et al. 2019). Identifier columns are removed or "
           "transformed (HIPAA Safe Harbor) before training. Differential privacy is not built yet.")

# 1. data ------------------------------------------------------------------------------------------
source_kind = st.radio("Data", ["Bundled dataset", "Upload a file"], horizontal=True)
df, source = None, None
if source_kind == "Bundled dataset":
    name = st.selectbox("Dataset", list(LOADERS))
    df, source = load_bundled_table(name), name
else:
    upload = st.file_uploader("CSV, TSV or Parquet", type=["csv", "tsv", "txt", "parquet", "pq"])
    if upload is not None:
        try:
            df, source = read_table(upload.getvalue(), name=upload.name), upload.name
        except ValueError as exc:
            st.error(str(exc))
if df is None:
    st.stop()
st.write(f"**{source}**: {len(df)} rows x {df.shape[1]} columns")

# 2. schema and PHI review -------------------------------------------------------------------------
schema = infer_schema(df)
phi = {f.column: f for f in detect_phi(df, schema)}
review = pd.DataFrame({
    "column": schema.names,
    "kind": [c.kind for c in schema.columns],
    "PHI": [phi[c].category if c in phi else "" for c in schema.names],
    "PHI action": [phi[c].action if c in phi else "keep" for c in schema.names],
    "missing": [c.n_missing for c in schema.columns],
    "why": [c.reason for c in schema.columns],
})
st.subheader("Schema and identifiers")
edited = st.data_editor(
    review, hide_index=True, disabled=["column", "PHI", "missing", "why"], key=f"schema-{source}",
    column_config={"kind": st.column_config.SelectboxColumn(options=list(KINDS) + ["drop"]),
                   "PHI action": st.column_config.SelectboxColumn(options=list(ACTIONS))},
)
pairs = list(zip(edited.to_dict("records"), review.to_dict("records"), strict=True))
overrides = {"columns": {new["column"]: {"kind": new["kind"]} for new, old in pairs
                         if new["kind"] != old["kind"]}}
phi_actions = {new["column"]: new["PHI action"] for new, old in pairs
               if new["PHI action"] != old["PHI action"] or new["column"] in phi}

# 3. training ---------------------------------------------------------------------------------------
st.subheader("Train")
c1, c2, c3, c4 = st.columns(4)
model = c1.selectbox("Model", ["ctgan", "tvae"])
epochs = c2.number_input("Epochs", min_value=1, max_value=5000, value=50, step=10)
batch_size = c3.number_input("Batch size", min_value=10, max_value=10_000, value=500, step=10)
seed = c4.number_input("Seed", min_value=0, value=0, step=1)
if st.button("Train", type="primary"):
    from medsyn_tabular.jobs import TrainingJob
    from medsyn_tabular.synthesizer import TabularSynthesizer

    try:
        synth = TabularSynthesizer(model, epochs=int(epochs), batch_size=int(batch_size), seed=int(seed),
                                   schema=overrides, phi_actions=phi_actions)
        st.session_state["tabular_job"] = TrainingJob(synth, df, source=source).start()
    except ValueError as exc:
        st.error(str(exc))

job = st.session_state.get("tabular_job")


@st.fragment(run_every=1.0)
def training_progress() -> None:
    job = st.session_state.get("tabular_job")
    if job is None:
        return
    st.progress(job.fraction, text=f"{job.status}: epoch {len(job.records)} of {job.synthesizer.epochs}")
    losses = job.losses()
    if not losses.empty:
        st.line_chart(losses)
    if job.status == "failed":
        st.error(job.error)
    elif job.status == "finished" and not st.session_state.get("tabular_job_shown"):
        st.session_state["tabular_job_shown"] = True
        st.rerun()


if job is not None:
    training_progress()

# 4. sampling and saving ----------------------------------------------------------------------------
if job is not None and job.status == "finished":
    synth = job.synthesizer
    st.success(f"Trained {synth.model_name} in {synth.card['training_seconds']:.1f} s "
               f"(+{synth.card['preprocessing_seconds']:.1f} s preprocessing).")
    if synth.phi_record:
        with st.expander("PHI handling applied"):
            st.table(pd.DataFrame(synth.phi_record)[["column", "category", "action", "detail"]])
    name = st.text_input("Model name", value=f"{source}-{synth.model_name}".replace(".", "-"))
    if st.button("Save to model store"):
        try:
            from medsyn_core import settings

            path = synth.save(settings.models_dir() / name, name=name)
            st.success(f"Saved to {path} and registered in the model store.")
        except (FileExistsError, ValueError) as exc:
            st.error(str(exc))

    st.subheader("Sample")
    s1, s2 = st.columns([1, 3])
    n_rows = s1.number_input("Rows", min_value=1, max_value=1_000_000, value=500, step=100)
    sample_seed = s1.number_input("Sampling seed", min_value=0, value=0, step=1)
    conditions_text = s2.text_area("Conditions, one per line (e.g. sex=1, age>=65)", height=100)
    if st.button("Generate"):
        conditions = [line for line in conditions_text.splitlines() if line.strip()] or None
        try:
            with st.spinner("Generating..."):
                st.session_state["tabular_rows"] = synth.sample(int(n_rows), conditions=conditions,
                                                                seed=int(sample_seed))
        except ValueError as exc:
            st.error(str(exc))
    rows = st.session_state.get("tabular_rows")
    if rows is not None:
        st.dataframe(rows.head(200), hide_index=True)
        st.download_button("Download CSV", rows.to_csv(index=False).encode("utf-8"),
                           file_name="synthetic.csv", mime="text/csv")
