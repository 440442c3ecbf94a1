"""Jobs: background work (training, evaluations) as a table with progress bars; cancel, resume, results.

The page only reads the job table, so it survives reloads and navigation; the worker runs in the app
server. Engines add their job kinds with ``medsyn_core.jobs.register_job_type``. Researchers see and
act on their own jobs; other users' jobs appear only as queue entries. Admins see and act on all, and
only they see the example job (a self-test of the job system), so it never mixes with users' work.
"""

import datetime as dt

import streamlit as st

from medsyn_app.session import fragment_guard, page_guard
from medsyn_core import jobs
from medsyn_core.auth import PermissionDenied, allowed
from medsyn_core.storage import Store

st.title("Jobs")
user = page_guard("run_example_job")
KIND_TITLES = {"tabular-fit": "table generator training", "imaging-train": "image generator training",
               "imaging-evaluate": "imaging evaluation", "example-primes": "example (self-test)"}
#: Where a finished job's result is: (page, link text).
RESULT_PAGES = {"tabular-fit": ("pages/model_store.py", "Open the model store"),
                "imaging-train": ("pages/synthetic_scans.py", "Preview the new generator"),
                "imaging-evaluate": ("pages/evaluation.py", "Open the report on the Evaluation page")}


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _result_text(job: dict) -> str:
    result = job.get("result") or {}
    for key in ("model_name", "report", "generator"):
        if result.get(key):
            return str(result[key])
    return ""


@st.fragment(run_every=2.0)
def job_table() -> None:
    me = fragment_guard("run_example_job")  # every refresh: still logged in, enabled, allowed
    admin = allowed(me, "manage_jobs")
    with Store() as store:
        rows = [j for j in jobs.visible_jobs(store, me, limit=100)
                if admin or j["kind"] != "example-primes"]
    if not rows:
        st.caption("No jobs yet. Training on the Tabular and Synthetic scans pages, and imaging evaluations, "
                   "run here in the background.")
        return
    st.dataframe(
        [{"job": j["id"], "what": KIND_TITLES.get(j["kind"], j["kind"]),
          "owner": j["owner"] or "another user", "status": j["status"], "progress": float(j["progress"]),
          "message": (j.get("message") or "") if j["owner"] else "", "started": _when(j.get("started_at")),
          "finished": _when(j.get("finished_at")), "result": _result_text(j) if j["owner"] else ""}
         for j in rows],
        hide_index=True, width="stretch",
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                                   format="percent")})
    mine = [j for j in rows if j["owner"] is not None]
    if not mine:
        return
    labels = {f"#{j['id']} {KIND_TITLES.get(j['kind'], j['kind'])} · {j['status']}": j for j in mine}
    job = labels[st.selectbox("Job", list(labels), key="jobs_selected")]
    c1, c2, c3 = st.columns(3)
    try:
        if job["status"] in ("queued", "running") and c1.button("Cancel", key=f"cancel-{job['id']}"):
            with Store() as store:
                jobs.request_cancel(store, me, job["id"])
            st.rerun(scope="fragment")
        if job["status"] in ("failed", "cancelled") and job.get("checkpoint") and c2.button(
                "Resume from last checkpoint", key=f"resume-{job['id']}"):
            with Store() as store:
                new_id = jobs.resume(store, me, job["id"])
            st.toast(f"Queued job #{new_id}.")
            st.rerun(scope="fragment")
    except (PermissionDenied, ValueError) as exc:
        st.error(str(exc))
    if job["status"] == "finished" and job["kind"] in RESULT_PAGES:
        page, text = RESULT_PAGES[job["kind"]]
        c3.page_link(page, label=text, icon=":material/open_in_new:")
    if job.get("error"):
        st.error(job["error"])
    if job.get("status") == "running" and job.get("payload"):
        shown = {k: v for k, v in job["payload"].items() if not isinstance(v, list | dict)}
        if shown:
            st.caption(", ".join(f"{k}: {v}" for k, v in shown.items()))


job_table()

if allowed(user, "manage_jobs"):
    with st.expander("Admins: run the example job (counts primes; a self-test of progress, cancel and "
                     "resume)"):
        limit = st.number_input("Count primes below", 1000, 5_000_000, 200_000, step=1000)
        chunks = st.number_input("Chunks (one checkpoint each)", 1, 100, 20)
        if st.button("Start example job"):
            with Store() as store:
                jobs.submit(store, user, "example-primes", {"limit": int(limit), "chunks": int(chunks)})
