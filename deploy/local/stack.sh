#!/usr/bin/env bash
# Paddock local stack: a private PostgreSQL, librdkafka's mock Kafka cluster,
# Ceph (mon + osd + radosgw) as the S3 server, and the five services, all on
# 127.0.0.1. Everything lives in one state dir, so another PADDOCK_STATE_DIR is
# a second, independent stack with its own ports.
#
#   stack.sh install   install the Debian packages (skipped when all present)
#   stack.sh up        start whatever is not running; writes endpoints.env
#   stack.sh down      stop everything this state dir started (data is kept)
#   stack.sh status    what runs, and the endpoints
#
# Environment: PADDOCK_STATE_DIR (default <repo>/.paddock), PADDOCK_BUILD_DIR
# (default <repo>/build), PADDOCK_READY_TIMEOUT (seconds per wait, default 90),
# PADDOCK_SERVICE_ENV (extra KEY=value lines for every service, e.g. an
# ASAN_OPTIONS setting). Contract of the files: docs/CONTRACTS.md "Local stack files".
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${PADDOCK_STATE_DIR:-$REPO/.paddock}
BUILD=${PADDOCK_BUILD_DIR:-$REPO/build}
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
)

say() { printf 'stack: %s\n' "$*"; }
warn() { printf 'stack: warning: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

need_root() {
        [[ $(id -u) -eq 0 ]] || die "$1 needs root (PostgreSQL runs as user postgres, the runner-agent uses crun)"
}

# ---------------------------------------------------------------- install

cmd_install() {
        need_root install
        local missing=() p st
        for p in "${PACKAGES[@]}"; do
                st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
                [[ $st == "install ok installed" ]] || missing+=("$p")
        done
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
        mkdir -p "$STATE"
        STATE=$(cd "$STATE" && pwd)
        # 0755 so the postgres user can reach its data dir; secrets are 0600 files.
        chmod 0755 "$STATE"
        mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/secrets" "$STATE/env" "$STATE/runner"
        chmod 0700 "$STATE/secrets" "$STATE/env"
        touch "$STATE/ports.env"
}

kv_get() { # file key
        [[ -f $1 ]] || return 0
        sed -n "s/^$2=//p" "$1" | tail -n 1
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
        pid=$(cat "$STATE/pids/$part.pid" 2>/dev/null) || return 1
        [[ $pid =~ ^[0-9]+$ ]] || return 1
        [[ -r /proc/$pid/cmdline ]] || return 1
        case $part in
        postgres) exe=postgres ;;
        kafka-mock) exe=paddock-kafka-mock ;;
        ceph-mon | ceph-osd | radosgw) exe=$part ;;
        *) exe=paddock-$part ;;
        esac
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$exe" || return 1
        # A zombie is not running.
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
        echo "$pid"
}

running() { pid_of "$1" >/dev/null; }

