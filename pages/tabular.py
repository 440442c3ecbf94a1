"""Tabular: train CTGAN/TVAE generators on EHR-like tables and sample synthetic rows.

Thin page: reading (CSV, Parquet, Excel), cleaning messy columns, the data profile, schema, PHI, the
holdout, the DP defaults and plan, training, sampling, saving and evaluating are the engine's functions
(``medsyn_tabular``), the same ones the CLI and the tests use. Training is a background job
(``medsyn_core.jobs``, kind ``tabular-fit``) in its own process: the page only polls the job table, so it
never freezes and a reload finds the running job again. Clinicians sample from saved models only.
"""

import hashlib
import io

import pandas as pd
import streamlit as st

from medsyn_app.session import audit_upload, fragment_guard, page_guard, refusal
from medsyn_core import jobs, model_store, names, uploads
from medsyn_core.catalog import bundled
from medsyn_core.csv_export import to_csv_bytes
from medsyn_core.privacy.budget import EPSILON_RANGE, PRESETS, default_delta
from medsyn_core.report import model_context
from medsyn_core.storage import Store
from medsyn_tabular.data.cleaning import apply_fixes, apply_missing_tokens, detect_issues
from medsyn_tabular.data.datasets import LOADERS, METADATA, load_bundled_table
from medsyn_tabular.data.holdout import DEFAULT_SHARE, apply_spec, split_holdout
from medsyn_tabular.data.io import read_table
from medsyn_tabular.data.phi import ACTIONS
from medsyn_tabular.data.privacy_unit import KEY_LIKE_PHI
from medsyn_tabular.data.profile import profile_table
from medsyn_tabular.data.review import review_table
from medsyn_tabular.data.schema import KINDS
from medsyn_tabular.models.registry import MODELS as MODEL_SPECS

st.title("Tabular")
user = page_guard("sample")
#: What belongs to one table: dropped when another table is chosen, so nothing of it stays on screen.
TABLE_STATE = ("tabular_job_id", "tabular_job_shown", "tabular_rows", "tabular_report", "tabular_job_table")


@st.cache_data(show_spinner="Reading the table…", max_entries=2)
def read_upload(data: bytes, name: str) -> pd.DataFrame:
    """The uploaded table, parsed once per upload rather than on every rerun of the page."""
    return read_table(data, name=name)


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_synthesizer(path: str, mtime: float):
    from medsyn_tabular.synthesizer import TabularSynthesizer

    return TabularSynthesizer.load(path)


@st.cache_data(show_spinner="Planning the differential privacy…", max_entries=16)
def dp_plan(n_rows: int, model: str | None, epsilon: float, delta: float, clip: float, epochs, batch_size):
    """(batch size, epochs, σ, q, steps, ε training) of the DP plan, or the readable refusal (str);
    ``model`` None: the registry's default for this ε."""
    from medsyn_core.privacy import PrivacyError
    from medsyn_tabular.synthesizer import TabularSynthesizer

    try:
        synth = TabularSynthesizer(model, epochs=epochs, batch_size=batch_size, epsilon=epsilon, delta=delta,
                                   max_grad_norm=clip)
        budget, plan = synth.plan_privacy(n_rows)
    except (PrivacyError, ValueError) as exc:
        return str(exc)
    if plan is None:  # a marginal model (MST/AIM): zCDP over noisy marginals, no DP-SGD steps
        return {"model": synth.model_name, "mechanism": "noisy marginals (zCDP, discrete Gaussian)",
                "ε total": budget.epsilon, "δ": budget.delta}
    return {"model": synth.model_name, "batch size": synth.batch_size, "epochs": synth.epochs,
            "noise multiplier σ": plan.noise_multiplier, "sample rate q": plan.sample_rate,
            "DP-SGD steps": plan.steps,
            "ε training (after the preprocessing share)": budget.epsilon_training,
            "chosen for you": ", ".join(synth.chosen_by_default) or "nothing"}


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
                   if m.engine == "tabular" and m.kind != "ehr-ar"]  # EHR models: the EHR page
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
st.caption("Synthetic EHR tables with ARGN, TVAE, CTGAN, MST or AIM (one line each below). Identifier "
           "columns are removed or transformed (HIPAA Safe Harbor) before training. Optional differential "
           "privacy: the ε covers every use of the real rows (preprocessing statistics and training).")

# 1. data ------------------------------------------------------------------------------------------
source_kind = st.radio("Data", ["Bundled dataset", "Upload a file"], horizontal=True)
raw_df, source, upload_bytes, keep_upload = None, None, None, False
if source_kind == "Bundled dataset":
    name = st.selectbox("Dataset", list(LOADERS))
    raw_df, source = load_bundled_table(name), name
    data_key = ("bundled", name)
