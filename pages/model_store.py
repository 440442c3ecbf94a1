"""Model store: the trained models on this workstation, with their model cards."""

import streamlit as st

from medsyn_core.storage import Store

st.title("Model store")
with Store() as store:
    models = store.list_models()
if not models:
    st.write("No trained models are registered yet.")
else:
    st.table([{"name": m.name, "engine": m.engine,
               "DP": f"ε = {m.dp_epsilon:.3g}" if m.dp_epsilon is not None else "DP: off", "path": m.path}
              for m in models])
st.info("Not built yet: model cards, delete and download.")
