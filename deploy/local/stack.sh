#!/usr/bin/env bash
# Paddock local stack: a private PostgreSQL, librdkafka's mock Kafka cluster,
# Ceph (mon + osd + radosgw) as the S3 server, and the five services, all on
# 127.0.0.1. Everything lives in one state dir, so another PADDOCK_STATE_DIR is
# a second, independent stack with its own ports.
#
#   stack.sh preflight say why `up` cannot work here, before anything is installed or started
#   stack.sh install   install the Debian packages (skipped when all present)
#   stack.sh up        start whatever is not running; writes endpoints.env
#   stack.sh down      stop everything this state dir started (data is kept)
#   stack.sh status    every part's readiness and the endpoints; exits 1 unless all are ready
#   stack.sh purge     down, then delete the stack's data and files
#
# Environment: PADDOCK_STATE_DIR (default <repo>/.paddock), PADDOCK_BUILD_DIR
# (default <repo>/build), PADDOCK_STACKS_DIR (default /var/lib/paddock/stacks,
# see "Where the data lives"), PADDOCK_READY_TIMEOUT (seconds per wait,
# default 90), PADDOCK_SERVICE_ENV (extra KEY=value lines for every service,
# e.g. an ASAN_OPTIONS setting). Contract of the files: docs/CONTRACTS.md
# "Local stack files".
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${PADDOCK_STATE_DIR:-$REPO/.paddock}
BUILD=${PADDOCK_BUILD_DIR:-$REPO/build}
STACKS_ROOT=${PADDOCK_STACKS_DIR:-/var/lib/paddock/stacks}
DATA=      # where pg/, ceph/ and runner/ live: data_dir_resolve
DATA_WHY=  # why not in the state dir, when DATA is a new per-stack dir
# Canonical absolute paths: the per-stack dir's name is derived from STATE's.
STATE=$(realpath -m -- "$STATE")
BUILD=$(realpath -m -- "$BUILD")
STACKS_ROOT=$(realpath -m -- "$STACKS_ROOT")
READY_TIMEOUT=${PADDOCK_READY_TIMEOUT:-90}
PY=/usr/bin/python3
SERVICES=(api scheduler runner-agent evidence billing)
PG_SERVICES=(api scheduler evidence billing)   # those with a PostgreSQL role and schema
declare -A PG_SERVICE_DSN=()
S3_BUCKET=paddock-artifacts
S3_REGION=us-east-1
NODE_ID=local-node-1
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

PACKAGES=(
        build-essential cmake pkg-config git
        librdkafka-dev libpq-dev libcurl4-openssl-dev libjansson-dev libwebsockets-dev
        libssl-dev protobuf-c-compiler libprotobuf-c-dev libcmocka-dev
        crun postgresql kcat radosgw ceph-mon ceph-osd ceph-common
        python3 python3-boto3 python3-psycopg python3-confluent-kafka python3-websocket
        python3-requests python3-pytest python3-cryptography python3-pytest-timeout python3-jsonschema python3-yaml
        iproute2 diffutils debootstrap uuid-runtime curl jq procps util-linux openssl ca-certificates
        zsh   # tests/e2e/test_cli_core.py checks the completion script with it
        nodejs chromium   # the dashboard (web/, npm), its browser tests (tests/browser), tests/k8s
        clang-14 libclang-rt-14-dev   # make fuzz (tests/fuzz): libFuzzer is in libclang-rt-14-dev, only a Recommends of clang-14
)

