# deploy/local/lib/status.sh — sourced by deploy/local/stack.sh (not run on its own).

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
