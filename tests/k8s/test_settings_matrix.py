"""deploy/settings.tsv against the daemons' own tables (`paddock-<s> --help`),
the Kubernetes package as `kubectl kustomize` renders it, and the local stack's
env files. Needs PADDOCK_K8S_DIR (the build's tests/k8s, set up by deps.sh:
kubectl.path) and PADDOCK_BIN_<SERVICE> (each daemon's binary); the local
stack part runs when PADDOCK_STATE_DIR names a stack that is up."""
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["api", "scheduler", "evidence", "billing", "runner-agent"]
OVERLAYS = ["deploy/k8s/overlays/production", "deploy/k8s/overlays/small", "tests/k8s/fixtures/all-components"]


def load_matrix():
    rows = []
    header = None
    for line in (REPO / "deploy/settings.tsv").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if header is None:
            header = cols
            assert header[:4] == ["setting", "services", "local", "k8s"], header
            continue
        assert len(cols) >= 4, f"settings.tsv: a row without 4 columns: {line!r}"
        for s in cols[1].split(","):
            assert s in SERVICES, f"settings.tsv: {cols[0]}: unknown service {s!r}"
            # local: stack | stack=VALUE | default (the header of settings.tsv)
            assert cols[2] in ("stack", "default") or cols[2].startswith("stack="), \
                f"settings.tsv: {cols[0]}: local column {cols[2]!r} is not stack, stack=VALUE or default"
            local = "stack" if cols[2].startswith("stack") else cols[2]
            # configmap:NAME=VALUE: the source is the ConfigMap, the value is
            # what deploy/k8s/render-config.sh writes into its env file
            k8s = cols[3].split("=", 1)[0] if cols[3].startswith("configmap:") else cols[3]
            rows.append({"setting": cols[0], "service": s, "local": local, "k8s": k8s,
                         "local_value": cols[2][len("stack="):] if cols[2].startswith("stack=") else None})
    keys = [(r["setting"], r["service"]) for r in rows]
    dup = {k for k in keys if keys.count(k) > 1}
    assert not dup, f"settings.tsv: listed twice: {sorted(dup)}"
    return rows


def help_table(service):
    binary = os.environ.get(f"PADDOCK_BIN_{service.upper().replace('-', '_')}")
    assert binary, f"PADDOCK_BIN_{service.upper().replace('-', '_')} is not set (ctest sets it)"
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30, env={})
    assert out.returncode == 0, out.stderr
    table = {}
    for m in re.finditer(r"^  (PADDOCK_[A-Z0-9_]+)\s+\S+\s+(required|default)", out.stdout, re.M):
        table[m.group(1)] = m.group(2)
    assert table, f"paddock-{service} --help printed no table"
    return table


@pytest.fixture(scope="module")
def matrix():
    return load_matrix()


@pytest.fixture(scope="module")
def tables():
    return {s: help_table(s) for s in SERVICES}


def test_every_row_names_a_setting_its_daemon_reads(matrix, tables):
    stale = [f"{r['setting']} ({r['service']})" for r in matrix if r["setting"] not in tables[r["service"]]]
    assert not stale, f"settings.tsv lists settings these daemons do not read: {stale}"


def test_every_required_setting_is_provided_locally_and_on_kubernetes(matrix, tables):
    provided = {(r["setting"], r["service"]): r for r in matrix}
    missing = []
    for s, table in tables.items():
        for name, kind in table.items():
            if kind != "required":
                continue
            r = provided.get((name, s))
            if not r or r["k8s"] == "default" or r["local"] == "default":
                missing.append(f"{name} ({s})")
    assert not missing, f"required settings that settings.tsv does not provide: {missing}"


