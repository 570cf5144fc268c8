"""Authentication: without a valid token nothing is served (401, problem+json,
code unauthorized) and the websocket upgrade is refused; a wrong password
does not log in."""

import uuid

import pytest
import requests
import websocket

from conftest import HTTP_TIMEOUT, command_spec, login, random_token_like, stream_url


def _bad_tokens(real):
    return {
        "none": None,
        "malformed": "not a token !!!",
        "random-well-formed": random_token_like(real),
    }


def _assert_401(r):
    assert r.status_code == 401, f"{r.request.method} {r.url} -> {r.status_code} {r.text[:300]}"
    assert r.headers.get("Content-Type", "").startswith("application/problem+json"), r.headers
    assert r.json().get("code") == "unauthorized", r.text[:300]


@pytest.mark.parametrize("which", ["none", "malformed", "random-well-formed"])
def test_endpoints_refuse_bad_tokens(endpoints, admin_token, team_id, which):
    token = _bad_tokens(admin_token)[which]
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    base = endpoints.api

    _assert_401(requests.get(base + "/v1/me", headers=headers, timeout=HTTP_TIMEOUT))
    _assert_401(requests.get(f"{base}/v1/runs/{uuid.uuid4()}", headers=headers, timeout=HTTP_TIMEOUT))
    body = {"name": f"e2e-auth-{uuid.uuid4().hex[:8]}", "team": team_id,
            "spec": command_spec(["/bin/true"])}
    _assert_401(requests.post(base + "/v1/sandboxes", json=body, headers=headers, timeout=HTTP_TIMEOUT))


def test_other_authorization_schemes_refused(endpoints, admin_token):
    for value in (f"Basic {admin_token}", admin_token, "Bearer", "Bearer "):
        _assert_401(requests.get(endpoints.api + "/v1/me", headers={"Authorization": value},
                                 timeout=HTTP_TIMEOUT))


@pytest.mark.parametrize("which", ["none", "malformed", "random-well-formed"])
def test_websocket_upgrade_refused(endpoints, admin_token, which):
    token = _bad_tokens(admin_token)[which]
    url = stream_url(endpoints, str(uuid.uuid4()))
    header = [f"Authorization: Bearer {token}"] if token is not None else []
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(url, header=header, timeout=HTTP_TIMEOUT).close()
    assert getattr(exc.value, "status_code", 401) == 401, str(exc.value)


@pytest.mark.parametrize("which", ["valid", "random-well-formed"])
def test_websocket_query_token_refused(endpoints, admin_token, which):
    """A token never travels in a URL: ?access_token= is refused even when the
    token is valid, and even beside a valid Authorization header."""
    token = admin_token if which == "valid" else random_token_like(admin_token)
    url = stream_url(endpoints, str(uuid.uuid4())) + f"?access_token={token}"
    for header in ([], [f"Authorization: Bearer {admin_token}"]):
        with pytest.raises(websocket.WebSocketBadStatusException) as exc:
            websocket.create_connection(url, header=header, timeout=HTTP_TIMEOUT).close()
        assert exc.value.status_code == 401, str(exc.value)


def test_bad_password(endpoints, credentials):
    r = login(endpoints, credentials["PADDOCK_TENANT"], credentials["PADDOCK_USER"],
              credentials["PADDOCK_PASSWORD"] + "-wrong")
    _assert_401(r)
    assert "token" not in r.json()
    # An unknown user gets the same answer: no user-existence oracle.
    r2 = login(endpoints, credentials["PADDOCK_TENANT"], f"nobody-{uuid.uuid4().hex[:8]}", "whatever")
    _assert_401(r2)
    assert r2.json().get("detail") == r.json().get("detail")


def test_good_token_works(endpoints, admin_token):
    """Sanity check that the refusals above are about the token."""
    r = requests.get(endpoints.api + "/v1/me", headers={"Authorization": f"Bearer {admin_token}"},
                     timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, r.text[:300]
