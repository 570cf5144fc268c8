"""Workload identity end to end (issue 12 §6, docs/CONTRACTS.md "Workload identity").

The api is an OIDC issuer per tenant; each run gets a short-lived RS256 token
per spec.identity entry, delivered sealed like a secret. A relying party is
played by a verifier of this test: an HTTP server in the stack's test upstream
network (conftest TestNetHTTPServer), reached by the sandbox through its
egress proxy, which fetches the issuer's JWKS from the api (the jwks_uri of
the discovery document) on every request and accepts a token only with a
valid signature by a published key, its issuer, its own audience and before
exp (no PyJWT: `cryptography` verifies RS256). No packet leaves the machine.
"""

import base64
import datetime
import pathlib
import ssl
import subprocess
import tempfile
import json
import time
import os
import uuid

import pytest
import requests
from cli_support import Cli
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from conftest import (Api, TestNetHTTPServer, all_events, bootstrap_tenant, command_spec, egress_profile, login,
                      state_dir, unique_name, wait_terminal)
from conftest import test_upstream_addrs as upstream_addrs  # not collected as a test

PY = "/usr/bin/python3"


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_token(token, audience, issuer, jwks, now=None):
    """(True, claims) or (False, reason): what a relying party checks."""
    try:
        h64, c64, s64 = token.split(".")
        header, claims = json.loads(b64url(h64)), json.loads(b64url(c64))
    except Exception as e:  # noqa: BLE001 (any malformed token is refused)
        return False, f"malformed: {type(e).__name__}"
    if header.get("alg") != "RS256":
        return False, "alg"
    key = next((k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
    if key is None:
        return False, "kid"
    pub = rsa.RSAPublicNumbers(int.from_bytes(b64url(key["e"]), "big"), int.from_bytes(b64url(key["n"]), "big"))
    try:
        pub.public_key().verify(b64url(s64), f"{h64}.{c64}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except Exception:  # noqa: BLE001
        return False, "signature"
    now = time.time() if now is None else now
    if claims.get("iss") != issuer:
        return False, "iss"
    if claims.get("aud") != audience:
        return False, "aud"
    if not isinstance(claims.get("exp"), int) or now >= claims["exp"]:
        return False, "exp"
    if not isinstance(claims.get("nbf"), int) or now + 5 < claims["nbf"]:
        return False, "nbf"
    return True, claims


class Verifier(TestNetHTTPServer):
    """A relying party for one audience in the test network: GET /verify with
    `Authorization: Bearer <token>` answers 200 "accepted" or 401 "refused:
    <check>". It keeps what it saw (the test's own memory, never printed)."""

    __test__ = False

    def __init__(self, api_base, tenant_id, audience, index, cert=None, key=None):
        self.audience = audience
        self.seen = []  # (token, accepted, claims or reason)
        disc = requests.get(f"{api_base}/v1/tenants/{tenant_id}/oidc/.well-known/openid-configuration", timeout=30)
        assert disc.status_code == 200, disc.text
        self.issuer, self.jwks_uri = disc.json()["issuer"], disc.json()["jwks_uri"]
        verifier = self

        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                auth = self.headers.get("Authorization", "")
                token = auth[7:] if auth.startswith("Bearer ") else ""
                ok, detail = verifier.check(token)
                verifier.seen.append((token, ok, detail))
                body = b"accepted\n" if ok else f"refused: {detail}\n".encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        super().__init__(Handler, index=index)
        if cert:  # an https origin, as a header destination needs
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert), str(key))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)

    def check(self, token, now=None):
        # the handler threads run in the host's namespace: the api is on its loopback
        jwks = requests.get(self.jwks_uri, timeout=30).json()
        return verify_token(token, self.audience, self.issuer, jwks, now)

    def accepted(self):
        return [t for t, ok, _ in self.seen if ok]


