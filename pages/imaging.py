"""Imaging: load DICOM/NIfTI/PNG, train image generators, preview and export synthetic scans."""

import streamlit as st

st.title("Imaging")
st.info("Not built yet: DICOM/NIfTI reading and writing and the image generator are planned.")
