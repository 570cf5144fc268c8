"""OIDC login per tenant: configuration, token verification, provisioning.

The test is its own identity provider: it generates an RSA-2048 and an EC
P-256 key with python3-cryptography, serves their JWKS from an http.server
thread in the stack's test upstream network (conftest TestNetHTTPServer; plain
http is allowed there by the stack's PADDOCK_OIDC_HTTP_NETS, loopback is the
platform egress floor), and signs JWS tokens by hand (RS256 =
PKCS#1 v1.5 + SHA-256, ES256 = raw r || s). The api's JWKS fetches pass the
floor on the address connected to, follow no redirect and are bounded in size. A tenant_admin configures the
tenant's provider with PUT /v1/tenant/oidc; POST /v1/auth/oidc exchanges a
provider token for a Paddock token, which then works like a password login's.

Every login that should fail comes from its own random loopback source
address (127.x.y.z, bound by the client), so that failures, which count
against the source like failed password logins, do not spend the suite's
127.0.0.1 budget; the rate-limit test spends one source on purpose.
"""

import base64
import hashlib
import http.server
import json
import os
import pathlib
import subprocess
import time
import urllib.parse
import uuid

import pytest
import requests
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from conftest import HTTP_TIMEOUT, Api, SourceAddressAdapter, login, random_loopback_source, unique_name
from conftest import TestNetHTTPServer, bootstrap_tenant, read_env_file, test_upstream_addrs, wait_for

USER_MAX = 5  # PADDOCK_LOGIN_MAX_FAILURES_USER default: failures per (tenant, source) for OIDC


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(n, length=None):
    length = length or (n.bit_length() + 7) // 8
    return n.to_bytes(length, "big")


class Key:
    """A signing key of the test's provider."""

    def __init__(self, kind, kid=None):
        self.kind = kind
        self.kid = kid or f"{kind}-{uuid.uuid4().hex[:8]}"
        if kind == "RSA":
            self.priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg = "RS256"
        else:
            self.priv = ec.generate_private_key(ec.SECP256R1())
            self.alg = "ES256"

    def jwk(self):
        pub = self.priv.public_key().public_numbers()
        if self.kind == "RSA":
            return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                    "n": b64u(_int_bytes(pub.n)), "e": b64u(_int_bytes(pub.e))}
        return {"kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES256", "crv": "P-256",
                "x": b64u(_int_bytes(pub.x, 32)), "y": b64u(_int_bytes(pub.y, 32))}

    def public_pem(self):
        return self.priv.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign_raw(self, data):
        if self.kind == "RSA":
            return self.priv.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = utils.decode_dss_signature(self.priv.sign(data, ec.ECDSA(hashes.SHA256())))
        return _int_bytes(r, 32) + _int_bytes(s, 32)

    def token(self, claims, header=None, kid=None):
        h = {"alg": self.alg, "typ": "JWT", "kid": kid or self.kid}
        h.update(header or {})
        signing_input = f"{b64u(json.dumps(h).encode())}.{b64u(json.dumps(claims).encode())}"
        return f"{signing_input}.{b64u(self.sign_raw(signing_input.encode()))}"


def unsigned_token(header, claims, signature=b""):
    return f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(claims).encode())}.{b64u(signature)}"


class Provider(TestNetHTTPServer):
    """A JWKS endpoint in the test upstream network whose key set the test
    switches at will; mode "redirect" answers 302 to redirect_to, "big" pads
    the set past the api's 256 KiB bound. For the dashboard's code flow it is
    also the issuer's discovery document and a token endpoint that redeems
    the codes of issue_code() once each, only with the PKCE verifier of their
    challenge, for the configured client and redirect URI; with client_secret
    set it is a confidential client's provider: the token endpoint wants that
    secret by HTTP Basic (or in the form, client_secret_post, when
    auth_methods lists only that). It counts the discovery documents it
    serves (discovery_hits); token_down makes its token endpoint fail."""

    def __init__(self, keys, index=0):
        self.keys = list(keys)
        self.hits = 0
        self.mode = "jwks"
        self.redirect_to = None
        self.codes = {}           # code -> (client_id, redirect_uri, challenge, id_token)
        self.redeemed = []        # the token endpoint's requests (form fields) that got an ID token
        self.discovery_hits = 0
        self.client_secret = None  # set: the client must authenticate with it
        self.auth_methods = None   # token_endpoint_auth_methods_supported, None: not listed
        self.token_down = False
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, status, doc):
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path == urllib.parse.urlsplit(provider.issuer).path + "/.well-known/openid-configuration":
                    provider.discovery_hits += 1
                    doc = {"issuer": provider.issuer,
                           "authorization_endpoint": f"http://{provider.hostport}/authorize",
                           "token_endpoint": f"http://{provider.hostport}/token",
                           "jwks_uri": provider.jwks_url,
                           "code_challenge_methods_supported": ["S256"]}
                    if provider.auth_methods is not None:
                        doc["token_endpoint_auth_methods_supported"] = provider.auth_methods
                    self._send(200, doc)
                    return
                provider.hits += 1
                if provider.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", provider.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                doc = {"keys": [k.jwk() for k in provider.keys]}
                if provider.mode == "big":
                    doc["padding"] = "x" * (300 * 1024)
                self._send(200, doc)

            def do_POST(self):  # noqa: N802 - http.server's name
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
                if provider.token_down:
                    self._send(503, {"error": "temporarily_unavailable"})
                    return
                grant = provider.codes.pop(form.get("code"), None)  # single use, whatever follows
                if self.path != "/token" or grant is None or form.get("grant_type") != "authorization_code":
                    self._send(400, {"error": "invalid_grant"})
                    return
                # RFC 6749 2.3.1: Basic over the form-urlencoded id and secret, or both in the form
                method, sent_id, sent_secret = "none", form.get("client_id"), form.get("client_secret")
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    cid, _, sec = base64.b64decode(auth[6:]).decode().partition(":")
                    method, sent_id, sent_secret = "basic", urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(sec)
                elif sent_secret is not None:
                    method = "post"
                wanted = "post" if provider.auth_methods == ["client_secret_post"] else "basic"
                if provider.client_secret is not None and (method != wanted or sent_secret != provider.client_secret):
                    self._send(401, {"error": "invalid_client"})
                    return
                client_id, redirect_uri, challenge, id_token = grant
                verifier = form.get("code_verifier", "")
                if (sent_id, form.get("redirect_uri")) != (client_id, redirect_uri) or \
                        b64u(hashlib.sha256(verifier.encode()).digest()) != challenge:
                    self._send(400, {"error": "invalid_grant"})
                    return
                provider.redeemed.append(dict(form, client_id=sent_id, auth_method=method))
                self._send(200, {"access_token": "at-" + uuid.uuid4().hex, "token_type": "Bearer",
                                 "expires_in": 300, "id_token": id_token})

            def log_message(self, *a):
                pass

        super().__init__(Handler, index=index)
        self.jwks_url = f"http://{self.hostport}/jwks"
        self.issuer = f"http://{self.hostport}/realms/{uuid.uuid4().hex[:8]}"

    def issue_code(self, authorize_query, id_token, client_id=None, redirect_uri=None):
        """What the provider's authorization endpoint does once the user
        logged in: a code for this request's challenge and the ID token."""
        code = "code-" + uuid.uuid4().hex
        self.codes[code] = (client_id or authorize_query["client_id"], redirect_uri or authorize_query["redirect_uri"],
                            authorize_query["code_challenge"], id_token)
        return code