say() { printf 'stack: %s\n' "$*"; }
warn() { printf 'stack: warning: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

need_root() {
        [[ $(id -u) -eq 0 ]] || die "$1 needs root (PostgreSQL runs as user postgres, the runner-agent uses crun)"
}

# cannot REASON FIX: the one-line refusal of the preflight.
cannot() { printf 'stack: cannot start: %s; %s\n' "$1" "$2" >&2; exit 1; }

# ---------------------------------------------------------------- install

cmd_install() {
        preflight_host
        local missing=() p st
        for p in "${PACKAGES[@]}"; do
                st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
                [[ $st == "install ok installed" ]] || missing+=("$p")
        done
        # Debian's npm, unless the machine's Node.js brings its own (NodeSource's does)
        command -v npm >/dev/null || missing+=(npm)
        if [[ ${#missing[@]} -eq 0 ]]; then
                say "all ${#PACKAGES[@]} packages already installed"
                return 0
        fi
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends "${missing[@]}" || die "apt-get install failed"
        # Debian may create its own PostgreSQL cluster on 5432; the stack never uses it.
        say "packages installed"
}

# ---------------------------------------------------------------- helpers

init_state() {
        # Mode 0755 when created here (the data may live inside it); an
        # existing directory keeps its mode: it may be the user's.
        (umask 022 && mkdir -p "$STATE")
        mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/secrets" "$STATE/env"
        chmod 0700 "$STATE/secrets" "$STATE/env"
        touch "$STATE/ports.env"
}

# Builtins only: status calls these for every part, and each process
# started costs on a loaded machine.
kv_get() { # file key: the last value of key
        local line v=
        [[ -f $1 ]] || return 0
        while IFS= read -r line || [[ -n $line ]]; do
                [[ $line != "$2="* ]] || v=${line#"$2="}
        done <"$1"
        [[ -z $v ]] || echo "$v"
}

# proc_state PID: the state letter of /proc/PID/stat (R, S, Z, ...).
proc_state() {
        local stat
        read -r stat <"/proc/$1/stat" 2>/dev/null || return 1
        stat=${stat##*) } # after the command name, which may hold spaces
        echo "${stat%% *}"
}

kv_set() { # file key value
        local tmp
        tmp=$(mktemp "$1.XXXXXX")
        { grep -v "^$2=" "$1" 2>/dev/null || true; printf '%s=%s\n' "$2" "$3"; } >"$tmp"
        chmod --reference="$1" "$tmp" 2>/dev/null || true
        mv "$tmp" "$1"
}

port_free() {
        "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
# As servers do: TIME_WAIT leftovers do not make a port busy, a listener does.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# Random ports below the ephemeral range (32768+) so outgoing connections and
# the Kafka mock's ephemeral listeners never take them.
pick_port() {
        "$PY" - "$STATE/ports.env" <<'EOF'
import random, socket, sys
taken = set()
for line in open(sys.argv[1]):
    k, _, v = line.strip().partition("=")
    if v.isdigit():
        taken.add(int(v))
for _ in range(500):
    p = random.randint(20000, 32000)
    if p in taken:
        continue
    s = socket.socket()
    # As servers do: TIME_WAIT leftovers do not make a port busy, a listener does.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    sys.exit(0)
sys.exit("no free port found")
EOF
}

# get_port KEY [fixed]: the port kept for KEY, or a new free one. Called only
# for a part that is not running: a kept port taken by someone else is
# replaced, unless fixed (the Ceph monitor's address is in its monmap).
get_port() {
        local key=$1 fixed=${2:-} p
        p=$(kv_get "$STATE/ports.env" "$key")
        if [[ -n $p ]] && port_free "$p"; then
                echo "$p"
                return 0
        fi
        if [[ -n $p && -n $fixed ]]; then
                die "port $p ($key) is taken by another process; stop it or remove $STATE"
        fi
        [[ -z $p ]] || warn "port $p ($key) is taken by another process, choosing another"
        p=$(pick_port) || die "could not find a free port for $key"
        kv_set "$STATE/ports.env" "$key" "$p"
        echo "$p"
}

rand_hex() { openssl rand -hex "$1"; }

# A secret generated once and kept (0600) in the state dir.
secret() { # name bytes
        local f="$STATE/secrets/$1"
        if [[ ! -s $f ]]; then
                (umask 077; rand_hex "$2" >"$f.tmp")
                mv "$f.tmp" "$f"
        fi
        cat "$f"
}

# pid_of PART: the pid if PART runs (pid file + /proc check against pid reuse).
pid_of() {
        local part=$1 pid exe
        [[ -f $STATE/pids/$part.pid ]] || return 1
        read -r pid <"$STATE/pids/$part.pid" 2>/dev/null || return 1
        [[ $pid =~ ^[0-9]+$ ]] || return 1
        [[ -r /proc/$pid/cmdline ]] || return 1
        case $part in
        postgres) exe=postgres ;;
        kafka-mock) exe=paddock-kafka-mock ;;
        ceph-mon | ceph-osd | radosgw) exe=$part ;;
        *) exe=paddock-$part ;;
        esac
        local args=()
        mapfile -d '' args <"/proc/$pid/cmdline" 2>/dev/null || return 1
        [[ " ${args[*]} " == *"$exe"* ]] || return 1
        # A zombie is not running.
        [[ $(proc_state "$pid") != Z ]] || return 1
        echo "$pid"
}

running() { pid_of "$1" >/dev/null; }

# alive PART: the started pid still exists (no command-line check: right after
# the fork it may not have exec'd its program yet).
alive() {
        local pid
        read -r pid <"$STATE/pids/$1.pid" 2>/dev/null || return 1
        [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
        [[ $(proc_state "$pid") != Z ]]
}

# start_bg PART CMD...: detached (own session, so ^C in make leaves it alone).
start_bg() {
        local part=$1
        shift
        # 9>&-: the state lock must not outlive this script in the daemon.
        setsid "$@" >>"$STATE/logs/$part.log" 2>&1 </dev/null 9>&- &
        echo $! >"$STATE/pids/$part.pid"
}

# wait_for DESC SECONDS PART CMD...: polls CMD until it succeeds; fails early
# if PART (when given) died, showing the end of its log.
wait_for() {
        local desc=$1 secs=$2 part=$3
        shift 3
        local deadline=$((SECONDS + secs))
        while ! "$@" >/dev/null 2>&1; do
                if [[ -n $part ]] && ! alive "$part"; then
                        tail -n 20 "$STATE/logs/$part.log" >&2 || true
                        die "$part exited while waiting for $desc (log: $STATE/logs/$part.log)"
                fi
                if ((SECONDS >= deadline)); then
                        [[ -z $part ]] || tail -n 20 "$STATE/logs/$part.log" >&2 || true
                        die "timed out after ${secs}s waiting for $desc"
                fi
                sleep 0.3
        done
}

# stop_part PART [SECONDS]: SIGTERM, wait, then SIGKILL.
stop_part() {
        local part=$1 secs=${2:-20} pid deadline
        pid=$(pid_of "$part") || { rm -f "$STATE/pids/$part.pid"; return 0; }
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + secs))
        while running "$part" && ((SECONDS < deadline)); do
                sleep 0.2
        done
        if running "$part"; then
                warn "$part (pid $pid) did not stop within ${secs}s, killing it"
                kill -KILL "$pid" 2>/dev/null || true
                sleep 0.5
        fi
        rm -f "$STATE/pids/$part.pid"
        say "stopped $part"
}

http_ok() { curl -sf -o /dev/null -m 3 "$1"; }

# ---------------------------------------------------------------- where the data lives
#
# PostgreSQL runs as user postgres and the sandboxes as unprivileged uids of
# their user namespace, so the files those use must be reachable by them;
# PostgreSQL, Ceph and the runner-agent bind unix sockets whose paths may not
# exceed 107 bytes; sandboxes run programs from the runner's directory. When
# all of that holds for the state dir, it keeps that data itself (pg/, ceph/,
# runner/). Otherwise (a clone under /root, which is 0700, a 0700 temporary
# directory, a path with a space, a deep path, a noexec mount) the data goes
# to a root-owned directory of its own, $STACKS_ROOT/<hash of the state dir's
# real path>, named in $STATE/data-dir, so that no directory of the user's is
# opened up. `down` keeps it; only `purge` deletes it. (nosuid does not
# matter: sandboxes run with no_new_privs and images without set-id files.)

# The host uid of slot 0's container root (docs/CONTRACTS.md "Runner
# isolation"). Each run slot has a range of its own (100000 + slot * 65536),
# none of them owner or group of anything here, so this one stands for all:
# what it may enter, every sandbox uid may.
SANDBOX_UID=100000
UNIX_PATH_MAX=107  # sizeof(sockaddr_un.sun_path) - 1
# The longest unix socket path under the data dir: a run's capture socket.
LONGEST_SOCKET=runner/runs/00000000-0000-0000-0000-000000000000/capture-exec.sock

# search_blocker WHO DIR: the first directory on the way to DIR (DIR
# included) that WHO (postgres, or sandbox: the sandboxes' uid) may not
# enter; prints nothing if there is none. Directories that do not exist yet
# are created with mode 0755.
search_blocker() {
        local who=$1 dir=$2 d='' part parts=()
        IFS=/ read -r -a parts <<<"${dir#/}"
        for part in "" "${parts[@]}"; do
                d=${d%/}/$part
                [[ -d $d ]] || return 0
                if [[ $who == postgres ]]; then
                        runuser -u postgres -- test -x "$d" 2>/dev/null && continue
                else
                        setpriv --reuid="$SANDBOX_UID" --regid="$SANDBOX_UID" --clear-groups -- test -x "$d" 2>/dev/null &&
                                continue
                fi
                echo "$d"
                return 0
        done
}

# data_dir_problem DIR: why DIR cannot hold the data (one line), or nothing.
data_dir_problem() {
        local dir=$1 near sock opts who b
        if [[ ! $dir =~ ^/[A-Za-z0-9_./+-]*$ ]]; then
                echo "its path holds characters other than letters, digits and _.+-/, and pg_ctl hands the data dir to a shell"
                return
        fi
        near=$dir
        while [[ ! -d $near ]]; do near=$(dirname "$near"); done
        opts=$(findmnt -n -o OPTIONS --target "$near" 2>/dev/null || true)
        if [[ ,$opts, == *,noexec,* ]]; then
                echo "$near is on a noexec mount, where sandboxes cannot run programs"
                return
        fi
        for who in sandbox postgres; do
                # before the install there is no user postgres yet: up checks again
                [[ $who == sandbox ]] || id -u postgres >/dev/null 2>&1 || continue
                b=$(search_blocker "$who" "$dir")
                [[ -n $b ]] || continue
                if [[ $who == postgres ]]; then who="user postgres"; else who="the sandboxes' uid $SANDBOX_UID"; fi
                echo "$who cannot enter $b (mode $(stat -c '%a, owner %U' "$b"))"
                return
        done
        sock=$dir/$LONGEST_SOCKET
        if ((${#sock} > UNIX_PATH_MAX)); then
                echo "a unix socket under it would have a path of ${#sock} bytes, over the $UNIX_PATH_MAX the kernel allows ($sock)"
                return
        fi
}

# Sets DATA, and DATA_WHY when DATA is a per-stack dir not chosen yet.
# Changes nothing on disk.
data_dir_resolve() {
        if [[ -f $STATE/data-dir ]]; then
                DATA=$(cat "$STATE/data-dir")
        elif [[ -e $STATE/pg || -e $STATE/ceph || -e $STATE/runner ]]; then
                DATA=$STATE # the data is here already
        else
                DATA_WHY=$(data_dir_problem "$STATE")
                DATA=$STATE
                [[ -z $DATA_WHY ]] || DATA=$STACKS_ROOT/$(printf '%s' "$STATE" | sha256sum | cut -c1-12)
        fi
}

# The command that deletes this stack, for the preflight's advice.
purge_hint() {
        case $STATE in
        "$REPO/.paddock") echo "./dev purge" ;;
        "$REPO/.paddock-test") echo "./dev clean-test-state" ;;
        *) echo "PADDOCK_STATE_DIR='$STATE' $REPO/deploy/local/stack.sh purge" ;;
        esac
}

# Refuses (one line: why, and the fix) when the data cannot live where it
# would go.
data_dir_check() {
        local problem owner
        data_dir_resolve
        if [[ -f $STATE/data-dir ]]; then
                [[ -d $DATA ]] || cannot "$STATE/data-dir names $DATA, which no longer exists" \
                        "start this stack over with: $(purge_hint)"
                owner=$(cat "$DATA/owner" 2>/dev/null || true)
                if [[ -n $owner && $owner != "$STATE" && -f $owner/data-dir && $(cat "$owner/data-dir") == "$DATA" ]]; then
                        cannot "$DATA holds the data of the stack in $owner (was $STATE copied from it?)" \
                                "start this one over with: $(purge_hint) (it leaves $DATA to $owner)"
                fi
        fi
        problem=$(data_dir_problem "$DATA")
        [[ -n $problem ]] || return 0
        if [[ -n $DATA_WHY ]]; then
                cannot "the state dir cannot hold the data ($DATA_WHY), nor can $DATA: $problem" \
                        "set PADDOCK_STACKS_DIR to a directory with a short plain path that every user may enter"
        fi
        cannot "the stack's data in $DATA cannot be used: $problem" \
                "move the clone, or start this stack over with: $(purge_hint)"
}

# Creates the per-stack dir when the data goes there, and the runner's dir.
data_dir_init() {
        if [[ $DATA != "$STATE" ]]; then
                if [[ ! -f $STATE/data-dir ]]; then
                        say "PostgreSQL, Ceph and runner data go to $DATA, as $STATE cannot hold them: $DATA_WHY"
                        (umask 022 && mkdir -p "$DATA")
                        printf '%s\n' "$DATA" >"$STATE/data-dir"
                fi
                # which state dir it serves (purge checks it; a moved clone takes it over)
                printf '%s\n' "$STATE" >"$DATA/owner"
        fi
        mkdir -p "$DATA/runner"
}

# data_remove DIR: deletes DIR, after unmounting what a killed runner-agent
# may have left mounted under it (its crun tmpfs, run workspaces, netns).
data_remove() {
        local dir=$1 m
        [[ -e $dir ]] || return 0
        findmnt -rn -o TARGET | { grep -F -- "$dir/" || true; } | sort -r | while read -r m; do
                umount -l "$m" 2>/dev/null || warn "could not unmount $m"
        done
        rm -rf --one-file-system -- "$dir"
}

# ---------------------------------------------------------------- preflight
#
# What `up` needs from the machine, checked before anything is installed or
# started, so that it stops with one line saying why and what to do instead
# of failing halfway.

preflight_host() {
        [[ $(id -u) -eq 0 ]] || cannot "this runs as uid $(id -u), not root: PostgreSQL runs as user postgres and sandboxes need crun and namespaces" \
                "run it as root (sudo ./dev ...)"
        local os='' like='' pretty='' n
        if [[ -r /etc/os-release ]]; then
                # shellcheck disable=SC1091
                os=$(. /etc/os-release && echo "${ID:-}")
                like=$(. /etc/os-release && echo "${ID_LIKE:-}")
                pretty=$(. /etc/os-release && echo "${PRETTY_NAME:-}")
        fi
        if [[ $os != debian && " $like " != *" debian "* ]] || ! command -v apt-get >/dev/null ||
                ! command -v dpkg-query >/dev/null; then
                cannot "this is ${pretty:-a system without /etc/os-release}, not Debian with apt, which installs the packages" \
                        "use Debian 12 (bookworm)"
        fi
        n=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)
        ((n > 0)) || cannot "user namespaces are disabled (user.max_user_namespaces = $n), and every sandbox runs in one" \
                "enable them: sysctl -w user.max_user_namespaces=15000"
        if [[ $(dpkg-query -W -f='${Status}' postgresql-common 2>/dev/null || true) == "install ok installed" ]] &&
                ! id -u postgres >/dev/null 2>&1; then
                cannot "PostgreSQL is installed but there is no user postgres to run it as" \
                        "recreate the user: apt-get install --reinstall postgresql-common"
        fi
}

# Characters no path of the stack may hold: a newline or a single quote
# (endpoints.env quotes paths with single quotes), a double quote or a
# backslash (the build puts the source path into C strings), a semicolon
# (CMake's list separator). Spaces are fine.
preflight_paths() {
        local what path c
        for what in "clone:$REPO" "state dir:$STATE" "build dir:$BUILD"; do
                path=${what#*:}
                for c in $'\n' "'" '"' '\' ';'; do
                        [[ $path != *"$c"* ]] ||
                                cannot "the ${what%%:*} path $(printf '%q' "$path") holds a newline, quote, backslash or semicolon, which the build and endpoints.env cannot carry" \
                                        "use a path without them"
                done
        done
}

cmd_preflight() {
        preflight_host
        preflight_paths
        data_dir_check
        say "preflight passed: state in $STATE, data in $DATA${DATA_WHY:+ (in the state dir, $DATA_WHY)}"
}

# ---------------------------------------------------------------- PostgreSQL

pg_bin() {
        local d
        d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        [[ -n $d ]] || die "PostgreSQL is not installed (run: stack.sh install)"
        echo "$d"
}

# From /: the caller's directory may be out of postgres's reach (a 0700 clone).
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

pg_running() { [[ -f $DATA/pg/data/postmaster.pid ]] && as_postgres "$(pg_bin)/pg_ctl" -D "$DATA/pg/data" status >/dev/null 2>&1; }

pg_up() {
        local bin port pw pglog=$STATE/logs/postgres.log
        bin=$(pg_bin)
        mkdir -p "$DATA/pg"
        chown postgres:postgres "$DATA/pg"
        chmod 0700 "$DATA/pg"
        if [[ $DATA != "$STATE" ]]; then
                # postgres may not reach the state dir: its log lives by its data
                pglog=$DATA/pg/postgres.log
                ln -sfn "$pglog" "$STATE/logs/postgres.log"
        fi
        if [[ ! -f $DATA/pg/data/PG_VERSION ]]; then
                say "initialising PostgreSQL in $DATA/pg/data"
                rm -rf "$DATA/pg/data"
                as_postgres "$bin/initdb" -D "$DATA/pg/data" -U postgres -E UTF8 --locale=C.UTF-8 \
                        --auth-local=peer --auth-host=scram-sha-256 >>"$STATE/logs/postgres-init.log" 2>&1 ||
                        die "initdb failed (log: $STATE/logs/postgres-init.log)"
        fi
        if pg_running; then
                port=$(kv_get "$STATE/ports.env" PG_PORT)
                say "PostgreSQL already running on 127.0.0.1:$port"
        else
                port=$(get_port PG_PORT)
                mkdir -p "$DATA/pg/run"
                chown postgres:postgres "$DATA/pg/run"
                touch "$pglog"
                chown postgres:postgres "$pglog"
                # data_dir_problem: the path is plain, the shell pg_ctl uses keeps it whole
                as_postgres "$bin/pg_ctl" -D "$DATA/pg/data" -l "$pglog" -w -t "$READY_TIMEOUT" \
                        -o "-p $port -c listen_addresses=127.0.0.1 -k $DATA/pg/run" start >/dev/null 9>&- ||
                        die "PostgreSQL did not start (log: $STATE/logs/postgres.log)"
                say "PostgreSQL started on 127.0.0.1:$port"
        fi
        head -n 1 "$DATA/pg/data/postmaster.pid" >"$STATE/pids/postgres.pid"
        pw=$(secret pg_password 24)
        # Roles (docs/CONTRACTS.md "Tenant isolation in PostgreSQL"): paddock
        # owns the database and the schemas, applies the migrations and is the
        # operators' (and tests') role, so it bypasses row-level security;
        # each service runs as paddock_<service>, which owns nothing, may not
        # bypass row-level security and gets its privileges from the migrations.
        # Passwords go over stdin, never on a command line; the server stores
        # only their SCRAM verifiers.
        local sql s role rpw
        sql="SELECT 'CREATE ROLE paddock LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paddock') \\gexec
ALTER ROLE paddock WITH LOGIN BYPASSRLS PASSWORD '$pw';
SELECT 'CREATE DATABASE paddock OWNER paddock' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'paddock') \\gexec
"
        for s in "${PG_SERVICES[@]}"; do
                role=paddock_$s
                rpw=$(secret "pg_password_$s" 24)
                sql+="SELECT 'CREATE ROLE $role LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role') \\gexec
ALTER ROLE $role WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD '$rpw';
"
                PG_SERVICE_DSN[$s]="postgresql://$role:$rpw@127.0.0.1:$port/paddock"
        done
        printf '%s' "$sql" | as_postgres "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$DATA/pg/run" -p "$port" -d postgres \
                >/dev/null 2>>"$STATE/logs/postgres-init.log" ||
                die "could not create the roles and database paddock (log: $STATE/logs/postgres-init.log)"
        PG_DSN="postgresql://paddock:$pw@127.0.0.1:$port/paddock"
}

pg_down() {
        if pg_running; then
                as_postgres "$(pg_bin)/pg_ctl" -D "$DATA/pg/data" -m fast -w -t 60 stop >/dev/null ||
                        warn "pg_ctl stop failed"
                say "stopped postgres"
        fi
        rm -f "$STATE/pids/postgres.pid"
}

# ---------------------------------------------------------------- Kafka mock

kafka_mock_bin() {
        local b="$BUILD/deploy/local/kafka-mock/paddock-kafka-mock"
        if [[ ! -x $b ]]; then
                say "building paddock-kafka-mock in $BUILD"
                { cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
                        cmake --build "$BUILD" --target paddock-kafka-mock -j2 >/dev/null; } ||
                        die "could not build paddock-kafka-mock (run: make build)"
        fi
        echo "$b"
}

KAFKA_RESTARTED=
kafka_up() {
        local bin
        if running kafka-mock && [[ -s $STATE/kafka-bootstrap ]]; then
                KAFKA_BOOTSTRAP=$(cat "$STATE/kafka-bootstrap")
                say "Kafka mock already running at $KAFKA_BOOTSTRAP"
                return 0
        fi
        bin=$(kafka_mock_bin)
        rm -f "$STATE/kafka-bootstrap"
        rm -f "$STATE/kafka-control" # slice A: the mock's fault API (tests/chaos)
        start_bg kafka-mock "$bin" --brokers 3 --topics "$REPO/deploy/topics.txt" \
                --bootstrap-file "$STATE/kafka-bootstrap" --control-file "$STATE/kafka-control" # slice A
        wait_for "the Kafka mock" 30 kafka-mock test -s "$STATE/kafka-bootstrap"
        KAFKA_BOOTSTRAP=$(cat "$STATE/kafka-bootstrap")
        KAFKA_RESTARTED=1
        say "Kafka mock (3 brokers, in memory: empty after every start) at $KAFKA_BOOTSTRAP"
}

# ---------------------------------------------------------------- Ceph (S3)

CEPH_DIR=
ceph_cli() { timeout 60 ceph -c "$CEPH_DIR/ceph.conf" --connect-timeout 15 "$@"; }
rgw_admin() { timeout 120 radosgw-admin -c "$CEPH_DIR/ceph.conf" "$@"; }

ceph_write_conf() {
        local mon_port=$1 fsid
        fsid=$(uuidgen)
        cat >"$CEPH_DIR/ceph.conf" <<EOF
# Single-node Ceph for the Paddock local stack (written once by stack.sh).
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
# No cephx on loopback; without crc modes radosgw hangs (LOCAL-STACK.md).
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
run dir = $CEPH_DIR/run
admin socket = $CEPH_DIR/run/\$cluster-\$name.asok
log file = $STATE/logs/ceph-client.log
mon data = $CEPH_DIR/mon/\$cluster-\$id
osd data = $CEPH_DIR/osd/\$cluster-\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 10737418240
bluestore fsck on mount = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
mon data avail crit = 1
mon data avail warn = 2
osd memory target = 1073741824
[client.rgw]
rgw data = $CEPH_DIR/rgw
rgw dns name = 127.0.0.1
EOF
}

ceph_up() {
        local mon_port rgw_port osd_uuid
        CEPH_DIR=$DATA/ceph
        mkdir -p "$CEPH_DIR/mon" "$CEPH_DIR/osd" "$CEPH_DIR/rgw" "$CEPH_DIR/run"

        # Monitor: its address is in the monmap, so its port never changes.
        if [[ ! -f $CEPH_DIR/.mon-created ]]; then
                say "initialising Ceph monitor"
                rm -rf "${CEPH_DIR:?}/mon/"* "$CEPH_DIR/monmap"
                mon_port=$(get_port MON_PORT)
                [[ -f $CEPH_DIR/ceph.conf ]] || ceph_write_conf "$mon_port"
                local fsid
                fsid=$(sed -n 's/^fsid = //p' "$CEPH_DIR/ceph.conf")
                monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$CEPH_DIR/monmap" \
                        >>"$STATE/logs/ceph-init.log" 2>&1 || die "monmaptool failed (log: $STATE/logs/ceph-init.log)"
                ceph-mon -c "$CEPH_DIR/ceph.conf" --mkfs -i a --monmap "$CEPH_DIR/monmap" \
                        >>"$STATE/logs/ceph-init.log" 2>&1 || die "ceph-mon --mkfs failed (log: $STATE/logs/ceph-init.log)"
                touch "$CEPH_DIR/.mon-created"
        fi
        mon_port=$(sed -n 's/^mon host = \[v2:127.0.0.1:\([0-9]*\)\]$/\1/p' "$CEPH_DIR/ceph.conf")
        if running ceph-mon; then
                say "Ceph monitor already running on 127.0.0.1:$mon_port"
        else
                port_free "$mon_port" || die "Ceph monitor port $mon_port is taken by another process"
                start_bg ceph-mon ceph-mon -f -c "$CEPH_DIR/ceph.conf" -i a --log-file "$STATE/logs/ceph-mon.log"
                wait_for "the Ceph monitor" "$READY_TIMEOUT" ceph-mon ceph_cli mon stat
                say "Ceph monitor started on 127.0.0.1:$mon_port"
        fi

        # OSD 0 on a sparse bluestore file; `osd new` with a kept uuid is idempotent.
        if [[ ! -f $CEPH_DIR/.osd-created ]]; then
                say "initialising Ceph OSD"
                [[ -s $CEPH_DIR/osd-uuid ]] || uuidgen >"$CEPH_DIR/osd-uuid"
                osd_uuid=$(cat "$CEPH_DIR/osd-uuid")
                local id
                id=$(ceph_cli osd new "$osd_uuid" 2>>"$STATE/logs/ceph-init.log") || die "ceph osd new failed"
                [[ $id == 0 ]] || die "expected OSD id 0, got '$id' (remove $CEPH_DIR to start over)"
                rm -rf "$CEPH_DIR/osd/ceph-0"
                mkdir -p "$CEPH_DIR/osd/ceph-0"
                ceph-osd -c "$CEPH_DIR/ceph.conf" -i 0 --mkfs --osd-uuid "$osd_uuid" \
                        >>"$STATE/logs/ceph-init.log" 2>&1 || die "ceph-osd --mkfs failed (log: $STATE/logs/ceph-init.log)"
                touch "$CEPH_DIR/.osd-created"
        fi
        if running ceph-osd; then
                say "Ceph OSD already running"
        else
                start_bg ceph-osd ceph-osd -f -c "$CEPH_DIR/ceph.conf" -i 0 --log-file "$STATE/logs/ceph-osd.log"
                wait_for "the Ceph OSD to be up" "$READY_TIMEOUT" ceph-osd osd_is_up
                say "Ceph OSD started"
        fi

        # radosgw (beast) on a kept port.
        if running radosgw; then
                rgw_port=$(kv_get "$STATE/ports.env" RGW_PORT)
                say "radosgw already running on 127.0.0.1:$rgw_port"
        else
                rgw_port=$(get_port RGW_PORT)
                start_bg radosgw radosgw -f -c "$CEPH_DIR/ceph.conf" -n client.rgw \
                        --rgw-frontends "beast endpoint=127.0.0.1:$rgw_port" --log-file "$STATE/logs/radosgw.log"
                # The first start creates the RGW pools: slower.
                wait_for "radosgw on 127.0.0.1:$rgw_port" $((READY_TIMEOUT * 2)) radosgw http_ok "http://127.0.0.1:$rgw_port/"
                say "radosgw started on 127.0.0.1:$rgw_port"
        fi
        S3_ENDPOINT="http://127.0.0.1:$rgw_port"

        S3_ACCESS_KEY=$(secret s3_access_key 10 | tr a-f A-F)
        S3_SECRET_KEY=$(secret s3_secret_key 20)
        if [[ ! -f $CEPH_DIR/.user-created ]]; then
                if ! rgw_admin user info --uid paddock >/dev/null 2>&1; then
                        # radosgw-admin takes keys only as arguments; this runs once, locally.
                        rgw_admin user create --uid paddock --display-name "Paddock local stack" \
                                --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" \
                                >/dev/null 2>>"$STATE/logs/ceph-init.log" || die "radosgw-admin user create failed"
                fi
                touch "$CEPH_DIR/.user-created"
                say "S3 user paddock created"
        fi
        s3_bucket_up
}

osd_is_up() {
        ceph_cli osd stat -f json | jq -e '(.num_up_osds // .osdmap.num_up_osds) >= 1' >/dev/null
}

# curl signs with SigV4; the keys go through a config on stdin, not argv.
s3_curl() { # method path [curl args...]
        local method=$1 path=$2
        shift 2
        printf 'user = "%s:%s"\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" |
                curl -K - -s -m 30 -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:$S3_REGION:s3" \
                        -H "x-amz-content-sha256: $EMPTY_SHA256" -X "$method" "$@" "$S3_ENDPOINT$path"
}

s3_bucket_up() {
        local code
        code=$(s3_curl HEAD "/$S3_BUCKET" -I) || true
        case $code in
        200)
                # object lock can only be chosen when a bucket is made (issue 14 §3)
                code=$(s3_curl GET "/$S3_BUCKET?object-lock=") || true
                [[ $code == 200 ]] || say "warning: bucket $S3_BUCKET has no S3 object lock (made before it was" \
                        "turned on): artifacts are written without retention; purge the stack to get it"
                return 0
                ;;
        404)
                # with S3 object lock: evidence writes artifacts with GOVERNANCE
                # retention (docs/CONTRACTS.md "Retention and legal hold")
                code=$(s3_curl PUT "/$S3_BUCKET" -H "x-amz-bucket-object-lock-enabled: true") || true
                [[ $code == 200 || $code == 409 ]] || die "could not create bucket $S3_BUCKET (http $code)"
                say "bucket $S3_BUCKET created"
                ;;
        *) die "could not check bucket $S3_BUCKET (http $code; log: $STATE/logs/radosgw.log)" ;;
        esac
}

