"""Model store: the models on this workstation with their cards; download, and delete (admin)."""

import streamlit as st

from medsyn_app.session import page_guard, refusal
from medsyn_core import model_store
from medsyn_core.storage import Store

st.title("Model store")
user = page_guard("view_models")

with Store() as store:
    models = model_store.list_models(store, user)
if not models:
    st.info("No models yet: trained models appear here, and bundled demo models ship in `models/`.")
    st.stop()

st.dataframe(
    [{"name": m.name, "engine": m.engine, "kind": m.kind, "source": m.source,
      "DP": m.view.privacy.label} for m in models],
    hide_index=True, width="stretch")

choice = st.selectbox("Model", range(len(models)), format_func=lambda i: models[i].name)
entry = models[choice]
view = entry.view
left, right = st.columns(2)
with left:
    st.subheader("Model card")
    st.markdown(f"**Engine:** {view.engine} ({view.kind})  \n**Source:** {entry.source}  \n"
                f"**Trained on:** {view.data_source}")
    st.markdown("**Parameters**")
    if view.parameters:
        st.json(view.parameters, expanded=False)
    else:
        st.caption("The card lists no parameters.")
    st.markdown("**Metrics**")
    if view.metrics:
        st.table([{"metric": k, "value": f"{v:.4g}" if isinstance(v, float) else str(v)}
                  for k, v in view.metrics.items()])
    else:
        st.caption("Not evaluated yet: researchers run an evaluation on the Evaluation page.")
    with st.expander("The whole card"):
        st.json(entry.card, expanded=False)
with right:
    st.subheader("Privacy")
    privacy = view.privacy
    if privacy.enabled:
        p1, p2 = st.columns(2)
        p1.metric("ε spent", f"{privacy.epsilon:.3g}")
        p2.metric("δ", f"{privacy.delta:.2g}")
        if privacy.unit:
            st.caption(f"Protected unit: {privacy.unit}")
        if entry.ledger:
            with st.expander("Privacy ledger (every use of the real data)"):
                st.json(entry.ledger, expanded=False)
    else:
        st.markdown("**DP: off**")
        st.caption("Trained without differential privacy: no guarantee; its evaluation report's privacy "
                   "attacks are the only evidence.")
    if refusal(user, "export") is None and entry.path.is_dir():
        if st.button("Prepare zip download"):
            with Store() as store:
                st.session_state["model_zip"] = (entry.name, model_store.zip_model(store, user, entry))
        prepared = st.session_state.get("model_zip")
        if prepared and prepared[0] == entry.name:
            st.download_button("Download the model folder (.zip)", data=prepared[1],
                               file_name=f"{entry.name}.zip", mime="application/zip")

if view.engine == "imaging" and view.kind in ("stylegan2", "dcgan"):
    import datetime as dt

    from medsyn_core import approvals
    from medsyn_imaging.evaluation.quality import quality_check

    st.subheader("For clinicians")
    check = quality_check(view.metrics)
    with Store() as store:
        grant = approvals.approval(store, entry.name)
    if check.passed:
        st.markdown(f"**Quality:** {check.label}: passes the quality bar, so clinicians are offered it.")
    else:
        st.markdown(f"**Quality:** {check.label}: below the quality bar ({'; '.join(check.reasons)}).")
    if grant is not None:
        st.caption(f"Approved for clinicians by {grant.approved_by} on "
                   f"{dt.datetime.fromtimestamp(grant.approved_at):%Y-%m-%d %H:%M}"
                   + (f": {grant.note}" if grant.note else "") + ".")
    elif not check.passed:
        st.caption("Hidden from clinicians until it passes the bar or an admin approves it.")
    if refusal(user, "approve_models") is None:
        if grant is not None:
            if st.button("Withdraw the approval"):
                with Store() as store:
                    approvals.revoke(store, user, entry.name)
                st.rerun()
        elif not check.passed:
            note = st.text_input("Why clinicians may use it anyway (recorded in the audit log)",
                                 key=f"approval-note-{entry.name}")
            if st.button("Approve for clinicians"):
                with Store() as store:
                    approvals.approve(store, user, entry.name, note)
                st.rerun()

st.subheader("Delete")
if not entry.deletable:
    st.caption("Bundled models ship with MedSyn and cannot be deleted here.")
elif (message := refusal(user, "delete_model")) is not None:
    st.caption(message)
else:
    confirm = st.text_input(f"Type the model name `{entry.name}` to confirm deletion")
    if st.button("Delete model", type="primary", disabled=confirm != entry.name):
        with Store() as store:
            model_store.delete_model(store, user, entry.name)
        st.rerun()
