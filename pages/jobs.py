"""Jobs: background work (training, large generation) with live progress, cancel and resume.

The page only reads the job table, so it survives reloads and navigation; the worker runs in the app
server. Engines add their job kinds with ``medsyn_core.jobs.register_job_type``. Researchers see and
act on their own jobs; other users' jobs appear only as queue entries. Admins see and act on all.
"""

import streamlit as st

from medsyn_app.session import fragment_guard, page_guard
from medsyn_core import jobs
from medsyn_core.auth import PermissionDenied
from medsyn_core.storage import Store

st.title("Jobs")
user = page_guard("run_example_job")

with st.expander("Run the example job (counts primes; shows progress, cancel and resume)"):
    limit = st.number_input("Count primes below", 1000, 5_000_000, 200_000, step=1000)
    chunks = st.number_input("Chunks (one checkpoint each)", 1, 100, 20)
    if st.button("Start example job"):
        with Store() as store:
            jobs.submit(store, user, "example-primes", {"limit": int(limit), "chunks": int(chunks)})


@st.fragment(run_every=1.0)
def job_table() -> None:
    me = fragment_guard("run_example_job")  # every refresh: still logged in, enabled, allowed
    with Store() as store:
        rows = jobs.visible_jobs(store, me, limit=20)
    if not rows:
        st.caption("No jobs yet.")
        return
    for job in rows:
        with st.container(border=True):
            if job["owner"] is None:  # another user's job: only its place in the queue
                st.markdown(f"**#{job['id']} {job['kind']}** · {job['status']} · another user's job")
                continue
            st.markdown(f"**#{job['id']} {job['kind']}** · {job['status']} · by {job['owner']}")
            try:
                if job["status"] in ("queued", "running"):
                    st.progress(job["progress"], text=job["message"] or job["status"])
                    if st.button("Cancel", key=f"cancel-{job['id']}"):
                        with Store() as store:
                            jobs.request_cancel(store, me, job["id"])
                if job["payload"] and job["status"] == "running":
                    st.caption(", ".join(f"{k}: {v}" for k, v in job["payload"].items()))
                if job["result"] is not None:
                    st.json(job["result"])
                if job["error"]:
                    st.error(job["error"])
                if job["status"] in ("failed", "cancelled") and job["checkpoint"]:
                    if st.button("Resume from last checkpoint", key=f"resume-{job['id']}"):
                        with Store() as store:
                            jobs.resume(store, me, job["id"])
            except PermissionDenied as exc:
                st.error(str(exc))


job_table()