# alive PART: the started pid still exists (no command-line check: right after
# the fork it may not have exec'd its program yet).
alive() {
        local pid
        pid=$(cat "$STATE/pids/$1.pid" 2>/dev/null) || return 1
        [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]
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

# ---------------------------------------------------------------- PostgreSQL

pg_bin() {
        local d
        d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        [[ -n $d ]] || die "PostgreSQL is not installed (run: stack.sh install)"
        echo "$d"
}

as_postgres() { runuser -u postgres -- "$@"; }

pg_running() { [[ -f $STATE/pg/data/postmaster.pid ]] && as_postgres "$(pg_bin)/pg_ctl" -D "$STATE/pg/data" status >/dev/null 2>&1; }

pg_up() {
        local bin port pw
        bin=$(pg_bin)
        mkdir -p "$STATE/pg"
        chown postgres:postgres "$STATE/pg"
        chmod 0700 "$STATE/pg"
        if [[ ! -f $STATE/pg/data/PG_VERSION ]]; then
                say "initialising PostgreSQL in $STATE/pg/data"
                rm -rf "$STATE/pg/data"
                as_postgres "$bin/initdb" -D "$STATE/pg/data" -U postgres -E UTF8 --locale=C.UTF-8 \
                        --auth-local=peer --auth-host=scram-sha-256 >>"$STATE/logs/postgres-init.log" 2>&1 ||
                        die "initdb failed (log: $STATE/logs/postgres-init.log)"
        fi
        if pg_running; then
                port=$(kv_get "$STATE/ports.env" PG_PORT)
                say "PostgreSQL already running on 127.0.0.1:$port"
        else
                port=$(get_port PG_PORT)
                mkdir -p "$STATE/pg/run"
                chown postgres:postgres "$STATE/pg/run"
                touch "$STATE/logs/postgres.log"
                chown postgres:postgres "$STATE/logs/postgres.log"
                as_postgres "$bin/pg_ctl" -D "$STATE/pg/data" -l "$STATE/logs/postgres.log" -w -t "$READY_TIMEOUT" \
                        -o "-p $port -c listen_addresses=127.0.0.1 -k $STATE/pg/run" start >/dev/null 9>&- ||
                        die "PostgreSQL did not start (log: $STATE/logs/postgres.log)"
                say "PostgreSQL started on 127.0.0.1:$port"
        fi
        head -n 1 "$STATE/pg/data/postmaster.pid" >"$STATE/pids/postgres.pid"
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
        printf '%s' "$sql" | as_postgres "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$STATE/pg/run" -p "$port" -d postgres \
                >/dev/null 2>>"$STATE/logs/postgres-init.log" ||
                die "could not create the roles and database paddock (log: $STATE/logs/postgres-init.log)"
        PG_DSN="postgresql://paddock:$pw@127.0.0.1:$port/paddock"
}

pg_down() {
        if pg_running; then
                as_postgres "$(pg_bin)/pg_ctl" -D "$STATE/pg/data" -m fast -w -t 60 stop >/dev/null ||
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
        start_bg kafka-mock "$bin" --brokers 3 --topics "$REPO/deploy/topics.txt" \
                --bootstrap-file "$STATE/kafka-bootstrap"
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
        CEPH_DIR=$STATE/ceph
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
        200) return 0 ;;
        404)
                code=$(s3_curl PUT "/$S3_BUCKET") || true
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

write_endpoints() {
        local f="$STATE/endpoints.env" tmp s
        tmp=$(mktemp "$f.XXXXXX")
        chmod 0600 "$tmp"
        {
                echo "# Paddock local stack ($STATE), written by deploy/local/stack.sh up"
                echo "PADDOCK_STATE_DIR=$STATE"
                echo "PADDOCK_API_URL=http://127.0.0.1:${SVC_PORT[api]}"
                echo "PADDOCK_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
                echo "PADDOCK_PG_DSN=$PG_DSN"   # the owner: operators and tests (bypasses row-level security)
                echo "PADDOCK_PG_API_DSN=${PG_SERVICE_DSN[api]}"   # what the api runs as
                echo "PADDOCK_S3_ENDPOINT=$S3_ENDPOINT"
                echo "PADDOCK_S3_BUCKET=$S3_BUCKET"
                echo "PADDOCK_S3_ACCESS_KEY=$S3_ACCESS_KEY"
                echo "PADDOCK_S3_SECRET_KEY=$S3_SECRET_KEY"
                echo "PADDOCK_S3_REGION=$S3_REGION"
                echo "PADDOCK_RUNNER_STATE_DIR=$STATE/runner"
                for s in "${SERVICES[@]}"; do
                        [[ $s == api ]] && continue
                        echo "PADDOCK_$(svc_var "$s")_OPS_URL=http://127.0.0.1:${SVC_PORT[$s]}"
                done
        } >"$tmp"
        mv "$tmp" "$f"
}

