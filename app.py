"""MedSyn Streamlit app: routes to the pages in ``pages/`` and shows the device in the sidebar.

Run with ``make run`` (or ``streamlit run app.py``). Pages stay thin: they call the same library
functions as the CLI and the tests.
"""

import streamlit as st

from medsyn_core import __version__

st.set_page_config(page_title="MedSyn", page_icon="🩺", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/tabular.py", title="Tabular", icon="📋"),
    st.Page("pages/imaging.py", title="Imaging", icon="🩻"),
    st.Page("pages/synthetic_scans.py", title="Synthetic scans", icon="🫁"),
    st.Page("pages/evaluation.py", title="Evaluation", icon="📊"),
    st.Page("pages/model_store.py", title="Model store", icon="🗄️"),
    st.Page("pages/audit.py", title="Audit", icon="🔏"),
]

page = st.navigation(PAGES)
st.sidebar.caption(f"MedSyn {__version__}")
device_slot = st.sidebar.empty()

# Render the page first: the device check imports torch, which takes a moment on first use.
page.run()


@st.cache_resource(show_spinner=False)
def _device_summary() -> tuple[str, str | None]:
    from medsyn_core.device import DeviceError, device_info

    try:
        return device_info().summary(), None
    except DeviceError as exc:
        return "cpu", str(exc)


summary, problem = _device_summary()
with device_slot.container():
    st.markdown(f"**Device:** {summary}")
    if problem:
        st.warning(problem)
