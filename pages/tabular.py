"""Tabular: train CTGAN/TVAE generators on EHR-like tables and sample synthetic rows.

Thin page: reading, schema, PHI, training, sampling and saving are the engine's functions
(``medsyn_tabular``), the same ones the CLI and the tests use. Training is a background job
(``medsyn_core.jobs``, kind ``tabular-fit``) in its own process: the page only polls the job table, so it
never freezes and a reload finds the running job again. Clinicians sample from saved models only.
"""

import pandas as pd
import streamlit as st

from medsyn_app.session import fragment_guard, page_guard, refusal
from medsyn_core import jobs, model_store, names, uploads
from medsyn_core.catalog import bundled
from medsyn_core.csv_export import to_csv_bytes
from medsyn_core.privacy.budget import EPSILON_RANGE, PRESETS, default_delta
from medsyn_core.storage import Store
from medsyn_tabular.data.datasets import LOADERS, METADATA, load_bundled_table
from medsyn_tabular.data.io import read_table
from medsyn_tabular.data.phi import ACTIONS
from medsyn_tabular.data.privacy_unit import KEY_LIKE_PHI
from medsyn_tabular.data.review import review_table
from medsyn_tabular.data.schema import KINDS

st.title("Tabular")
user = page_guard("sample")


@st.cache_data(show_spinner="Reading the table…", max_entries=2)
def read_upload(data: bytes, name: str) -> pd.DataFrame:
    """The uploaded table, parsed once per upload rather than on every rerun of the page."""
    return read_table(data, name=name)


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_synthesizer(path: str, mtime: float):
    from medsyn_tabular.synthesizer import TabularSynthesizer

    return TabularSynthesizer.load(path)


def show_ledger(synth) -> None:
    if synth.ledger is None:
        return
    with st.expander("Privacy ledger", expanded=True):
        total, _ = synth.ledger.total()
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


def sampling_panel(synth, model_name: str) -> None:
    """Sample N rows (optionally under conditions), preview them and download a CSV."""
    st.subheader("Sample")
    s1, s2 = st.columns([1, 3])
    n_rows = s1.number_input("Rows", min_value=1, max_value=1_000_000, value=500, step=100)
    sample_seed = s1.number_input("Sampling seed", min_value=0, value=0, step=1)
    conditions_text = s2.text_area("Conditions, one per line (e.g. sex=1, age>=65)", height=100)
    if st.button("Generate"):
        conditions = [line for line in conditions_text.splitlines() if line.strip()] or None
        try:
            with st.spinner("Generating..."):
                rows = synth.sample(int(n_rows), conditions=conditions, seed=int(sample_seed))
            st.session_state["tabular_rows"] = (model_name, rows)
            with Store() as store:
                store.append_event(user.username, "sample", {"model": model_name, "rows": len(rows),
                                                             "conditions": conditions or []})
        except ValueError as exc:
            st.error(str(exc))
    sampled = st.session_state.get("tabular_rows")
    if sampled is not None and sampled[0] == model_name:
        rows = sampled[1]
        st.dataframe(rows.head(200), hide_index=True)
        raw = st.checkbox("Raw CSV (for programs, not spreadsheets)", value=False,
                          help="By default, text cells that start with = + - @ get a leading apostrophe so "
                               "that Excel or LibreOffice never runs them as formulas. Raw keeps them as "
                               "they are.")
        if st.download_button("Download CSV", to_csv_bytes(rows, raw=raw),
                              file_name=f"synthetic-{model_name}.csv", mime="text/csv"):
            with Store() as store:
                store.append_event(user.username, "export", {"model": model_name, "rows": len(rows),
                                                             "format": "csv", "raw": raw})


def saved_model_sampling() -> None:
    from medsyn_core.model_store import list_models

    with Store() as store:
        entries = [m for m in list_models(store, user)
                   if m.engine == "tabular" and m.kind in ("ctgan", "tvae")]  # EHR models: the EHR page
    if not entries:
        st.info("No tabular model is saved yet. A researcher trains one here; it then appears in this list.")
        return
    def label(m) -> str:
        dp = f"ε = {m.dp_epsilon:.3g}" if m.dp_epsilon is not None else "DP: off"
        return f"{m.name} ({m.kind}, {dp})"

    labels = {label(m): m for m in entries}
    entry = labels[st.selectbox("Saved model", list(labels))]
    st.caption(f"Trained on {entry.card.get('data_source', '?')} · {entry.card.get('rows', '?')} rows · "
               f"{entry.card.get('dp_label', '')}")
    synth = load_synthesizer(str(entry.path), (entry.path / "model_card.json").stat().st_mtime)
    show_ledger(synth)
    sampling_panel(synth, entry.name)


# Server-side: real data and the training controls are only built for roles allowed to train.
denied = refusal(user, "train")
modes = ["Sample from a saved model"] if denied else ["Train a new model", "Sample from a saved model"]
mode = st.radio("What to do", modes, horizontal=True)
if denied:
    st.info(denied)
