"""MedSyn shared core: device choice, settings, local storage and the CLI.

Nothing here imports Streamlit, and torch is imported only inside the functions that need it, so that
the app's home page and ``medsyn --help`` start fast.
"""

__version__ = "0.1.0"
