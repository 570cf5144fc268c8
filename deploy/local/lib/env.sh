# deploy/local/lib/env.sh — sourced by deploy/local/stack.sh (not run on its own).
# What each service is given: endpoints.env, the bus keys, the services' env files.

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
                # the api's ops port (/metrics summed over its workers)
                echo "PADDOCK_API_OPS_URL=http://127.0.0.1:${SVC_PORT[api-ops]}"
                echo "PADDOCK_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
                # the Kafka mock's fault API, loopback only (tests/chaos)
                echo "PADDOCK_KAFKA_MOCK_CONTROL=$(cat "$STATE/kafka-control" 2>/dev/null)"
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

# The settings matrix (deploy/settings.tsv) says which setting each service
# gets; the local column says how the stack gives it: `stack` (the value
# below, looked up by the setting's name), `stack=VALUE` (that literal) or
# `default` (not written: the daemon's own default). Adding a setting is one
# row there, plus a case here when the stack computes its value.
SETTINGS_TSV=$REPO/deploy/settings.tsv

# stack_setting_value NAME SERVICE: prints the value this stack gives SERVICE
# for NAME. Returns 3 when the stack gives it nothing this time (the
# dashboard of a build without one).
stack_setting_value() {
        local name=$1 s=$2
        case $name in
        PADDOCK_KAFKA_BOOTSTRAP) echo "$KAFKA_BOOTSTRAP" ;;
        PADDOCK_TRUSTED_KEYS) echo "$STATE/trusted-keys" ;;
        # the runner-agent signs with its node key (node.key in its state dir)
        PADDOCK_SIGNING_KEY) echo "$STATE/secrets/bus-$s.key" ;;
        PADDOCK_LOG_LEVEL) echo "${PADDOCK_LOG_LEVEL:-info}" ;;
        # each service its own role (postgres.sh); the runner-agent none at all
        PADDOCK_PG_DSN) echo "${PG_SERVICE_DSN[$s]}" ;;
        PADDOCK_S3_ENDPOINT) echo "$S3_ENDPOINT" ;;
        PADDOCK_S3_BUCKET) echo "$S3_BUCKET" ;;
        PADDOCK_S3_ACCESS_KEY) echo "$S3_ACCESS_KEY" ;;
        PADDOCK_S3_SECRET_KEY) echo "$S3_SECRET_KEY" ;;
        PADDOCK_S3_REGION) echo "$S3_REGION" ;;
        PADDOCK_EGRESS_FLOOR) echo "$TESTNET_FLOOR/32" ;;
        # absent: the wall clock; tests write an offset (lib/core/business_clock.h)
        PADDOCK_BUSINESS_CLOCK_FILE) echo "$STATE/business-clock" ;;
        PADDOCK_RUNNER_STATE_DIR) echo "$DATA/runner" ;;
        PADDOCK_NODE_ID) echo "$NODE_ID" ;;
        PADDOCK_EGRESS_CA_BUNDLE) echo "$STATE/testca/egress-ca.pem" ;;
        # built images live outside the state dir: a purge or another
        # checkout reuses them (docs/CONTRACTS.md)
        PADDOCK_IMAGE_CACHE_DIR) echo "${PADDOCK_IMAGE_CACHE_DIR:-/var/cache/paddock/images}" ;;
        # the agent CLIs' policy hook, the build's static binary (hook_server.h)
        PADDOCK_HOOK_BINARY) echo "$BUILD/services/runner-agent/paddock-hook" ;;
        PADDOCK_API_ADDR) echo "127.0.0.1:${SVC_PORT[$s]}" ;;
        # the api's ops port is its own (/metrics summed over its workers)
        PADDOCK_OPS_ADDR) if [[ $s == api ]]; then echo "127.0.0.1:${SVC_PORT[api-ops]}"; else echo "127.0.0.1:${SVC_PORT[$s]}"; fi ;;
        # wraps the tenants' secret keys: only the api gets it, never
        # endpoints.env (kept in secrets/master_key, 0600)
        PADDOCK_MASTER_KEY) secret master_key 32 ;;
        # the tests' OIDC provider serves plain http in the test network
        PADDOCK_OIDC_HTTP_NETS) echo "$TESTNET_BASE/29" ;;
        # the dashboard (web.c) when ./dev built it; else / stays a 404
        PADDOCK_WEB_DIR)
                [[ -f $BUILD/web/dist/index.html ]] || return 3
                echo "$BUILD/web/dist"
                ;;
        *)
                echo "deploy/settings.tsv marks $name \`stack\` for $s, but deploy/local/lib/env.sh (stack_setting_value) computes no value for it" >&2
                return 1
                ;;
        esac
}

write_service_env() { # name
        local s=$1 f="$STATE/env/$1.env" setting services local_src rest value rc
        (
                umask 077
                {
                        while IFS=$'\t' read -r setting services local_src rest || [[ -n $setting ]]; do
                                [[ -n $setting && $setting != \#* && $setting != setting ]] || continue
                                [[ ,$services, == *,$s,* ]] || continue
                                case $local_src in
                                default) continue ;;
                                stack=*) value=${local_src#stack=} ;;
                                stack)
                                        rc=0
                                        value=$(stack_setting_value "$setting" "$s") || rc=$?
                                        [[ $rc != 3 ]] || continue
                                        [[ $rc == 0 ]] || die "no value for $setting ($s): see the message above"
                                        ;;
                                *) die "deploy/settings.tsv: $setting: local column '$local_src' is not stack, stack=VALUE or default" ;;
                                esac
                                # env_line: the file is sourced (run_with_env) and a
                                # clone's path may hold spaces
                                env_line "$setting" "$value"
                        done <"$SETTINGS_TSV"
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
