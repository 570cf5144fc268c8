# deploy/local/lib/commands.sh — sourced by deploy/local/stack.sh (not run on its own).

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
STATE_FILES=(logs pids secrets env ports.env endpoints.env trusted-keys credentials kafka-bootstrap kafka-control data-dir testca .lock)

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
