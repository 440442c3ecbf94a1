"""MedSyn tabular engine: synthetic EHR-like tables (no Streamlit imports here)."""
