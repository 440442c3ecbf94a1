"""The session cookie that lets a login survive a browser reload (medsyn_core.web_sessions and the
/medsyn/session route): each attack on it is written as the attack."""

import base64
import json

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from medsyn_app.web_routes import routes
from medsyn_core import web_sessions
from medsyn_core.web_sessions import MAX_AGE_S, CookieRefused, SessionRegistry

IDLE = 30 * 60.0


def roles(**accounts):
    return lambda username: accounts.get(username)


def cookie_for(registry, username="rita", role="researcher", now=1000.0):
    sid, ticket = registry.start(username, role, now=now)
    return sid, registry.redeem(ticket, now=now + 1)


def test_a_cookie_resumes_its_session_and_only_within_the_idle_timeout():
    reg = SessionRegistry()
    sid, value = cookie_for(reg)
    assert reg.resume(value, roles(rita="researcher"), IDLE, now=1000 + IDLE - 1) == ("rita", sid)
    reg.touch(sid, now=5000)
    assert reg.resume(value, roles(rita="researcher"), IDLE, now=5000 + IDLE - 1)[0] == "rita"
    with pytest.raises(CookieRefused, match="idle timeout"):
        reg.resume(value, roles(rita="researcher"), IDLE, now=5000 + 2 * IDLE + 10)
    with pytest.raises(CookieRefused, match="ended"):  # and it stays ended
        reg.resume(value, roles(rita="researcher"), IDLE, now=5000 + 2 * IDLE + 11)


def test_a_session_ends_at_its_maximum_age_even_when_active():
    reg = SessionRegistry()
    sid, value = cookie_for(reg)
    reg.touch(sid, now=1000 + MAX_AGE_S + 5)
    with pytest.raises(CookieRefused, match="too old"):
        reg.resume(value, roles(rita="researcher"), IDLE, now=1000 + MAX_AGE_S + 6)


def test_forged_and_edited_cookies_are_refused():
    reg = SessionRegistry()
    _, value = cookie_for(reg)
    version, body, mac = value.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["r"] = "admin"  # promote oneself: the signature no longer matches
    forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    for forged in (f"{version}.{forged_body}.{mac}", value[:-2] + "AA", "v1.e30.AAAA", "garbage", ""):
        with pytest.raises(CookieRefused):
            reg.resume(forged, roles(rita="admin"), IDLE, now=1001)


def test_a_cookie_signed_with_another_home_key_is_refused(tmp_path, monkeypatch):
    reg = SessionRegistry()
    _, value = cookie_for(reg)
    monkeypatch.setenv("MEDSYN_HOME", str(tmp_path / "another-home"))  # another secret key
    with pytest.raises(CookieRefused, match="bad signature"):
        reg.resume(value, roles(rita="researcher"), IDLE, now=1001)


def test_disabling_the_account_or_changing_its_role_ends_the_session():
    reg = SessionRegistry()
    _, value = cookie_for(reg)
    with pytest.raises(CookieRefused, match="role changed"):
        reg.resume(value, roles(rita="clinician"), IDLE, now=1001)
    with pytest.raises(CookieRefused, match="ended"):  # even once the old role is back
        reg.resume(value, roles(rita="researcher"), IDLE, now=1002)
    _, value = cookie_for(reg)
    with pytest.raises(CookieRefused, match="disabled"):
        reg.resume(value, roles(), IDLE, now=1001)


def test_logout_ends_the_session_so_a_copied_cookie_is_worthless():
    reg = SessionRegistry()
    sid, value = cookie_for(reg)
    reg.end(sid)
    with pytest.raises(CookieRefused, match="ended"):
        reg.resume(value, roles(rita="researcher"), IDLE, now=1001)
    other = SessionRegistry()  # a restarted server knows no session at all
    _, value = cookie_for(reg)
    with pytest.raises(CookieRefused, match="ended"):
        other.resume(value, roles(rita="researcher"), IDLE, now=1001)


def test_a_ticket_works_once_and_only_while_fresh():
    reg = SessionRegistry()
    _, ticket = reg.start("rita", "researcher", now=1000)
    reg.redeem(ticket, now=1001)
    with pytest.raises(CookieRefused):
        reg.redeem(ticket, now=1002)  # replayed
    _, ticket = reg.start("rita", "researcher", now=1000)
    with pytest.raises(CookieRefused):
        reg.redeem(ticket, now=1000 + web_sessions.TICKET_TTL_S + 1)
    with pytest.raises(CookieRefused):
        reg.redeem("a-guessed-ticket", now=1001)


def test_the_route_sets_an_httponly_strict_cookie_for_a_ticket_and_removes_it_on_delete():
    client = TestClient(Starlette(routes=routes()), base_url="http://medsyn.test")
    sid, ticket = web_sessions.REGISTRY.start("rita", "researcher")
    assert client.post("/medsyn/session", content="wrong-ticket").status_code == 403
    cross = client.post("/medsyn/session", content=ticket, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403  # another site cannot use (or burn) a ticket
    response = client.post("/medsyn/session", content=ticket)
    assert response.status_code == 204
    header = response.headers["set-cookie"]
    assert header.startswith("medsyn_session=") and "HttpOnly" in header and "SameSite=strict" in header
    value = response.cookies["medsyn_session"]
    assert web_sessions.REGISTRY.resume(value, roles(rita="researcher"), IDLE)[0] == "rita"
    assert client.post("/medsyn/session", content=ticket).status_code == 403  # once only
    gone = client.delete("/medsyn/session")
    assert gone.status_code == 204 and 'medsyn_session=""' in gone.headers["set-cookie"]
    with pytest.raises(CookieRefused, match="ended"):
        web_sessions.REGISTRY.resume(value, roles(rita="researcher"), IDLE)
