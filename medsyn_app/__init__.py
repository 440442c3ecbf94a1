"""The Streamlit app's own code (login gate, report view), used by ``app.py`` and ``pages/`` only.

The engines and the core never import this package (nor Streamlit)."""
