"""Users (admin): create accounts, change roles, disable accounts, create and revoke API tokens; every
change is audited."""

import time

import streamlit as st

from medsyn_app.session import page_guard, sso_settings
from medsyn_core import auth
from medsyn_core.storage import Store

st.title("Users")
user = page_guard("manage_users")

with Store() as store:
    accounts = auth.list_users(store, user)
st.dataframe([{"username": a["username"], "role": a["role"], "active": bool(a["active"]),
               "single sign-on identity": a["sso_identity"] or ""}
              for a in accounts], hide_index=True, width="stretch")
sso = sso_settings()
if sso is None:
    st.caption("Single sign-on is not configured (no `[auth]` section in `.streamlit/secrets.toml`); "
               "accounts log in with their MedSyn password. See the README to connect the hospital's "
               "OpenID Connect provider.")
else:
    st.caption(f"Single sign-on is on: a login through the provider reaches the account whose link "
               f"equals its `{sso['claim']}` claim. Unlinked identities are refused.")

st.subheader("Create an account")
NEW_FIELDS = {"new_username": "", "new_role": "clinician", "new_password": "", "new_identity": ""}


def create_account() -> None:
    """The form's callback: create the account; on success empty the form, on a refusal keep everything
    that was typed (role included) and say what to change."""
    state = st.session_state
    try:
        with Store() as store:
            created = auth.create_user(store, user, state["new_username"], state["new_password"],
                                       state["new_role"])
            if state["new_identity"].strip():
                auth.set_sso_identity(store, user, created.username, state["new_identity"])
    except (auth.AuthError, auth.PermissionDenied) as exc:
        state["users_error"] = str(exc)
        return
    state["users_notice"] = f"Created {created.username} ({created.role})."
    state.update(NEW_FIELDS)


for key, default in NEW_FIELDS.items():
    st.session_state.setdefault(key, default)
with st.form("create_user"):
    st.text_input("Username", key="new_username")
    st.selectbox("Role", auth.ROLES, key="new_role")
    st.text_input(f"Initial password (at least {auth.MIN_PASSWORD_LENGTH} characters)", type="password",
                  key="new_password")
    st.text_input("Single sign-on identity (optional, e.g. the person's hospital e-mail)", key="new_identity")
    st.form_submit_button("Create account", on_click=create_account)
if error := st.session_state.pop("users_error", None):
    st.error(error)
if notice := st.session_state.pop("users_notice", None):
    st.success(notice)

st.subheader("Change an account")
names = [a["username"] for a in accounts]
target = st.selectbox("Account", names)
current = next(a for a in accounts if a["username"] == target)


def apply(change, *args) -> None:
    """Run one audited account change on ``target``; show its refusal, or rerun to show the result."""
    try:
        with Store() as store:
            change(store, user, target, *args)
    except (auth.AuthError, auth.PermissionDenied) as exc:
        st.error(str(exc))
        return
    st.rerun()


col1, col2 = st.columns(2)
with col1:
    new_role = st.selectbox("New role", auth.ROLES, index=auth.ROLES.index(current["role"]))
    if st.button("Change role", disabled=new_role == current["role"]):
        apply(auth.set_role, new_role)
with col2:
    if st.button("Disable account" if current["active"] else "Enable account"):
        apply(auth.set_active, not current["active"])

link = st.text_input("Single sign-on identity of this account (empty: no single sign-on)",
                     value=current["sso_identity"] or "", key=f"sso-{target}")
if st.button("Save single sign-on link", disabled=link.strip().lower() == (current["sso_identity"] or "")):
    apply(auth.set_sso_identity, link)

st.subheader("API tokens")
st.caption("Tokens let scripts and pipelines use the REST API as this account (docs/api.md). A token is "
           "shown once; only its hash is kept. It expires, and can be revoked here at any time.")
with st.form("create_token", clear_on_submit=True):
    label = st.text_input("What the token is for (label)", max_chars=64)
    days = st.number_input("Days until it expires", min_value=1, max_value=int(auth.MAX_TOKEN_DAYS), value=30)
    if st.form_submit_button(f"Create a token for {target}"):
        try:
            with Store() as store:
                secret, info = auth.create_token(store, user, target, label=label, days=float(days))
            st.session_state["users_token"] = (info["id"], target, secret)
        except (auth.AuthError, auth.PermissionDenied) as exc:
            st.error(str(exc))
if shown := st.session_state.pop("users_token", None):
    st.success(f"Token {shown[0]} for {shown[1]} (copy it now; it is not shown again):")
    st.code(shown[2], language=None)
with Store() as store:
    tokens = auth.list_tokens(store, user, target)
if tokens:
    st.dataframe([{"id": t["id"], "label": t["label"], "created by": t["created_by"],
                   "expires": time.strftime("%Y-%m-%d %H:%M", time.localtime(t["expires_at"])),
                   "last used": time.strftime("%Y-%m-%d %H:%M", time.localtime(t["last_used_at"]))
                   if t["last_used_at"] else "",
                   "state": "revoked" if t["revoked_at"] else ("expired" if t["expires_at"] < time.time()
                                                               else "active")} for t in tokens],
                 hide_index=True, use_container_width=True)
    active = [t["id"] for t in tokens if not t["revoked_at"]]
    if active:
        revoke_id = st.selectbox("Token to revoke", active)
        if st.button("Revoke token"):
            try:
                with Store() as store:
                    auth.revoke_token(store, user, int(revoke_id))
                st.rerun()
            except (auth.AuthError, auth.PermissionDenied) as exc:
                st.error(str(exc))