if mode == "Sample from a saved model":
    saved_model_sampling()
    st.stop()
st.caption("Synthetic EHR tables with CTGAN or TVAE (Xu et al. 2019). Identifier columns are removed or "
           "transformed (HIPAA Safe Harbor) before training. Optional differential privacy: the ε covers "
           "every use of the real rows (preprocessing statistics and training).")

# 1. data ------------------------------------------------------------------------------------------
source_kind = st.radio("Data", ["Bundled dataset", "Upload a file"], horizontal=True)
df, source, upload_bytes, keep_upload = None, None, None, False
if source_kind == "Bundled dataset":
    name = st.selectbox("Dataset", list(LOADERS))
    df, source = load_bundled_table(name), name
else:
    upload = st.file_uploader("CSV, TSV or Parquet", type=["csv", "tsv", "txt", "parquet", "pq"])
    st.caption(uploads.NOTICE)
    keep_upload = st.checkbox("Keep the uploaded file after training",
                              help="Off: the file is deleted when the training job ends. On: it stays "
                                   "(private to the service account) until an admin deletes it.")
    if upload is not None:
        try:
            df, source = read_upload(upload.getvalue(), upload.name), upload.name
            upload_bytes = upload.getvalue()
        except ValueError as exc:
            st.error(str(exc))
if df is None:
    st.stop()
st.write(f"**{source}**: {len(df)} rows x {df.shape[1]} columns")

# 2. schema and PHI review -------------------------------------------------------------------------
schema, findings = review_table(df)  # cached on the table's content: not redone on every rerun
phi = {f.column: f for f in findings}
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
unit_choice = None
if preset != "off":
    key_like = [c for c in schema.names if (c in phi and phi[c].category in KEY_LIKE_PHI)
                or schema[c].kind == "identifier"]
    unit_options = ["Each row is a different patient"] + [f"Rows with the same {c!r} are one patient"
                                                          for c in key_like]
    unit_choice = st.radio(
        "Privacy unit", unit_options, index=1 if key_like else 0,
        help="ε protects one unit. If a patient can have several rows, choose the column that identifies "
             "the patient: one row per patient is then used (chosen at random), so ε protects each "
             "patient, not each row.")
    st.caption("Under differential privacy the reviewed table above is your declaration of the schema: "
               "the kinds and PHI actions you see are recorded as declared by you, and nothing about the "
               "schema is read from the rows.")
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

# an upload's file name may hold identifiers: it names nothing that is stored (model, card, job, audit)
default_name = names.slugify(f"{source if upload_bytes is None else 'uploaded-table'}-{model}")
n1, n2 = st.columns([3, 1])
model_name = n1.text_input("Model name", value=default_name,
                           help="Letters, digits, '-', '_' and '.'; starts with a letter or digit.")
replace = n2.checkbox("Replace the existing model", help="Only if a model of this name exists: the new one "
                      "takes its place for everyone (recorded in the audit log).")
if st.button("Train", type="primary"):
    from medsyn_tabular.synthesizer import TabularSynthesizer

    data_path = None
    try:
        private = {} if preset == "off" else {"epsilon": float(epsilon), "delta": float(delta),
                                               "max_grad_norm": float(clip), "metadata": metadata}
        if preset != "off":  # the reviewed table is the declaration: every column's kind, and the unit
            overrides = {"columns": {r["column"]: {"kind": r["kind"]} for r in edited.to_dict("records")},
                         "declared_by": user.username}
            if unit_choice and unit_choice.startswith("Rows with the same"):
                overrides["patient_key"] = key_like[unit_options.index(unit_choice) - 1]
            else:
                overrides["unit"] = "row"
        synth = TabularSynthesizer(model, epochs=int(epochs), batch_size=int(batch_size), seed=int(seed),
                                   schema=overrides, phi_actions=phi_actions, **private)
        synth.plan_privacy(len(df))  # an unreachable budget is reported now, with advice, not after training
        model_store.ensure_model_name_free(model_name.strip(), replace=replace)  # a bad or taken name, too
        with Store() as store:
            upload_params = {}
            if upload_bytes is not None:
                data_path = uploads.save_upload(upload_bytes, source)
                label = f"upload-{uploads.sha_prefix(data_path)}"
                upload_params = {"upload": str(data_path), "keep_upload": bool(keep_upload)}
                store.append_event(user.username, "upload", {
                    "file_sha256_prefix": uploads.sha_prefix(data_path), "rows": len(df),
                    "columns": df.shape[1], "kept": bool(keep_upload)})
            else:
                label = source
            params = {"data_path": str(data_path or bundled(source).path), "source": label,
                      "name": model_name.strip(), "replace": bool(replace), "model": model,
                      "epochs": int(epochs), "batch_size": int(batch_size), "seed": int(seed),
                      "schema": overrides, "phi_actions": phi_actions, "privacy": private, **upload_params}
            st.session_state["tabular_job_id"] = jobs.submit(store, user, "tabular-fit", params)
    except (ValueError, FileExistsError, PermissionError) as exc:
        if data_path is not None:  # saved but no job will use it: do not keep real data for nothing
            with Store() as store:
                uploads.discard(store, data_path, user.username)
        st.error(str(exc))


