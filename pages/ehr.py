"""EHR: synthetic patients with their visits, conditions, medications and observations over time.

Thin page over :mod:`medsyn_tabular.ehr` (the library the CLI and tests call): load a folder of related
tables (the bundled Synthea sample or an upload), review the inferred roles, keys and time columns (the
schema YAML), train as a background job (kind ``ehr-fit``), then sample synthetic patients, browse one
patient's timeline, download the tables (CSV zip, the input's layout) or FHIR Bundles, and evaluate.
Clinicians sample from saved models only.
"""

import io
import zipfile

import pandas as pd
import streamlit as st

from medsyn_app.session import audit_upload, fragment_guard, page_guard, refusal
from medsyn_core import jobs, model_store, names, uploads
from medsyn_core.catalog import bundled
from medsyn_core.privacy.budget import EPSILON_RANGE, PRESETS
from medsyn_core.storage import Store
from medsyn_tabular.ehr.dataset import TABLE_SUFFIXES, EHRDataset, read_source
from medsyn_tabular.ehr.schema import EHRSchema, schema_yaml

st.title("EHR")
user = page_guard("sample")
SAMPLE = "synthea_sample"


@st.cache_data(show_spinner="Reading the tables…", max_entries=2)
def read_tables(blob: bytes | None, path: str | None, schema_text: str | None) -> EHRDataset:
    """The bundled folder (``path``) or an uploaded zip (``blob``), read once per input and schema."""
    import yaml

    from medsyn_core.settings import private_temp_dir

    schema = EHRSchema.from_dict(yaml.safe_load(schema_text)) if schema_text else None
    if blob is None:
        return read_source(path, schema)
    with private_temp_dir("medsyn-ehr-upload-") as tmp:
        (tmp / "tables.zip").write_bytes(blob)
        data = read_source(tmp / "tables.zip", schema)
    data.source = "uploaded tables"
    return data


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_model(path: str, mtime: float):
    from medsyn_tabular.ehr.synthesizer import EHRSynthesizer

    return EHRSynthesizer.load(path)


def zipped(files) -> bytes:
    """Uploaded table files (or one zip) as one zip, names kept (table names are file names)."""
    if len(files) == 1 and files[0].name.lower().endswith(".zip"):
        return files[0].getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.writestr(f.name.rsplit("/", 1)[-1], f.getvalue())
    return buf.getvalue()


def show_timeline(data: EHRDataset, key: str) -> None:
    """A chart of one synthetic patient's record: visits and rows of each event table over time."""
    import altair as alt

    from medsyn_tabular.ehr.timeline import patient_keys, patient_timeline

    keys = patient_keys(data)
    if not keys:
        st.info("No patient to show.")
        return
    chosen = st.selectbox("Synthetic patient", keys, key=f"{key}-patient")
    events = patient_timeline(data, chosen)
    st.caption(f"{len(events)} visits and rows for this patient.")
    if not events.empty:
        chart = alt.Chart(events).mark_circle(size=60).encode(
            x=alt.X("start:T", title="time"), y=alt.Y("track:N", title=None), color="track:N",
            tooltip=["start:T", "track:N", "code:N", "label:N"]).properties(height=260)
        st.altair_chart(chart, use_container_width=True)
        st.dataframe(events.head(500), hide_index=True)


def sampling_panel(synth, model_name: str, real: EHRDataset | None = None) -> None:
    from medsyn_tabular.ehr import fhir
    from medsyn_tabular.ehr.dataset import zip_bytes

    st.subheader("Sample synthetic patients")
    c1, c2 = st.columns(2)
    n = c1.number_input("Patients", min_value=1, max_value=10_000, value=20, step=10)
    seed = c2.number_input("Sampling seed", min_value=0, value=0, step=1)
    if st.button("Generate"):
        try:
            with st.spinner("Generating patients…"):
                data = synth.sample(int(n), seed=int(seed))
            st.session_state["ehr_sample"] = (model_name, data)
            with Store() as store:
                store.append_event(user.username, "sample", {"model": model_name, "patients": int(n)})
        except ValueError as exc:
            st.error(str(exc))
    sampled = st.session_state.get("ehr_sample")
    if sampled is None or sampled[0] != model_name:
        return
    data = sampled[1]
    st.write(", ".join(f"**{name}** {len(df)} rows" for name, df in data.tables.items()))
    show_timeline(data, "synthetic")
    raw = st.checkbox("Raw CSV (for programs, not spreadsheets)", value=False)
    d1, d2 = st.columns(2)
    if d1.download_button("Download tables (CSV zip)", zip_bytes(data, raw=raw),
                          file_name=f"synthetic-{model_name}.zip", mime="application/zip"):
        with Store() as store:
            store.append_event(user.username, "export", {"model": model_name, "patients": data.n_patients,
                                                         "format": "csv-zip", "raw": raw})
    if d2.download_button("Download FHIR R4 Bundles (zip, validated)", fhir.zip_bytes(data),
                          file_name=f"synthetic-{model_name}-fhir.zip", mime="application/zip"):
        with Store() as store:
            store.append_event(user.username, "export", {"model": model_name, "patients": data.n_patients,
                                                         "format": "fhir"})
    evaluate = real is not None and refusal(user, "evaluate") is None
    if evaluate and st.button("Evaluate against the real tables"):
        from medsyn_tabular.ehr.evaluation import evaluate_ehr

        with st.spinner("Evaluating integrity, fidelity, sequences and TSTR…"):
            st.session_state["ehr_report"] = (model_name, evaluate_ehr(real, data))
        with Store() as store:
            store.append_event(user.username, "evaluate", {"model": model_name, "patients": data.n_patients})
    report = st.session_state.get("ehr_report")
    if report is not None and report[0] == model_name:
        from medsyn_app.report_view import render_report

        render_report(report[1], key="ehr-eval")


