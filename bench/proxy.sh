#!/bin/sh
# bench/proxy: the egress proxy vs a direct connection vs squid, side by side
# in one run (bench/README.md "proxy"; issue 10 §4). Starts Debian's squid
# (apt-get install -y squid) on a loopback port with a minimal configuration
# in a temporary directory (no cache, no logs but cache.log), an upstream
# echo/stream server inside a network namespace (the stack's test network when
# endpoints.env is exported, else one made here: a veth pair in 198.18.0.0/15,
# RFC 2544 benchmarking space, never routed), and the proxy's own code in
# paddock-proxy-bench. Needs root (netns, squid, a mount namespace whose
# /etc/hosts names the upstream for the byname phase). Everything is torn
# down at exit. Prints figures; never fails on them.
#
# usage: [PADDOCK_BUILD_DIR=build-release] bench/proxy.sh [seconds per phase] [bulk GiB]
#   build: cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DPADDOCK_SANITIZE=OFF &&
#          cmake --build build-release -j2 --target paddock-proxy-bench
set -eu
# a mount namespace of its own, for the byname phase's /etc/hosts
if [ -z "${PADDOCK_BENCH_MNTNS:-}" ] && unshare -m --propagation private true 2>/dev/null; then
        PADDOCK_BENCH_MNTNS=1 exec unshare -m --propagation private "$0" "$@"
fi
here=$(cd "$(dirname "$0")" && pwd)
build=${PADDOCK_BUILD_DIR:-$here/../build-release}
bin=$build/services/runner-agent/paddock-proxy-bench
[ -x "$bin" ] || { echo "bench/proxy: $bin not built (see usage in $0)" >&2; exit 2; }
command -v squid >/dev/null || { echo "bench/proxy: squid is not installed (apt-get install -y squid)" >&2; exit 2; }

tmp=$(mktemp -d /tmp/paddock-proxy-bench.XXXXXX)
chmod 1777 "$tmp"   # squid drops to its own user (cache_effective_user proxy)
squid_pid= ns= hostif=
cleanup() {
        [ -n "$squid_pid" ] && kill "$squid_pid" 2>/dev/null && wait "$squid_pid" 2>/dev/null || true
        [ -n "$hostif" ] && ip link del "$hostif" 2>/dev/null || true
        [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

if [ -z "${PADDOCK_TEST_NETNS:-}" ] || [ -z "${PADDOCK_TEST_UPSTREAM_ADDRS:-}" ]; then
        # a /29 of our own in 198.19.0.0/16, not one already on this machine
        n=$$
        while :; do
                net="198.19.$((n % 256)).$(((n / 256) % 32 * 8))"
                ip -4 addr | grep -q " ${net%.*}\.$(( ${net##*.} + 1 ))/" || break
                n=$((n + 7919))
        done
        base=${net%.*}; last=${net##*.}
        ns=pdk-bench-$$ hostif=pdkb$$h peer=pdkb$$n
        ip netns add "$ns"
        ip link add "$hostif" type veth peer name "$peer"
        ip link set "$peer" netns "$ns"
        ip addr add "$base.$((last + 1))/29" dev "$hostif"
        ip link set "$hostif" up
        ip netns exec "$ns" ip addr add "$base.$((last + 2))/29" dev "$peer"
        ip netns exec "$ns" ip link set "$peer" up
        ip netns exec "$ns" ip link set lo up
        PADDOCK_TEST_NETNS=/run/netns/$ns PADDOCK_TEST_UPSTREAM_ADDRS=$base.$((last + 2))
        export PADDOCK_TEST_NETNS PADDOCK_TEST_UPSTREAM_ADDRS
fi
# the byname phase: a name for the upstream in an /etc/hosts of this
# script's own mount namespace (squid and the proxy both resolve it there)
up=${PADDOCK_TEST_UPSTREAM_ADDRS%% *}
if [ -n "${PADDOCK_BENCH_MNTNS:-}" ] && { cat /etc/hosts; echo "$up upstream.paddock-bench.example"; } > "$tmp/hosts" &&
        mount --bind "$tmp/hosts" /etc/hosts; then
        PADDOCK_BENCH_UPSTREAM_NAME=upstream.paddock-bench.example
        export PADDOCK_BENCH_UPSTREAM_NAME
fi

port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$tmp/squid.conf" <<CONF
http_port 127.0.0.1:$port
http_access allow all
cache deny all
cache_mem 0 MB
access_log none
cache_store_log none
cache_log $tmp/cache.log
pid_filename $tmp/squid.pid
coredump_dir $tmp
visible_hostname paddock-bench
dns_nameservers 127.0.0.1
pinger_enable off
shutdown_lifetime 0 seconds
CONF
squid -N -f "$tmp/squid.conf" &
squid_pid=$!
i=0
until /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "bench/proxy: squid did not start:" >&2; cat "$tmp/cache.log" >&2; exit 1; }
        sleep 0.1
done

PADDOCK_BENCH_SQUID_PORT=$port PADDOCK_BENCH_SQUID_PID=$squid_pid "$bin" "$@"