def oidc_login(endpoints, tenant, token, source=None):
    http = requests.Session()
    http.mount("http://", SourceAddressAdapter(source or random_loopback_source()))
    return http.post(endpoints.api + "/v1/auth/oidc", json={"tenant": tenant, "token": token},
                     timeout=HTTP_TIMEOUT)


def claims_for(provider, audience, sub=None, username=None, groups=(), **extra):
    now = int(time.time())
    c = {"iss": provider.issuer, "aud": audience, "sub": sub or uuid.uuid4().hex, "iat": now - 5,
         "nbf": now - 5, "exp": now + 300, "groups": list(groups)}
    if username:
        c["preferred_username"] = username
    c.update(extra)
    return c


def assert_rejected(r, check, token):
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["code"] == "invalid_token", r.text
    assert f"token rejected: {check}:" in body["detail"], r.text
    for part in token.split("."):
        if len(part) > 8:
            assert part not in r.text, "the answer echoes the token"


def wait_audit(api, since, pred, timeout=60):
    """Audit records of the tenant from `since` on that satisfy pred (they
    travel through Kafka to the evidence service, so they arrive a bit later)."""
    deadline = time.monotonic() + timeout
    while True:
        found, cursor = [], None
        while True:
            q = {"from": since, "limit": 1000}
            if cursor:
                q["cursor"] = cursor
            page = api.ok("GET", "/v1/audit", params=q, expect=(200,))
            found += [x for x in page["items"] if pred(x)]
            cursor = page["next_cursor"]
            if not cursor:
                break
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def idp(endpoints, credentials, api, me):
    """Tenant A (the suite's tenant) with two teams and a provider of RSA and EC keys."""
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    rsa_key, ec_key = Key("RSA"), Key("EC")
    provider = Provider([rsa_key, ec_key])
    team_eng = api.ok("POST", "/v1/teams", json={"name": unique_name("oidc-eng")}, expect=(201,))["id"]
    team_ops = api.ok("POST", "/v1/teams", json={"name": unique_name("oidc-ops")}, expect=(201,))["id"]
    audience = f"paddock-{uuid.uuid4().hex[:6]}"
    config = {
        "issuer": provider.issuer,
        "audience": audience,
        "jwks_url": provider.jwks_url,
        "clock_skew_s": 60,
        "role_mapping": {"claim": "groups", "map": {
            "eng": {"team": team_eng, "roles": ["launcher", "viewer"]},
            "ops": {"team": team_ops, "roles": ["viewer"]},
            "paddock-admins": {"team": "*", "roles": ["tenant_admin"]},
        }},
    }
    stored = api.ok("PUT", "/v1/tenant/oidc", json=config, expect=(200,))
    assert stored["issuer"] == provider.issuer and stored["enabled"] is True
    assert stored["username_claim"] == "preferred_username" and stored["updated_by"] == me["user"]["id"]
    yield {"tenant": credentials["PADDOCK_TENANT"], "provider": provider, "rsa": rsa_key, "ec": ec_key,
           "audience": audience, "team_eng": team_eng, "team_ops": team_ops, "config": config, "since": since}
    api.request("DELETE", "/v1/tenant/oidc")
    provider.close()


def _me(endpoints, token):
    return Api(endpoints.api, token).ok("GET", "/v1/me", expect=(200,))


def _roles_by_team(me):
    return {t["id"]: sorted(t["roles"]) for t in me["teams"]}


# ---------------------------------------------------------------- tests


def test_rs256_and_es256_tokens_log_in_with_mapped_roles(endpoints, credentials, idp):
    p, aud = idp["provider"], idp["audience"]
    name, sub = unique_name("oidc-rs"), uuid.uuid4().hex
    r = oidc_login(endpoints, idp["tenant"], idp["rsa"].token(claims_for(p, aud, sub=sub, username=name,
                                                                         groups=["eng"])))
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["token"]) == 64 and body["user"]["username"] == name and body["expires_at"]
    me = _me(endpoints, body["token"])
    assert me["user"]["username"] == name and me["tenant"]["name"] == idp["tenant"]
    assert _roles_by_team(me) == {idp["team_eng"]: ["launcher", "viewer"]}
    assert me["tenant_roles"] == []

    # ES256, an array audience, and the tenant-wide admin grant
    name2 = unique_name("oidc-es")
    tok = idp["ec"].token(claims_for(p, [aud, "other-client"], username=name2, groups=["ops", "paddock-admins"]))
    r = oidc_login(endpoints, idp["tenant"], tok)
    assert r.status_code == 200, r.text
    me2 = _me(endpoints, r.json()["token"])
    assert me2["tenant_roles"] == ["tenant_admin"]
    assert _roles_by_team(me2) == {idp["team_ops"]: ["viewer"]}
    # the Paddock token acts with those roles: tenant_admin may read the OIDC configuration
    assert Api(endpoints.api, r.json()["token"]).ok("GET", "/v1/tenant/oidc", expect=(200,))["audience"] == aud

    # an OIDC user has no password: password login never works for it
    http = requests.Session()
    http.mount("http://", SourceAddressAdapter(random_loopback_source()))
    for pw in ("!oidc", "x" * 16):
        rl = http.post(endpoints.api + "/v1/auth/login", json={"tenant": idp["tenant"], "username": name,
                                                              "password": pw}, timeout=HTTP_TIMEOUT)
        assert rl.status_code == 401 and rl.json()["code"] == "unauthorized", rl.text

    # a token within the clock skew of its expiry still logs in (skew 60 s)
    now = int(time.time())
    tok = idp["rsa"].token(claims_for(p, aud, sub=sub, username=name, groups=["eng"], exp=now - 30))
    assert oidc_login(endpoints, idp["tenant"], tok).status_code == 200