# Runs in the sandbox: sends each token (env, files) to a verifier through the
# egress proxy (urllib honours http_proxy) and prints only the answers, never
# a token: the output is an event.
AGENT = r"""
import os, sys, urllib.error, urllib.request
a, b = sys.argv[1], sys.argv[2]

def send(label, url, token):
    req = urllib.request.Request(url + "/verify", headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            print(label, r.status, r.read().decode().strip())
    except urllib.error.HTTPError as e:
        print(label, e.code, e.read().decode().strip())

send("ENV-A@A", a, os.environ["WI_TOKEN_A"])
send("FILE-A@A", a, open("/paddock/identity/aud-a.jwt").read())
send("FILE-B@A", a, open("/paddock/identity/aud-b.jwt").read())
send("FILE-B@B", b, open("/paddock/identity/aud-b.jwt").read())
st = os.stat("/paddock/identity/aud-a.jwt")
print("MODE", oct(st.st_mode & 0o777), "OWNER", st.st_uid == os.getuid())
try:
    open("/paddock/identity/aud-a.jwt", "w").write("x")
    print("WRITE ok")
except OSError as e:
    print("WRITE refused", e.errno)
try:
    open("/paddock/identity/new", "w").write("x")
    print("CREATE ok")
except OSError as e:
    print("CREATE refused", e.errno)
print("ENVKEYS", ",".join(sorted(k for k in os.environ if k.startswith("WI_"))))
print("AGENT done")
"""

TIMEOUT_S = 30


@pytest.fixture(scope="module")
def tenant_id(me):
    return me["tenant"]["id"]


@pytest.fixture(scope="module")
def identity_run(endpoints, admin_token, api, runs, tenant_id):
    """One command agent run with an env and two file tokens, sent to two
    verifiers of different audiences; the verifiers stay up for the tests."""
    aud_a, aud_b = f"sts.test/{uuid.uuid4().hex[:8]}", f"db.test/{uuid.uuid4().hex[:8]}"
    va = Verifier(endpoints.api, tenant_id, aud_a, 0)
    vb = Verifier(endpoints.api, tenant_id, aud_b, 1)
    prof = egress_profile(api, [va.hostport, vb.hostport])
    spec = command_spec([PY, "-c", AGENT, f"http://{va.nameport}", f"http://{vb.nameport}"], timeout_s=TIMEOUT_S)
    spec["egress"] = {"allow": [va.nameport, vb.nameport], "profiles": [prof], "unknown": "deny"}
    spec["identity"] = [{"audience": aud_a, "as": {"env": "WI_TOKEN_A"}},
                        {"audience": aud_a, "as": {"file": "aud-a.jwt"}},
                        {"audience": aud_b, "as": {"file": "aud-b.jwt"}}]
    sandbox = runs.create_sandbox(spec)
    version = runs.publish(sandbox)
    launched_at = time.time()
    run_id = runs.launch(sandbox, version)
    res = wait_terminal(endpoints, admin_token, run_id, timeout=TIMEOUT_S + 90)
    yield {"run": run_id, "sandbox": sandbox, "version": version, "res": res, "a": va, "b": vb,
           "launched_at": launched_at, "team": runs.team, "endpoints": endpoints, "token": admin_token}
    va.close()
    vb.close()


