"""Evaluation: fidelity, utility and privacy report of a synthetic dataset."""

import streamlit as st

st.title("Evaluation")
st.info("Not built yet: the fidelity, utility and privacy report is planned.")