def saved_models() -> None:
    from medsyn_core.model_store import list_models

    with Store() as store:
        entries = [m for m in list_models(store, user) if m.kind == "ehr-ar"]
    if not entries:
        st.info("No EHR model is saved yet. A researcher trains one here; it then appears in this list.")
        return
    labels = {f"{m.name} ({m.card.get('dp_label', '')})": m for m in entries}
    entry = labels[st.selectbox("Saved EHR model", list(labels))]
    st.caption(f"Trained on {entry.card.get('data_source', '?')} · {entry.card.get('patients', '?')} patients"
               f" · {entry.card.get('dp_label', '')}")
    synth = load_model(str(entry.path), (entry.path / "model_card.json").stat().st_mtime)
    sampling_panel(synth, entry.name)


denied = refusal(user, "train")
modes = ["Sample from a saved model"] if denied else ["Train a new model", "Sample from a saved model"]
mode = st.radio("What to do", modes, horizontal=True)
if denied:
    st.info(denied)
if mode == "Sample from a saved model":
    saved_models()
    st.stop()
st.caption("Related EHR tables (a patient table, their visits, and per visit conditions, medications, "
           "observations, procedures) learned as one sequence per patient. Keys are regenerated, dates keep "
           "their order, codes come from the real vocabularies with matching descriptions (docs/ehr.md).")

# 1. data -------------------------------------------------------------------------------------------
source_kind = st.radio("Data", ["Bundled Synthea sample (synthetic patients)", "Upload tables"],
                       horizontal=True)
blob, path, source, keep_upload = None, None, None, False
if source_kind.startswith("Bundled"):
    path, source = str(bundled(SAMPLE).path), SAMPLE
else:
    files = st.file_uploader("The tables of one export (CSV/Parquet files, or one zip of the folder)",
                             type=[s.lstrip(".") for s in TABLE_SUFFIXES] + ["zip"],
                             accept_multiple_files=True)
    st.caption(uploads.NOTICE)
    keep_upload = st.checkbox("Keep the uploaded tables after training")
    if files:
        audit_upload(user, "ehr", files)  # real patient data reached the server: audited once
        blob, source = zipped(files), "uploaded tables"
if path is None and blob is None:
    st.stop()

# 2. schema review ------------------------------------------------------------------------------------
schema_text = st.session_state.get(f"ehr-schema-{source}")
try:
    data = read_tables(blob, path, schema_text)
except ValueError as exc:
    st.error(str(exc))
    st.stop()
st.subheader("Tables, keys and time columns")
st.dataframe(pd.DataFrame([{
    "table": name, "role": spec.role if spec.model else "not modelled",
    "rows": len(data.tables.get(name, [])), "key": spec.key, "patient": spec.patient, "visit": spec.visit,
    "start": spec.start or spec.birth, "stop": spec.stop or spec.death, "code": spec.code,
    "other columns": ", ".join(list(spec.columns) + spec.by_code), "PHI": ", ".join(spec.phi)}
    for name, spec in data.schema.tables.items()]), hide_index=True)
with st.expander("Review or edit the schema (YAML)"):
    edited = st.text_area("EHR schema", schema_yaml(data.schema), height=300, key=f"ehr-yaml-{source}")
    if st.button("Apply the schema"):
        import yaml

        try:
            EHRSchema.from_dict(yaml.safe_load(edited))
            st.session_state[f"ehr-schema-{source}"] = edited
            st.rerun()
        except (ValueError, yaml.YAMLError) as exc:
            st.error(f"The schema is not valid: {exc}")

