"""`./dev preflight` (the first step of `./dev up` and `./dev test`) stops with
one line saying why and what to do when the stack cannot work here, before
anything is installed, built or started; and it decides where the data of
the parts that run as other users (PostgreSQL, the sandboxes) lives.

Each case runs the real ./dev of this checkout with its own PADDOCK_STATE_DIR
and PADDOCK_STACKS_DIR under a fresh temporary directory, some inside a
private mount namespace (`unshare -m`) that hides a file of the machine
(/etc/os-release, /etc/passwd, a sysctl) or mounts a noexec tmpfs, so the
machine itself is never changed. Fast: nothing is installed or started, and
each case also checks that the preflight created nothing.
"""

import hashlib
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DEV = REPO / "dev"
SANDBOX_UID = 100000


def clean_env(**extra):
    """The environment of a user's shell: none of the suite's PADDOCK_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDOCK_")}
    env.update(extra)
    return env


def preflight(state, stacks, wrap=(), **extra):
    cmd = [*wrap, str(DEV), "preflight"]
    p = subprocess.run(cmd, cwd=REPO, env=clean_env(PADDOCK_STATE_DIR=str(state), PADDOCK_STACKS_DIR=str(stacks), **extra),
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def in_private_mounts(script):
    """argv prefix: run the rest inside a private mount namespace after `script`
    (sh, $@ = the command)."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script + ' && exec "$@"', "sh"]


def assert_refused(rc, out, err, *phrases):
    assert rc == 1, f"expected a refusal, got rc {rc}\nstdout: {out}\nstderr: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"the refusal is not one line:\n{err}"
    line = lines[0]
    assert line.startswith("stack: cannot start: "), line
    assert "; " in line, f"no fix after the reason: {line}"
    for ph in phrases:
        assert ph in line, f"{ph!r} not in: {line}"
    return line


@pytest.fixture
def tmp():
    """A fresh directory, mode 0700 like a user's home, with a space in its path."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="pf ", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def plain_tmp():
    """A fresh directory every user may enter, with a plain path short enough
    for unix sockets under it."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="pf", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def stack_id(state):
    return hashlib.sha256(os.path.realpath(state).encode()).hexdigest()[:12]


def created_nothing(*paths):
    for p in paths:
        assert not os.path.lexists(p), f"the preflight created {p}"


# ---------------------------------------------------------------- where the data goes


def test_data_in_the_state_dir_when_every_user_can_reach_it(plain_tmp):
    state, stacks = plain_tmp / "state", plain_tmp / "stacks"
    rc, out, err = preflight(state, stacks)
    assert rc == 0, err
    assert f"data in {state}" in out, out
    created_nothing(state, stacks)


def test_data_outside_a_0700_directory(plain_tmp):
    home = plain_tmp / "home"
    home.mkdir(mode=0o700)
    os.chmod(home, 0o700)
    state, stacks = home / "clone" / ".paddock", plain_tmp / "stacks"
    rc, out, err = preflight(state, stacks)
    assert rc == 0, err
    assert f"data in {stacks}/{stack_id(state)} " in out, out
    assert f"uid {SANDBOX_UID} cannot enter {home} (mode 700" in out, out
    created_nothing(home / "clone", stacks)
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700


def test_data_outside_a_path_with_a_space(tmp, plain_tmp):
    state, stacks = tmp / "clone" / ".paddock", plain_tmp / "stacks"
    rc, out, err = preflight(state, stacks)
    assert rc == 0, err
    assert f"data in {stacks}/{stack_id(state)} " in out, out
    assert "characters other than" in out, out
    created_nothing(tmp / "clone", stacks)


def test_data_outside_a_deep_path(plain_tmp):
    # in the state dir, a run's capture socket would be longer than 107 bytes
    state, stacks = plain_tmp / ("d" * 60) / ".paddock", plain_tmp / "stacks"
    rc, out, err = preflight(state, stacks)
    assert rc == 0, err
    assert f"data in {stacks}/{stack_id(state)} " in out, out
    assert "unix socket" in out and "over the 107" in out, out


# ---------------------------------------------------------------- refusals


def test_refused_not_root(plain_tmp):
    # a user namespace without a mapping: uid 65534, no privileges
    rc, out, err = preflight(plain_tmp / "state", plain_tmp / "stacks", wrap=["unshare", "-U"])
    assert_refused(rc, out, err, "not root", "run it as root")
    created_nothing(plain_tmp / "state")


