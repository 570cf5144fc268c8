"""The workspace diff is bounded and complete (issue 9 point 4).

Bounded: a hostile workspace (a 200 MB one-line file, 50 MB of newlines,
100k small files) cannot make the node's diff run unbounded, nor its file
events flood the node's bus (a per-run budget, then a count): the run ends,
the runner stays healthy, the diff is still stored but marked truncated, with
a `limit` event (limit "diff") and a manifest entry,
workspace.diff.truncated.json, naming what was left out and why (a file too
big is listed with its size and SHA-256).

Complete: the diff shows every change git would: added and removed empty
files, a binary file (as such, with its blob hash), a rename, a mode change,
an edit."""

import hashlib
import json
import os

import pytest
import requests

import conftest as c


def download(api, run_id, name):
    r = api.get(f"/v1/runs/{run_id}/artifacts/{name}", allow_redirects=False)
    assert r.status_code == 302, f"{name}: {r.status_code} {r.text[:300]}"
    c.e2e.assert_loopback_url(r.headers["Location"])
    d = requests.get(r.headers["Location"], timeout=60)
    assert d.status_code == 200, d.text[:300]
    return d.content


def manifest(api, run_id, want):
    def names():
        items = api.ok("GET", f"/v1/runs/{run_id}/artifacts", expect=(200,)).get("items", [])
        got = {a["name"]: a for a in items}
        return got if set(want) <= set(got) else None
    return c.e2e.wait_for(f"artifacts {want} of run {run_id}", names, timeout=60)


