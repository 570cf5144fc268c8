"""Websocket streams and their authorization (issue 9 §5).

* A token never travels in a URL: a browser, which cannot set headers on a
  websocket, trades its token for a stream ticket (POST
  /v1/runs/{id}/stream-ticket): opaque, single-use, valid 30 s, bound to its
  user, tenant, token and run. A second use, an expired ticket, or one of
  another run is refused with 401 (test_e2e_auth.py: ?access_token= too).
* A stream ends when what let it open does: the token revoked or expired,
  the user disabled (close code 4401), or the role that let the user watch
  removed (4403). The api checks again every 2 s and before each send.

The runs here are rows the scheduler never saw, in status running without
events: their streams stay open, idle, until the server closes them.
"""

import hashlib
import secrets
import time
import uuid

import psycopg
import pytest
import websocket

from conftest import Api, command_spec, login, stream_url, unique_name

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403


def _pg(endpoints):
    return psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True)


@pytest.fixture(scope="module")
def sandbox(runs):
    sb = runs.create_sandbox(command_spec(["/bin/true"], timeout_s=30))
    return sb, runs.publish(sb)


def _idle_run(endpoints, me, team_id, tenant_id, sandbox):
    """A running run without events, never scheduled: its stream stays open."""
    run_id = str(uuid.uuid4())
    with _pg(endpoints) as conn:
        conn.execute(
            "INSERT INTO api.runs (id, tenant_id, team_id, sandbox_id, version, status, created_by, node_id) "
            "VALUES (%s, %s, %s, %s, %s, 'running', %s, 'e2e-node')",
            (run_id, tenant_id, team_id, sandbox[0], sandbox[1], me["user"]["id"]))
    return run_id


def _viewer(endpoints, credentials, api, team_id, roles=("viewer",)):
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("ws"), "password": pw}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": list(roles)}, expect=(200,))
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    assert r.status_code == 200, r.text
    return u, Api(endpoints.api, r.json()["token"])


def _open(endpoints, run_id, token=None, ticket=None):
    header = [f"Authorization: Bearer {token}"] if token else []
    return websocket.create_connection(stream_url(endpoints, run_id, ticket=ticket), header=header, timeout=30)


def _refused(endpoints, run_id, **kw):
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        _open(endpoints, run_id, **kw).close()
    return exc.value.status_code


def _still_open(ws, seconds):
    """True when the server neither sent nor closed anything for seconds."""
    ws.settimeout(seconds)
    try:
        opcode, _ = ws.recv_data(control_frame=True)
    except websocket.WebSocketTimeoutException:
        return True
    return opcode not in (websocket.ABNF.OPCODE_CLOSE,)


