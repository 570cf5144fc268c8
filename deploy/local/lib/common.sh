# deploy/local/lib/common.sh — sourced by deploy/local/stack.sh (not run on its own).
# Messages, the state dir's key=value files, ports, secrets, processes.

say() { printf 'stack: %s\n' "$*"; }
warn() { printf 'stack: warning: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

need_root() {
        [[ $(id -u) -eq 0 ]] || die "$1 needs root (PostgreSQL runs as user postgres, the runner-agent uses crun)"
}

# cannot REASON FIX: the one-line refusal of the preflight.
cannot() { printf 'stack: cannot start: %s; %s\n' "$1" "$2" >&2; exit 1; }

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

# kill_leftovers PART: a service killed hard (SIGKILL of its main process, as
# the chaos suite does) can leave processes of its group behind, such as the
# api's workers, still exiting and holding its port; a restart would then
# move the service to another port under its clients. Its started pid led
# its own process group (start_bg: setsid), so what is left of that group
# and still runs the service's program is killed, and waited for up to 5 s.
kill_leftovers() {
        local part=$1 pgid p left
        read -r pgid <"$STATE/pids/$part.pid" 2>/dev/null || return 0
        [[ $pgid =~ ^[0-9]+$ ]] || return 0
        for _ in $(seq 50); do
                left=0
                for p in $(pgrep -g "$pgid" 2>/dev/null); do
                        [[ $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) == *"paddock-$part"* ]] || continue
                        [[ $(proc_state "$p") == Z ]] && continue
                        kill -KILL "$p" 2>/dev/null || true
                        left=1
                done
                ((left)) || return 0
                sleep 0.1
        done
        warn "processes of the earlier $part (group $pgid) are still exiting"
}

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
