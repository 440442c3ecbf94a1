"""Tabular: train CTGAN/TVAE generators on EHR-like tables and sample synthetic rows."""

import streamlit as st

from medsyn_core.app_session import page_guard, refusal

st.title("Tabular")
user = page_guard("sample")
st.info("Not built yet: the tabular engine (CTGAN and TVAE generators) is the next piece of work.")

st.subheader("Train a generator")
# Server-side: the training controls are only built for roles allowed to train.
if (message := refusal(user, "train")) is not None:
    st.error(message)
else:
    st.caption("Training controls arrive with the tabular engine; they run as background jobs.")