ceph_down() {
        stop_part radosgw 20
        stop_part ceph-osd 30
        stop_part ceph-mon 20
}

# ---------------------------------------------------------------- cgroups

# crun refuses hybrid cgroups where the v2 hierarchy holds a controller
# (hugetlb here); a v1 hugetlb mount moves it out. Pure v2 hosts need nothing.
prepare_cgroups() {
        [[ -f /sys/fs/cgroup/cgroup.controllers ]] && return 0 # pure v2
        local ctl=/sys/fs/cgroup/unified/cgroup.controllers c
        [[ -f $ctl ]] || return 0
        for c in $(cat "$ctl"); do
                if mountpoint -q "/sys/fs/cgroup/$c"; then
                        continue
                fi
                say "mounting the v1 $c cgroup hierarchy (crun rejects hybrid mode)"
                mkdir -p "/sys/fs/cgroup/$c" && mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" ||
                        die "could not mount the $c cgroup hierarchy; crun will refuse to run"
        done
}

# ---------------------------------------------------------------- services

svc_bin() { echo "$BUILD/services/$1/paddock-$1"; }
svc_port_key() { local k=${1^^}; echo "${k//-/_}_PORT"; }
svc_var() { local k=${1^^}; echo "${k//-/_}"; }

# env_line KEY VALUE: a line of a KEY=value file that both `. file` and
# tests/e2e/conftest.py read back whole; a path may hold spaces (never a
# single quote: preflight_paths).
env_line() {
        if [[ $2 =~ ^[A-Za-z0-9._/:@,+=%-]*$ ]]; then
                printf '%s=%s\n' "$1" "$2"
        else
                printf "%s='%s'\n" "$1" "$2"
        fi
}