else:
    upload = st.file_uploader("CSV, TSV, Parquet or Excel (.xlsx, first sheet)",
                              type=["csv", "tsv", "txt", "parquet", "pq", "xlsx", "xlsm"])
    st.caption(uploads.NOTICE)
    keep_upload = st.checkbox("Keep the uploaded file after training",
                              help="Off: the file is deleted when the training job ends. On: it stays "
                                   "(private to the service account) until an admin deletes it.")
    data_key = None
    if upload is not None:
        audit_upload(user, "tabular", [upload])  # real patient data reached the server: audited once
        data_key = ("upload", hashlib.sha256(upload.getvalue()).hexdigest())
        try:
            raw_df, source = read_upload(upload.getvalue(), upload.name), upload.name
            upload_bytes = upload.getvalue()
        except ValueError as exc:
            st.error(str(exc))
if st.session_state.get("tabular_data_key") != data_key:  # another table: forget the last one's results
    for key in TABLE_STATE:
        st.session_state.pop(key, None)
    st.session_state["tabular_data_key"] = data_key
if raw_df is None:
    st.stop()
st.write(f"**{source}**: {len(raw_df)} rows x {raw_df.shape[1]} columns")

# 2. messy columns and missing values ---------------------------------------------------------------
issues = detect_issues(raw_df)
fix_choices: dict[str, str] = {}
if issues:
    st.subheader("Messy columns")
    st.caption("These text columns are really numbers. Choose what to do with each (nothing is changed in "
               "your file; the table below is what trains).")
    labels = {"parse": "read as numbers (others missing)", "missing": "keep plain numbers, others missing",
              "categorical": "keep as text labels"}
    for issue in issues:
        shown = []
        if issue.units:
            shown.append("unit" + "s" * (len(issue.units) > 1) + ": " + ", ".join(issue.units))
        if issue.other_tokens:
            shown.append("not numbers: " + ", ".join(repr(t) for t in issue.other_tokens))
        fix_choices[issue.column] = st.radio(
            f"**{issue.column}**: {issue.describe()}" + (f" ({'; '.join(shown)})" if shown else ""),
            issue.fixes, format_func=labels.get, horizontal=True, key=f"fix-{data_key}-{issue.column}")
with st.expander("Missing values: cell values that mean 'not recorded', per column"):
    st.caption("Already read as missing everywhere: empty cells, NA, N/A, ?, null, none, -, … Add a "
               "column's own codes here (e.g. 0 for a glucose never measured, 'unknown', 'not done'), "
               "separated by commas.")
    tokens_frame = st.data_editor(
        pd.DataFrame({"column": [str(c) for c in raw_df.columns], "missing tokens": [""] * raw_df.shape[1]}),
        hide_index=True, disabled=["column"], key=f"tokens-{data_key}")
missing_tokens = {r["column"]: [t.strip() for t in str(r["missing tokens"] or "").split(",") if t.strip()]
                  for r in tokens_frame.to_dict("records")}
missing_tokens = {c: t for c, t in missing_tokens.items() if t}
df, token_records = apply_missing_tokens(raw_df, missing_tokens)
df, fix_records = apply_fixes(df, {c: f for c, f in fix_choices.items() if c in df.columns})
cleaning = [r.to_dict() for r in token_records + fix_records if r.fix != "categorical"]
if cleaning:
    st.caption(f"Applied: {len(cleaning)} change(s), "
               f"{sum(r['cells_parsed'] for r in cleaning)} cells read as numbers, "
               f"{sum(r['cells_made_missing'] for r in cleaning)} cells made missing.")

# 3. data profile -------------------------------------------------------------------------------------
schema, findings = review_table(df)  # cached on the table's content: not redone on every rerun
profile = profile_table(df, schema)
with st.expander(f"Data profile ({len(profile.warnings)} warning{'s' * (len(profile.warnings) != 1)})",
                 expanded=bool(profile.warnings)):
    st.dataframe(pd.DataFrame(profile.rows), hide_index=True, width="stretch")
    for warning in profile.warnings:
        st.warning(warning)

