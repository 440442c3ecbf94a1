"""Tabular: train CTGAN/TVAE generators on EHR-like tables and sample synthetic rows."""

import streamlit as st

st.title("Tabular")
st.info("Not built yet: the tabular engine (CTGAN and TVAE generators) is the next piece of work.")