write_endpoints() {
        local f="$STATE/endpoints.env" tmp s
        tmp=$(mktemp "$f.XXXXXX")
        chmod 0600 "$tmp"
        {
                echo "# Paddock local stack ($STATE), written by deploy/local/stack.sh up"
                env_line PADDOCK_STATE_DIR "$STATE"
                echo "PADDOCK_API_URL=http://127.0.0.1:${SVC_PORT[api]}"
                # the api serves /healthz, /readyz and /metrics on its main port
                echo "PADDOCK_API_OPS_URL=http://127.0.0.1:${SVC_PORT[api]}"
                echo "PADDOCK_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
                echo "PADDOCK_KAFKA_MOCK_CONTROL=$(cat "$STATE/kafka-control" 2>/dev/null)" # slice A: fault API, loopback
                echo "PADDOCK_PG_DSN=$PG_DSN"   # the owner: operators and tests (bypasses row-level security)
                echo "PADDOCK_PG_API_DSN=${PG_SERVICE_DSN[api]}"   # what the api runs as
                echo "PADDOCK_S3_ENDPOINT=$S3_ENDPOINT"
                echo "PADDOCK_S3_BUCKET=$S3_BUCKET"
                echo "PADDOCK_S3_ACCESS_KEY=$S3_ACCESS_KEY"
                echo "PADDOCK_S3_SECRET_KEY=$S3_SECRET_KEY"
                echo "PADDOCK_S3_REGION=$S3_REGION"
                env_line PADDOCK_RUNNER_STATE_DIR "$DATA/runner"
                # the test upstream network (testnet_up): servers of tests live there
                echo "PADDOCK_TEST_NETNS=/run/netns/$TESTNET_NS"
                echo "PADDOCK_TEST_NET=$TESTNET_BASE/29"
                echo "PADDOCK_TEST_NODE_ADDR=$TESTNET_HOST"
                echo "PADDOCK_TEST_FLOOR_ADDR=$TESTNET_FLOOR"
                env_line PADDOCK_TEST_UPSTREAM_NAMES "$TESTNET_NAMES"
                env_line PADDOCK_TEST_UPSTREAM_ADDRS "$TESTNET_ADDRS"
                # the test CA (testca_up) the runner-agent trusts for secret header origins
                env_line PADDOCK_TEST_CA_CERT "$STATE/testca/ca.crt"
                env_line PADDOCK_TEST_CA_KEY "$STATE/testca/ca.key"
                # public keys only; a test enrols a node it impersonates by adding a line
                env_line PADDOCK_TRUSTED_KEYS "$STATE/trusted-keys"
                # tests move the retention/budget clock by writing seconds here
                env_line PADDOCK_BUSINESS_CLOCK_FILE "$STATE/business-clock"
                # the dashboard, when the build has one (./dev builds web/ into <build>/web/dist)
                [[ ! -f $BUILD/web/dist/index.html ]] || echo "PADDOCK_DASHBOARD_URL=http://127.0.0.1:${SVC_PORT[api]}/"
                for s in "${SERVICES[@]}"; do
                        [[ $s == api ]] && continue
                        echo "PADDOCK_$(svc_var "$s")_OPS_URL=http://127.0.0.1:${SVC_PORT[$s]}"
                done
        } >"$tmp"
        mv "$tmp" "$f"
}

