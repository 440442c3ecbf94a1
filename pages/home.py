"""Home: what MedSyn is, a quick-start tour, and the bundled datasets."""

import streamlit as st

from medsyn_core.app_session import page_guard
from medsyn_core.catalog import BUNDLED

page_guard()

st.title("MedSyn")
st.markdown(
    "Turn real patient data into **synthetic data that is safe to share**: EHR-like tables and "
    "medical images, each with evidence of fidelity (does it look real), utility (do models trained "
    "on it work on real patients) and privacy (can any real patient be found in it)."
)

st.subheader("Quick start")
st.markdown(
    "1. **Tabular** — pick the bundled heart-disease table or upload a CSV, review the detected "
    "columns and identifiers, train a generator, sample rows and download a CSV.\n"
    "2. **Imaging** — preview synthetic chest X-rays from the demo model and export them as DICOM, "
    "NIfTI or PNG; researchers can train a new generator.\n"
    "3. **Evaluation** — read the fidelity, utility and privacy report of a synthetic dataset.\n"
    "4. **Model store** — the trained models on this workstation with their model cards.\n"
    "5. **Audit** — who did what, in a tamper-evident log."
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