# 4. schema and PHI review ------------------------------------------------------------------------
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
    review, hide_index=True, disabled=["column", "PHI", "missing", "why"],
    key=f"schema-{data_key}-{hashlib.sha256(repr(sorted(fix_choices.items())).encode()).hexdigest()[:8]}",
    column_config={"kind": st.column_config.SelectboxColumn(options=list(KINDS) + ["drop"]),
                   "PHI action": st.column_config.SelectboxColumn(options=list(ACTIONS))},
)
pairs = list(zip(edited.to_dict("records"), review.to_dict("records"), strict=True))
overrides = {"columns": {new["column"]: {"kind": new["kind"]} for new, old in pairs
                         if new["kind"] != old["kind"]}}
phi_actions = {new["column"]: new["PHI action"] for new, old in pairs
               if new["PHI action"] != old["PHI action"] or new["column"] in phi}
rules_text = st.text_area(
    "Clinical rules, one per line (every synthetic row keeps them; docs/tabular.md)", key=f"rules-{source}",
    placeholder="admission <= discharge\ndiastolic < systolic\npregnancies = 0 if sex = M\n"
                "pregnant = yes only if sex = F\nderive bmi = weight / (height / 100) ** 2",
    help="Inequalities between columns, a value or range under a condition ('if'), fixed combinations "
         "'(sex, pregnant) in {(F, yes), (F, no), (M, no)}', derived columns ('derive col = formula', "
         "computed, not modelled). Rules are public declarations: they cost no privacy budget.")
rules = [line.strip() for line in rules_text.splitlines() if line.strip()]
if rules:
    overrides["constraints"] = rules

# 5. holdout ---------------------------------------------------------------------------------------
st.subheader("Train")
columns = [str(c) for c in df.columns]
h1, h2, h3 = st.columns([2, 1, 1])
use_holdout = h1.checkbox("Keep back a holdout for the evaluation (recommended)", value=True,
                          help="These real rows are never trained on; every report tests membership "
                               "inference and distances against them.")
holdout_share = h2.slider("Holdout share", 0.1, 0.4, DEFAULT_SHARE, 0.05, disabled=not use_holdout)
stratify = h3.selectbox("Stratified by", columns,
                        index=columns.index("num") if "num" in columns else len(columns) - 1,
                        disabled=not use_holdout, help="Usually the outcome you will predict.")
train_df, holdout_spec = df, None
if use_holdout:
    try:
        train_df, _, holdout_spec = split_holdout(df, float(holdout_share), stratify)
        st.caption(f"Training on {holdout_spec.n_train} rows; {holdout_spec.n_holdout} rows kept back"
                   + (f", stratified by {holdout_spec.stratify}." if holdout_spec.stratify else
                      " (at random: the column has too many values, or a value appears once)."))
    except ValueError as exc:
        st.warning(str(exc))
        use_holdout = False

# 6. training settings ------------------------------------------------------------------------------
c1, c2, c3, c4 = st.columns(4)
model = c1.selectbox("Model", ["auto"] + list(MODEL_SPECS),
                     help="auto: MST with differential privacy at ε ≤ 3, ARGN otherwise")
st.caption("  \n".join(spec.summary for spec in MODEL_SPECS.values()))  # one line per model
chosen = None if model == "auto" else model
epochs = c2.number_input("Epochs", min_value=1, max_value=5000, value=None, step=10, placeholder="auto",
                         help="Empty: chosen for you (300 without DP; under DP from the rows and ε).")
batch_size = c3.number_input("Batch size", min_value=2, max_value=10_000, value=None, step=10,
                             placeholder="auto",
                             help="Empty: chosen for you (500 without DP; under DP about 5 % of the rows).")
seed = c4.number_input("Seed", min_value=0, value=0, step=1)
time_budget = st.number_input(
    "Time budget in seconds (0: none)", min_value=0, max_value=86_400, value=0, step=60,
    help="Without differential privacy, training stops before this many seconds, and also as soon as the "
         "quality on held-out rows stops improving (early stopping); the epochs above are the most.")

st.markdown("**Differential privacy**")
PRESET_NAMES = ["off", "strict", "balanced", "exploratory", "custom ε"]


def _preset_changed() -> None:  # a preset sets the slider; the slider stays usable
    value = PRESETS.get(st.session_state["tabular_preset"])
    if value is not None:
        st.session_state["tabular_epsilon"] = float(value)


def _epsilon_changed() -> None:  # moving the slider away from the preset's ε makes it a custom ε
    preset = st.session_state.get("tabular_preset")
    if preset not in (None, "off") and PRESETS.get(preset) != st.session_state["tabular_epsilon"]:
        st.session_state["tabular_preset"] = "custom ε"


st.session_state.setdefault("tabular_epsilon", 3.0)
p1, p2, p3, p4 = st.columns(4)
preset = p1.selectbox("Preset", PRESET_NAMES, key="tabular_preset", on_change=_preset_changed,
                      help="strict ε = 1, balanced ε = 3, exploratory ε = 10; off = no differential privacy")
