"""Evaluation: fidelity, utility and privacy report of a synthetic dataset."""

import streamlit as st

st.title("Evaluation")
st.info("Not built yet: the fidelity, utility and privacy report is planned.")

st.header("Imaging reports")
from medsyn_imaging.imaging_report import list_saved_reports  # noqa: E402

saved = list_saved_reports()
if not saved:
    st.write("No imaging evaluation yet: run one on the Imaging page or with `medsyn imaging evaluate`.")
else:
    labels = {f"{r.created_at} · {r.title}": (p, r) for p, r in saved}
    choice = st.selectbox("Saved imaging report", list(labels))
    path, report = labels[choice]
    st.download_button("Download HTML", report.to_html(), file_name=path.with_suffix(".html").name)
    st.download_button("Download JSON", report.to_json(), file_name=path.name)
    st.components.v1.html(report.to_html(), height=900, scrolling=True)