write_service_env() { # name
        local s=$1 f="$STATE/env/$1.env"
        (
                umask 077
                {
                        echo "PADDOCK_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
                        echo "PADDOCK_KAFKA_SESSION_TIMEOUT_MS=6000"
                        echo "PADDOCK_KAFKA_FETCH_WAIT_MS=10"   # the mock cluster does not wake a waiting fetch
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
                        if [[ $s == runner-agent ]]; then
                                echo "PADDOCK_RUNNER_STATE_DIR=$STATE/runner"
                                echo "PADDOCK_NODE_ID=$NODE_ID"
                        fi
                        if [[ $s == api ]]; then
                                echo "PADDOCK_API_ADDR=127.0.0.1:${SVC_PORT[$s]}"
                                # wraps the tenants' secret keys: only the api gets it,
                                # never endpoints.env (kept in secrets/master_key, 0600)
                                echo "PADDOCK_MASTER_KEY=$(secret master_key 32)"
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

# ---------------------------------------------------------------- commands

cmd_up() {
        need_root up
        command -v ceph-mon >/dev/null || die "Ceph is not installed (run: stack.sh install)"
        init_state
        local t0=$SECONDS
        exec 9>"$STATE/.lock"
        flock -w 300 9 || die "another stack.sh has held $STATE/.lock for 5 minutes"
        pg_up
        kafka_up
        ceph_up
        services_ports
        write_endpoints
        services_up
        bootstrap_tenant
        say "up in $((SECONDS - t0))s; endpoints in $STATE/endpoints.env"
        say "stop with: PADDOCK_STATE_DIR=$STATE $0 down"
}

cmd_down() {
        need_root down
        [[ -d $STATE ]] || { say "nothing to stop: $STATE does not exist"; return 0; }
        init_state
        exec 9>"$STATE/.lock"
        flock -w 300 9 || die "another stack.sh has held $STATE/.lock for 5 minutes"
        local i
        for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
                stop_part "${SERVICES[i]}" 20
        done
        ceph_down
        stop_part kafka-mock 10
        pg_down
        say "down; data kept in $STATE (the Kafka mock is in memory: its topics start empty next time)"
}

cmd_status() {
        [[ -d $STATE ]] || { say "no stack in $STATE"; return 0; }
        STATE=$(cd "$STATE" && pwd)
        local p pid addr
        printf '%-14s %-8s %-8s %s\n' PART STATE PID ADDRESS
        for p in postgres kafka-mock ceph-mon ceph-osd radosgw "${SERVICES[@]}"; do
                case $p in
                postgres) addr="127.0.0.1:$(kv_get "$STATE/ports.env" PG_PORT)" ;;
                kafka-mock) addr=$(cat "$STATE/kafka-bootstrap" 2>/dev/null || true) ;;
                ceph-mon) addr="127.0.0.1:$(kv_get "$STATE/ports.env" MON_PORT)" ;;
                ceph-osd) addr= ;;
                radosgw) addr="http://127.0.0.1:$(kv_get "$STATE/ports.env" RGW_PORT)" ;;
                *) addr="http://127.0.0.1:$(kv_get "$STATE/ports.env" "$(svc_port_key "$p")")" ;;
                esac
                if [[ $p == postgres ]] && pg_running; then
                        pid=$(head -n 1 "$STATE/pg/data/postmaster.pid")
                        printf '%-14s %-8s %-8s %s\n' "$p" up "$pid" "$addr"
                elif pid=$(pid_of "$p"); then
                        printf '%-14s %-8s %-8s %s\n' "$p" up "$pid" "$addr"
                elif [[ $p == api || $p == scheduler || $p == runner-agent || $p == evidence || $p == billing ]] &&
                        [[ ! -x $(svc_bin "$p") ]]; then
                        printf '%-14s %-8s %-8s %s\n' "$p" "not built" - -
                else
                        printf '%-14s %-8s %-8s %s\n' "$p" down - "$addr"
                fi
        done
        if [[ -f $STATE/endpoints.env ]]; then
                echo
                echo "endpoints: $STATE/endpoints.env (secrets not shown)"
                grep -v -e '^#' -e 'SECRET' -e '_DSN=' "$STATE/endpoints.env" | sed 's/^/  /'
        fi
        [[ ! -f $STATE/credentials ]] || echo "credentials: $STATE/credentials"
}

case ${1:-} in
install) cmd_install ;;
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
        echo "usage: $0 install|up|down|status" >&2
        exit 64
        ;;
esac
