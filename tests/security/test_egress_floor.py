"""The platform egress floor (issue 9 point 1, docs/CONTRACTS.md "The platform
egress floor"): what no inline rule, catalog profile, approval or `ask` opens.

* The api refuses a catalog egress profile rule inside the floor (loopback,
  link-local, metadata, multicast, unspecified, broadcast, the node's own
  addresses, the operator's PADDOCK_EGRESS_FLOOR) and an inline
  `egress.allow` rule naming anything non-public or a local name, with a 400
  naming the rule; effective-policy shows the floor.
* At runtime the runner-agent's proxy refuses the node's api port however it
  is spelled (127.0.0.1, 0.0.0.0, [::ffff:127.0.0.1], 2130706433, 0x7f000001,
  127.1, localhost), the node's own address on the test network and the
  operator-floored test upstream, even under a profile allowing all of
  198.18.0.0/15, while an allowed upstream in the test network is reached.
  Each refusal is an `egress` event, decision deny, reason naming the floor.
* With `unknown: ask`, a destination that could not be granted anyway is
  refused at once: no approval_requested event, no human asked.

Servers: the test upstream network's (conftest Upstream / TestNetHTTPServer)
and one on the node's own veth address (PADDOCK_TEST_NODE_ADDR). No packet
leaves this machine.
"""

import os
import urllib.parse

import pytest

import conftest as c

e2e = c.e2e
PY = "/usr/bin/python3"


def _detail(r):
    try:
        return r.json().get("detail", "")
    except ValueError:
        return r.text


def _api_port(endpoints):
    return urllib.parse.urlsplit(endpoints.api).port


# ---------------------------------------------------------------- the api's checks