def test_refused_not_debian(plain_tmp):
    fake = plain_tmp / "os-release"
    fake.write_text('ID=fedora\nPRETTY_NAME="Fedora Linux 40"\n')
    rc, out, err = preflight(plain_tmp / "state", plain_tmp / "stacks",
                             wrap=in_private_mounts(f"mount --bind '{fake}' /etc/os-release"))
    assert_refused(rc, out, err, "Fedora Linux 40", "not Debian", "use Debian 12")


def test_refused_without_user_namespaces(plain_tmp):
    zero = plain_tmp / "zero"
    zero.write_text("0\n")
    rc, out, err = preflight(plain_tmp / "state", plain_tmp / "stacks",
                             wrap=in_private_mounts(f"mount --bind '{zero}' /proc/sys/user/max_user_namespaces"))
    assert_refused(rc, out, err, "user namespaces are disabled", "sysctl -w user.max_user_namespaces")


def test_refused_without_user_postgres(plain_tmp):
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "postgresql-common"],
                               capture_output=True, text=True).stdout
    if installed != "install ok installed":
        pytest.skip("postgresql-common is not installed: the check applies after the install")
    passwd = plain_tmp / "passwd"
    passwd.write_text("".join(line for line in open("/etc/passwd") if not line.startswith("postgres:")))
    rc, out, err = preflight(plain_tmp / "state", plain_tmp / "stacks",
                             wrap=in_private_mounts(f"mount --bind '{passwd}' /etc/passwd"))
    assert_refused(rc, out, err, "no user postgres", "apt-get install --reinstall postgresql-common")


@pytest.mark.parametrize("char", ["'", '"', "\\", ";", "\n"])
def test_refused_path_characters(plain_tmp, char):
    state = plain_tmp / f"st{char}ate"
    rc, out, err = preflight(state, plain_tmp / "stacks")
    assert_refused(rc, out, err, "the state dir path", "newline, quote, backslash or semicolon", "use a path without them")
    created_nothing(state)


def test_refused_stacks_dir_unreachable(tmp, plain_tmp):
    # the state dir cannot hold the data (0700 parent), nor can a stacks dir in a 0700 directory
    state = tmp / "clone" / ".paddock"
    closed = plain_tmp / "closed"
    closed.mkdir(mode=0o700)
    os.chmod(closed, 0o700)
    rc, out, err = preflight(state, closed / "stacks")
    assert_refused(rc, out, err, "the state dir cannot hold the data", f"uid {SANDBOX_UID} cannot enter {closed}",
                   "set PADDOCK_STACKS_DIR")
    created_nothing(tmp / "clone", closed / "stacks")


def test_refused_stacks_dir_socket_too_long(tmp, plain_tmp):
    stacks = plain_tmp / ("s" * 60)
    rc, out, err = preflight(tmp / "clone" / ".paddock", stacks)
    line = assert_refused(rc, out, err, "a unix socket under it would have a path of", "over the 107 the kernel allows")
    assert str(stacks) in line
    created_nothing(stacks)


def test_refused_stacks_dir_noexec(tmp, plain_tmp):
    mnt = plain_tmp / "noexec"
    mnt.mkdir()
    os.chmod(mnt, 0o755)
    rc, out, err = preflight(tmp / "clone" / ".paddock", mnt / "stacks",
                             wrap=in_private_mounts(f"mount -t tmpfs -o noexec,mode=0755 paddock-preflight '{mnt}'"))
    assert_refused(rc, out, err, f"{mnt} is on a noexec mount")


def test_refused_existing_data_out_of_reach(plain_tmp):
    # a stack made before the data could live elsewhere, in a directory closed since
    home = plain_tmp / "home"
    (home / "clone" / ".paddock" / "pg").mkdir(parents=True)
    os.chmod(home, 0o700)
    state = home / "clone" / ".paddock"
    rc, out, err = preflight(state, plain_tmp / "stacks")
    assert_refused(rc, out, err, f"the stack's data in {state} cannot be used", f"cannot enter {home}",
                   "move the clone, or start this stack over with")


def test_refused_recorded_data_dir_gone(plain_tmp):
    state = plain_tmp / "state"
    state.mkdir()
    gone = plain_tmp / "stacks" / "0123456789ab"
    (state / "data-dir").write_text(f"{gone}\n")
    rc, out, err = preflight(state, plain_tmp / "stacks")
    assert_refused(rc, out, err, f"names {gone}, which no longer exists", "stack.sh purge")
