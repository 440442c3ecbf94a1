"""The MedSyn app server: Streamlit's app (``app.py``) plus MedSyn's own routes (the session cookie).

``make run`` starts it with ``streamlit run serve.py`` (Streamlit finds the ``st.App`` below and serves it
with uvicorn). ``streamlit run app.py`` still works, but then a browser reload logs the user out (the route
that sets the session cookie is missing) and the first visitor after a start who opens a page's address
directly sees the ``pages/`` folder listed.
"""

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from medsyn_app.web_routes import routes

# app.py routes every request with st.navigation (the login page only, before login). Streamlit treats a
# folder called pages/ as pages of their own until some session has called st.navigation; say so from the
# first request, or the first visitor after a start could open pages/<name>.py directly by its address.
PagesManager.uses_pages_directory = False

app = st.App("app.py", routes=routes())
