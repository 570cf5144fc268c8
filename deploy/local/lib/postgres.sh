# deploy/local/lib/postgres.sh — sourced by deploy/local/stack.sh (not run on its own).

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