def test_run_tokens_accepted_only_for_their_audience(identity_run, tenant_id):
    res, va = identity_run["res"], identity_run["a"]
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    assert "ENV-A@A 200 accepted" in out, out
    assert "FILE-A@A 200 accepted" in out, out
    # the token of the other audience: a valid signature, refused for its aud
    assert "FILE-B@A 401 refused: aud" in out, out
    assert "FILE-B@B 200 accepted" in out, out
    # the file: the sandbox user's, read-only, in a read-only directory
    assert "MODE 0o400 OWNER True" in out, out
    assert "WRITE refused" in out and "CREATE refused" in out, out
    assert "ENVKEYS WI_TOKEN_A\n" in out, f"only the env entry is in the env: {out}"
    # the claims a cloud's trust policy conditions on
    _, ok, claims = next(s for s in va.seen if s[1])
    assert ok
    r = identity_run
    assert claims["sub"] == f"tenant:{tenant_id}:team:{r['team']}:definition:{r['sandbox']}:run:{r['run']}", claims
    assert claims["paddock"] == {"tenant": tenant_id, "team": r["team"], "definition": r["sandbox"],
                                 "version": r["version"], "run": r["run"]}, claims
    assert claims["iss"] == va.issuer and claims["aud"] == va.audience
    # expiry: timeout_s from when it was minted, just before the sandbox
    # started: never later than the run's deadline (started_at + timeout_s)
    assert claims["exp"] - claims["iat"] == TIMEOUT_S, claims
    run = Api(identity_run["endpoints"].api, identity_run["token"]).ok("GET", f"/v1/runs/{r['run']}", expect=(200,))
    started = datetime.datetime.fromisoformat(run["started_at"].replace("Z", "+00:00")).timestamp()
    assert claims["exp"] <= started + TIMEOUT_S, (claims, run["started_at"])
    assert r["launched_at"] - 5 <= claims["iat"] <= time.time(), claims
    assert claims["nbf"] == claims["iat"] and len(claims["jti"]) == 36
    # two entries of the same audience are two tokens
    assert len(set(va.accepted())) == 2, "env and file token of audience A must differ"


def test_token_in_no_event_log_or_artifact(identity_run, api, endpoints):
    tokens = {t for v in (identity_run["a"], identity_run["b"]) for t, _, _ in v.seen if t}
    assert len(tokens) == 3
    needles = set()
    for t in tokens:
        needles |= {t, t.split(".")[2]}  # the signature alone is the secret part
    evs = json.dumps(all_events(api, identity_run["run"]))
    assert not [n for n in needles if n in evs], "a token is in the run's events"
    run = api.ok("GET", f"/v1/runs/{identity_run['run']}", expect=(200,))
    assert not [n for n in needles if n in json.dumps(run)]
    pol = api.ok("GET", f"/v1/sandboxes/{identity_run['sandbox']}/versions/{identity_run['version']}/effective-policy",
                 expect=(200,))
    assert [i["audience"] for i in pol["identity"]] == [identity_run["a"].audience] * 2 + [identity_run["b"].audience]
    assert pol["identity"][1]["as"] == {"file": "aud-a.jwt"}
    assert not [n for n in needles if n in json.dumps(pol)]
    # artifacts (the workspace diff and the rest)
    arts = api.ok("GET", f"/v1/runs/{identity_run['run']}/artifacts", expect=(200,))
    items = arts.get("items", arts if isinstance(arts, list) else [])
    for a in items:
        r = api.get(f"/v1/runs/{identity_run['run']}/artifacts/{a['name']}", allow_redirects=True)
        assert r.status_code == 200, (a, r.status_code)
        assert not [n for n in needles if n.encode() in r.content], f"a token is in artifact {a['name']}"
    # every service's log
    logs = state_dir() / "logs"
    assert logs.is_dir()
    for f in logs.rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            assert not [n for n in needles if n.encode() in blob], f"a token is in {f}"


