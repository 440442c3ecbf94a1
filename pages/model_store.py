"""Model store: the models on this workstation with their cards; download, and delete (admin)."""

import streamlit as st

from medsyn_core import model_store
from medsyn_core.app_session import page_guard, refusal
from medsyn_core.storage import Store

st.title("Model store")
user = page_guard("view_models")

with Store() as store:
    models = model_store.list_models(store, user)
if not models:
    st.info("No models yet: trained models appear here, and bundled demo models ship in `models/`.")
    st.stop()

st.dataframe(
    [{"name": m.name, "engine": m.engine, "source": m.source,
      "DP ε": f"{m.dp_epsilon:g}" if m.dp_epsilon is not None else "off"} for m in models],
    hide_index=True, use_container_width=True)

choice = st.selectbox("Model", range(len(models)), format_func=lambda i: models[i].name)
entry = models[choice]
card, ledger = entry.card, entry.ledger
left, right = st.columns(2)
with left:
    st.subheader("Model card")
    st.markdown(f"**Engine:** {entry.engine}  \n**Source:** {entry.source}  \n**Folder:** `{entry.path}`")
    for title, key in (("Data", "data"), ("Parameters", "params"), ("Metrics", "metrics")):
        if card.get(key):
            st.markdown(f"**{title}**")
            st.json(card[key], expanded=False)
    other = {k: v for k, v in card.items() if k not in ("data", "params", "metrics")}
    if other:
        st.json(other, expanded=False)
with right:
    st.subheader("Privacy")
    if ledger:
        st.markdown(f"**ε spent:** {ledger.get('epsilon', 'see ledger')}  \n"
                    f"**δ:** {ledger.get('delta', 'see ledger')}")
        st.json(ledger, expanded=False)
    else:
        st.caption("No privacy ledger: this model was trained without differential privacy.")
    if refusal(user, "export") is None and entry.path.is_dir():
        if st.button("Prepare zip download"):
            with Store() as store:
                st.session_state["model_zip"] = (entry.name, model_store.zip_model(store, user, entry))
        prepared = st.session_state.get("model_zip")
        if prepared and prepared[0] == entry.name:
            st.download_button("Download the model folder (.zip)", data=prepared[1],
                               file_name=f"{entry.name}.zip", mime="application/zip")

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