# Bus keys (docs/CONTRACTS.md, signed messages): one Ed25519 key per
# service (secrets/bus-<service>.key, 0600) and the trusted-keys file every
# service reads (public keys only, so outside secrets/). The runner-agent makes
# its node key itself (`paddock-runner-agent enroll`); recording its public key
# here is the operator's enrolment step.
BUS_SIGNERS=(api scheduler evidence billing)
bus_keys() {
        local s f pub tmp bin line
        tmp=$(mktemp "$STATE/trusted-keys.XXXXXX")
        chmod 0644 "$tmp"
        echo "# identity public-key (base64 of the raw Ed25519 key); written by stack.sh up" >"$tmp"
        for s in "${BUS_SIGNERS[@]}"; do
                f="$STATE/secrets/bus-$s.key"
                if [[ ! -s $f ]]; then
                        (umask 077; openssl genpkey -algorithm ed25519 -out "$f.tmp" 2>/dev/null) ||
                                die "could not generate the bus key of $s (openssl genpkey -algorithm ed25519)"
                        mv "$f.tmp" "$f"
                fi
                pub=$(openssl pkey -in "$f" -pubout -outform DER | tail -c 32 | base64)
                echo "$s $pub" >>"$tmp"
        done
        bin=$(svc_bin runner-agent)
        if [[ -x $bin ]]; then
                line=$(PADDOCK_RUNNER_STATE_DIR="$DATA/runner" PADDOCK_NODE_ID=$NODE_ID "$bin" enroll \
                        2>>"$STATE/logs/runner-agent-enroll.log") || die "paddock-runner-agent enroll failed (log: $STATE/logs/runner-agent-enroll.log)"
                echo "$line" >>"$tmp"
        fi
        # lines the tests or an operator added for other nodes stay
        if [[ -f $STATE/trusted-keys ]]; then
                grep -v -e '^#' -e '^api ' -e '^scheduler ' -e '^evidence ' -e '^billing ' -e "^node:$NODE_ID " \
                        "$STATE/trusted-keys" >>"$tmp" || true
        fi
        mv "$tmp" "$STATE/trusted-keys"
}