def test_token_refused_after_the_runs_deadline(identity_run):
    va = identity_run["a"]
    token, _, claims = next(s for s in va.seen if s[1])
    # still good now (the run ended, the token's exp is its deadline)
    wait = claims["exp"] - time.time()
    assert wait > 0
    time.sleep(wait + 1)
    ok, reason = va.check(token)
    assert not ok and reason == "exp", reason
    # through the verifier's own endpoint too, from outside the sandbox
    r = requests.get(f"http://{va.hostport}/verify", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 401 and "exp" in r.text, r.text


def test_discovery_and_jwks(endpoints, tenant_id):
    base = f"{endpoints.api}/v1/tenants/{tenant_id}/oidc"
    d = requests.get(f"{base}/.well-known/openid-configuration", timeout=30)
    assert d.status_code == 200, d.text
    doc = d.json()
    assert doc["issuer"] == base, doc  # PADDOCK_PUBLIC_URL defaults to the api's address
    assert doc["jwks_uri"] == f"{base}/jwks"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["response_types_supported"] == ["id_token"] and doc["subject_types_supported"] == ["public"]
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "paddock"} <= set(doc["claims_supported"])
    j = requests.get(doc["jwks_uri"], timeout=30)
    assert j.status_code == 200
    keys = j.json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["alg"] == "RS256" and k["use"] == "sig" and k["kid"] for k in keys)
    assert all(len(b64url(k["n"])) == 256 for k in keys), "RSA 2048"
    assert not [k for k in keys if set(k) & {"d", "p", "q", "dp", "dq", "qi"}], "a private member is published"
    # unknown or malformed tenant: 404, for both documents
    for t in (str(uuid.uuid4()), "not-a-uuid"):
        for suffix in ("/.well-known/openid-configuration", "/jwks"):
            r = requests.get(f"{endpoints.api}/v1/tenants/{t}/oidc{suffix}", timeout=30)
            assert r.status_code == 404 and r.json()["code"] == "not_found", r.text


def test_other_tenant_has_other_keys(endpoints, identity_run):
    name = unique_name("wi-other")
    pw = bootstrap_tenant(name, "wiadmin")
    r = login(endpoints, name, "wiadmin", pw)
    assert r.status_code == 200
    other = Api(endpoints.api, r.json()["token"]).ok("GET", "/v1/me", expect=(200,))["tenant"]["id"]
    base = f"{endpoints.api}/v1/tenants/{other}/oidc"
    theirs = requests.get(f"{base}/jwks", timeout=30).json()
    ours = requests.get(identity_run["a"].jwks_uri, timeout=30).json()
    assert not {k["kid"] for k in theirs["keys"]} & {k["kid"] for k in ours["keys"]}
    assert not {k["n"] for k in theirs["keys"]} & {k["n"] for k in ours["keys"]}
    token, _, claims = next(s for s in identity_run["a"].seen if s[1])
    # our token against their keys (a forged kid would not help: the keys differ)
    ok, reason = verify_token(token, claims["aud"], base, theirs, now=claims["iat"] + 1)
    assert not ok and reason == "kid", reason
    head, body, sig = token.split(".")
    hdr = json.loads(b64url(head))
    hdr["kid"] = theirs["keys"][0]["kid"]
    forged = base64.urlsafe_b64encode(json.dumps(hdr).encode()).decode().rstrip("=") + f".{body}.{sig}"
    ok, reason = verify_token(forged, claims["aud"], base, theirs, now=claims["iat"] + 1)
    assert not ok and reason == "signature", reason


def test_rotation_keeps_the_previous_key_published(endpoints, api, identity_run, tenant_id):
    jwks_uri = identity_run["a"].jwks_uri
    token, _, claims = next(s for s in identity_run["a"].seen if s[1])
    old_kid = json.loads(b64url(token.split(".")[0]))["kid"]
    before = [k["kid"] for k in requests.get(jwks_uri, timeout=30).json()["keys"]]
    assert before[0] == old_kid, "the newest key signs"
    rot = api.ok("POST", "/v1/tenant/workload-identity/rotate", expect=(200,))
    assert rot["kid"] != old_kid and rot["published_kids"][0] == rot["kid"]
    after = [k["kid"] for k in requests.get(jwks_uri, timeout=30).json()["keys"]]
    assert after[0] == rot["kid"] and old_kid in after, after
    assert after == rot["published_kids"]
    # the route takes no body: a field is refused by name, and nothing rotates
    r = api.post("/v1/tenant/workload-identity/rotate", json={"kid": "mine"})
    assert r.status_code == 400 and "kid" in r.json()["detail"], r.text
    assert [k["kid"] for k in requests.get(jwks_uri, timeout=30).json()["keys"]] == after
    # a token signed before the rotation still verifies with the published set
    ok, detail = verify_token(token, claims["aud"], claims["iss"], requests.get(jwks_uri, timeout=30).json(),
                              now=claims["iat"] + 1)
    assert ok, detail


