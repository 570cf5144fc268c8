"""The real `paddock` binary for the CLI tests (test_cli*.py): where it is,
and a caller with a config dir, hence contexts, of its own."""

import json
import os
import pathlib
import subprocess

import pytest

from conftest import REPO

# what would log the binary in or pick a context behind the test's back
ENV_DROP = ("PADDOCK_TOKEN", "PADDOCK_PASSWORD", "PADDOCK_TENANT", "PADDOCK_USER", "PADDOCK_STATE_DIR",
            "PADDOCK_CONTEXT")


def cli_binary():
    candidates = []
    if os.environ.get("PADDOCK_CLI"):
        candidates.append(pathlib.Path(os.environ["PADDOCK_CLI"]))
    if os.environ.get("PADDOCK_BUILD_DIR"):
        candidates.append(pathlib.Path(os.environ["PADDOCK_BUILD_DIR"]) / "cli" / "paddock")
    candidates.append(REPO / "build" / "cli" / "paddock")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    pytest.fail(f"no paddock CLI (set PADDOCK_CLI or PADDOCK_BUILD_DIR): tried {candidates}", pytrace=False)


class Cli:
    """The paddock binary with a config dir of its own (its own contexts).
    Calling it runs the binary (from /, so that no relative path works by
    chance) and returns the CompletedProcess; env adds to its environment,
    unset takes names out of it."""

    def __init__(self, config_dir, api_url=None, timeout=120):
        self.binary = cli_binary()
        self.config = pathlib.Path(config_dir)
        self.timeout = timeout
        self.env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
        self.env["PADDOCK_CONFIG_DIR"] = str(self.config)
        if api_url:
            self.env["PADDOCK_API_URL"] = api_url
        else:
            self.env.pop("PADDOCK_API_URL", None)

    def __call__(self, *args, input=None, timeout=None, env=None, unset=(), cwd="/"):
        e = dict(self.env, **(env or {}))
        for k in unset:
            e.pop(k, None)
        return subprocess.run([self.binary, *map(str, args)], input=input, capture_output=True, text=True,
                              timeout=timeout or self.timeout, env=e, cwd=cwd)

    def ok(self, *args, **kw):
        r = self(*args, **kw)
        assert r.returncode == 0, f"paddock {' '.join(map(str, args))} -> {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        return r.stdout

    def json(self, *args, **kw):
        return json.loads(self.ok(*args, "--json", **kw))

    def fails(self, code, *args, **kw):
        r = self(*args, **kw)
        assert r.returncode == code, \
            f"paddock {' '.join(map(str, args))} -> {r.returncode}, want {code}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        return r
