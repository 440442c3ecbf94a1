"""MedSyn Streamlit app: log in, then route to the pages in ``pages/`` that the user's role may open.

Run with ``make run`` (or ``streamlit run app.py``). Pages stay thin: they call the same library
functions as the CLI and the tests, and each one checks the role again (``app_session.page_guard``).
"""

import streamlit as st

from medsyn_app import session as app_session
from medsyn_core import __version__
from medsyn_core.auth import allowed
from medsyn_federated import federation_job  # noqa: F401  (registers the federation job kinds)
from medsyn_imaging.training import ldm_job, training_job  # noqa: F401  (register imaging-train, -3d)
from medsyn_tabular import fit_job  # noqa: F401  (registers the tabular-fit and ehr-fit job kinds)

# no page_title: the browser tab shows each page's title (st.Page) instead of the same word everywhere
st.set_page_config(page_icon="🩺", layout="wide")

# Once per server process: umask 077 (0600 files, 0700 folders), home folder check, admin from
# $MEDSYN_ADMIN_PASSWORD (then removed from the environment, so no job process inherits it).
app_session.start_service()

# (page, the action a role needs to see it in the menu). Each page checks again on the server side.
PAGES = [
    (st.Page("pages/home.py", title="Home", icon=":material/home:", default=True), None),
    (st.Page("pages/tabular.py", title="Tabular", icon=":material/table:"), "sample"),
    (st.Page("pages/ehr.py", title="EHR", icon=":material/timeline:"), "sample"),
    (st.Page("pages/imaging.py", title="Imaging", icon=":material/radiology:"), "view_images"),
    (st.Page("pages/synthetic_scans.py", title="Synthetic scans", icon=":material/add_photo_alternate:"),
     "view_images"),
    (st.Page("pages/evaluation.py", title="Evaluation", icon=":material/analytics:"), "evaluate"),
    (st.Page("pages/federation.py", title="Federation", icon=":material/hub:"), "join_federation"),
    (st.Page("pages/model_store.py", title="Model store", icon=":material/inventory_2:"), "view_models"),
    (st.Page("pages/jobs.py", title="Jobs", icon=":material/hourglass_top:"), "run_example_job"),
    (st.Page("pages/users.py", title="Users", icon=":material/group:"), "manage_users"),
    (st.Page("pages/audit.py", title="Audit", icon=":material/verified_user:"), "view_audit"),
    (st.Page("pages/data_at_rest.py", title="Data at rest", icon=":material/folder_delete:"),
     "manage_uploads"),
]

# Nothing below runs before a successful login (the gate stops the script otherwise). Before login every
# page's address shows the login page, which then opens the page that was asked for.
user = app_session.login_gate([p.url_path for p, _ in PAGES if p.url_path])

page = st.navigation([p for p, action in PAGES if action is None or allowed(user, action)])
app_session.sidebar(user)
with st.sidebar:
    app_session.cookie_script()  # once after a login: the session cookie that survives a reload
st.sidebar.caption(f"MedSyn {__version__}")
device_slot = st.sidebar.empty()


@st.cache_resource(show_spinner=False)
def _job_worker():
    """One background-job worker per app server; it fails jobs left running by a crash at start."""
    from medsyn_core.jobs import JobWorker

    return JobWorker().start()


_job_worker()

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