write_service_env() { # name
        local s=$1 f="$STATE/env/$1.env"
        (
                umask 077
                {
                        echo "PADDOCK_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
                        echo "PADDOCK_KAFKA_SESSION_TIMEOUT_MS=6000"
                        echo "PADDOCK_KAFKA_FETCH_WAIT_MS=10"   # the mock cluster does not wake a waiting fetch
                        env_line PADDOCK_TRUSTED_KEYS "$STATE/trusted-keys"
                        # the runner-agent signs with its node key (node.key in its state dir)
                        [[ $s == runner-agent ]] || env_line PADDOCK_SIGNING_KEY "$STATE/secrets/bus-$s.key"
                        echo "PADDOCK_LOG_LEVEL=${PADDOCK_LOG_LEVEL:-info}"
                        # each service gets only the credentials it uses: the
                        # runner-agent (execution plane) none at all
                        if [[ $s != runner-agent ]]; then
                                echo "PADDOCK_PG_DSN=${PG_SERVICE_DSN[$s]}"
                        fi
                        if [[ $s == api || $s == evidence ]]; then
                                echo "PADDOCK_S3_ENDPOINT=$S3_ENDPOINT"
                                echo "PADDOCK_S3_BUCKET=$S3_BUCKET"
                                echo "PADDOCK_S3_ACCESS_KEY=$S3_ACCESS_KEY"
                                echo "PADDOCK_S3_SECRET_KEY=$S3_SECRET_KEY"
                                echo "PADDOCK_S3_REGION=$S3_REGION"
                        fi
                        if [[ $s == api || $s == runner-agent ]]; then
                                echo "PADDOCK_EGRESS_FLOOR=$TESTNET_FLOOR/32"
                        fi
                        if [[ $s == api || $s == billing || $s == evidence ]]; then
                                # absent: the wall clock; tests write an offset (lib/core/business_clock.h)
                                env_line PADDOCK_BUSINESS_CLOCK_FILE "$STATE/business-clock"
                        fi
                        if [[ $s == evidence ]]; then
                                # tests move the business clock past a run's expiry and
                                # wait for the sweep (docs/CONTRACTS.md "Retention and legal hold")
                                echo "PADDOCK_EVIDENCE_RETENTION_SWEEP_S=2"
                        fi
                        if [[ $s == runner-agent ]]; then
                                # env_line: the file is sourced (run_with_env) and a
                                # clone's path may hold spaces
                                env_line PADDOCK_RUNNER_STATE_DIR "$DATA/runner"
                                echo "PADDOCK_NODE_ID=$NODE_ID"
                                env_line PADDOCK_EGRESS_CA_BUNDLE "$STATE/testca/egress-ca.pem"
                                # built images live outside the state dir: a purge or
                                # another checkout reuses them (docs/CONTRACTS.md)
                                env_line PADDOCK_IMAGE_CACHE_DIR "${PADDOCK_IMAGE_CACHE_DIR:-/var/cache/paddock/images}"
                                # the agent CLIs' policy hook, the build's static binary (hook_server.h)
                                env_line PADDOCK_HOOK_BINARY "$BUILD/services/runner-agent/paddock-hook"
                        fi
                        if [[ $s == api ]]; then
                                echo "PADDOCK_API_ADDR=127.0.0.1:${SVC_PORT[$s]}"
                                # wraps the tenants' secret keys: only the api gets it,
                                # never endpoints.env (kept in secrets/master_key, 0600)
                                echo "PADDOCK_MASTER_KEY=$(secret master_key 32)"
                                # the tests' OIDC provider serves plain http in the test network
                                echo "PADDOCK_OIDC_HTTP_NETS=$TESTNET_BASE/29"
                                # the tests' stand-in reverse proxy: requests from
                                # 127.0.0.2 name their client in X-Forwarded-For,
                                # from anywhere else (127.0.0.1) the header is ignored
                                echo "PADDOCK_TRUSTED_PROXIES=127.0.0.2/32"
                                # the dashboard (web.c) when ./dev built it; else / stays a 404
                                [[ ! -f $BUILD/web/dist/index.html ]] || env_line PADDOCK_WEB_DIR "$BUILD/web/dist"
                        else
                                echo "PADDOCK_OPS_ADDR=127.0.0.1:${SVC_PORT[$s]}"
                        fi
                        [[ -z ${PADDOCK_SERVICE_ENV:-} ]] || printf '%s\n' "$PADDOCK_SERVICE_ENV"
                } >"$f.tmp"
                mv "$f.tmp" "$f"
        )
}

# Runs BIN with the service's env file (and nothing secret on its command line).
run_with_env() { # envfile bin args...
        local envf=$1 v
        shift
        # Only the env file configures a service, not whatever PADDOCK_* the
        # caller happens to export (e.g. another stack's endpoints).
        for v in $(compgen -e); do
                [[ $v != PADDOCK_* ]] || unset "$v"
        done
        set -a
        # shellcheck disable=SC1090
        . "$envf"
        set +a
        exec "$@"
}

declare -A SVC_PORT=()

services_ports() {
        local s
        for s in "${SERVICES[@]}"; do
                if running "$s"; then
                        SVC_PORT[$s]=$(kv_get "$STATE/ports.env" "$(svc_port_key "$s")")
                else
                        SVC_PORT[$s]=$(get_port "$(svc_port_key "$s")")
                fi
        done
}

services_up() {
        local s bin url pid
        if [[ -n $KAFKA_RESTARTED ]]; then
                # Their bootstrap address is gone with the old mock.
                for s in "${SERVICES[@]}"; do
                        if running "$s"; then
                                say "restarting $s: the Kafka mock was restarted"
                                stop_part "$s" 20
                        fi
                done
        fi
        for s in "${SERVICES[@]}"; do
                bin=$(svc_bin "$s")
                url="http://127.0.0.1:${SVC_PORT[$s]}"
                if pid=$(pid_of "$s"); then
                        say "$s already running (pid $pid) at $url"
                        continue
                fi
                if [[ ! -x $bin ]]; then
                        say "skipping $s: $bin not built"
                        continue
                fi
                write_service_env "$s"
                [[ $s == runner-agent ]] && prepare_cgroups
                [[ -z ${PG_SERVICE_DSN[$s]:-} ]] || migrate_schema "$s" "$bin"
                start_bg "$s" bash -c "$(declare -f run_with_env); run_with_env \"\$@\"" _ "$STATE/env/$s.env" "$bin"
                wait_for "$s to be ready at $url/readyz" "$READY_TIMEOUT" "$s" http_ok "$url/readyz"
                say "$s ready at $url (log: $STATE/logs/$s.log)"
        done
}

# Applies a service's migrations as the schema owner before the service,
# which runs as a role that may not change the schema, starts: the local
# counterpart of the migration Job in deploy/k8s.
migrate_schema() { # service bin
        local s=$1 bin=$2
        ( export OWNER_DSN=$PG_DSN
          run_with_env "$STATE/env/$s.env" bash -c 'PADDOCK_PG_DSN=$OWNER_DSN exec "$0" migrate' "$bin" ) \
                >>"$STATE/logs/$s-migrate.log" 2>&1 ||
                die "paddock-$s migrate failed (log: $STATE/logs/$s-migrate.log)"
}

# The demo tenant's admin gets a password chosen here (not a one-time
# password, which would have to be changed at first login): the demo and the
# test suite log in with it from $STATE/credentials.
bootstrap_tenant() {
        local bin out pw
        bin=$(svc_bin api)
        [[ -f $STATE/credentials ]] && return 0
        running api || return 0
        pw=$(rand_hex 16)
        out=$( (printf '%s\n' "$pw" | run_with_env "$STATE/env/api.env" "$bin" bootstrap --tenant demo --admin admin \
                --password-stdin) 2>>"$STATE/logs/api-bootstrap.log") || {
                warn "paddock-api bootstrap failed (log: $STATE/logs/api-bootstrap.log); no $STATE/credentials written"
                return 0
        }
        if [[ $out != "tenant demo created"* ]]; then
                warn "paddock-api bootstrap did not create tenant demo (it said: $out); no $STATE/credentials written"
                return 0
        fi
        (
                umask 077
                printf 'PADDOCK_TENANT=demo\nPADDOCK_USER=admin\nPADDOCK_PASSWORD=%s\n' "$pw" >"$STATE/credentials.tmp"
                mv "$STATE/credentials.tmp" "$STATE/credentials"
        )
        say "tenant demo with admin user 'admin' created; password in $STATE/credentials"
}