BAD = [
    ([{"audience": "", "as": {"env": "X"}}], "spec.identity[0].audience"),
    ([{"audience": "a b", "as": {"env": "X"}}], "spec.identity[0].audience"),
    ([{"as": {"env": "X"}}], "spec.identity[0].audience"),
    ([{"audience": "a"}], "spec.identity[0].as"),
    ([{"audience": "a", "as": {"env": "X", "file": "y"}}], "spec.identity[0].as"),
    ([{"audience": "a", "as": {"file": "../x"}}], "spec.identity[0].as.file"),
    ([{"audience": "a", "as": {"file": ".."}}], "spec.identity[0].as.file"),
    ([{"audience": "a", "as": {"env": "HTTPS_PROXY"}}], "spec.identity[0].as.env"),
    ([{"audience": "a", "as": {"header": {"origin": "http://x.test", "name": "Authorization"}}}],
     "spec.identity[0].as.header.origin"),
    ([{"audience": "a", "as": {"header": {"host": "x.test", "name": "Host"}}}], "spec.identity[0].as.header.name"),
    ([{"audience": "a", "as": {"smoke": "signal"}}], "spec.identity[0].as.smoke"),
    ([{"audience": "a", "as": {"env": "X"}, "token": "t"}], "spec.identity[0].token"),
    ([{"audience": "a", "as": {"env": "X"}}, {"audience": "b", "as": {"env": "X"}}], "spec.identity[1].as"),
    ([{"audience": f"a{i}", "as": {"env": f"X{i}"}} for i in range(9)], "spec.identity"),
    ({"audience": "a"}, "spec.identity"),
]


@pytest.mark.parametrize("identity,field", BAD)
def test_bad_identity_is_refused_naming_the_field(api, team_id, identity, field):
    name = unique_name("wi-bad")
    spec = command_spec(["true"])
    spec["identity"] = identity
    r = api.post("/v1/sandboxes", json={"name": name, "team": team_id, "spec": spec})
    assert r.status_code == 400, r.text
    assert field in r.json()["detail"], (field, r.json())
    assert api.get(f"/v1/sandboxes/{name}").status_code == 404, "a refused definition must not exist"


def test_identity_destination_clashing_with_a_secret_is_refused(api, team_id):
    spec = command_spec(["true"])
    spec["secrets"] = [{"name": "WI_CLASH", "as": {"env": "TOKEN"}}]
    spec["identity"] = [{"audience": "a", "as": {"env": "TOKEN"}}]
    r = api.post("/v1/sandboxes", json={"name": unique_name("wi-clash"), "team": team_id, "spec": spec})
    assert r.status_code == 400 and "spec.identity[0].as" in r.json()["detail"] and "spec.secrets[0]" in \
        r.json()["detail"], r.text


def test_cli_identity(endpoints, tenant_id, tmp_path):
    # no login: the issuer's documents are public
    cli = Cli(tmp_path, api_url=endpoints.api)
    out = cli("identity", "discovery", tenant_id)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["issuer"].endswith(f"/v1/tenants/{tenant_id}/oidc")
    out = cli("identity", "jwks", tenant_id)
    assert out.returncode == 0 and json.loads(out.stdout)["keys"], out.stderr
    out = cli("identity", "jwks", str(uuid.uuid4()))
    assert out.returncode != 0 and "tenant not found" in out.stderr, (out.returncode, out.stderr)


def make_leaf(d, ip):
    """A server certificate for IP ip signed by the stack's test CA (the
    egress proxy trusts it: PADDOCK_EGRESS_CA_BUNDLE); (cert, key) paths."""
    ca_crt, ca_key = os.environ.get("PADDOCK_TEST_CA_CERT"), os.environ.get("PADDOCK_TEST_CA_KEY")
    assert ca_crt and ca_key, "PADDOCK_TEST_CA_CERT/KEY not set: endpoints.env of an older stack.sh?"
    key, csr, crt, ext = d / "v.key", d / "v.csr", d / "v.crt", d / "v.ext"
    ext.write_text(f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, timeout=60)  # noqa: E731
    run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={ip}",
        "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", ca_crt, "-CAkey", ca_key, "-set_serial",
        str(uuid.uuid4().int % 2**60), "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return crt, key


