# deploy/local/lib/testnet.sh — sourced by deploy/local/stack.sh (not run on its own).

# ---------------------------------------------------------------- test upstreams

# The test upstream network (docs/LOCAL-STACK.md, "Test upstreams in
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