# ---------------------------------------------------------------- test upstreams

# The test upstream network (../shared/notes/LOCAL-STACK.md, "Test upstreams in
# a network namespace of their own"): the platform egress floor refuses
# loopback and the node's own addresses, so the hosts that tests and the demo
# treat as "the outside" live in a network namespace of this stack, reached
# over a veth pair. 198.18.0.0/15 (RFC 2544, benchmarking) is never routed on
# the internet, so a mistake cannot leak traffic out. Each stack gets its own
# /29 (chosen from the state path, so two stacks can run side by side): the
# host end is .1 (a node address: the floor refuses it), .2-.6 are the
# namespace's, for test servers. Names stay under IFNAMSIZ (15).
testnet_names() {
        local h
        h=$(printf '%s' "$STATE" | sha256sum | cut -c1-8)
        TESTNET_NS=pdk-up-$h
        TESTNET_IF=pdku$h
        TESTNET_PEER=pdkv$h
        local i=$((16#${h:0:4} % 16384 * 8))
        TESTNET_BASE="198.$((18 + i / 65536)).$((i / 256 % 256)).$((i % 256))"
        local o=${TESTNET_BASE##*.} p=${TESTNET_BASE%.*}
        TESTNET_HOST=$p.$((o + 1))
        TESTNET_ADDRS="$p.$((o + 2)) $p.$((o + 3)) $p.$((o + 4)) $p.$((o + 5)) $p.$((o + 6))"
        # the operator's part of the platform egress floor (PADDOCK_EGRESS_FLOOR):
        # .6, so that a test shows that a profile allowing all of 198.18.0.0/15
        # still cannot reach it
        TESTNET_FLOOR=$p.$((o + 6))
        # a name per address (RFC 6761 .test, in /etc/hosts: testnet_hosts), for
        # what needs a name rather than a literal (an `ask` is for names only)
        local i=0 a
        TESTNET_NAMES=""
        for a in $TESTNET_ADDRS; do
                TESTNET_NAMES+="${TESTNET_NAMES:+ }u$i.$TESTNET_NS.test"
                i=$((i + 1))
        done
}

# Adds (up) or removes (down) this stack's test network names in /etc/hosts,
# under a lock: several stacks may share the host. Lines are tagged with the
# namespace so only our own are ever touched; the file is rewritten in place
# (it may be a bind mount).
testnet_hosts() { # up|down
        local tag="# paddock-testnet $TESTNET_NS" a i=0 names
        read -r -a names <<<"$TESTNET_NAMES"
        (
                flock -w 30 9 || die "could not lock /etc/hosts"
                local keep
                keep=$(grep -vF -- "$tag" /etc/hosts || true)
                {
                        printf '%s\n' "$keep"
                        if [[ $1 == up ]]; then
                                for a in $TESTNET_ADDRS; do
                                        printf '%s %s %s\n' "$a" "${names[$i]}" "$tag"
                                        i=$((i + 1))
                                done
                        fi
                } >/etc/hosts
        ) 9>>/run/lock/paddock-etc-hosts.lock
}

testnet_up() {
        testnet_names
        if ip netns list | grep -qw -- "$TESTNET_NS" && ip link show "$TESTNET_IF" >/dev/null 2>&1; then
                grep -qF -- "# paddock-testnet $TESTNET_NS" /etc/hosts || testnet_hosts up
                return 0
        fi
        testnet_down
        if ip -o addr show to "$TESTNET_BASE/29" | grep -q .; then
                die "the test upstream network $TESTNET_BASE/29 is already in use on this host (another stack?)"
        fi
        local a
        ip netns add "$TESTNET_NS"
        ip link add "$TESTNET_IF" type veth peer name "$TESTNET_PEER"
        ip link set "$TESTNET_PEER" netns "$TESTNET_NS"
        ip addr add "$TESTNET_HOST/29" dev "$TESTNET_IF"
        ip link set "$TESTNET_IF" up
        for a in $TESTNET_ADDRS; do
                ip netns exec "$TESTNET_NS" ip addr add "$a/29" dev "$TESTNET_PEER"
        done
        ip netns exec "$TESTNET_NS" ip link set "$TESTNET_PEER" up
        ip netns exec "$TESTNET_NS" ip link set lo up
        testnet_hosts up
        say "test upstream network $TESTNET_BASE/29 in netns $TESTNET_NS"
}

# A test CA of this stack (made once, kept in the state dir): tests sign the
# certificates of their TLS upstreams with it (tests/e2e: secret header
# origins), and the runner-agent trusts it for those origins
# (PADDOCK_EGRESS_CA_BUNDLE = this CA + the system's CAs).
testca_up() {
        local d="$STATE/testca" sys=/etc/ssl/certs/ca-certificates.crt
        if [[ ! -s $d/ca.crt || ! -s $d/ca.key ]]; then
                (umask 077 && mkdir -p "$d")
                openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
                        -subj "/CN=Paddock local stack test CA" -keyout "$d/ca.key.tmp" -out "$d/ca.crt.tmp" \
                        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
                        >/dev/null 2>&1 || die "could not create the test CA in $d"
                chmod 0600 "$d/ca.key.tmp"
                mv "$d/ca.key.tmp" "$d/ca.key"
                mv "$d/ca.crt.tmp" "$d/ca.crt"
        fi
        { cat "$d/ca.crt"; [[ ! -r $sys ]] || cat "$sys"; } >"$d/egress-ca.pem.tmp"
        mv "$d/egress-ca.pem.tmp" "$d/egress-ca.pem"
}

testnet_down() {
        testnet_names
        ip link del "$TESTNET_IF" 2>/dev/null || true
        ip netns del "$TESTNET_NS" 2>/dev/null || true
        testnet_hosts down
}

# ---------------------------------------------------------------- commands

cmd_up() {
        # everything that can be known before starting anything (again after
        # the install, which creates the user postgres)
        preflight_host
        preflight_paths
        data_dir_check
        command -v ceph-mon >/dev/null || die "Ceph is not installed (run: stack.sh install)"
        id -u postgres >/dev/null 2>&1 || die "there is no user postgres: is PostgreSQL installed? (run: stack.sh install)"
        init_state
        local t0=$SECONDS
        exec 9>"$STATE/.lock"
        flock -w 300 9 || die "another stack.sh has held $STATE/.lock for 5 minutes"
        data_dir_init
        pg_up
        kafka_up
        ceph_up
        testnet_up
        testca_up
        services_ports
        bus_keys
        write_endpoints
        services_up
        bootstrap_tenant
        say "up in $((SECONDS - t0))s; endpoints in $STATE/endpoints.env"
        say "stop with: PADDOCK_STATE_DIR='$STATE' $0 down"
}

cmd_down() {
        need_root down
        [[ -d $STATE ]] || { say "nothing to stop: $STATE does not exist"; return 0; }
        init_state
        data_dir_resolve
        exec 9>"$STATE/.lock"
        flock -w 300 9 || die "another stack.sh has held $STATE/.lock for 5 minutes"
        local i
        for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
                stop_part "${SERVICES[i]}" 20
        done
        ceph_down
        stop_part kafka-mock 10
        pg_down
        testnet_down
        exec 9>&-
        say "down; data kept in $DATA (the Kafka mock is in memory: its topics start empty next time)"
}

# The files `up` creates in the state dir; purge removes these and no others.
STATE_FILES=(logs pids secrets env ports.env endpoints.env trusted-keys credentials kafka-bootstrap data-dir testca .lock)
STATE_FILES+=(kafka-control) # slice A

cmd_purge() {
        need_root purge
        [[ -d $STATE ]] || { say "nothing to purge: $STATE does not exist"; return 0; }
        cmd_down
        local owner f
        exec 9>"$STATE/.lock"
        flock -w 300 9 || die "another stack.sh has held $STATE/.lock for 5 minutes"
        if [[ $DATA == "$STATE" ]]; then
                for f in pg ceph runner; do data_remove "$STATE/$f"; done
        elif [[ -d $DATA ]]; then
                owner=$(cat "$DATA/owner" 2>/dev/null || true)
                if [[ -z $owner || $owner == "$STATE" ]]; then
                        data_remove "$DATA"
                        say "removed $DATA"
                        # the default parents, when no other stack is left in them (never a directory of the user's)
                        [[ $STACKS_ROOT != /var/lib/paddock/stacks ]] ||
                                rmdir "$STACKS_ROOT" /var/lib/paddock 2>/dev/null || true
                else
                        warn "not removing $DATA: it belongs to the stack in $owner"
                fi
        fi
        for f in "${STATE_FILES[@]}"; do rm -rf -- "${STATE:?}/$f"; done
        exec 9>&-
        if rmdir -- "$STATE" 2>/dev/null; then
                say "purged: $STATE removed"
        else
                say "purged; $STATE is left with files the stack did not create"
        fi
}

# ---------------------------------------------------------------- status

# Each check prints its verdict ("ready" or "not ready"), a tab, and a detail.
check_pg() { # port
        local out
        if out=$("$(pg_bin)/pg_isready" -h 127.0.0.1 -p "$1" -t 3 2>&1); then
                printf 'ready\taccepting connections\n'
        else
                printf 'not ready\tpg_isready: %s\n' "${out#*- }"
        fi
}

check_kafka() { # bootstrap servers
        local out n
        if out=$(timeout 20 kcat -L -b "$1" -m 5 2>&1) && n=$(sed -n 's/^ *\([0-9][0-9]*\) brokers:$/\1/p' <<<"$out") &&
                [[ -n $n ]]; then
                printf 'ready\tmetadata from %s brokers\n' "$n"
        else
                printf 'not ready\t%s\n' "$(grep -m 1 'ERROR' <<<"$out" | sed 's/^% *//; s/ (Are the brokers.*//')"
        fi
}

check_ceph() { # mon|osd
        local out rc=0 err
        err=$(mktemp)
        if [[ $1 == mon ]]; then
                out=$(timeout 30 ceph -c "$CEPH_DIR/ceph.conf" --connect-timeout 20 mon stat 2>"$err") || rc=$?
        else
                out=$(timeout 30 ceph -c "$CEPH_DIR/ceph.conf" --connect-timeout 20 osd stat -f json 2>"$err") || rc=$?
                if [[ $rc -eq 0 ]] && ! jq -e '(.num_up_osds // .osdmap.num_up_osds) >= 1' >/dev/null 2>&1 <<<"$out"; then
                        rc=1 out="no OSD is up"
                fi
        fi
        if [[ $rc -eq 0 ]]; then
                printf 'ready\t\n'
        elif [[ $rc -eq 124 ]]; then
                printf 'not ready\tthe ceph command gave no answer within 30 s\n'
        else
                # Ceph's clients share one admin socket path: that warning is noise
                [[ $rc -ne 0 && $out == "no OSD is up" ]] || out=$(grep -v 'AdminSocket' "$err" | tail -n 1)
                printf 'not ready\t%s\n' "${out:-the ceph command failed (exit $rc)}"
        fi
        rm -f "$err"
}

check_http() { # url: radosgw answers at all
        local code
        code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$1") || true
        if [[ $code =~ ^[2-4] ]]; then
                printf 'ready\tHTTP %s\n' "$code"
        else
                printf 'not ready\tno HTTP answer within 5 s\n'
        fi
}

check_readyz() { # service base url: its /readyz (lib/http/ops.h)
        local out code body
        out=$(curl -s -m 10 -w '\n%{http_code}' "$1/readyz") || true
        code=${out##*$'\n'}
        body=${out%$'\n'*}
        if [[ $code == 200 ]]; then
                printf 'ready\t\n'
        elif [[ $code == 503 ]]; then
                printf 'not ready\t%s\n' "$(jq -r '"\(.dependency): \(.reason)"' <<<"$body" 2>/dev/null || echo "HTTP 503")"
        else
                printf 'not ready\t/readyz did not answer within 10 s%s\n' "${code:+ (HTTP $code)}"
        fi
}

# Every part's readiness, not just its process: PostgreSQL (pg_isready), the
# Kafka mock (a metadata request), Ceph (mon and OSD status, radosgw over
# HTTP) and each service's /readyz with the reason when not ready. Returns 1
# unless every part is ready.
cmd_status() {
        if [[ ! -d $STATE ]]; then
                say "no stack in $STATE"
                return 1
        fi
        data_dir_resolve
        CEPH_DIR=$DATA/ceph
        local p pid verdict detail ok=0 fmt='%-13s %-10s %-8s %-34s %s\n' tmp
        local -A addr=() pids=()
        tmp=$(mktemp -d)
        # the checks run side by side (Ceph's CLI alone takes seconds)
        for p in postgres kafka-mock ceph-mon ceph-osd radosgw "${SERVICES[@]}"; do
                case $p in
                postgres) addr[$p]="127.0.0.1:$(kv_get "$STATE/ports.env" PG_PORT)" ;;
                kafka-mock) addr[$p]=$(cat "$STATE/kafka-bootstrap" 2>/dev/null || true) ;;
                ceph-mon) addr[$p]="127.0.0.1:$(kv_get "$STATE/ports.env" MON_PORT)" ;;
                ceph-osd) addr[$p]=- ;;
                radosgw) addr[$p]="http://127.0.0.1:$(kv_get "$STATE/ports.env" RGW_PORT)" ;;
                *) addr[$p]="http://127.0.0.1:$(kv_get "$STATE/ports.env" "$(svc_port_key "$p")")" ;;
                esac
                if pid=$(pid_of "$p"); then
                        pids[$p]=$pid
                        case $p in
                        postgres) check_pg "${addr[$p]##*:}" ;;
                        kafka-mock) check_kafka "${addr[$p]}" ;;
                        ceph-mon) check_ceph mon ;;
                        # after the monitor's check: Ceph's clients share one admin socket path
                        ceph-osd) for _ in {1..100}; do [[ ! -e $tmp/ceph-mon ]] || break; sleep 0.2; done
                                check_ceph osd ;;
                        radosgw) check_http "${addr[$p]}/" ;;
                        *) check_readyz "${addr[$p]}" ;;
                        esac >"$tmp/$p.part" && mv "$tmp/$p.part" "$tmp/$p" &
                elif [[ " ${SERVICES[*]} " == *" $p "* && ! -x $(svc_bin "$p") ]]; then
                        pids[$p]=- addr[$p]=-
                        printf 'not built\tno %s\n' "$(svc_bin "$p")" >"$tmp/$p"
                else
                        pids[$p]=-
                        printf 'down\t\n' >"$tmp/$p"
                fi
        done
        wait
        printf "$fmt" PART STATE PID ADDRESS DETAIL
        for p in postgres kafka-mock ceph-mon ceph-osd radosgw "${SERVICES[@]}"; do
                verdict='' detail=''
                IFS=$'\t' read -r verdict detail <"$tmp/$p" 2>/dev/null || true
                [[ -n $verdict ]] || verdict="not ready" detail="the check gave no answer"
                [[ $verdict == ready ]] || ok=1
                printf "$fmt" "$p" "$verdict" "${pids[$p]}" "${addr[$p]:--}" "$detail"
        done
        rm -rf "$tmp"
        echo
        echo "state: $STATE"
        echo "data:  $DATA (PostgreSQL, Ceph, runner)"
        if [[ -f $STATE/endpoints.env ]]; then
                echo "endpoints: $STATE/endpoints.env (secrets not shown)"
                grep -v -e '^#' -e 'SECRET' -e '_DSN=' "$STATE/endpoints.env" | sed 's/^/  /'
        fi
        [[ ! -f $STATE/credentials ]] || echo "credentials: $STATE/credentials"
        return "$ok"
}

case ${1:-} in
preflight) cmd_preflight ;;
install) cmd_install ;;
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
purge) cmd_purge ;;
*)
        echo "usage: $0 preflight|install|up|down|status|purge" >&2
        exit 64
        ;;
esac