def test_cli_logs_in_with_a_provider_token_from_stdin(endpoints, idp, tmp_path):
    """`paddock login --oidc-token-stdin`: the provider's token from stdin
    (never argv), saved as a context like a password login's."""
    from cli_support import Cli
    cli = Cli(tmp_path / "config", endpoints.api)
    p, aud, tenant = idp["provider"], idp["audience"], idp["tenant"]
    name = unique_name("oidc-cli")
    tok = idp["rsa"].token(claims_for(p, aud, username=name, groups=["eng"]))
    answer = cli.json("login", "--tenant", tenant, "--oidc-token-stdin", input=tok + "\n")
    assert answer["user"]["username"] == name and answer["context"] == "default" and answer["expires_at"], answer
    assert "token" not in answer and answer["password_change_required"] is False, answer
    # the context acts as that user, with the mapped roles
    me = cli.json("me")
    assert me["user"]["username"] == name and me["tenant"]["name"] == tenant, me
    assert _roles_by_team(me) == {idp["team_eng"]: ["launcher", "viewer"]}
    shown = cli.json("context", "show")
    assert (shown["tenant"], shown["user"], shown["logged_in"]) == (tenant, name, True), shown
    # the provider's token is kept nowhere, printed nowhere
    saved = "".join(f.read_text() for f in (tmp_path / "config").rglob("*") if f.is_file())
    assert json.loads((tmp_path / "config" / "contexts" / "default.json").read_text())["token"]
    for part in tok.split("."):
        assert part not in saved, "the provider's token was saved"

    # ES256, a second context, the text answer
    name2 = unique_name("oidc-cli")
    tok2 = idp["ec"].token(claims_for(p, aud, username=name2, groups=["ops"]))
    out = cli.ok("login", "--context", "sso", "--tenant", tenant, "--oidc-token-stdin", input=tok2)
    assert f"logged in as {name2} in tenant {tenant} with an OIDC token" in out and "(context sso)" in out, out
    assert tok2.split(".")[2] not in out
    assert cli.json("--context", "sso", "me")["user"]["username"] == name2
    assert cli.json("me")["user"]["username"] == name, "the other context is untouched"

    # usage errors (2), before anything is sent: no token, a token on the command line, a --user
    assert "no token on stdin" in cli.fails(2, "login", "--tenant", tenant, "--oidc-token-stdin", input="").stderr
    r = cli.fails(2, "login", "--tenant", tenant, f"--oidc-token-stdin={tok}")
    assert tok.split(".")[1] not in r.stderr, "the token was echoed"
    r = cli.fails(2, "login", "--tenant", tenant, "--user", name, "--oidc-token-stdin", input=tok)
    assert "--user" in r.stderr
    assert "no tenant" in cli.fails(2, "login", "--context", "empty", "--oidc-token-stdin", input=tok).stderr

    # a refused token: the API's error naming the check (exit 1), not echoed, the context kept
    expired = idp["rsa"].token(claims_for(p, aud, username=name, groups=["eng"], exp=int(time.time()) - 3600))
    r = cli.fails(1, "login", "--tenant", tenant, "--oidc-token-stdin", input=expired)
    assert "token rejected: exp:" in r.stderr and "(invalid_token)" in r.stderr and r.stdout == "", r.stderr
    for part in expired.split("."):
        if len(part) > 8:
            assert part not in r.stderr, "the answer echoes the token"
    assert cli.json("me")["user"]["username"] == name


@pytest.mark.parametrize("case,check", [
    ("expired", "exp"),
    ("nbf_future", "nbf"),
    ("wrong_iss", "iss"),
    ("wrong_aud", "aud"),
    ("bad_signature", "signature"),
    ("alg_none", "alg"),
    ("hs256_confusion", "alg"),
    ("unknown_kid", "kid"),
    ("es256_on_rsa_kid", "key_alg"),
    ("garbage", "token_format"),
])
def test_bad_tokens_are_refused_naming_the_check(endpoints, idp, case, check):
    p, aud, k = idp["provider"], idp["audience"], idp["rsa"]
    now = int(time.time())
    good = claims_for(p, aud, username=unique_name("oidc-bad"), groups=["eng"])
    if case == "expired":
        tok = k.token(dict(good, exp=now - 3600))
    elif case == "nbf_future":
        tok = k.token(dict(good, nbf=now + 3600))
    elif case == "wrong_iss":
        tok = k.token(dict(good, iss=p.issuer + "-evil"))
    elif case == "wrong_aud":
        tok = k.token(dict(good, aud="someone-else"))
    elif case == "bad_signature":
        # the right kid and alg, signed by a key the provider does not publish
        tok = Key("RSA").token(good, kid=k.kid)
    elif case == "alg_none":
        tok = unsigned_token({"alg": "none", "kid": k.kid}, good)
    elif case == "hs256_confusion":
        h = {"alg": "HS256", "typ": "JWT", "kid": k.kid}
        signing_input = f"{b64u(json.dumps(h).encode())}.{b64u(json.dumps(good).encode())}"
        mac = hmac.HMAC(k.public_pem(), hashes.SHA256())
        mac.update(signing_input.encode())
        tok = f"{signing_input}.{b64u(mac.finalize())}"
    elif case == "unknown_kid":
        tok = k.token(good, kid="kid-" + uuid.uuid4().hex)
    elif case == "es256_on_rsa_kid":
        tok = idp["ec"].token(good, kid=k.kid)
    else:
        tok = "not.a-token"
    r = oidc_login(endpoints, idp["tenant"], tok)
    assert_rejected(r, check, tok)


def test_no_matching_group_is_403_no_role(endpoints, idp):
    tok = idp["rsa"].token(claims_for(idp["provider"], idp["audience"], username=unique_name("oidc-none"),
                                      groups=["marketing"]))
    r = oidc_login(endpoints, idp["tenant"], tok)
    assert r.status_code == 403 and r.json()["code"] == "no_role", r.text


def test_relogin_replaces_grants(endpoints, idp):
    p, aud = idp["provider"], idp["audience"]
    name, sub = unique_name("oidc-re"), uuid.uuid4().hex
    r = oidc_login(endpoints, idp["tenant"], idp["rsa"].token(
        claims_for(p, aud, sub=sub, username=name, groups=["eng", "paddock-admins"])))
    assert r.status_code == 200, r.text
    first = r.json()["token"]
    me = _me(endpoints, first)
    assert me["tenant_roles"] == ["tenant_admin"] and set(_roles_by_team(me)) == {idp["team_eng"]}
    user_id = me["user"]["id"]

    r = oidc_login(endpoints, idp["tenant"], idp["ec"].token(claims_for(p, aud, sub=sub, username=name,
                                                                        groups=["ops"])))
    assert r.status_code == 200, r.text
    me = _me(endpoints, r.json()["token"])
    assert me["user"]["id"] == user_id, "the same provider identity is the same user"
    assert me["tenant_roles"] == [] and _roles_by_team(me) == {idp["team_ops"]: ["viewer"]}
    # the grants belong to the user, so the earlier token lost them too
    assert Api(endpoints.api, first).get("/v1/tenant/oidc").status_code == 403

    # the same user name from another subject of the provider is refused
    r = oidc_login(endpoints, idp["tenant"], idp["rsa"].token(claims_for(p, aud, username=name, groups=["ops"])))
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
    # and so is a local user's name: the provider cannot take over a password user
    r = oidc_login(endpoints, idp["tenant"], idp["rsa"].token(
        claims_for(p, aud, username="admin", groups=["paddock-admins"])))
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text

    # without preferred_username the user is named by sub
    sub2 = f"sub-{uuid.uuid4().hex[:12]}"
    r = oidc_login(endpoints, idp["tenant"], idp["rsa"].token(claims_for(p, aud, sub=sub2, groups=["ops"])))
    assert r.status_code == 200 and r.json()["user"]["username"] == sub2, r.text


