#!/usr/bin/env bash
# Authenticated GET /v1/runs/{id}, then a page of GET /v1/runs (the list,
# newest first, keyset-paged), against a running local stack (./dev up):
# latency percentiles and throughput with wrk (Debian package), loopback only.
# Usage: bench/api_latency.sh [seconds=10] [connections=16]
set -euo pipefail
cd "$(dirname "$0")/.."
state=${PADDOCK_STATE_DIR:-$PWD/.paddock}
secs=${1:-10}
conns=${2:-16}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
set -a; . "$state/endpoints.env"; . "$state/credentials"; set +a
login=$(jq -n --arg t "$PADDOCK_TENANT" --arg u "$PADDOCK_USER" --arg p "$PADDOCK_PASSWORD" \
        '{tenant:$t, username:$u, password:$p}')
token=$(curl -sf -H 'content-type: application/json' -d "$login" "$PADDOCK_API_URL/v1/auth/login" | jq -r .token)
auth="Authorization: Bearer $token"
team=$(curl -sf -H "$auth" "$PADDOCK_API_URL/v1/me" | jq -r '.teams[0].id')
sb=$(curl -sf -H "$auth" -H 'content-type: application/json' "$PADDOCK_API_URL/v1/sandboxes" \
     -d "{\"name\":\"bench-api-$$-$RANDOM\",\"team\":\"$team\",\"spec\":{\"agent\":{\"type\":\"command\",\"command\":[\"/bin/true\"]}}}" | jq -r .id)
ver=$(curl -sf -X POST -H "$auth" "$PADDOCK_API_URL/v1/sandboxes/$sb/versions" | jq -r .version)
run=$(curl -sf -H "$auth" -H 'content-type: application/json' "$PADDOCK_API_URL/v1/runs" \
      -d "{\"sandbox\":\"$sb\",\"version\":$ver,\"team\":\"$team\"}" | jq -r .id)
echo "GET /v1/runs/$run, ${secs}s, 1 connection (latency) then $conns connections (throughput)"
wrk -t1 -c1 -d"${secs}s" --latency -H "$auth" "$PADDOCK_API_URL/v1/runs/$run" | grep -E 'Latency|^ +(50|90|99)%|Requests/sec'
wrk -t2 -c"$conns" -d"${secs}s" --latency -H "$auth" "$PADDOCK_API_URL/v1/runs/$run" | grep -E '^ +(50|99)%|Requests/sec'
n=$(curl -sf -H "$auth" "$PADDOCK_API_URL/v1/runs?limit=100" | jq '.items | length')
echo "GET /v1/runs?limit=100 (a page of $n runs), ${secs}s, 1 connection then $conns connections"
wrk -t1 -c1 -d"${secs}s" --latency -H "$auth" "$PADDOCK_API_URL/v1/runs?limit=100" | grep -E '^ +(50|99)%|Requests/sec'
wrk -t2 -c"$conns" -d"${secs}s" --latency -H "$auth" "$PADDOCK_API_URL/v1/runs?limit=100" | grep -E '^ +(50|99)%|Requests/sec'
echo "targets: p99 <= 5 ms; throughput >= 0.3x pgbench -S (about 71k tps here) = 21k req/s"