epsilon = p2.slider("ε (total)", min_value=EPSILON_RANGE[0], max_value=EPSILON_RANGE[1], step=0.1,
                    key="tabular_epsilon", on_change=_epsilon_changed,
                    help="smaller ε = stronger privacy; covers preprocessing and training. Moving it picks "
                         "'custom ε'.")
n_train = len(train_df)
delta = p3.number_input("δ", min_value=0.0, max_value=1.0 / n_train, value=default_delta(n_train),
                        step=default_delta(n_train) / 10, format="%.2e", disabled=preset == "off",
                        help="must be below 1/n")
clip = p4.number_input("Clipping norm", min_value=0.01, max_value=100.0, value=1.0, step=0.1,
                       disabled=preset == "off", help="per-sample gradient clipping norm C")
metadata, unit_choice, plan = None, None, None
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
    if source in METADATA and not cleaning and st.checkbox(
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
    plan = dp_plan(n_train, chosen, float(epsilon), float(delta), float(clip),
                   None if epochs is None else int(epochs), None if batch_size is None else int(batch_size))
    if isinstance(plan, str):
        st.error(f"This plan cannot work: {plan}")
    else:
        st.markdown("**The plan** (from public numbers only: the rows, ε, δ, batch size and epochs)")
        st.dataframe(pd.DataFrame([{k: (f"{v:.3g}" if isinstance(v, float) else v)
                                    for k, v in plan.items()}]), hide_index=True)

# an upload's file name may hold identifiers: it names nothing that is stored (model, card, job, audit)
default_name = names.slugify(f"{source if upload_bytes is None else 'uploaded-table'}-{model}")
n1, n2 = st.columns([3, 1])
model_name = n1.text_input("Model name", value=default_name,
                           help="Letters, digits, '-', '_' and '.'; starts with a letter or digit.")
replace = n2.checkbox("Replace the existing model", help="Only if a model of this name exists: the new one "
                      "takes its place for everyone (recorded in the audit log).")
if st.button("Train", type="primary", disabled=isinstance(plan, str)):
    from medsyn_tabular.fit_job import submit_fit
    from medsyn_tabular.synthesizer import TabularSynthesizer

    data_path = None
    try:
        private = {} if preset == "off" else {"epsilon": float(epsilon), "delta": float(delta),
                                               "max_grad_norm": float(clip), "metadata": metadata}
        if preset != "off":  # the reviewed table is the declaration: every column's kind, and the unit
            overrides = {"columns": {r["column"]: {"kind": r["kind"]} for r in edited.to_dict("records")},
                         "declared_by": user.username, **({"constraints": rules} if rules else {})}
            if unit_choice and unit_choice.startswith("Rows with the same"):
                overrides["patient_key"] = key_like[unit_options.index(unit_choice) - 1]
            else:
                overrides["unit"] = "row"
        chosen_epochs = None if epochs is None else int(epochs)
        chosen_batch = None if batch_size is None else int(batch_size)
        synth = TabularSynthesizer(chosen, epochs=chosen_epochs, batch_size=chosen_batch, seed=int(seed),
                                   schema=overrides, phi_actions=phi_actions, **private)
        # everything that can be refused is refused now, before real data is saved or a job is queued:
        # the kinds and overrides against the table (e.g. text in a column declared continuous), the
        # budget, the name (submit_fit checks the settings, budget and name again)
        synth.prepare(train_df)
        synth.plan_privacy(len(train_df))
        model_store.ensure_model_name_free(model_name.strip(), replace=replace)  # a bad or taken name, too
        with Store() as store:
            upload_params = {}
            if upload_bytes is not None or cleaning:
                # what trains is what was reviewed: the cleaned table (Parquet keeps its types)
                if cleaning or not source.lower().endswith((".csv", ".tsv", ".txt", ".parquet", ".pq")):
                    buffer = io.BytesIO()
                    try:
                        df.to_parquet(buffer, index=False)
                        data_path = uploads.save_upload(buffer.getvalue(), "table.parquet")
                    except (ValueError, TypeError, ImportError):  # a column Parquet cannot type: CSV
                        data_path = uploads.save_upload(df.to_csv(index=False).encode(), "table.csv")
                else:
                    data_path = uploads.save_upload(upload_bytes, source)
                label = f"upload-{uploads.sha_prefix(data_path)}" if upload_bytes is not None else \
                    f"{source} (cleaned)"
                upload_params = {"upload": str(data_path), "keep_upload": bool(keep_upload)}
                store.append_event(user.username, "upload", {
                    "where": "tabular-training", "file_sha256_prefix": uploads.sha_prefix(data_path),
                    "rows": len(df), "columns": df.shape[1], "kept": bool(keep_upload),
                    "cleaning": cleaning})
            else:
                label = source
            st.session_state["tabular_job_id"] = submit_fit(
                store, user, data_path=data_path or bundled(source).path, source=label,
                n_rows=len(train_df), name=model_name.strip(), model=chosen, epochs=chosen_epochs,
                batch_size=chosen_batch, seed=int(seed), schema=overrides, phi_actions=phi_actions,
                privacy=private, replace=bool(replace), upload=upload_params.get("upload"),
                keep_upload=bool(keep_upload),
                holdout=holdout_spec.to_dict() if holdout_spec is not None else None, cleaning=cleaning,
                time_budget_s=float(time_budget) if time_budget and preset == "off" else None)
            st.session_state["tabular_job_table"] = data_key
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


# polls only while a job is queued or running (a poll re-renders the page's end and would close menus)
_active = current_job(user)
st.fragment(run_every=1.0 if _active and _active["status"] in ("queued", "running") else None)(
    training_progress)()

# 7. sampling and evaluation ---------------------------------------------------------------------------
job = current_job(user)
if job is not None and job["status"] == "finished":
    result = job["result"]
    from pathlib import Path

    path = Path(result["model_path"])
    synth = load_synthesizer(str(path), (path / "model_card.json").stat().st_mtime)
    resumed = synth.card.get("resumed_after_epoch")
    chosen = synth.card.get("chosen_by_default") or {}
    st.success(f"Trained {synth.model_name} in {synth.card['training_seconds']:.1f} s "
               f"{f'(after resuming at epoch {resumed}) ' if resumed else ''}"
               f"(+{synth.card['preprocessing_seconds']:.1f} s preprocessing) and saved as "
               f"**{result['model_name']}** in the model store. {synth.card['dp_label']}"
               + (f" Chosen for you: {', '.join(f'{k} {v}' for k, v in chosen.items())}." if chosen else ""))
    show_ledger(synth)
    if synth.phi_record:
        with st.expander("PHI handling applied"):
            st.table(pd.DataFrame(synth.phi_record)[["column", "category", "action", "detail"]])
    sampling_panel(synth, result["model_name"])

    sampled = st.session_state.get("tabular_rows")
    if sampled is not None and sampled[0] == result["model_name"] and refusal(user, "evaluate") is None:
        st.subheader("Evaluate these rows")
        rows = sampled[1]
        same_table = st.session_state.get("tabular_job_table", data_key) == data_key
        try:
            train_rows, holdout_rows = (apply_spec(df, job["params"].get("holdout")) if same_table
                                        else (df, None))
        except ValueError:
            train_rows, holdout_rows = df, None
        shared = [c for c in rows.columns if c in train_rows.columns]
        target = st.selectbox("Target column for the utility test", shared,
                              index=shared.index(stratify) if stratify in shared else len(shared) - 1)
        if holdout_rows is not None:
            st.caption(f"Against the {len(train_rows)} training rows, with the {len(holdout_rows)} held-out "
                       "rows the model never saw: membership inference and distances compare the two.")
        else:
            st.caption("No holdout was kept for this model: the membership-inference checks are skipped and "
                       "utility is tested on a split of the training rows (optimistic).")
        if st.button("Evaluate"):
            from medsyn_tabular.evaluation import evaluate_tabular

            context = model_context(synth.card, result["model_name"])
            try:
                with st.spinner("Evaluating fidelity, utility, privacy and fairness…"):
                    st.session_state["tabular_report"] = (result["model_name"], evaluate_tabular(
                        train_rows[shared], rows[shared], target=target,
                        holdout=holdout_rows[shared] if holdout_rows is not None else None,
                        title=f"Evaluation of {result['model_name']}", context=context,
                        dp_model=synth.ledger is not None, constraints=synth.overrides.get("constraints")))
                with Store() as store:
                    store.append_event(user.username, "evaluate", {
                        "kind": "tabular", "model": result["model_name"], "target": target,
                        "rows": len(rows), "holdout_rows": len(holdout_rows) if holdout_rows is not None
                        else 0})
            except ValueError as exc:
                st.error(str(exc))
        evaluated = st.session_state.get("tabular_report")
        if evaluated is not None and evaluated[0] == result["model_name"]:
            from medsyn_app.report_view import render_report

            render_report(evaluated[1], key="tabular-eval")
