"""Tabular: train CTGAN/TVAE generators on EHR-like tables and sample synthetic rows.

Thin page: reading, schema, PHI, training, sampling and saving are the engine's functions
(``medsyn_tabular``), the same ones the CLI and the tests use. Training runs in a background thread
(:class:`medsyn_tabular.jobs.TrainingJob`) polled by a fragment, so the page never freezes.
"""

import pandas as pd
import streamlit as st

from medsyn_core.app_session import page_guard, refusal
from medsyn_core.privacy.budget import EPSILON_RANGE, PRESETS, default_delta
from medsyn_tabular.datasets import LOADERS, METADATA, load_bundled_table
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
           "transformed (HIPAA Safe Harbor) before training. Optional differential privacy: the ε covers "
           "every use of the real rows (preprocessing statistics and training).")

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

st.markdown("**Differential privacy**")
p1, p2, p3, p4 = st.columns(4)
preset = p1.selectbox("Preset", ["off", "strict", "balanced", "exploratory", "custom ε"],
                      help="strict ε = 1, balanced ε = 3, exploratory ε = 10; off = no differential privacy")
epsilon = PRESETS.get(preset) if preset != "custom ε" else None
epsilon = p2.slider("ε (total)", min_value=EPSILON_RANGE[0], max_value=EPSILON_RANGE[1],
                    value=float(epsilon or 3.0), step=0.1, disabled=preset != "custom ε",
                    help="smaller ε = stronger privacy; covers preprocessing and training")
delta = p3.number_input("δ", min_value=0.0, max_value=1.0 / len(df), value=default_delta(len(df)),
                        step=default_delta(len(df)) / 10, format="%.2e", disabled=preset == "off",
                        help="must be below 1/n")
clip = p4.number_input("Clipping norm", min_value=0.01, max_value=100.0, value=1.0, step=0.1,
                       disabled=preset == "off", help="per-sample gradient clipping norm C")
metadata = None
if preset != "off":
    if source in METADATA and st.checkbox(
            "Use the table's public metadata (category codes from its data dictionary, plausible bounds)",
            value=True):
        metadata = METADATA[source]()
    elif source not in METADATA:
        meta_file = st.file_uploader("Public metadata (optional: JSON/YAML with bounds and categories; "
                                     "what it declares costs no budget)", type=["json", "yaml", "yml"])
        if meta_file is not None:
            import yaml

            metadata = yaml.safe_load(meta_file.getvalue().decode("utf-8-sig"))
    st.caption("Without declared bounds and categories, 10 % of ε is spent to learn them privately; rare "
               "categories are then never revealed. The column names, kinds and the row count are public.")

if st.button("Train", type="primary"):
    from medsyn_tabular.jobs import TrainingJob
    from medsyn_tabular.synthesizer import TabularSynthesizer

    try:
        private = {} if preset == "off" else {"epsilon": float(epsilon), "delta": float(delta),
                                               "max_grad_norm": float(clip), "metadata": metadata}
        synth = TabularSynthesizer(model, epochs=int(epochs), batch_size=int(batch_size), seed=int(seed),
                                   schema=overrides, phi_actions=phi_actions, **private)
        synth.plan_privacy(len(df))  # an unreachable budget is reported now, with advice, not after training
        st.session_state["tabular_job"] = TrainingJob(synth, df, source=source).start()
        st.session_state["tabular_job_shown"] = False
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
               f"(+{synth.card['preprocessing_seconds']:.1f} s preprocessing). {synth.card['dp_label']}")
    if synth.ledger is not None:
        with st.expander("Privacy ledger", expanded=True):
            total, total_delta = synth.ledger.total()
            m1, m2, m3 = st.columns(3)
            m1.metric("ε total (recomputed from the ledger)", f"{total:.3f}")
            breakdown = synth.ledger.breakdown()
            m2.metric("ε preprocessing", f"{breakdown['preprocessing'][0]:.3f}")
            m3.metric("ε training (from the accountant)", f"{breakdown['training'][0]:.3f}")
            st.dataframe(pd.DataFrame([{
                "stage": e.stage, "mechanism": e.mechanism, "applied to": e.target, "ε": e.epsilon,
                "δ": e.delta, "σ": e.noise_multiplier, "q": e.sample_rate, "steps": e.steps,
                "clip": e.max_grad_norm, "accountant": e.accountant} for e in synth.ledger.entries]),
                hide_index=True)
            if synth.ledger.public_statistics:
                st.caption("Declared public (no budget): " + ", ".join(synth.ledger.public_statistics))
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
