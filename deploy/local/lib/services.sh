# deploy/local/lib/services.sh — sourced by deploy/local/stack.sh (not run on its own).

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

declare -A SVC_PORT=()

services_ports() {
        local s
        for s in "${SERVICES[@]}"; do
                if running "$s"; then
                        SVC_PORT[$s]=$(kv_get "$STATE/ports.env" "$(svc_port_key "$s")")
                else
                        kill_leftovers "$s"
                        SVC_PORT[$s]=$(get_port "$(svc_port_key "$s")")
                fi
        done
        # the api's ops port, kept with the api's
        if running api; then
                SVC_PORT[api-ops]=$(kv_get "$STATE/ports.env" API_OPS_PORT)
        else
                SVC_PORT[api-ops]=$(get_port API_OPS_PORT)
        fi
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
