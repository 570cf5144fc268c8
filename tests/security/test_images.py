"""Catalog images built on the node (`paddock-runner-agent image build`):
content-addressed, cached, atomic, stripped, prepared as a read-only sandbox
root. Needs root and the machine's Debian mirror (debootstrap); no stack.

A debian-minimal build takes about 75 s on the reference machine (2 cores),
so this file runs in the default `security` label; the test builds the image
twice (the second time with --rebuild, to prove the id is a function of the
recipe and the resolved versions). Run it alone with:

    ctest --test-dir build -R security.images --output-on-failure
or
    PADDOCK_RUNNER_AGENT=build/services/runner-agent/paddock-runner-agent \\
        /usr/bin/python3 -m pytest -v tests/security/test_images.py
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import time

import pytest

IMAGE = "debian-minimal"


def runner_agent():
    path = os.environ.get("PADDOCK_RUNNER_AGENT")
    if not path and os.environ.get("PADDOCK_CLI"):
        # ctest passes the CLI's path; the runner-agent sits in the same build tree
        build = pathlib.Path(os.environ["PADDOCK_CLI"]).resolve().parents[1]
        path = str(build / "services" / "runner-agent" / "paddock-runner-agent")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("set PADDOCK_RUNNER_AGENT to the paddock-runner-agent binary", pytrace=False)
    return path


def image_cmd(state, *args, check=True, timeout=900):
    p = subprocess.run([runner_agent(), "image", *args, "--cache-dir", str(state / "images")],
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        pytest.fail(f"image {' '.join(args)} exited {p.returncode}: {p.stderr[-3000:]}", pytrace=False)
    return p


def build(state, *extra):
    t0 = time.monotonic()
    p = image_cmd(state, "build", IMAGE, *extra)
    elapsed = time.monotonic() - t0
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, p.stdout
    return json.loads(lines[0]), elapsed


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("image builds need root (debootstrap)")
    return tmp_path_factory.mktemp("images-state")


@pytest.fixture(scope="module")
def interrupted(state):
    """A build killed halfway (the whole process group, debootstrap included)."""
    proc = subprocess.Popen([runner_agent(), "image", "build", IMAGE, "--cache-dir", str(state / "images")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    images = state / "images"
    deadline = time.monotonic() + 60
    # wait until debootstrap has started writing the rootfs
    while time.monotonic() < deadline and not list(images.glob(".build-*/rootfs/debootstrap")):
        time.sleep(0.2)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return images


@pytest.fixture(scope="module")
def first(state, interrupted):
    result, elapsed = build(state)
    print(f"\n{IMAGE} built in {elapsed:.1f} s, {result['size_bytes'] / 1048576:.1f} MiB")
    return result


def test_interrupted_build_publishes_nothing(interrupted):
    assert not list(interrupted.glob("sha256-*")), "a killed build must not publish an image"
    index = interrupted / "index.json"
    assert not index.exists() or IMAGE not in json.loads(index.read_text())["images"]


def test_unknown_image_is_refused(state):
    p = image_cmd(state, "build", "no-such-image", check=False)
    assert p.returncode == 2
    assert "unknown image" in p.stderr
    assert not list((state / "images").glob("*no-such-image*"))


def test_build_is_content_addressed_and_indexed(state, first):
    assert first["cached"] is False
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first["id"])
    images = state / "images"
    rootfs = images / ("sha256-" + first["id"][7:]) / "rootfs"
    assert pathlib.Path(first["rootfs"]) == rootfs and rootfs.is_dir()
    index = json.loads((images / "index.json").read_text())
    assert index["images"][IMAGE]["id"] == first["id"]
    assert re.fullmatch(r"[0-9a-f]{64}", index["images"][IMAGE]["recipe_sha256"])
    meta = json.loads((rootfs.parent / "metadata.json").read_text())
    assert meta["id"] == first["id"] and meta["name"] == IMAGE
    assert meta["size_bytes"] > 10 * 1048576 and meta["built_at"]
    names = {p.split("=")[0] for p in meta["packages"]}
    assert {"base-files", "dpkg", "coreutils", "bash"} <= names
    # the interrupted build's temp dir is gone, and this build's too
    assert not list(images.glob(".build-*"))


def test_rootfs_is_a_debian_sandbox_root(first):
    rootfs = pathlib.Path(first["rootfs"])
    assert (rootfs / "etc" / "debian_version").read_text().startswith("12")
    assert os.access(rootfs / "bin" / "sh", os.X_OK)
    assert (rootfs / "workspace").is_dir()
    # the runner bind-mounts its generated files over these: plain files, and
    # nothing of the build host (its resolver) left in the image
    for name in ("passwd", "group", "hosts", "resolv.conf", "hostname", "nsswitch.conf"):
        p = rootfs / "etc" / name
        assert p.is_file() and not p.is_symlink(), name
    assert (rootfs / "etc" / "resolv.conf").read_text() == ""
    # stripped: what a sandbox does not need
    assert not (rootfs / "var" / "lib" / "apt" / "lists").exists()
    assert not (rootfs / "usr" / "share" / "doc").exists()
    assert not (rootfs / "usr" / "share" / "man").exists()
    # no set-id program in the image
    for dirpath, _, files in os.walk(rootfs):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            assert not st.st_mode & 0o6000, os.path.join(dirpath, f)
    # no mount of the build (debootstrap's proc/sys) is left behind
    mounts = pathlib.Path("/proc/self/mountinfo").read_text()
    assert str(rootfs.parent.parent) not in mounts


def test_second_build_is_a_cache_hit(state, first):
    rootfs = pathlib.Path(first["rootfs"])
    before = rootfs.stat().st_mtime_ns
    again, elapsed = build(state)
    assert again["cached"] is True
    assert again["id"] == first["id"]
    assert elapsed < 10, f"a cache hit must not rebuild (took {elapsed:.1f} s)"
    assert rootfs.stat().st_mtime_ns == before


def test_list_shows_the_image(state, first):
    p = image_cmd(state, "list")
    line = [l for l in p.stdout.splitlines() if l.startswith(IMAGE + " ")]
    assert line and first["id"][:19] in line[0]
    assert "(not built)" in [l for l in p.stdout.splitlines() if l.startswith("node-agents ")][0]


def test_rebuild_resolves_to_the_same_id(state, first):
    again, _ = build(state, "--rebuild")
    assert again["cached"] is False
    # same recipe, same mirror snapshot: same versions, same id, one directory
    assert again["id"] == first["id"]
    images = state / "images"
    assert [p.name for p in images.glob("sha256-*")] == ["sha256-" + first["id"][7:]]
    assert not list(images.glob(".build-*"))
