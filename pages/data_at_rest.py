"""Data at rest (admin): uploaded real files still kept on this server, why, and deleting them (audited)."""

import datetime as dt

import streamlit as st

from medsyn_app.session import page_guard
from medsyn_core import uploads
from medsyn_core.storage import Store

st.title("Data at rest")
user = page_guard("manage_uploads")
st.caption("Real tables uploaded for training are kept in the private uploads folder of the MedSyn home "
           "(readable by the service account only) and deleted when their job ends, unless the user asked "
           "to keep them or the job failed and can still be resumed. Files are named by their SHA-256 "
           "prefix, never by the uploaded file's name. Every deletion is recorded in the audit log. "
           "Command line: `medsyn uploads list` / `medsyn uploads purge [--older-than DAYS]`.")

with Store() as store:
    entries = uploads.list_uploads(store, user)
if notice := st.session_state.pop("uploads_notice", None):
    st.success(notice)
if not entries:
    st.info("No uploaded file is kept on this server.")
    st.stop()

st.dataframe([{"upload": e.id, "size (bytes)": e.size,
               "last written": dt.datetime.fromtimestamp(e.modified).strftime("%Y-%m-%d %H:%M"),
               "jobs": ", ".join(map(str, e.jobs)), "uploaded by": ", ".join(e.owners), "state": e.state}
              for e in entries], hide_index=True, width="stretch")

deletable = [e.id for e in entries if not e.in_use]
if not deletable:
    st.caption("Every kept file is read by a queued or running job; cancel the job first to delete it.")
    st.stop()
c1, c2 = st.columns(2)
chosen = c1.selectbox("Upload", deletable)
if c1.button("Delete this upload"):
    try:
        with Store() as store:
            uploads.delete_upload(store, user, chosen)
        st.session_state["uploads_notice"] = f"Deleted {chosen}."
    except (KeyError, ValueError) as exc:
        st.error(str(exc.args[0] if isinstance(exc, KeyError) else exc))
    else:
        st.rerun()
if c2.button(f"Delete all {len(deletable)} not in use"):
    with Store() as store:
        deleted = uploads.purge(store, user)
    st.session_state["uploads_notice"] = f"Deleted {len(deleted)} upload(s)."
    st.rerun()