def test_key_rotation_refreshes_on_unknown_kid(endpoints, api, idp):
    p, aud = idp["provider"], idp["audience"]
    # a fresh cache: storing the configuration again replaces the tenant's cache
    api.ok("PUT", "/v1/tenant/oidc", json=idp["config"], expect=(200,))
    old = idp["rsa"]
    name, sub = unique_name("oidc-rot"), uuid.uuid4().hex
    assert oidc_login(endpoints, idp["tenant"], old.token(claims_for(p, aud, sub=sub, username=name,
                                                                     groups=["eng"]))).status_code == 200
    hits = p.hits
    new = Key("RSA")
    p.keys = [new, idp["ec"]]
    try:
        _rotate(endpoints, idp, old, new, name, sub, hits)
    finally:
        p.keys = [old, idp["ec"], new]
        api.ok("PUT", "/v1/tenant/oidc", json=idp["config"], expect=(200,))


def _rotate(endpoints, idp, old, new, name, sub, hits):
    p, aud = idp["provider"], idp["audience"]
    tok = new.token(claims_for(p, aud, sub=sub, username=name, groups=["eng"], exp=int(time.time()) + 600))
    # The cache fetched just now; a refresh is allowed once per interval
    # (60 s by default), however many unknown kids arrive meanwhile.
    r = oidc_login(endpoints, idp["tenant"], tok)
    if r.status_code != 200:
        assert_rejected(r, "kid", tok)
        assert p.hits == hits, "an unknown kid refetched the JWKS before the refresh interval"
    deadline = time.monotonic() + 120
    while r.status_code != 200:
        assert time.monotonic() < deadline, f"the new kid never logged in: {r.text}"
        time.sleep(3)
        r = oidc_login(endpoints, idp["tenant"], tok)
        if r.status_code != 200:
            assert_rejected(r, "kid", tok)
    assert p.hits > hits, "the JWKS was not fetched again"
    assert _me(endpoints, r.json()["token"])["user"]["username"] == name
    # the retired key is gone from the refreshed set
    tok_old = old.token(claims_for(p, aud, sub=sub, username=name, groups=["eng"]))
    assert_rejected(oidc_login(endpoints, idp["tenant"], tok_old), "kid", tok_old)


def test_other_tenant_refuses_tenant_a_tokens(endpoints, idp):
    other = unique_name("oidc-other")
    pw = bootstrap_tenant(other, "oadmin")
    r = login(endpoints, other, "oadmin", pw)
    assert r.status_code == 200, r.text
    oapi = Api(endpoints.api, r.json()["token"])
    ome = oapi.ok("GET", "/v1/me", expect=(200,))
    p, aud = idp["provider"], idp["audience"]
    tok_a = idp["rsa"].token(claims_for(p, aud, username=unique_name("oidc-x"), groups=["paddock-admins"]))

    # not configured, and an unknown tenant: the same answer
    r1 = oidc_login(endpoints, other, tok_a)
    r2 = oidc_login(endpoints, unique_name("no-such-tenant"), tok_a)
    assert_rejected(r1, "config", tok_a)
    assert_rejected(r2, "config", tok_a)
    assert r1.json()["detail"] == r2.json()["detail"]
    assert oapi.get("/v1/tenant/oidc").status_code == 404

    # the other tenant's own provider: A's token fails there, B's works
    kb = Key("EC")
    pb = Provider([kb])
    try:
        oapi.ok("PUT", "/v1/tenant/oidc", json={
            "issuer": pb.issuer, "audience": "paddock-b", "jwks_url": pb.jwks_url,
            "role_mapping": {"claim": "roles", "map": {"dev": {"team": ome["teams"][0]["id"], "roles": ["viewer"]}}}},
            expect=(200,))
        assert_rejected(oidc_login(endpoints, other, tok_a), "kid", tok_a)
        # A's issuer and audience but B's key: the issuer check still refuses it
        tok = kb.token(claims_for(p, aud, username="x", roles=["dev"]))
        assert_rejected(oidc_login(endpoints, other, tok), "iss", tok)
        tok_b = kb.token(claims_for(pb, "paddock-b", username=unique_name("oidc-b"), roles=["dev"]))
        r = oidc_login(endpoints, other, tok_b)
        assert r.status_code == 200, r.text
        me_b = _me(endpoints, r.json()["token"])
        assert me_b["tenant"]["name"] == other
        assert _roles_by_team(me_b) == {ome["teams"][0]["id"]: ["viewer"]}
        # tenant A does not accept B's token either
        assert_rejected(oidc_login(endpoints, idp["tenant"], tok_b), "kid", tok_b)

        # a team of another tenant cannot be mapped
        r = oapi.request("PUT", "/v1/tenant/oidc", json={
            "issuer": pb.issuer, "audience": "paddock-b", "jwks_url": pb.jwks_url,
            "role_mapping": {"claim": "roles", "map": {"dev": {"team": idp["team_eng"], "roles": ["viewer"]}}}})
        assert r.status_code == 400 and "role_mapping" in r.json()["detail"], r.text

        # the provider unreachable: 503, not the token's fault
        oapi.ok("PUT", "/v1/tenant/oidc", json={
            # nothing listens on port 9 in the test network: connection refused
            "issuer": pb.issuer, "audience": "paddock-b", "jwks_url": f"http://{test_upstream_addrs()[1]}:9/jwks",
            "role_mapping": {"claim": "roles", "map": {"dev": {"team": ome["teams"][0]["id"], "roles": ["viewer"]}}}},
            expect=(200,))
        r = oidc_login(endpoints, other, tok_b)
        assert r.status_code == 503 and r.json()["code"] == "unavailable", r.text

        # disabled, then deleted: the login is refused like an unknown tenant's
        cfg = oapi.ok("GET", "/v1/tenant/oidc", expect=(200,))
        oapi.ok("PUT", "/v1/tenant/oidc", json={
            "issuer": pb.issuer, "audience": "paddock-b", "jwks_url": pb.jwks_url, "enabled": False,
            "role_mapping": cfg["role_mapping"]}, expect=(200,))
        assert_rejected(oidc_login(endpoints, other, tok_b), "config", tok_b)
        oapi.ok("DELETE", "/v1/tenant/oidc", expect=(204,))
        assert oapi.get("/v1/tenant/oidc").status_code == 404
        assert oapi.request("DELETE", "/v1/tenant/oidc").status_code == 404
        assert_rejected(oidc_login(endpoints, other, tok_b), "config", tok_b)
    finally:
        pb.close()