# 3. training -----------------------------------------------------------------------------------------
st.subheader("Train")
c1, c2, c3, c4 = st.columns(4)
epochs = c1.number_input("Epochs", min_value=1, max_value=5000, value=100, step=10)
batch_size = c2.number_input("Patients per batch", min_value=2, max_value=1024, value=8, step=2)
dim = c3.number_input("Network width", min_value=16, max_value=512, value=64, step=16)
seed = c4.number_input("Seed", min_value=0, value=0, step=1)
p1, p2, p3 = st.columns(3)
preset = p1.selectbox("Differential privacy", ["off", "strict", "balanced", "exploratory", "custom ε"],
                      help="The unit is the patient with all their rows in every table.")
epsilon = PRESETS.get(preset) if preset != "custom ε" else None
epsilon = p2.slider("ε (total)", min_value=EPSILON_RANGE[0], max_value=EPSILON_RANGE[1],
                    value=float(epsilon or 3.0), step=0.1, disabled=preset != "custom ε")
clip = p3.number_input("Clipping norm (per patient)", min_value=0.01, max_value=100.0, value=1.0, step=0.1,
                       disabled=preset == "off")
if preset != "off":
    st.caption("Under differential privacy the schema above is your declaration: it must hold the public "
               "vocabularies (categories and code lists with descriptions), birth_years and end_date; "
               "nothing about them is read from the rows (docs/ehr.md).")
default_name = names.slugify(f"{source}-ehr")
n1, n2 = st.columns([3, 1])
model_name = n1.text_input("Model name", value=default_name)
replace = n2.checkbox("Replace the existing model")
if st.button("Train", type="primary"):
    import yaml

    data_path = None
    try:
        private = {} if preset == "off" else {"epsilon": float(epsilon), "max_grad_norm": float(clip)}
        schema = yaml.safe_load(schema_text) if schema_text else data.schema.to_dict()
        if private:
            from medsyn_tabular.ehr.synthesizer import EHRSynthesizer

            EHRSynthesizer(schema, epochs=int(epochs), batch_size=int(batch_size), **private).plan_privacy(
                data.n_patients)  # an unreachable budget is reported now, with advice
        model_store.ensure_model_name_free(model_name.strip(), replace=replace)
        with Store() as store:
            extra = {}
            if blob is not None:
                data_path = uploads.save_upload(blob, "tables.zip")
                extra = {"upload": str(data_path), "keep_upload": bool(keep_upload)}
                label = f"upload-{uploads.sha_prefix(data_path)}"
            else:
                label = source
            params = {"data_path": str(data_path or path), "source": label, "name": model_name.strip(),
                      "replace": bool(replace), "schema": schema, "epochs": int(epochs),
                      "batch_size": int(batch_size), "dim": int(dim), "seed": int(seed), "privacy": private,
                      "declared_by": user.username, **extra}
            st.session_state["ehr_job_id"] = jobs.submit(store, user, "ehr-fit", params)
    except (ValueError, FileExistsError, PermissionError) as exc:
        if data_path is not None:
            with Store() as store:
                uploads.discard(store, data_path, user.username)
        st.error(str(exc))


def current_job(me) -> dict | None:
    with Store() as store:
        job_id = st.session_state.get("ehr_job_id")
        if job_id is None:
            mine = [j for j in jobs.visible_jobs(store, me, 50) if j["kind"] == "ehr-fit"
                    and j["owner"] == me.username and j["status"] in ("queued", "running")]
            if not mine:
                return None
            job_id = st.session_state["ehr_job_id"] = mine[0]["id"]
        return jobs.job_for(store, me, job_id)


@st.fragment(run_every=1.0)
def training_progress() -> None:
    me = fragment_guard("train")
    job = current_job(me)
    if job is None:
        return
    st.progress(job["progress"], text=f"Job #{job['id']} {job['status']}: {job['message'] or 'waiting'}")
    losses = pd.DataFrame(job["payload"].get("losses") or [])
    if not losses.empty and "loss" in losses:
        st.line_chart(losses.set_index("epoch")[["loss"]])
    if job["status"] in ("queued", "running") and st.button("Cancel training"):
        with Store() as store:
            jobs.request_cancel(store, me, job["id"])
    if job["status"] == "failed":
        st.error(f"Training failed: {job['error']}.")
    elif job["status"] == "finished" and st.session_state.get("ehr_job_shown") != job["id"]:
        st.session_state["ehr_job_shown"] = job["id"]
        st.rerun()


training_progress()

# 4. sampling, timeline, downloads, evaluation ---------------------------------------------------------
job = current_job(user)
if job is not None and job["status"] == "finished":
    from pathlib import Path

    result = job["result"]
    model_path = Path(result["model_path"])
    synth = load_model(str(model_path), (model_path / "model_card.json").stat().st_mtime)
    st.success(f"Trained the EHR generator on {synth.card['patients']} patients in "
               f"{synth.card['training_seconds']:.1f} s and saved it as **{result['model_name']}**. "
               f"{synth.card['dp_label']}")
    sampling_panel(synth, result["model_name"], real=data)
