"""Home: what MedSyn is, a quick-start tour, and the bundled datasets."""

import streamlit as st

from medsyn_app.session import page_guard
from medsyn_core.catalog import BUNDLED

page_guard()

st.title("MedSyn")
st.markdown(
    "Turn real patient data into **synthetic data with measured fidelity, utility and privacy**: "
    "EHR-like tables and medical images, each with evidence of fidelity (does it look real), utility "
    "(do models trained on it work on real patients) and privacy (can a real patient be found in it). "
    "Models trained with differential privacy carry a guarantee (ε, with the unit it protects: a row, a "
    "patient or an image); the others carry only the measured attacks. Synthetic data is not "
    "automatically safe to share: read the model card."
)

st.subheader("Quick start")
st.markdown(
    "1. **Synthetic scans** — preview synthetic chest X-rays from the bundled demo model, by class, "
    "and export them as DICOM, NIfTI or PNG; researchers can train a new generator.\n"
    "2. **Tabular** — sample rows from a saved model and download a CSV; researchers pick the bundled "
    "heart-disease table or upload a CSV, Parquet or Excel file, fix messy columns in one click, read the "
    "data profile, review the detected columns and identifiers, choose a privacy level (ε; batch size and "
    "epochs are chosen for it) and train a generator; 20 % of the rows are kept back for the report.\n"
    "3. **Imaging** — view DICOM, NIfTI and PNG images; DICOM headers are de-identified as they are read.\n"
    "4. **Evaluation** — the fidelity, utility and privacy report of a synthetic table, saved models "
    "compared side by side, or FID, TSTR and memorisation of synthetic images as a background job "
    "(researchers).\n"
    "5. **Model store** — the models on this workstation with their model cards and privacy ledgers.\n"
    "6. **Jobs** and **Audit** — running trainings; who did what, in a tamper-evident log."
)
st.caption("Everything runs on this machine; no data or model leaves it, and nothing is downloaded.")

st.subheader("Bundled datasets")
st.table(
    [
        {"name": d.name, "kind": d.kind, "content": d.title, "shape": d.shape, "license": d.license}
        for d in BUNDLED
    ]
)
st.caption("Provenance and licenses: `data/README.md`.")