@pytest.mark.parametrize("change,field,code", [
    ({"issuer": "ftp://idp.example/"}, "issuer", "invalid_field"),
    ({"issuer": "http://10.1.2.3/realm"}, "issuer", "invalid_field"),
    ({"jwks_url": "http://idp.example/jwks"}, "jwks_url", "invalid_field"),
    ({"jwks_url": "https://user:pw@idp.example/jwks"}, "jwks_url", "invalid_field"),
    # the platform egress floor: loopback, the node, metadata, the operator's range
    ({"jwks_url": "http://127.0.0.1:8080/jwks"}, "platform egress floor (loopback)", "invalid_field"),
    ({"jwks_url": "https://127.0.0.1/jwks"}, "platform egress floor (loopback)", "invalid_field"),
    ({"jwks_url": "https://2130706433/jwks"}, "platform egress floor (loopback)", "invalid_field"),
    ({"jwks_url": "http://[::1]:8080/jwks"}, "platform egress floor (loopback)", "invalid_field"),
    ({"jwks_url": "https://[::ffff:127.0.0.1]/jwks"}, "platform egress floor (loopback)", "invalid_field"),
    ({"jwks_url": "https://localhost/jwks"}, "platform egress floor (loopback)", "invalid_field"),
    ({"jwks_url": "https://169.254.169.254/jwks"}, "platform egress floor (metadata)", "invalid_field"),
    ({"jwks_url": "https://metadata.google.internal/jwks"}, "platform egress floor (metadata)", "invalid_field"),
    ({"jwks_url": "node"}, "platform egress floor (node address)", "invalid_field"),
    ({"jwks_url": "floor"}, "platform egress floor (operator range", "invalid_field"),
    ({"issuer": "http://127.0.0.1:8080/realm"}, "issuer", "invalid_field"),
    ({"audience": ""}, "audience", "invalid_field"),
    ({"audience": None}, "audience", "missing_field"),
    ({"clock_skew_s": 601}, "clock_skew_s", "invalid_field"),
    ({"clock_skew_s": "60"}, "clock_skew_s", "invalid_field"),
    ({"enabled": "yes"}, "enabled", "invalid_field"),
    ({"username_claim": "a b"}, "username_claim", "invalid_field"),
    ({"role_mapping": {"claim": "groups", "map": {"x": {"team": "*", "roles": ["root"]}}}}, "role_mapping",
     "invalid_field"),
    ({"role_mapping": {"claim": "groups", "map": {"x": {"team": str(uuid.uuid4()), "roles": ["viewer"]}}}},
     "role_mapping", "invalid_field"),
    ({"role_mapping": None}, "role_mapping", "missing_field"),
    ({"client_secret": ""}, "client_secret", "invalid_field"),
    ({"client_secret": 42}, "client_secret", "invalid_field"),
    ({"client_secret": "hunter2\n"}, "client_secret", "invalid_field"),
    ({"client_sekret": "hunter2"}, "client_sekret", "unknown_field"),
])
def test_bad_configuration_is_refused_and_changes_nothing(api, idp, change, field, code):
    before = api.ok("GET", "/v1/tenant/oidc", expect=(200,))
    body = dict(idp["config"])
    for k, v in change.items():
        if v is None:
            body.pop(k)
        elif v in ("node", "floor"):
            addr = os.environ["PADDOCK_TEST_NODE_ADDR" if v == "node" else "PADDOCK_TEST_FLOOR_ADDR"]
            body[k] = f"http://{addr}:8080/jwks"  # in PADDOCK_OIDC_HTTP_NETS: only the floor refuses it
        else:
            body[k] = v
    r = api.request("PUT", "/v1/tenant/oidc", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code and field in r.json()["detail"], r.text
    assert "hunter2" not in r.text
    assert api.ok("GET", "/v1/tenant/oidc", expect=(200,)) == before


def _api_log_has(text):
    log = pathlib.Path(os.environ["PADDOCK_STATE_DIR"]) / "logs" / "api.log"
    return text in log.read_text(errors="replace")


def _login_with_jwks_at(endpoints, api, idp, jwks_url):
    """Stores tenant A's configuration with another JWKS URL (a fresh key
    cache) and logs in with a valid token: the key set must be fetched."""
    api.ok("PUT", "/v1/tenant/oidc", json=dict(idp["config"], jwks_url=jwks_url), expect=(200,))
    try:
        tok = idp["rsa"].token(claims_for(idp["provider"], idp["audience"], username=unique_name("oidc-f"),
                                          groups=["eng"]))
        return oidc_login(endpoints, idp["tenant"], tok)
    finally:
        api.ok("PUT", "/v1/tenant/oidc", json=idp["config"], expect=(200,))


def test_jwks_fetch_checks_the_floor_on_the_resolved_address(endpoints, api, idp):
    """A name (no literal for the configuration check to see) that resolves to
    the operator-floored test address: refused before connecting."""
    addrs = test_upstream_addrs()
    floor_addr = os.environ["PADDOCK_TEST_FLOOR_ADDR"]
    name = os.environ["PADDOCK_TEST_UPSTREAM_NAMES"].split()[addrs.index(floor_addr)]
    floored = Provider([idp["rsa"]], index=addrs.index(floor_addr))
    try:
        r = _login_with_jwks_at(endpoints, api, idp, f"https://{name}:{floored.port}/jwks")
        assert r.status_code == 503 and r.json()["code"] == "unavailable", r.text
        assert floored.hits == 0, "the api connected to an address inside the floor"
        wait_for("the api's log naming the floor", lambda: _api_log_has(
            f"{floor_addr} is inside the platform egress floor (operator range {floor_addr}/32)"), timeout=20)
    finally:
        floored.close()


def test_jwks_redirect_is_not_followed(endpoints, api, idp):
    target = Provider([idp["rsa"]], index=1)
    redirector = Provider([idp["rsa"]], index=2)
    redirector.mode, redirector.redirect_to = "redirect", target.jwks_url
    try:
        r = _login_with_jwks_at(endpoints, api, idp, redirector.jwks_url)
        assert r.status_code == 503 and r.json()["code"] == "unavailable", r.text
        assert redirector.hits == 1 and target.hits == 0, (redirector.hits, target.hits)
        wait_for("the api's log naming the status", lambda: _api_log_has("could not fetch jwks: http status 302"),
                 timeout=20)
    finally:
        target.close()
        redirector.close()


def test_oversized_jwks_is_refused(endpoints, api, idp):
    big = Provider([idp["rsa"]], index=3)
    big.mode = "big"
    try:
        r = _login_with_jwks_at(endpoints, api, idp, big.jwks_url)
        assert r.status_code == 503 and r.json()["code"] == "unavailable", r.text
        assert big.hits == 1
        wait_for("the api's log naming the bound", lambda: _api_log_has("jwks document exceeds 262144 bytes"),
                 timeout=20)
    finally:
        big.close()


def test_only_tenant_admin_manages_the_configuration(endpoints, api, idp):
    # an OIDC user with team roles, and a password user with a team role
    tok = idp["rsa"].token(claims_for(idp["provider"], idp["audience"], username=unique_name("oidc-nonadm"),
                                      groups=["eng"]))
    r = oidc_login(endpoints, idp["tenant"], tok)
    assert r.status_code == 200, r.text
    pw = "a-long-enough-password"
    u = api.ok("POST", "/v1/users", json={"username": unique_name("oidc-pw"), "password": pw}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{idp['team_eng']}/members/{u['id']}", json={"roles": ["launcher"]}, expect=(200,))
    lr = login(endpoints, idp["tenant"], u["username"], pw)
    assert lr.status_code == 200, lr.text
    for token in (r.json()["token"], lr.json()["token"]):
        caller = Api(endpoints.api, token)
        for method, body in (("GET", None), ("PUT", idp["config"]), ("DELETE", None)):
            rr = caller.request(method, "/v1/tenant/oidc", json=body)
            assert rr.status_code == 403 and rr.json()["code"] == "forbidden", f"{method}: {rr.text}"
    assert api.ok("GET", "/v1/tenant/oidc", expect=(200,))["issuer"] == idp["config"]["issuer"]


def test_failed_oidc_logins_count_against_the_source(endpoints, idp):
    source = random_loopback_source()
    bad = idp["rsa"].token(claims_for(idp["provider"], "not-our-audience", username="x", groups=["eng"]))
    for _ in range(USER_MAX):
        assert_rejected(oidc_login(endpoints, idp["tenant"], bad, source=source), "aud", bad)
    good = idp["rsa"].token(claims_for(idp["provider"], idp["audience"], username=unique_name("oidc-rl"),
                                       groups=["eng"]))
    r = oidc_login(endpoints, idp["tenant"], good, source=source)
    assert r.status_code == 429 and r.json()["code"] == "rate_limited", r.text
    assert int(r.headers["Retry-After"]) >= 1
    # another source is not affected
    assert oidc_login(endpoints, idp["tenant"], good).status_code == 200


def test_logins_and_configuration_changes_are_audited(endpoints, api, me, idp):
    name = unique_name("oidc-aud")
    tok = idp["rsa"].token(claims_for(idp["provider"], idp["audience"], username=name, groups=["eng"]))
    r = oidc_login(endpoints, idp["tenant"], tok)
    assert r.status_code == 200, r.text
    uid = r.json()["user"]["id"]
    bad = Key("RSA").token(claims_for(idp["provider"], idp["audience"], username=name), kid=idp["rsa"].kid)
    assert_rejected(oidc_login(endpoints, idp["tenant"], bad), "signature", bad)

    since = idp["since"]
    assert wait_audit(api, since, lambda x: x["action"] == "tenant.oidc_update"
                      and x["actor"] == f"user:{me['user']['id']}" and x["outcome"] == "success")
    assert wait_audit(api, since, lambda x: x["action"] == "auth.login" and x["object_id"] == uid
                      and x["actor"] == f"user:{uid}")
    assert wait_audit(api, since, lambda x: x["action"] == "user.create" and x["object_id"] == uid)
    failed = wait_audit(api, since, lambda x: x["action"] == "auth.login_failed"
                        and x["detail"].get("method") == "oidc" and x["detail"].get("reason") == "signature")
    assert failed and all(f["actor"] == "user:anonymous" and f["outcome"] == "failure" for f in failed)
    everything = json.dumps(wait_audit(api, since, lambda x: True))
    for t in (tok, bad):
        for part in t.split("."):
            assert part not in everything, "a token appears in the audit log"


# ---------------------------------------------------------------- the dashboard's code flow with PKCE


class Browser:
    """What a browser does with the api's sign-in routes, from its own
    loopback source: keeps cookies, follows no redirect (each is checked)."""

    def __init__(self, endpoints):
        self.api = endpoints.api
        self.http = requests.Session()
        self.http.mount("http://", SourceAddressAdapter(random_loopback_source()))

    def authorize(self, tenant):
        r = self.http.get(self.api + "/v1/auth/oidc/authorize", params={"tenant": tenant}, allow_redirects=False,
                          timeout=HTTP_TIMEOUT)
        assert r.status_code == 302, r.text
        return r

    def start(self, tenant, provider):
        """Starts a sign-in; the authorization request's parameters."""
        r = self.authorize(tenant)
        where = urllib.parse.urlsplit(r.headers["Location"])
        assert f"{where.scheme}://{where.netloc}{where.path}" == f"http://{provider.hostport}/authorize", r.headers
        q = dict(urllib.parse.parse_qsl(where.query))
        assert q["response_type"] == "code" and "openid" in q["scope"].split(), q
        assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43, q
        assert q["redirect_uri"] == self.api + "/v1/auth/oidc/callback", q
        assert len(q["state"]) >= 32 and len(q["nonce"]) >= 32 and q["state"] != q["nonce"], q
        flow = [c for c in self.http.cookies if c.name == "paddock_oidc_flow"]
        assert len(flow) == 1 and flow[0].path == "/v1/auth/oidc/callback", self.http.cookies
        setcookie = r.headers["Set-Cookie"].lower()
        assert "httponly" in setcookie and "samesite=lax" in setcookie, setcookie
        return q

    def callback(self, **params):
        r = self.http.get(self.api + "/v1/auth/oidc/callback", params=params, allow_redirects=False,
                          timeout=HTTP_TIMEOUT)
        assert r.status_code == 302 and not r.content, r.text
        return r

    def error_of(self, r):
        where = urllib.parse.urlsplit(r.headers["Location"])
        assert f"{where.scheme}://{where.netloc}{where.path}" == self.api + "/", r.headers
        q = dict(urllib.parse.parse_qsl(where.query))
        assert set(q) <= {"tenant", "oidc_error"}, f"more than the error in the login page's URL: {q}"
        assert "paddock_session=" not in r.headers.get("Set-Cookie", "").replace("paddock_session=;", ""), r.headers
        return q.get("oidc_error")


def _id_token(idp, q, **over):
    c = claims_for(idp["provider"], idp["audience"], username=over.pop("username", unique_name("oidc-web")),
                   groups=["eng"], nonce=q["nonce"])
    c.update(over)
    return idp["rsa"].token(c)


def test_code_flow_signs_in_into_the_session_cookie(endpoints, idp):
    p, b = idp["provider"], Browser(endpoints)
    q = b.start(idp["tenant"], p)
    name = unique_name("oidc-web")
    token = _id_token(idp, q, username=name)
    code = p.issue_code(q, token)
    r = b.callback(code=code, state=q["state"])
    assert r.headers["Location"] == endpoints.api + "/#/runs", r.headers
    # the provider saw the client id, the redirect URI and the verifier of the challenge (it checks them)
    assert p.redeemed[-1]["client_id"] == idp["audience"] and len(p.redeemed[-1]["code_verifier"]) >= 43
    jar = {c.name: c for c in b.http.cookies}
    assert "paddock_oidc_flow" not in jar, "the sign-in cookie outlives its callback"
    assert len(jar["paddock_session"].value) == 64 and jar["paddock_session"].has_nonstandard_attr("HttpOnly")
    assert "samesite=strict" in r.headers["Set-Cookie"].lower(), r.headers
    # nothing secret in the final URL
    for secret in (code, q["state"], jar["paddock_session"].value, *[x for x in token.split(".") if len(x) > 8]):
        assert secret not in r.headers["Location"]
    # the session is the user's, with the mapped roles
    me = b.http.get(endpoints.api + "/v1/me", timeout=HTTP_TIMEOUT).json()
    assert me["user"]["username"] == name and _roles_by_team(me) == {idp["team_eng"]: ["launcher", "viewer"]}, me

    # the same callback again: the cookie is gone, then with the cookie back the state is used up
    assert b.error_of(b.callback(code=code, state=q["state"])) == "state"
    b.http.cookies.set("paddock_oidc_flow", "0" * 64 + "." + idp["tenant"], path="/v1/auth/oidc/callback")
    assert b.error_of(b.callback(code=code, state=q["state"])) == "state"


def test_code_flow_refuses_a_wrong_state_and_another_browsers_state(endpoints, idp):
    p, b = idp["provider"], Browser(endpoints)
    q = b.start(idp["tenant"], p)
    code = p.issue_code(q, _id_token(idp, q))
    assert b.error_of(b.callback(code=code, state="f" * 64)) == "state"
    assert code in p.codes, "a wrong state reached the token endpoint"
    # another browser (no sign-in cookie) presenting this browser's state and code
    other = Browser(endpoints)
    assert other.error_of(other.callback(code=code, state=q["state"])) == "state"
    assert "paddock_session" not in {c.name for c in other.http.cookies}


def test_code_flow_refuses_a_replayed_code(endpoints, idp):
    p, b = idp["provider"], Browser(endpoints)
    q = b.start(idp["tenant"], p)
    code = p.issue_code(q, _id_token(idp, q))
    assert b.callback(code=code, state=q["state"]).headers["Location"].endswith("/#/runs")
    # a fresh sign-in of the same browser, presenting the used code: the provider refuses it
    q2 = b.start(idp["tenant"], p)
    assert b.error_of(b.callback(code=code, state=q2["state"])) == "code"


@pytest.mark.parametrize("case", ["nonce", "no_nonce", "audience", "signature"])
def test_code_flow_refuses_an_id_token_that_is_not_this_sign_ins(endpoints, idp, case):
    p, b = idp["provider"], Browser(endpoints)
    q = b.start(idp["tenant"], p)
    if case == "nonce":
        token = _id_token(idp, q, nonce="n-" + uuid.uuid4().hex)
    elif case == "no_nonce":
        c = claims_for(p, idp["audience"], username=unique_name("oidc-web"), groups=["eng"])
        token = idp["rsa"].token(c)
    elif case == "audience":
        token = _id_token(idp, q, aud="another-client")
    else:
        c = claims_for(p, idp["audience"], username=unique_name("oidc-web"), groups=["eng"], nonce=q["nonce"])
        token = Key("RSA").token(c, kid=idp["rsa"].kid)
    r = b.callback(code=p.issue_code(q, token), state=q["state"])
    assert b.error_of(r) == "invalid_token", r.headers
    assert "paddock_session" not in {c.name for c in b.http.cookies}


def test_code_flow_for_a_tenant_without_oidc_says_not_enabled(endpoints, idp):
    b = Browser(endpoints)
    for tenant in (unique_name("no-such-tenant"),):
        r = b.authorize(tenant)
        assert b.error_of(r) == "not_enabled", r.headers
        assert "paddock_oidc_flow" not in {c.name for c in b.http.cookies}
    assert b.error_of(b.authorize("bad tenant!")) == "tenant"


def test_code_flow_provider_refusal_comes_back_as_an_error(endpoints, idp):
    p, b = idp["provider"], Browser(endpoints)
    q = b.start(idp["tenant"], p)
    r = b.callback(error="access_denied", state=q["state"])
    assert b.error_of(r) == "provider_denied"


# ---------------------------------------------------------------- confidential clients and the discovery cache


def _api_workers():
    """How many api processes serve (each keeps its own discovery cache)."""
    env = read_env_file(pathlib.Path(os.environ["PADDOCK_STATE_DIR"]) / "env" / "api.env")
    return int(env.get("PADDOCK_API_WORKERS") or 0) or os.cpu_count()


def _signs_in(endpoints, idp, b=None):
    """A whole sign-in through the code flow: the browser and its outcome
    (None when it landed on the runs page, else the oidc_error)."""
    p, b = idp["provider"], b or Browser(endpoints)
    b.http.cookies.clear()  # a browser used before: its session goes, its connection (api worker) stays
    q = b.start(idp["tenant"], p)
    r = b.callback(code=p.issue_code(q, _id_token(idp, q)), state=q["state"])
    if r.headers["Location"] == endpoints.api + "/#/runs":
        assert "paddock_session" in {c.name for c in b.http.cookies}
        return b, None
    assert "paddock_session" not in {c.name for c in b.http.cookies}
    return b, b.error_of(r)


@pytest.fixture
def confidential(api, idp):
    """The provider made a confidential client's; afterwards the public
    client of the module's configuration again (its secret cleared)."""
    p = idp["provider"]
    secret = "cs-" + uuid.uuid4().hex + "+/&%:="  # characters that must be form-urlencoded
    p.client_secret = secret
    yield secret
    p.client_secret, p.auth_methods, p.token_down = None, None, False
    api.ok("PUT", "/v1/tenant/oidc", json=dict(idp["config"], client_secret=None), expect=(200,))


def test_client_secret_is_write_only_and_sealed(endpoints, api, idp, confidential):
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    stored = api.ok("PUT", "/v1/tenant/oidc", json=dict(idp["config"], client_secret=confidential), expect=(200,))
    assert stored["client_secret_set"] is True and "client_secret" not in stored, stored
    got = api.ok("GET", "/v1/tenant/oidc", expect=(200,))
    assert got["client_secret_set"] is True and confidential not in json.dumps(got), got
    # absent keeps it for the same issuer and audience; another audience (client) drops it; null clears it
    assert api.ok("PUT", "/v1/tenant/oidc", json=idp["config"], expect=(200,))["client_secret_set"] is True
    assert _signs_in(endpoints, idp)[1] is None, "the kept secret no longer signs in"
    other = api.ok("PUT", "/v1/tenant/oidc", json=dict(idp["config"], audience="another-client"), expect=(200,))
    assert other["client_secret_set"] is False, other
    api.ok("PUT", "/v1/tenant/oidc", json=dict(idp["config"], client_secret=confidential), expect=(200,))
    assert api.ok("PUT", "/v1/tenant/oidc", json=dict(idp["config"], client_secret=None),
                  expect=(200,))["client_secret_set"] is False
    api.ok("PUT", "/v1/tenant/oidc", json=dict(idp["config"], client_secret=confidential), expect=(200,))
    # never in clear: the table, a dump of the database, the services' logs, the audit log
    needles = (confidential.encode(), urllib.parse.quote(confidential, safe="").encode())
    dsn = os.environ["PADDOCK_PG_DSN"]
    dump = subprocess.run(["pg_dump", "--data-only", "--table=api.tenant_oidc", dsn], capture_output=True, timeout=120)
    assert dump.returncode == 0 and b"COPY api.tenant_oidc" in dump.stdout, dump.stderr[:500]
    assert not any(n in dump.stdout for n in needles), "the client secret in clear in api.tenant_oidc"
    full = subprocess.run(["pg_dump", "--data-only", dsn], capture_output=True, timeout=120)
    assert full.returncode == 0 and not any(n in full.stdout for n in needles), "the client secret in PostgreSQL"
    sel = subprocess.run(["psql", dsn, "-Atc", "SELECT encode(client_secret_sealed, 'escape') FROM api.tenant_oidc"],
                         capture_output=True, timeout=60)
    assert sel.returncode == 0 and not any(n in sel.stdout for n in needles), sel.stderr[:300]
    assert _signs_in(endpoints, idp)[1] is None  # it opens again after all that
    for log in (pathlib.Path(os.environ["PADDOCK_STATE_DIR"]) / "logs").glob("*.log"):
        assert not any(n in log.read_bytes() for n in needles), f"the client secret in {log}"
    records = wait_audit(api, since, lambda x: x["action"] == "tenant.oidc_update")
    assert records and not any(confidential in json.dumps(x) for x in records)


@pytest.mark.parametrize("methods", [None, ["client_secret_basic", "client_secret_post"], ["client_secret_post"]])
def test_code_flow_as_a_confidential_client(endpoints, api, idp, confidential, methods):
    p = idp["provider"]
    p.auth_methods = methods
    api.ok("PUT", "/v1/tenant/oidc", json=dict(idp["config"], client_secret=confidential), expect=(200,))
    assert _signs_in(endpoints, idp)[1] is None
    used = p.redeemed[-1]
    assert used["auth_method"] == ("post" if methods == ["client_secret_post"] else "basic"), used
    assert used["client_id"] == idp["audience"]
    # a wrong secret: the token endpoint refuses, the login page says so, no session
    api.ok("PUT", "/v1/tenant/oidc", json=dict(idp["config"], client_secret="wrong-" + confidential), expect=(200,))
    assert _signs_in(endpoints, idp)[1] == "code"
    # no secret at all (a public client) is refused by this provider too
    api.ok("PUT", "/v1/tenant/oidc", json=dict(idp["config"], client_secret=None), expect=(200,))
    assert _signs_in(endpoints, idp)[1] == "code"


def test_discovery_is_cached_per_issuer_and_configuration(endpoints, api, idp):
    p = idp["provider"]
    api.ok("PUT", "/v1/tenant/oidc", json=idp["config"], expect=(200,))  # a new configuration version
    before = p.discovery_hits
    b = Browser(endpoints)  # one connection: one api worker
    for _ in range(4):
        b.start(idp["tenant"], p)
    fetched = p.discovery_hits - before
    assert 1 <= fetched <= min(_api_workers(), 2), f"{fetched} discovery fetches for 4 sign-in starts"
    # a new issuer takes effect at once: its document is fetched, the old one's is not
    other = Provider([idp["rsa"]], index=1)
    try:
        api.ok("PUT", "/v1/tenant/oidc", json=dict(idp["config"], issuer=other.issuer), expect=(200,))
        old = p.discovery_hits
        Browser(endpoints).start(idp["tenant"], other)
        assert other.discovery_hits == 1 and p.discovery_hits == old
    finally:
        api.ok("PUT", "/v1/tenant/oidc", json=idp["config"], expect=(200,))
        other.close()
    # a token endpoint that fails makes the worker read the document again at the next sign-in
    b = Browser(endpoints)
    assert _signs_in(endpoints, idp, b)[1] is None
    p.token_down = True
    try:
        assert _signs_in(endpoints, idp, b)[1] == "code"
    finally:
        p.token_down = False
    hits = p.discovery_hits
    assert _signs_in(endpoints, idp, b)[1] is None
    assert p.discovery_hits == hits + 1, "the document was not fetched again after its token endpoint failed"


def test_cli_sets_and_clears_the_client_secret_from_a_file_or_stdin(endpoints, credentials, api, idp, confidential,
                                                                    tmp_path):
    from cli_support import Cli
    cli = Cli(tmp_path / "config", endpoints.api)
    cli.ok("login", "--tenant", credentials["PADDOCK_TENANT"], "--user", credentials["PADDOCK_USER"],
           "--password-stdin", input=credentials["PADDOCK_PASSWORD"] + "\n")
    cfg = tmp_path / "oidc.json"
    cfg.write_text(json.dumps(idp["config"]))
    sfile = tmp_path / "secret"
    sfile.write_text(confidential)
    out = cli.ok("oidc", "set", "--file", str(cfg), "--client-secret-file", str(sfile))
    assert confidential not in out
    assert cli.json("oidc", "show")["client_secret_set"] is True
    assert _signs_in(endpoints, idp)[1] is None
    assert cli.json("oidc", "set", "--file", str(cfg), "--clear-client-secret")["client_secret_set"] is False
    assert _signs_in(endpoints, idp)[1] == "code"
    shown = cli.json("oidc", "set", "--file", str(cfg), "--client-secret-stdin", input=confidential + "\n")
    assert shown["client_secret_set"] is True and confidential not in json.dumps(shown)
    assert _signs_in(endpoints, idp)[1] is None
    # usage errors (2), nothing sent: two sources, a secret in the configuration file, an empty one
    before = api.ok("GET", "/v1/tenant/oidc", expect=(200,))
    assert "one of" in cli.fails(2, "oidc", "set", "--file", str(cfg), "--client-secret-file", str(sfile),
                                 "--clear-client-secret").stderr
    cfg2 = tmp_path / "with-secret.json"
    cfg2.write_text(json.dumps(dict(idp["config"], client_secret=confidential)))
    r = cli.fails(2, "oidc", "set", "--file", str(cfg2))
    assert "client_secret" in r.stderr and confidential not in r.stderr
    assert "empty" in cli.fails(2, "oidc", "set", "--file", str(cfg), "--client-secret-stdin", input="").stderr
    assert api.ok("GET", "/v1/tenant/oidc", expect=(200,)) == before
