"""The image recipe (deploy/k8s/Dockerfile) and its build context (.dockerignore):
a pinned base, a non-root user, and no history, local state or keys sent to
the builder. Checks the files as docker reads them, without docker."""
import fnmatch
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def ignored(path, patterns):
    """docker's rule, simplified to what .dockerignore uses: the last matching
    pattern wins; a pattern matches the path or any of its parents."""
    result = False
    parts = path.split("/")
    for p in patterns:
        neg = p.startswith("!")
        pat = p[1:] if neg else p
        pat = pat.rstrip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, pat) or (pat.startswith("**/") and fnmatch.fnmatch(parts[i - 1], pat[3:])):
                result = not neg
                break
    return result


def patterns():
    return [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]


def test_build_context_leaves_out_history_state_and_keys():
    p = patterns()
    for path in [".git/config", ".paddock/secrets/master_key", ".paddock-test/env/api.env", ".paddock-d/pg/data/x",
                 "build/services/api/paddock-api", "build-test/x", "deploy/local/x.pem", "web/node_modules/a/b.js",
                 "tests/k8s/node_modules/yaml/x.js", "secrets/bus-api.key"]:
        assert ignored(path, p), f"{path} would be sent to the image builder"
    for path in ["CMakeLists.txt", "lib/core/config.c", "services/api/main.c", "proto/paddock/v1/events.proto",
                 "deploy/local/kafka-mock/CMakeLists.txt", "tests/CMakeLists.txt", "cli/main.c"]:
        assert not ignored(path, p), f"{path} is needed by the build but left out of the context"


def test_base_is_pinned_and_the_image_runs_as_non_root():
    text = (REPO / "deploy/k8s/Dockerfile").read_text()
    base = re.search(r"^ARG DEBIAN_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"debian:\d+\.\d+(-slim)?(@sha256:[0-9a-f]{64})?", base.group(1)), "the base names no point release"
    for line in re.findall(r"^FROM (\S+)", text, re.M):
        assert line == "${DEBIAN_IMAGE}", f"FROM {line}: not the pinned base"
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and not users[-1].startswith(("0", "root")), "the image's last USER is root"
