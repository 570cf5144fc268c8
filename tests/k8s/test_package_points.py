"""Issue 16's api and migration points in the rendered package (no cluster):
the api's /metrics is on an ops port the ServiceMonitor scrapes and no
Ingress or HTTPRoute routes; the routes send /v1 and the dashboard's files to
the api and never /healthz, /readyz or /metrics; the api's probes and
egress; the migrate Job gets the owner's DSN and nothing else; the image
carries the built dashboard and names it in PADDOCK_WEB_DIR; the alert rules
name metrics the daemons register; PDBs, spread and HPAs. Needs PADDOCK_K8S_DIR (the
build's tests/k8s, filled by deps.sh: kubectl.path)."""
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WITH_INGRESS = "deploy/k8s/overlays/production"
WITH_EVERYTHING = "tests/k8s/fixtures/all-components"  # the Gateway route, the monitors


def render(overlay):
    k8s_dir = os.environ.get("PADDOCK_K8S_DIR")
    assert k8s_dir, "PADDOCK_K8S_DIR is not set (ctest sets it; tests/k8s/deps.sh fills it)"
    kubectl = (Path(k8s_dir) / "kubectl.path").read_text().strip()
    out = subprocess.run([kubectl, "kustomize", str(REPO / overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


@pytest.fixture(scope="module")
def production():
    return render(WITH_INGRESS)


@pytest.fixture(scope="module")
def everything():
    return render(WITH_EVERYTHING)


def api_container(docs):
    dep = one(docs, "Deployment", "paddock-api")
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "api")


def test_api_metrics_on_the_ops_port(everything):
    c = api_container(everything)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080, "ops": 9090}
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    assert env.get("PADDOCK_OPS_ADDR") == "0.0.0.0:9090"
    svc = one(everything, "Service", "paddock-api")
    assert {p["name"]: p["targetPort"] for p in svc["spec"]["ports"]} == {"http": "http", "ops": "ops"}
    mon = one(everything, "ServiceMonitor", "paddock-api")
    assert [(e["port"], e["path"]) for e in mon["spec"]["endpoints"]] == [("ops", "/metrics")]


# what the public must reach through a route, and what it must not: the api
# answers /healthz and /readyz on its public port too (services/api/ops.c;
# /readyz names internal dependencies), /metrics is on the ops port
PUBLIC = ["/v1/runs", "/v1/auth/login", "/", "/index.html", "/favicon.svg", "/assets/app-0123ABCD.js"]
INTERNAL = ["/healthz", "/readyz", "/metrics", "/healthz/", "/readyz/x", "/metrics/x"]


def segments(path):
    return [s for s in path.split("/") if s]


def prefix_matches(prefix, path):
    """Ingress Prefix and HTTPRoute PathPrefix: whole path elements."""
    want = segments(prefix)
    return segments(path)[:len(want)] == want


def ingress_matches(p, path):
    kind = p["pathType"]
    if kind == "Exact":
        return p["path"] == path
    if kind == "Prefix":
        return prefix_matches(p["path"], path)
    # ImplementationSpecific: ingress-nginx treats it as a prefix (or a regex
    # with use-regex): assume the widest, a plain string prefix
    return path.startswith(p["path"])


def httproute_matches(m, path):
    pm = m.get("path", {"type": "PathPrefix", "value": "/"})
    kind = pm.get("type", "PathPrefix")
    if kind == "Exact":
        return pm["value"] == path
    if kind == "PathPrefix":
        return prefix_matches(pm["value"], path)
    return True  # RegularExpression: cannot be judged here, so it counts as reaching


def test_routes_reach_the_api_and_the_dashboard_only(production, everything):
    ing = one(production, "Ingress", "paddock-api")
    assert not ing["spec"].get("defaultBackend"), "a default backend routes every path"
    paths = [p for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
    for p in paths:
        assert p["backend"]["service"] == {"name": "paddock-api", "port": {"name": "http"}}, p
    route = one(everything, "HTTPRoute", "paddock-api")
    matches = [m for r in route["spec"]["rules"] for m in r.get("matches") or [{}]]
    for r in route["spec"]["rules"]:
        for b in r["backendRefs"]:
            assert (b["name"], b["port"]) == ("paddock-api", 80), b
    for path in PUBLIC:
        assert any(ingress_matches(p, path) for p in paths), f"the Ingress does not route {path}"
        assert any(httproute_matches(m, path) for m in matches), f"the HTTPRoute does not route {path}"
    for path in INTERNAL:
        hit = [p for p in paths if ingress_matches(p, path)]
        assert not hit, f"the Ingress routes {path} (internal) by {hit}"
        hit = [m for m in matches if httproute_matches(m, path)]
        assert not hit, f"the HTTPRoute routes {path} (internal) by {hit}"
    # and from the ingress controller only the public port
    pol = one(production, "NetworkPolicy", "api-from-ingress")
    assert [p["port"] for rule in pol["spec"]["ingress"] for p in rule["ports"]] == [8080]


def test_api_probes_survive_the_schema_wait(production):
    """Every probe of the api on the ops port, which a worker waiting for the
    migrate Job serves (lib/service/schema_wait.h) from its own thread."""
    c = api_container(production)
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}


def test_readiness_timeouts_cover_what_readyz_waits_for(production):
    """/readyz of a daemon with a PostgreSQL pool waits up to 5 s for a
    connection (lib/pg/pg.c pg_pool_ping) and 1 s for Kafka: a shorter probe
    timeout turns a slow answer into a failure without its reason."""
    for d in (o for o in production if o["kind"] in ("Deployment", "DaemonSet")):
        for c in d["spec"]["template"]["spec"]["containers"]:
            env = {e["name"] for e in c.get("env", [])}
            secrets = {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
            uses_pg = any(s.startswith("paddock-db-") for s in secrets) or "PADDOCK_PG_DSN" in env
            want = 7 if uses_pg else 2
            got = c["readinessProbe"]["timeoutSeconds"]
            assert got >= want, f"{d['metadata']['name']}: readiness timeout {got} s, /readyz may take {want - 1} s"
            assert c["readinessProbe"]["httpGet"]["port"] == "ops", d["metadata"]["name"]


def test_migrate_job_gets_only_the_owner_dsn(production):
    job = next(d for d in production if d["kind"] == "Job" and d["metadata"]["name"].startswith("paddock-migrate"))
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c.get("envFrom") == [{"secretRef": {"name": "paddock-db-owner"}}], c.get("envFrom")
    assert not c.get("env") and not job["spec"]["template"]["spec"].get("volumes"), c
    assert "migrate" in " ".join(c["command"])


def test_image_carries_the_dashboard():
    text = (REPO / "deploy/k8s/Dockerfile").read_text()
    # a stage builds web/ as ./dev does, the final image copies its output
    assert re.search(r"^RUN .*node /src/web/build\.mjs /dist", text, re.M | re.S), "no stage builds the dashboard"
    copy = re.search(r"^COPY --from=(\S+) /dist/ (\S+)$", text, re.M)
    assert copy, "the image does not copy the built dashboard"
    env = re.search(r"^ENV PADDOCK_WEB_DIR=(\S+)$", text, re.M)
    assert env and env.group(1).rstrip("/") == copy.group(2).rstrip("/"), "PADDOCK_WEB_DIR does not name it"
    # the last stage (the image) comes after the copy's source stage
    stages = re.findall(r"^FROM \S+(?: AS (\S+))?$", text, re.M)
    assert copy.group(1) in stages[:-1] and stages[-1] == ""


def egress_reaches(policies, ip, port):
    """The rules of policies that let a pod reach ip:port (TCP) by address."""
    import ipaddress
    addr = ipaddress.ip_address(ip)
    hits = []
    for pol in policies:
        for rule in pol["spec"].get("egress") or []:
            if rule.get("ports") and not any(p.get("port") == port for p in rule["ports"]):
                continue
            for peer in rule.get("to") or [{"ipBlock": {"cidr": "0.0.0.0/0"}}]:
                b = peer.get("ipBlock")
                if b and addr in ipaddress.ip_network(b["cidr"]) and \
                        not any(addr in ipaddress.ip_network(e) for e in b.get("except", [])):
                    hits.append(pol["metadata"]["name"])
    return hits


def test_api_reaches_identity_providers_but_not_the_cluster_or_metadata(production):
    """OIDC login fetches the tenant's JWKS over https from its identity
    provider (services/api/oidc.c): the api's NetworkPolicies allow the
    internet on 443 and nothing private or link-local; the other services
    get no such rule."""
    api_labels = {"app.kubernetes.io/name": "paddock", "app.kubernetes.io/component": "api"}

    def selects(pol, labels):
        sel = pol["spec"].get("podSelector") or {}
        ok = all(labels.get(k) == v for k, v in (sel.get("matchLabels") or {}).items())
        for e in sel.get("matchExpressions") or []:
            ok = ok and (labels.get(e["key"]) in e["values"]) == (e["operator"] == "In")
        return ok

    ns = [p for p in production if p["kind"] == "NetworkPolicy" and p["metadata"]["namespace"] == "paddock"
          and "Egress" in p["spec"].get("policyTypes", [])]
    api = [p for p in ns if selects(p, api_labels)]
    assert egress_reaches(api, "203.0.113.7", 443), "the api cannot reach an identity provider on 443"
    for ip in ("169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "127.0.0.1"):
        assert not egress_reaches(api, ip, 443), f"the api may reach {ip}:443"
    for component in ("scheduler", "billing"):
        pods = [p for p in ns if selects(p, {"app.kubernetes.io/name": "paddock", "app.kubernetes.io/component": component})]
        assert not egress_reaches(pods, "203.0.113.7", 443), f"{component} may reach the internet"


def test_alert_rules_cover_the_figures_that_matter(everything):
    """PrometheusRules for consumer lag, node deaths, refused bus messages
    and approvals waiting (issue 16), each on a metric a daemon exports: a
    paddock_* name in a rule must be one the sources register."""
    rules = [r for o in everything if o["kind"] == "PrometheusRule"
             for g in o["spec"]["groups"] for r in g["rules"]]
    exprs = " ".join(r["expr"] for r in rules)
    for needle in ("kafka_consumergroup_lag", "paddock_scheduler_node_deaths_total", "paddock_bus_refused_total",
                   'paddock_governance_approvals_total{status="pending"}'):
        assert needle in exprs, f"no alert rule on {needle}"
    sources = " ".join(p.read_text(errors="replace") for d in ("services", "lib")
                       for p in (REPO / d).rglob("*.c"))
    for name in sorted(set(re.findall(r"\bpaddock_[a-z0-9_]+", exprs))):
        assert f'"{name}"' in sources, f"a rule names {name}, which no daemon registers"


def test_deployments_have_pdbs_spread_and_autoscale_where_stateless(production):
    """Every Deployment: a PodDisruptionBudget that selects it and allows a
    pod down (so nodes still drain), topology spread over zones and nodes;
    the HPA (production) scales the api and evidence only."""
    pdbs = [o for o in production if o["kind"] == "PodDisruptionBudget"]
    deployments = [o for o in production if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} >= {"paddock-api", "paddock-scheduler", "paddock-evidence",
                                                             "paddock-billing"}
    for d in deployments:
        labels = d["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in pdbs if p["metadata"]["namespace"] == d["metadata"]["namespace"] and
                all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())]
        assert len(mine) == 1, f"{d['metadata']['name']}: {len(mine)} PodDisruptionBudgets"
        assert mine[0]["spec"].get("maxUnavailable") == 1, mine[0]["spec"]
        keys = {c["topologyKey"] for c in d["spec"]["template"]["spec"].get("topologySpreadConstraints", [])}
        assert keys >= {"topology.kubernetes.io/zone"}, f"{d['metadata']['name']}: spread over {keys}"
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in production if h["kind"] == "HorizontalPodAutoscaler"}
    assert hpas == {"paddock-api", "paddock-evidence"}, hpas