def render(overlay):
    k8s_dir = os.environ.get("PADDOCK_K8S_DIR")
    assert k8s_dir, "PADDOCK_K8S_DIR is not set (ctest sets it; tests/k8s/deps.sh fills it)"
    kubectl = (Path(k8s_dir) / "kubectl.path").read_text().strip()
    out = subprocess.run([kubectl, "kustomize", str(REPO / overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def daemon_containers(objects):
    """(service, container, namespace) of every daemon's serving container."""
    for o in objects:
        if o["kind"] not in ("Deployment", "DaemonSet"):
            continue
        for c in o["spec"]["template"]["spec"]["containers"]:
            cmd = (c.get("command") or [""])[0]
            if cmd.startswith("paddock-") and cmd[len("paddock-"):] in SERVICES:
                yield cmd[len("paddock-"):], c, o["metadata"]["namespace"]


def provided_settings(c, ns, objects):
    """setting -> the source it comes from, as settings.tsv spells it."""
    configmaps = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == "ConfigMap"}
    got = {}
    for ef in c.get("envFrom", []):
        if "configMapRef" in ef:
            name = ef["configMapRef"]["name"]
            cm = configmaps.get((ns, name))
            assert cm, f"envFrom names the ConfigMap {ns}/{name}, which the package does not make"
            # the generated name carries a hash suffix: the matrix names the generator
            base = re.sub(r"-[a-z0-9]{10}$", "", name)
            for k in cm.get("data", {}):
                got.setdefault(k, []).append(f"configmap:{base}")
        elif "secretRef" in ef:
            # an existing Secret whose keys are the settings (settings.tsv says which)
            got.setdefault(("secret", ef["secretRef"]["name"]), []).append("secretRef")
    for e in c.get("env", []):
        vf = e.get("valueFrom")
        if vf is None:
            src = "env"
        elif "secretKeyRef" in vf:
            src = f"secretkey:{vf['secretKeyRef']['name']}/{vf['secretKeyRef']['key']}"
        elif "fieldRef" in vf:
            src = "fieldref"
        elif "resourceFieldRef" in vf:
            src = "resourcefieldref"
        else:
            src = "configmapkey"
        got.setdefault(e["name"], []).append(src)
    return got


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_package_gives_each_daemon_exactly_the_matrix(overlay, matrix, tables):
    objects = render(overlay)
    seen = set()
    for service, c, ns in daemon_containers(objects):
        seen.add(service)
        got = provided_settings(c, ns, objects)
        secret_refs = {k[1] for k in got if isinstance(k, tuple)}
        want = [r for r in matrix if r["service"] == service and r["k8s"] != "default"]
        short = "runner" if service == "runner-agent" else service
        problems = []
        for r in want:
            src = r["k8s"].replace("{service}", short)
            if src.startswith("secret:"):
                if src[len("secret:"):] not in secret_refs:
                    problems.append(f"{r['setting']}: no envFrom secretRef {src[len('secret:'):]}")
                continue
            have = got.get(r["setting"], [])
            if have != [src]:
                problems.append(f"{r['setting']}: from {have or 'nowhere'}, settings.tsv says {src}")
        # nothing beyond the matrix: no setting the daemon does not read, none
        # the matrix does not record
        listed = {r["setting"] for r in want}
        for k in got:
            if isinstance(k, tuple):
                continue
            if k not in tables[service]:
                problems.append(f"{k}: given to paddock-{service}, which does not read it")
            elif k not in listed:
                problems.append(f"{k}: given to paddock-{service} but not in settings.tsv for it")
        wanted_secrets = {r["k8s"].replace("{service}", short)[len("secret:"):] for r in want if r["k8s"].startswith("secret:")}
        for s in secret_refs - wanted_secrets:
            problems.append(f"envFrom secretRef {s}: not in settings.tsv for {service}")
        assert not problems, f"{overlay}: paddock-{service}: " + "; ".join(problems)
    assert seen == set(SERVICES), f"{overlay}: daemons without a workload: {set(SERVICES) - seen}"


def test_topics_yaml_is_rendered_from_topics_txt():
    out = subprocess.run([str(REPO / "deploy/k8s/render-topics.sh")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    committed = (REPO / "deploy/k8s/base/kafka/topics.yaml").read_text()
    assert out.stdout == committed, "deploy/k8s/base/kafka/topics.yaml is stale: run deploy/k8s/render-topics.sh > deploy/k8s/base/kafka/topics.yaml"


def test_config_env_files_are_rendered_from_settings_tsv(tmp_path):
    """base/config/*.env (the ConfigMaps' data) come from settings.tsv's
    configmap:NAME=VALUE rows, through deploy/k8s/render-config.sh."""
    out = subprocess.run([str(REPO / "deploy/k8s/render-config.sh"), str(tmp_path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    committed = REPO / "deploy/k8s/base/config"
    want = {f.name: f.read_text() for f in tmp_path.glob("*.env")}
    have = {f.name: f.read_text() for f in committed.glob("*.env")}
    assert want, "render-config.sh wrote nothing: settings.tsv has no configmap rows?"
    stale = sorted(n for n in want.keys() | have.keys() if want.get(n) != have.get(n))
    assert not stale, (f"deploy/k8s/base/config differs from deploy/settings.tsv in {stale}: "
                       "run deploy/k8s/render-config.sh")


def local_env(service):
    state = os.environ.get("PADDOCK_STATE_DIR")
    if not state:
        pytest.skip("PADDOCK_STATE_DIR is not set: no local stack to compare")
    f = Path(state) / "env" / f"{service}.env"
    if not f.exists():
        pytest.skip(f"{f} does not exist: the local stack is not up")
    values = {}
    for line in f.read_text().splitlines():
        m = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if m:
            values[m.group(1)] = m.group(2)
    return values


@pytest.mark.parametrize("service", SERVICES)
def test_local_stack_gives_each_daemon_the_matrix(service, matrix, tables):
    values = local_env(service)
    keys = set(values)
    # what the caller adds for tests (PADDOCK_SERVICE_ENV, e.g. ./dev test's)
    extra = {line.split("=", 1)[0] for line in os.environ.get("PADDOCK_SERVICE_ENV", "").splitlines() if "=" in line}
    want = {r["setting"] for r in matrix if r["service"] == service and r["local"] == "stack"}
    # stack.sh gives the api the dashboard only when the build has one (./dev builds it;
    # endpoints.env then names PADDOCK_DASHBOARD_URL)
    endpoints = Path(os.environ["PADDOCK_STATE_DIR"]) / "endpoints.env"
    if "PADDOCK_DASHBOARD_URL=" not in (endpoints.read_text() if endpoints.exists() else ""):
        want.discard("PADDOCK_WEB_DIR")
    missing = want - keys
    assert not missing, f"the local stack's {service}.env lacks {sorted(missing)}, which settings.tsv marks stack"
    unlisted = {k for k in keys if k.startswith("PADDOCK_")} - want - extra
    assert not unlisted, f"the local stack's {service}.env sets {sorted(unlisted)}, not in settings.tsv as stack for {service}"
    unread = {k for k in keys if k.startswith("PADDOCK_")} - set(tables[service]) - extra
    assert not unread, f"the local stack gives paddock-{service} {sorted(unread)}, which it does not read"
    # a `stack=VALUE` row is written as that literal (deploy/local/lib/env.sh)
    literal = {r["setting"]: r["local_value"] for r in matrix
               if r["service"] == service and r["local_value"] is not None and r["setting"] not in extra}
    wrong = {k: (values.get(k), v) for k, v in literal.items() if values.get(k) != v}
    assert not wrong, f"the local stack's {service}.env differs from settings.tsv's literals (got, want): {wrong}"
