"""Federation: an admin starts a federation server and watches sites join and rounds progress; a researcher
at a site joins with the token the admin issued. Thin page: the work is medsyn_federated's (the same
functions as `medsyn federated server|client`), run as background jobs."""

import pandas as pd
import streamlit as st

from medsyn_app.session import audit_upload, fragment_guard, page_guard, refusal
from medsyn_core import jobs, uploads
from medsyn_core.storage import Store
from medsyn_federated import federation_job

st.title("Federation")
user = page_guard("join_federation")
st.caption("Train one generator on several hospitals' data without moving a record (Flower). Each site "
           "trains on its own data; only model updates and differentially private statistics leave it. "
           "Step by step for two machines: docs/federated.md.")

is_admin = refusal(user, "run_federation") is None
tabs = st.tabs(["Run a federation", "Join as a site"] if is_admin else ["Join as a site"])

if is_admin:
    with tabs[0]:
        st.subheader("Start the server")
        st.caption("The federation file lives on this server, next to its certificates (made with "
                   "`medsyn federated certs`). It names the sites' public keys, the model and the rounds.")
        config_path = st.text_input("Federation file (fed.yaml) on this server")
        replace = st.checkbox("Replace a model of the same name")
        if config_path:
            from medsyn_federated.config import load_config

            try:
                cfg = load_config(config_path)
            except (ValueError, OSError) as exc:
                st.error(str(exc))
            else:
                st.write(f"**{cfg.name}**: {cfg.engine} {cfg.model}, {cfg.rounds} rounds of "
                         f"{cfg.local_epochs:g} local epoch(s), {cfg.strategy}; sites: "
                         f"{', '.join(sorted(cfg.sites))}; port {cfg.port}; DP at each site: "
                         f"{'ε = ' + str(cfg.privacy['epsilon']) if cfg.privacy else 'off'}; DP-FedAvg: "
                         f"{'on' if cfg.dp_fedavg else 'off'}")
                if st.button("Start the server", type="primary"):
                    try:
                        with Store() as store:
                            job = jobs.submit(store, user, "federation-server",
                                              {"config": str(cfg.source), "replace": bool(replace)})
                        st.success(f"Server job #{job} queued; sites can join once it is listening.")
                    except (ValueError, PermissionError) as exc:
                        st.error(str(exc))

        @st.fragment(run_every=2.0)
        def federations() -> None:
            fragment_guard("run_federation")
            names = federation_job.list_federations()
            if not names:
                st.info("No federation has run on this server yet.")
                return
            name = st.selectbox("Federation", names)
            status = federation_job.read_status(name) or {}
            rounds = int(status.get("rounds") or 1)
            st.progress(min(1.0, float(status.get("round") or 0) / rounds),
                        text=f"{status.get('state', '?')}: round {status.get('round', 0)} of {rounds}")
            st.write("Sites joined: " + (", ".join(status.get("sites_joined") or []) or "none yet"))
            if status.get("error"):
                st.error(status["error"])
            if status.get("model_path"):
                st.success(f"Global model saved: {status['model_path']} (see the Model store page)")
            history = status.get("history") or []
            if history:
                rows = [{"round": r["round"], "sites": len(r.get("sites") or []), **r.get("metrics", {}),
                         **({"quality": r["quality"]} if r.get("quality") is not None else {})}
                        for r in history]
                frame = pd.DataFrame(rows).set_index("round")
                metrics = [c for c in frame.columns if c != "sites"]
                if metrics:
                    st.line_chart(frame[metrics])
                st.dataframe(pd.DataFrame([{"round": r["round"], "sites": ", ".join(r.get("sites") or []),
                                            "left out": ", ".join(r.get("missing") or [])} for r in history]),
                             hide_index=True)
            from medsyn_core import settings

            log = federation_job.log_tail(settings.home_dir() / "federation" / name / "federation.log")
            if log:
                st.code("\n".join(log), language=None)

        federations()

with tabs[-1]:
    st.subheader("Join a federation")
    st.caption("You need from the admin: the server address (HOST:PORT), the federation's CA certificate "
               "(ca.crt) and this site's token. The data stays on this machine.")
    server = st.text_input("Server address (HOST:PORT)")
    site = st.text_input("Site name (for this machine's logs)", value="site")
    token = st.text_input("Site token", type="password")
    ca_file = st.file_uploader("CA certificate (ca.crt)", type=["crt", "pem"])
    data_file = st.file_uploader("This site's data: a table (CSV/Parquet) or images (MedMNIST .npz)",
                                 type=["csv", "parquet", "npz"])
    epsilon = st.number_input("This site's ε (0 = the federation's setting)", min_value=0.0, value=0.0)
    public_rows = st.checkbox("The model card may list this site's row count")
    if data_file is not None:
        audit_upload(user, "federation", [data_file])
    if st.button("Join", type="primary", disabled=not (server and token and ca_file and data_file)):
        from medsyn_core.files import atomic_write_bytes
        from medsyn_federated import runner

        data_path = None
        try:
            runner.prepare_site_key(site, token)  # the token itself is not stored anywhere
            ca_path = atomic_write_bytes(runner.site_work_dir(site) / "ca.crt", ca_file.getvalue())
            data_path = uploads.save_upload(data_file.getvalue(), data_file.name)
            with Store() as store:
                job = jobs.submit(store, user, "federation-site", {
                    "server": server.strip(), "site": site, "ca": str(ca_path), "data": str(data_path),
                    "upload": str(data_path), "epsilon": float(epsilon) or None,
                    "public_rows": bool(public_rows)})
            st.success(f"Joining as job #{job}; the admin's page shows when this site is in.")
        except (ValueError, PermissionError, OSError) as exc:
            if data_path is not None:
                with Store() as store:
                    uploads.discard(store, data_path, user.username)
            st.error(str(exc))

    @st.fragment(run_every=2.0)
    def my_sites() -> None:
        me = fragment_guard("join_federation")
        with Store() as store:
            mine = [j for j in jobs.visible_jobs(store, me, 50)
                    if j["kind"] == "federation-site" and j["owner"] == me.username]
        for job in mine[:5]:
            st.write(f"Job #{job['id']}: {job['status']} — {job.get('message') or ''}")
            if job["status"] in ("queued", "running") and st.button("Leave the federation",
                                                                      key=f"leave-{job['id']}"):
                with Store() as store:
                    jobs.request_cancel(store, me, job["id"])

    my_sites()
