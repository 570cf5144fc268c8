#!/usr/bin/env bash
# Paddock local stack: a private PostgreSQL, librdkafka's mock Kafka cluster,
# Ceph (mon + osd + radosgw) as the S3 server, and the five services, all on
# 127.0.0.1. Everything lives in one state dir, so another PADDOCK_STATE_DIR is
# a second, independent stack with its own ports.
#
#   stack.sh preflight say why `up` cannot work here, before anything is installed or started
#   stack.sh install   install the Debian packages (skipped when all present)
#   stack.sh up        start whatever is not running; writes endpoints.env
#   stack.sh down      stop everything this state dir started (data is kept)
#   stack.sh status    every part's readiness and the endpoints; exits 1 unless all are ready
#   stack.sh purge     down, then delete the stack's data and files
#
# Environment: PADDOCK_STATE_DIR (default <repo>/.paddock), PADDOCK_BUILD_DIR
# (default <repo>/build), PADDOCK_STACKS_DIR (default /var/lib/paddock/stacks,
# see "Where the data lives"), PADDOCK_READY_TIMEOUT (seconds per wait,
# default 90), PADDOCK_SERVICE_ENV (extra KEY=value lines for every service,
# e.g. an ASAN_OPTIONS setting). Contract of the files: docs/CONTRACTS.md
# "Local stack files".
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${PADDOCK_STATE_DIR:-$REPO/.paddock}
BUILD=${PADDOCK_BUILD_DIR:-$REPO/build}
STACKS_ROOT=${PADDOCK_STACKS_DIR:-/var/lib/paddock/stacks}
DATA=      # where pg/, ceph/ and runner/ live: data_dir_resolve
DATA_WHY=  # why not in the state dir, when DATA is a new per-stack dir
# Canonical absolute paths: the per-stack dir's name is derived from STATE's.
STATE=$(realpath -m -- "$STATE")
BUILD=$(realpath -m -- "$BUILD")
STACKS_ROOT=$(realpath -m -- "$STACKS_ROOT")
READY_TIMEOUT=${PADDOCK_READY_TIMEOUT:-90}
PY=/usr/bin/python3
SERVICES=(api scheduler runner-agent evidence billing)
PG_SERVICES=(api scheduler evidence billing)   # those with a PostgreSQL role and schema
declare -A PG_SERVICE_DSN=()
S3_BUCKET=paddock-artifacts
S3_REGION=us-east-1
NODE_ID=local-node-1
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

# The parts, one file per concern (deploy/local/lib/): each defines
# functions and reads the settings above; nothing runs until the command below.
STACK_LIB=$REPO/deploy/local/lib
for part in common install data preflight postgres kafka ceph services env testnet commands status; do
        # shellcheck disable=SC1090
        . "$STACK_LIB/$part.sh"
done
unset part

case ${1:-} in
preflight) cmd_preflight ;;
install) cmd_install ;;
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
purge) cmd_purge ;;
*)
        echo "usage: $0 preflight|install|up|down|status|purge" >&2
        exit 64
        ;;
esac
