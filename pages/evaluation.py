"""Evaluation: fidelity, utility and privacy report of a synthetic dataset."""

import streamlit as st

from medsyn_core.app_session import page_guard

st.title("Evaluation")
page_guard("evaluate")
st.info("Not built yet: the fidelity, utility and privacy report is planned.")
