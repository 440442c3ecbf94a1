"""Audit: the tamper-evident log of who did what."""

import streamlit as st

st.title("Audit")
st.info("Not built yet: login, roles and the audit log view are planned.")