def current_job(me) -> dict | None:
    """This session's training job, or after a reload the user's latest unfinished one."""
    with Store() as store:
        job_id = st.session_state.get("tabular_job_id")
        if job_id is None:
            mine = [j for j in jobs.visible_jobs(store, me, 50)
                    if j["kind"] == "tabular-fit" and j["owner"] == me.username
                    and j["status"] in ("queued", "running")]
            if not mine:
                return None
            job_id = st.session_state["tabular_job_id"] = mine[0]["id"]
        return jobs.job_for(store, me, job_id)


@st.fragment(run_every=1.0)
def training_progress() -> None:
    me = fragment_guard("train")  # every refresh: still logged in, enabled, allowed to train
    job = current_job(me)
    if job is None:
        return
    st.progress(job["progress"], text=f"Job #{job['id']} {job['status']}: {job['message'] or 'waiting'}")
    losses = pd.DataFrame(job["payload"].get("losses") or [])
    if not losses.empty:
        st.line_chart(losses.set_index("epoch"))
    if job["status"] in ("queued", "running") and st.button("Cancel training"):
        with Store() as store:
            jobs.request_cancel(store, me, job["id"])
    if job["status"] in jobs.TERMINAL and job["params"].get("upload"):
        from pathlib import Path

        kept = Path(job["params"]["upload"]).exists()
        st.caption("The uploaded file is still kept on the server (private; an admin deletes it on the Data "
                   "at rest page)." if kept else "The uploaded file has been deleted from the server.")
    resumable = " It can be resumed from its last checkpoint on the Jobs page." if job["checkpoint"] else ""
    if job["status"] == "failed":
        st.error(f"Training failed: {job['error']}.{resumable}")
    elif job["status"] == "cancelled":
        st.warning(f"Training was cancelled; no model was saved.{resumable}")
    elif job["status"] == "finished" and st.session_state.get("tabular_job_shown") != job["id"]:
        st.session_state["tabular_job_shown"] = job["id"]
        st.rerun()


training_progress()

# 4. sampling ----------------------------------------------------------------------------------------
job = current_job(user)
if job is not None and job["status"] == "finished":
    result = job["result"]
    from pathlib import Path

    path = Path(result["model_path"])
    synth = load_synthesizer(str(path), (path / "model_card.json").stat().st_mtime)
    resumed = synth.card.get("resumed_after_epoch")
    st.success(f"Trained {synth.model_name} in {synth.card['training_seconds']:.1f} s "
               f"{f'(after resuming at epoch {resumed}) ' if resumed else ''}"
               f"(+{synth.card['preprocessing_seconds']:.1f} s preprocessing) and saved as "
               f"**{result['model_name']}** in the model store. {synth.card['dp_label']}")
    show_ledger(synth)
    if synth.phi_record:
        with st.expander("PHI handling applied"):
            st.table(pd.DataFrame(synth.phi_record)[["column", "category", "action", "detail"]])
    sampling_panel(synth, result["model_name"])

    # 5. evaluation of the sampled rows against the real table (researchers) ---------------------------
    sampled = st.session_state.get("tabular_rows")
    if sampled is not None and sampled[0] == result["model_name"] and refusal(user, "evaluate") is None:
        st.subheader("Evaluate these rows")
        rows = sampled[1]
        shared = [c for c in rows.columns if c in df.columns]
        target = st.selectbox("Target column for the utility test", shared, index=len(shared) - 1)
        st.caption("Against the whole real table, so no holdout is available: the membership-inference "
                   "checks are skipped and utility is tested on a split of the real rows (optimistic). "
                   "The Evaluation page takes a separate holdout file.")
        if st.button("Evaluate"):
            from medsyn_tabular.evaluation import evaluate_tabular

            try:
                with st.spinner("Evaluating fidelity, utility, privacy and fairness…"):
                    st.session_state["tabular_report"] = (
                        result["model_name"], evaluate_tabular(df[shared], rows[shared], target=target))
                with Store() as store:
                    store.append_event(user.username, "evaluate", {"model": result["model_name"],
                                                                   "target": target, "rows": len(rows)})
            except ValueError as exc:
                st.error(str(exc))
        evaluated = st.session_state.get("tabular_report")
        if evaluated is not None and evaluated[0] == result["model_name"]:
            from medsyn_app.report_view import render_report

            render_report(evaluated[1], key="tabular-eval")