HEADER_AGENT = r"""
import os, sys, urllib.error, urllib.request
# plain HTTP to the https origin through the proxy, which adds the token over its own TLS
try:
    with urllib.request.urlopen(sys.argv[1] + "/verify", timeout=30) as r:
        print("HDR", r.status, r.read().decode().strip())
except urllib.error.HTTPError as e:
    print("HDR", e.code, e.read().decode().strip())
print("ENVHAS", any(v.count(".") == 2 and len(v) > 200 for v in os.environ.values()))
print("FILES", os.path.isdir("/paddock/identity"))
"""


def test_header_token_added_by_the_proxy_over_tls(endpoints, admin_token, api, runs, tenant_id):
    ip = upstream_addrs()[2]
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="paddock-wi-"))
    aud = f"https-api.test/{uuid.uuid4().hex[:8]}"
    v = Verifier(endpoints.api, tenant_id, aud, 2, *make_leaf(tmp, ip))
    try:
        prof = egress_profile(api, [v.hostport])
        spec = command_spec([PY, "-c", HEADER_AGENT, f"http://{v.hostport}"], timeout_s=60)
        spec["egress"] = {"profiles": [prof], "unknown": "deny"}
        spec["identity"] = [{"audience": aud, "as": {"header": {"origin": f"https://{v.hostport}",
                                                              "name": "Authorization"}}}]
        run_id = runs.start(spec)
        res = wait_terminal(endpoints, admin_token, run_id, timeout=150)
        out = res.output()
        assert res.terminal == "succeeded", f"{res.terminal}: {out}"
        assert "HDR 200 accepted" in out, out
        assert "ENVHAS False" in out and "FILES False" in out, out
        (token,) = v.accepted()
        assert token not in json.dumps(all_events(api, run_id))
    finally:
        v.close()


def test_keys_rotate_by_age_and_the_replaced_key_stays_one_period(endpoints):
    """PADDOCK_WORKLOAD_KEY_ROTATE_DAYS (30 in the stack): ageing a fresh
    tenant's keys in the database (as the schema owner) stands in for the
    clock. A key 30 days old is replaced at the next use; the replaced key is
    published until its successor is itself a period old."""
    import psycopg

    name = unique_name("wi-age")
    pw = bootstrap_tenant(name, "wiadmin")
    r = login(endpoints, name, "wiadmin", pw)
    assert r.status_code == 200
    tid = Api(endpoints.api, r.json()["token"]).ok("GET", "/v1/me", expect=(200,))["tenant"]["id"]
    jwks_uri = f"{endpoints.api}/v1/tenants/{tid}/oidc/jwks"

    def kids():
        return [k["kid"] for k in requests.get(jwks_uri, timeout=30).json()["keys"]]

    def age(kid, days):
        with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as c:
            n = c.execute("UPDATE api.workload_keys SET created_at = now() - make_interval(days => %s) "
                          "WHERE tenant_id = %s AND kid = %s", (days, tid, kid)).rowcount
            assert n == 1

    (k1,) = kids()  # made on first use
    assert kids() == [k1], "a young key is not replaced"
    age(k1, 29)
    assert kids() == [k1]
    age(k1, 31)
    k2, old = kids()
    assert old == k1 and k2 != k1, "a due key is replaced and stays published"
    # k2 due as well, k1 replaced (by k2) more than a period ago: gone
    age(k1, 62)
    age(k2, 31)
    k3, old = kids()
    assert old == k2 and k3 not in (k1, k2)
    assert k1 not in kids()