def git_blob(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


BINARY = bytes(range(256)) * 4

SHAPES = (
    "rm empty-gone && : > empty-new && mv rename-me.txt renamed.txt && chmod +x tool.sh && "
    "python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 4)' > blob.bin && "
    "echo appended >> keep.txt && mkfifo pipe && "
    # a name that tries to forge a diff header: git quotes it, so do we
    ": > \"$(printf 'evil\\n+forged line')\""
)
RENAMED = "".join(f"line {i} of a file that moves\n" for i in range(20))


def test_diff_shows_every_change_git_would(endpoints, admin_token, api, runs):
    files = [{"path": "keep.txt", "content": "hello\n", "mode": "0644"},
             {"path": "empty-gone", "content": "", "mode": "0644"},
             {"path": "rename-me.txt", "content": RENAMED, "mode": "0644"},
             {"path": "tool.sh", "content": "echo hi\n", "mode": "0644"}]
    run_id, res = c.run_to_end(endpoints, admin_token, runs, c.spec(["/bin/sh", "-c", SHAPES], files=files))
    assert res.terminal == "succeeded", (c.terminal_event(res), res.output()[-2000:])
    items = manifest(api, run_id, ["workspace.diff"])
    assert "workspace.diff.truncated.json" not in items, items
    assert not c.limit_events(res, "diff"), res.of_kind("limit")
    d = download(api, run_id, "workspace.diff").decode()
    print(d)
    assert ("diff --git a/empty-new b/empty-new\nnew file mode 100644\n"
            "index 0000000000000000000000000000000000000000..e69de29bb2d1d6434b8b29ae775ad8c2e48c5391\n") in d
    assert ("diff --git a/empty-gone b/empty-gone\ndeleted file mode 100644\n"
            "index e69de29bb2d1d6434b8b29ae775ad8c2e48c5391..0000000000000000000000000000000000000000\n") in d
    assert ("diff --git a/blob.bin b/blob.bin\nnew file mode 100644\n"
            f"index 0000000000000000000000000000000000000000..{git_blob(BINARY)}\n"
            "Binary files /dev/null and b/blob.bin differ\n") in d
    assert ("diff --git a/rename-me.txt b/renamed.txt\nsimilarity index 100%\n"
            "rename from rename-me.txt\nrename to renamed.txt\n") in d
    assert "diff --git a/tool.sh b/tool.sh\nold mode 100644\nnew mode 100755\n" in d
    assert "--- a/keep.txt\n+++ b/keep.txt\n@@ -1 +1,2 @@\n hello\n+appended\n" in d
    # a fifo is named, not read
    assert "diff --git a/pipe b/pipe\n# paddock: not diffed: b is a fifo\n" in d
    # a file name cannot forge diff lines
    assert ('diff --git "a/evil\\n+forged line" "b/evil\\n+forged line"\nnew file mode 100644\n') in d
    assert "\n+forged line" not in d
    # nothing of the staging shows
    assert ".paddock-diff" not in d


def sha256_of(chunk, n):
    h = hashlib.sha256()
    for _ in range(n):
        h.update(chunk)
    return h.hexdigest()


HOSTILE = [
    # name, command, limits, (path, sha256 of the file) when one file is too big
    ("one-line-200mb", "head -c 209715200 /dev/zero | tr '\\0' x > big.txt",
     {"disk_mb": 320, "memory_mb": 512}, ("big.txt", sha256_of(b"x" * (1 << 20), 200))),
    ("newlines-50mb", "head -c 52428800 /dev/zero | tr '\\0' '\\n' > lines.txt",
     {"disk_mb": 128, "memory_mb": 384}, ("lines.txt", sha256_of(b"\n" * (1 << 20), 50))),
    # 100k names, made fast: 100 files, each hard-linked 1000 times
    ("100k-small-files", "python3 -c \"import os\nos.mkdir('d')\nfor k in range(100):\n"
                         "    open('f%d' % k, 'w').write(str(k))\n"
                         "    for i in range(1000):\n        os.link('f%d' % k, 'd/%d-%d' % (k, i))\"",
     {"disk_mb": 512, "memory_mb": 768}, None),
]


@pytest.mark.parametrize("name,command,limits,big", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_workspace_gives_truncated_diff(endpoints, admin_token, api, runs, name, command, limits, big):
    s = c.spec(["/bin/sh", "-c", command], timeout_s=240, **limits)
    run_id, res = c.run_to_end(endpoints, admin_token, runs, s, timeout=600)
    assert res.terminal == "succeeded", (c.terminal_event(res), res.output()[-2000:])
    lim = c.limit_events(res, "diff")
    assert lim, f"no diff limit event: {res.of_kind('limit')}"
    kinds = [e["kind"] for e in res.events]
    assert max(i for i, e in enumerate(res.events) if e["kind"] == "limit") < kinds.index("destroyed")
    art = [e["data"] for e in res.of_kind("artifact") if e["data"]["name"] == "workspace.diff"]
    assert art and art[0].get("truncated") is True, res.of_kind("artifact")

    items = manifest(api, run_id, ["workspace.diff", "workspace.diff.truncated.json"])
    record = json.loads(download(api, run_id, "workspace.diff.truncated.json"))
    print(json.dumps(record, indent=1)[:3000])
    assert record["truncated"] is True and record["artifact"] == "workspace.diff"
    d = download(api, run_id, "workspace.diff")
    assert len(d) == items["workspace.diff"]["size"] and hashlib.sha256(d).hexdigest() == items["workspace.diff"]["sha256"]
    if big:
        path, digest = big
        left = [x for x in record["left_out"] if x.get("path") == path]
        assert left and left[0]["reason"] == "file_size" and left[0]["sha256"] == digest, record
        assert left[0]["size"] > left[0]["limit"]
        assert f"diff --git a/{path} b/{path}\nnew file mode 100644\n# paddock: not diffed".encode() in d
        assert digest.encode() in d
        assert len(d) < 1 << 20, "the big file's content reached the diff"
    else:
        files = [x for x in record["left_out"] if x["reason"] == "files"]
        assert files and files[0]["limit"] < 100000, record
        # the file accesses did not flood the bus one by one: sent up to the
        # run's budget, counted past it, and the count is reported (fanotify
        # merges repeated events on one inode, and these 100k names share 100
        # inodes, so the total seen is less than one per name)
        budget = c.limit_events(res, "file_events")
        assert budget, res.of_kind("limit")
        over = [e["data"] for e in res.of_kind("file_access") if e["data"].get("dropped")]
        assert over and over[0]["overflow"] is True, over
        sent = [e for e in res.of_kind("file_access") if "path" in e["data"]]
        assert len(sent) <= over[0]["limit"] and over[0]["dropped"] > 0, (len(sent), over)
        # the files that were compared are in the diff
        assert d.count(b"\ndiff --git a/d/") + d.startswith(b"diff --git a/d/") >= 1000, d[:500]
    # the node stays healthy and clean
    ops = endpoints.need("PADDOCK_RUNNER_AGENT_OPS_URL")
    assert requests.get(f"{ops}/healthz", timeout=10).status_code == 200
    c.e2e.assert_node_clean(run_id, res)
