"""Audit: the tamper-evident log of who did what (admin only): table, chain check, CSV export."""

import streamlit as st

from medsyn_app.session import page_guard
from medsyn_core import audit
from medsyn_core.storage import Store

st.title("Audit")
user = page_guard("view_audit")
st.caption("Every event is chained to the previous one with SHA-256, and the count and newest hash are "
           "anchored, so editing, deleting or reordering any row is detected. Someone able to rewrite "
           "the whole database file could rebuild a consistent log: record the head hash shown after "
           "a check somewhere else (`medsyn audit verify --expect-head HASH` compares).")

if st.button("Verify the chain"):
    with Store() as store:
        check = audit.verify(store, user)
    (st.success if check.ok else st.error)(check.describe())
    if check.ok:
        st.code(check.head_hash, language=None)

with Store() as store:
    rows = audit.audit_rows(store, user)
st.dataframe([{k: r[k] for k in ("id", "time_utc", "actor", "action", "details_json")}
              for r in reversed(rows)], hide_index=True, width="stretch", height=420)
st.caption(f"{len(rows)} events, newest first.")

if st.button("Prepare CSV export"):
    with Store() as store:
        st.session_state["audit_csv"] = audit.export_csv(store, user)
if "audit_csv" in st.session_state:
    st.download_button("Download audit log (.csv)", data=st.session_state["audit_csv"],
                       file_name="medsyn_audit.csv", mime="text/csv")