# Runs in the sandbox: sends its token once, then lives until cancelled.
LIVING_AGENT = r"""
import os, sys, time, urllib.request
req = urllib.request.Request(sys.argv[1] + "/verify", headers={"Authorization": "Bearer " + os.environ["WI_TOKEN"]})
with urllib.request.urlopen(req, timeout=30) as r:
    print("SENT", r.status, flush=True)
time.sleep(600)
"""


def test_introspection_active_only_while_the_run_lives(endpoints, admin_token, api, runs, tenant_id, tmp_path):
    """A relying party that must stop trusting a token when its run ends asks
    the issuer (RFC 7662): active while the run lives, inactive once it was
    cancelled, long before the token's exp."""
    aud = f"sts.test/{uuid.uuid4().hex[:8]}"
    v = Verifier(endpoints.api, tenant_id, aud, 2)
    try:
        prof = egress_profile(api, [v.hostport])
        spec = command_spec([PY, "-c", LIVING_AGENT, f"http://{v.nameport}"], timeout_s=900)
        spec["egress"] = {"allow": [v.nameport], "profiles": [prof], "unknown": "deny"}
        spec["identity"] = [{"audience": aud, "as": {"env": "WI_TOKEN"}}]
        sandbox = runs.create_sandbox(spec)
        run_id = runs.launch(sandbox, runs.publish(sandbox))
        deadline = time.time() + 120
        while not v.accepted() and time.time() < deadline:
            time.sleep(0.5)
        assert v.accepted(), "the run never presented its token"
        token = v.accepted()[0]
        url = f"{endpoints.api}/v1/tenants/{tenant_id}/oidc/introspect"
        live = requests.post(url, json={"token": token}, timeout=30)
        assert live.status_code == 200, live.text
        body = live.json()
        assert body["active"] is True and body["aud"] == aud and body["paddock"]["run"] == run_id, body
        assert body["exp"] - body["iat"] == 900
        # the CLI answers the same, the token on stdin (exit 0: active)
        cli = Cli(tmp_path, api_url=endpoints.api)  # no login: the token is the proof
        p = cli("identity", "introspect", tenant_id, input=token + "\n")
        assert p.returncode == 0 and json.loads(p.stdout)["active"] is True, (p.returncode, p.stderr)

        api.ok("POST", f"/v1/runs/{run_id}/cancel", json={}, expect=(202, 200))
        res = wait_terminal(endpoints, admin_token, run_id, timeout=120)
        assert res.terminal == "cancelled", res.terminal
        # the stream shows the end first; the run's row (what the issuer reads) follows
        deadline = time.time() + 60
        while api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"] != "cancelled" and time.time() < deadline:
            time.sleep(0.5)
        ended = requests.post(url, json={"token": token}, timeout=30)
        assert ended.status_code == 200 and ended.json() == {"active": False}, ended.text
        assert time.time() < body["exp"], "inactive because the run ended, not because the token expired"
        p = cli("identity", "introspect", tenant_id, input=token + "\n")
        assert p.returncode == 1 and json.loads(p.stdout) == {"active": False}, (p.returncode, p.stdout)

        # a forged signature, a token of no tenant, junk: the same inactive answer
        h, c, sig = token.split(".")
        forged = f"{h}.{c}.{sig[:-4]}AAAA"
        for junk in (forged, "not.a.token", "x"):
            r = requests.post(url, json={"token": junk}, timeout=30)
            assert r.status_code == 200 and r.json() == {"active": False}, (junk[:20], r.text)
        # bad input names the field; an unknown tenant is 404
        r = requests.post(url, json={"tok": token}, timeout=30)
        assert r.status_code == 400 and "tok is not a known field" in r.json()["detail"], r.text
        r = requests.post(url, json={"token": ""}, timeout=30)
        assert r.status_code == 400 and r.json()["detail"].startswith("token:"), r.text
        r = requests.post(f"{endpoints.api}/v1/tenants/{uuid.uuid4()}/oidc/introspect", json={"token": token},
                          timeout=30)
        assert r.status_code == 404, r.text
    finally:
        v.close()
