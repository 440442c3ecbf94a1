"""MedSyn imaging engine: medical image I/O and generators (no Streamlit imports here)."""
