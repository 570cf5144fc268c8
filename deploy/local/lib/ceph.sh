# deploy/local/lib/ceph.sh — sourced by deploy/local/stack.sh (not run on its own).

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
