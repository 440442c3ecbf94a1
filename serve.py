"""The MedSyn app server: Streamlit's app (``app.py``) plus MedSyn's own routes (the session cookie).

``make run`` starts it with ``streamlit run serve.py`` (Streamlit finds the ``st.App`` below and serves it
with uvicorn). ``streamlit run app.py`` still works, but then a browser reload logs the user out, since
the route that sets the session cookie is missing.
"""

import streamlit as st

from medsyn_app.web_routes import routes

app = st.App("app.py", routes=routes())