def _closed_with(ws, timeout=20):
    """Reads until the server's close frame; returns (code, reason)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            continue
        except websocket.WebSocketConnectionClosedException:
            return None, "closed without a close frame"
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            return code, data[2:].decode(errors="replace")
    pytest.fail(f"the stream was not closed within {timeout} s")


# ---------------------------------------------------------------- tickets


def test_ticket_works_once(endpoints, api, me, team_id, tenant_id, sandbox):
    run_id = _idle_run(endpoints, me, team_id, tenant_id, sandbox)
    t = api.ok("POST", f"/v1/runs/{run_id}/stream-ticket", expect=(201,))
    assert t["run"] == run_id and t["ticket"].startswith("pst_") and 1 <= t["expires_in_s"] <= 60, t
    assert api.token not in t["ticket"]
    # stored hashed only
    digest = hashlib.sha256(t["ticket"].encode()).hexdigest()
    with _pg(endpoints) as conn:
        rows = conn.execute("SELECT ticket_sha256, user_id::text, run_id::text FROM api.stream_tickets "
                            "WHERE ticket_sha256 = %s", (digest,)).fetchall()
        assert rows == [(digest, me["user"]["id"], run_id)], rows
        assert not conn.execute("SELECT 1 FROM api.stream_tickets WHERE ticket_sha256 = %s",
                                (t["ticket"],)).fetchall()
    ws = _open(endpoints, run_id, ticket=t["ticket"])
    try:
        assert _still_open(ws, 1.0)
    finally:
        ws.close()
    assert _refused(endpoints, run_id, ticket=t["ticket"]) == 401


def test_ticket_refused_expired_other_run_or_bogus(endpoints, api, me, team_id, tenant_id, sandbox):
    run_id = _idle_run(endpoints, me, team_id, tenant_id, sandbox)
    other = _idle_run(endpoints, me, team_id, tenant_id, sandbox)
    t = api.ok("POST", f"/v1/runs/{run_id}/stream-ticket", expect=(201,))["ticket"]
    # another run's stream: refused, and the ticket is used up by trying
    assert _refused(endpoints, other, ticket=t) == 401
    assert _refused(endpoints, run_id, ticket=t) == 401
    # expired
    t = api.ok("POST", f"/v1/runs/{run_id}/stream-ticket", json={}, expect=(201,))["ticket"]
    with _pg(endpoints) as conn:
        conn.execute("UPDATE api.stream_tickets SET expires_at = now() - interval '1 second' "
                     "WHERE ticket_sha256 = %s", (hashlib.sha256(t.encode()).hexdigest(),))
    assert _refused(endpoints, run_id, ticket=t) == 401
    for bogus in ("pst_" + "0" * 64, "x", api.token):
        assert _refused(endpoints, run_id, ticket=bogus) == 401
    # the endpoint: no field taken; a run the caller cannot see is 404
    r = api.post(f"/v1/runs/{run_id}/stream-ticket", json={"run": run_id})
    assert r.status_code == 400 and r.json()["code"] == "unknown_field", r.text
    assert api.post(f"/v1/runs/{uuid.uuid4()}/stream-ticket").status_code == 404


def test_ticket_dies_with_the_token_that_asked(endpoints, credentials, api, me, team_id, tenant_id, sandbox):
    run_id = _idle_run(endpoints, me, team_id, tenant_id, sandbox)
    _, viewer = _viewer(endpoints, credentials, api, team_id)
    t = viewer.ok("POST", f"/v1/runs/{run_id}/stream-ticket", expect=(201,))["ticket"]
    viewer.ok("POST", "/v1/auth/logout", expect=(204,))
    assert _refused(endpoints, run_id, ticket=t) == 401


# ---------------------------------------------------------------- streams end with their authorization


@pytest.mark.parametrize("how,code", [("revoke", CLOSE_UNAUTHORIZED), ("disable", CLOSE_UNAUTHORIZED),
                                      ("remove_role", CLOSE_FORBIDDEN), ("ticket_revoke", CLOSE_UNAUTHORIZED)])
def test_stream_ends_with_its_authorization(endpoints, credentials, api, me, team_id, tenant_id, sandbox, how, code):
    run_id = _idle_run(endpoints, me, team_id, tenant_id, sandbox)
    user, viewer = _viewer(endpoints, credentials, api, team_id)
    if how == "ticket_revoke":
        t = viewer.ok("POST", f"/v1/runs/{run_id}/stream-ticket", expect=(201,))["ticket"]
        ws = _open(endpoints, run_id, ticket=t)
    else:
        ws = _open(endpoints, run_id, token=viewer.token)
    try:
        # a stream whose authorization holds stays open past the re-check interval
        assert _still_open(ws, 3.5), "the stream closed while its token and role were valid"
        if how in ("revoke", "ticket_revoke"):
            viewer.ok("POST", "/v1/auth/logout", expect=(204,))
        elif how == "disable":
            api.ok("PATCH", f"/v1/users/{user['id']}", json={"disabled": True}, expect=(200,))
        else:
            api.ok("PUT", f"/v1/teams/{team_id}/members/{user['id']}", json={"roles": []}, expect=(200,))
        got, reason = _closed_with(ws)
        assert got == code, (got, reason)
        assert "authorization ended" in reason, reason
    finally:
        ws.close()