@pytest.mark.parametrize("rule,why", [
    ("127.0.0.0/8", "loopback"),
    ("127.0.0.1:8080", "loopback"),
    ("[::1]:8080", "loopback"),
    ("::ffff:127.0.0.0/104", "loopback"),
    ("0.0.0.0/8", "unspecified"),
    ("169.254.169.254", "metadata"),
    ("169.254.0.0/16", "link_local"),
    ("fe80::/10", "link_local"),
    ("fd00:ec2::254", "metadata"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("localhost:8080", "loopback"),
    ("metadata.google.internal", "metadata"),
    ("floor", "operator range"),
    ("node", "node address"),
])
def test_profile_rule_inside_the_floor_is_refused(api, rule, why):
    if rule == "floor":
        rule = os.environ["PADDOCK_TEST_FLOOR_ADDR"] + "/32"
    elif rule == "node":
        rule = os.environ["PADDOCK_TEST_NODE_ADDR"] + ":8080"
    name = e2e.unique_name("floor")
    r = api.post("/v1/catalog/egress-profiles",
                 json={"name": name, "body": {"rules": ["example.org", rule]}})
    assert r.status_code == 400, (rule, r.status_code, r.text)
    d = _detail(r)
    assert "body.rules[1]" in d and why in d, d
    assert ("platform egress floor" in d) or ("metadata service" in d) or ("node" in d), d
    items = api.ok("GET", "/v1/catalog/egress-profiles?limit=500", expect=(200,))["items"]
    assert name not in [i["name"] for i in items], "a refused profile was created"


def test_profile_may_name_private_ranges_but_an_update_into_the_floor_is_refused(api):
    # an approved profile is how an enterprise allows an internal mirror
    net = os.environ["PADDOCK_TEST_NET"]
    pid = e2e.egress_profile(api, ["198.18.0.0/15:8080", "10.0.0.0/8", "fd00::/8", f"{net}:443"])
    before = api.ok("GET", f"/v1/catalog/egress-profiles/{pid}", expect=(200,))
    r = api.request("PATCH", f"/v1/catalog/egress-profiles/{pid}", json={"body": {"rules": ["127.0.0.0/8"]}})
    assert r.status_code == 400 and "body.rules[0]" in _detail(r) and "loopback" in _detail(r), r.text
    after = api.ok("GET", f"/v1/catalog/egress-profiles/{pid}", expect=(200,))
    assert after["body"] == before["body"] and after["state"] == "approved", after


@pytest.mark.parametrize("rule,why", [
    ("api", "loopback"),
    ("0.0.0.0:8080", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("192.168.1.1:80", "private"),
    ("172.16.0.0/12", "private"),
    ("fd00::/8", "private"),
    ("100.64.0.1", "carrier_nat"),
    ("198.18.0.0/15", "reserved"),
    ("upstream", "reserved"),
    ("0.0.0.0/1", "unspecified"),
    ("169.254.169.254", "metadata"),
    ("[::1]:8080", "loopback"),
    ("localhost:8080", "loopback"),
    ("*.api.localhost", "loopback"),
    ("api.localhost:8080", "loopback"),
    ("localhost.localdomain", "loopback"),
    ("metadata.google.internal", "metadata"),
])
def test_inline_rule_to_a_non_public_address_is_refused(endpoints, api, team_id, rule, why):
    if rule == "api":
        rule = f"127.0.0.1:{_api_port(endpoints)}"
    elif rule == "upstream":
        rule = os.environ["PADDOCK_TEST_UPSTREAM_ADDRS"].split()[0] + ":8080"
    spec = e2e.command_spec(["/bin/true"])
    spec["egress"] = {"allow": ["api.example.com", rule]}
    name = e2e.unique_name("floor")
    r = api.post("/v1/sandboxes", json={"name": name, "team": team_id, "spec": spec})
    assert r.status_code == 400, (rule, r.status_code, r.text)
    d = _detail(r)
    assert "spec.egress.allow[1]" in d and why in d, d
    assert api.get(f"/v1/sandboxes/{name}").status_code == 404, "a refused sandbox was created"


def test_inline_rule_to_a_public_address_is_accepted(api, team_id):
    spec = e2e.command_spec(["/bin/true"])
    spec["egress"] = {"allow": ["93.184.216.34:8080", "2606:2800:220:1::/64", "api.example.com"]}
    api.ok("POST", "/v1/sandboxes", json={"name": e2e.unique_name("pub"), "team": team_id, "spec": spec},
           expect=(201,))


def test_effective_policy_shows_the_floor(api, runs):
    spec = e2e.command_spec(["/bin/true"])
    spec["egress"] = {"profiles": [e2e.egress_profile(api, [os.environ["PADDOCK_TEST_NET"] + ":80"])]}
    sb = runs.create_sandbox(spec)
    v = runs.publish(sb)
    pol = api.ok("GET", f"/v1/sandboxes/{sb}/versions/{v}/effective-policy", expect=(200,))
    floor = pol["egress"]["floor"]
    for cls in ("loopback", "unspecified", "link_local", "metadata", "multicast", "broadcast", "node_addresses"):
        assert cls in floor["classes"], floor
    assert floor["ranges"] == [os.environ["PADDOCK_TEST_FLOOR_ADDR"] + "/32"], floor


# ---------------------------------------------------------------- the proxy at runtime


PROBE = r"""
import socket, sys, urllib.request, urllib.error
targets = sys.argv[1:]

def get(hostport):
    url = "http://%s/floor-probe" % hostport
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            print("GET", hostport, r.status)
    except urllib.error.HTTPError as e:
        print("GET", hostport, e.code, e.headers.get("X-Paddock-Egress"))
    except Exception as e:
        print("GET", hostport, "error", type(e).__name__)

def connect(hostport):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (hostport, hostport)).encode())
    try:
        print("CONNECT", hostport, s.recv(4096).split(b"\r\n")[0].decode().split(" ")[1])
    except Exception as e:
        print("CONNECT", hostport, "error", type(e).__name__)
    s.close()

for t in targets:
    get(t)
    connect(t)
print("PROBE done")
"""

# the node's api port in every spelling the proxy must see through
API_SPELLINGS = [("127.0.0.1", "loopback"), ("0.0.0.0", "unspecified"), ("[::ffff:127.0.0.1]", "loopback"),
                 ("2130706433", "loopback"), ("0x7f000001", "loopback"), ("127.1", "loopback"),
                 ("[::1]", "loopback"), ("localhost", "loopback")]


@pytest.fixture
def floor_servers():
    """An allowed upstream (test network .2), one on the operator-floored
    address (.6 = PADDOCK_TEST_FLOOR_ADDR) and one on the node's own veth
    address on the host (PADDOCK_TEST_NODE_ADDR)."""
    addrs = e2e.test_upstream_addrs()
    floor_addr = os.environ["PADDOCK_TEST_FLOOR_ADDR"]
    allowed = e2e.Upstream(0)
    floored = e2e.Upstream(addrs.index(floor_addr))
    node_requests = []
    node = e2e.LoopbackHTTPServer(e2e.recording_handler(node_requests), addr=os.environ["PADDOCK_TEST_NODE_ADDR"])
    yield allowed, (floored, floored.requests), (node, node_requests)
    for s in (allowed, floored, node):
        s.close()


def _by_target(eg):
    by = {}
    for d in eg:
        by.setdefault((d["host"], d["port"]), []).append(d)
    return by


def test_proxy_floor_holds_under_a_profile_allowing_the_whole_test_network(endpoints, admin_token, api, runs,
                                                                          floor_servers):
    allowed, (floored, floored_seen), (node, node_seen) = floor_servers
    node_addr = os.environ["PADDOCK_TEST_NODE_ADDR"]
    floor_addr = os.environ["PADDOCK_TEST_FLOOR_ADDR"]
    api_port = _api_port(endpoints)
    # all of 198.18.0.0/15, on each port in use: only the floor stands between
    # the agent and the node / the operator's range
    prof = e2e.egress_profile(api, [f"198.18.0.0/15:{p}" for p in (allowed.port, floored.port, node.port)])
    targets = [allowed.hostport, f"{floor_addr}:{floored.port}", f"{node_addr}:{node.port}"]
    targets += [f"{h}:{api_port}" for h, _ in API_SPELLINGS]
    spec = e2e.command_spec([PY, "-c", PROBE] + targets, timeout_s=120)
    spec["egress"] = {"profiles": [prof], "unknown": "deny"}
    run_id, res = c.run_to_end(endpoints, admin_token, runs, spec, timeout=240)
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    assert f"GET {allowed.hostport} 200" in out, out
    assert allowed.paths() == ["/floor-probe"], allowed.requests
    for t in targets[1:]:
        assert f"GET {t} 403 deny" in out and f"CONNECT {t} 403" in out, (t, out)
    assert floored_seen == [] and node_seen == [], (floored_seen, node_seen)

    eg = [e["data"] for e in e2e.all_events(api, run_id) if e["kind"] == "egress"]
    by = _by_target(eg)
    expect = [(floor_addr, floored.port, f"operator range {floor_addr}/32"), (node_addr, node.port, "node address")]
    expect += [(h.strip("[]"), api_port, why) for h, why in API_SPELLINGS]
    for host, port, why in expect:
        got = by.get((host, port), [])
        assert len(got) == 2, (host, port, eg)
        for d in got:
            assert d["decision"] == "deny", d
            assert "platform egress floor: " in d["reason"], d
            assert why in d["reason"], (why, d)


def test_ask_for_what_cannot_be_granted_is_refused_at_once(endpoints, admin_token, api, runs, floor_servers):
    allowed, (floored, floored_seen), _ = floor_servers
    api_port = _api_port(endpoints)
    names = os.environ["PADDOCK_TEST_UPSTREAM_NAMES"].split()
    addrs = e2e.test_upstream_addrs()
    floor_name = names[addrs.index(os.environ["PADDOCK_TEST_FLOOR_ADDR"])]
    # no rule at all: every target would be asked for if it could be granted;
    # these cannot (the floor; a reserved address without a profile's rule)
    targets = [f"{h}:{api_port}" for h, _ in API_SPELLINGS] + [f"{floor_name}:{floored.port}",
                                                             allowed.nameport]
    spec = e2e.command_spec([PY, "-c", PROBE] + targets, timeout_s=120)
    spec["egress"] = {"unknown": "ask"}
    run_id, res = c.run_to_end(endpoints, admin_token, runs, spec, timeout=240)
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    for t in targets:
        assert f"GET {t} 403 deny" in out and f"CONNECT {t} 403" in out, (t, out)
    evs = e2e.all_events(api, run_id)
    assert not [e for e in evs if e["kind"] in ("approval_requested", "approval_decided")], \
        "a human was asked to approve what cannot be granted"
    by = _by_target([e["data"] for e in evs if e["kind"] == "egress"])
    for d in by[("localhost", api_port)] + by[(floor_name, floored.port)]:
        assert d["decision"] == "deny" and "platform egress floor" in d["reason"], d
    for d in by[(allowed.name, allowed.port)]:
        assert d["decision"] == "deny" and "approved egress profile" in d["reason"], d
    assert floored_seen == [] and allowed.paths() == [], allowed.requests


# ---------------------------------------------------------------- the setting


@pytest.mark.parametrize("service", ["api", "runner-agent"])
def test_bad_floor_setting_exits_78_naming_the_entry(service):
    """PADDOCK_EGRESS_FLOOR is one shared entry of both tables (--help shows
    it); a bad entry stops the daemon at start with 78 (EX_CONFIG), naming it.
    Nothing is contacted: the check comes before any connection."""
    import subprocess
    binary = e2e.api_binary()
    if service == "runner-agent":
        binary = binary.parent.parent / "runner-agent" / "paddock-runner-agent"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ASAN_OPTIONS": "detect_leaks=0",
           "PADDOCK_PG_DSN": "postgresql:///unused", "PADDOCK_MASTER_KEY": "unused",
           "PADDOCK_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    helptext = subprocess.run([str(binary), "--help"], env=env, capture_output=True, text=True, timeout=60).stdout
    assert "PADDOCK_EGRESS_FLOOR" in helptext, helptext
    for bad, named in (("10.96.0.0/12,10.1.2.3/8", '\\"10.1.2.3/8\\" is not a CIDR'),
                       ("banana", '\\"banana\\" is not a CIDR'), ("::/0", '\\"::/0\\" is not a CIDR'),
                       ("10.0.0.0/8,,192.168.0.0/16", "empty entry")):
        r = subprocess.run([str(binary)], env=dict(env, PADDOCK_EGRESS_FLOOR=bad), capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 78, (bad, r.returncode, r.stderr[-2000:])
        assert "PADDOCK_EGRESS_FLOOR" in r.stderr and named in r.stderr, (named, r.stderr[-2000:])
