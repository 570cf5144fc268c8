#!/usr/bin/env bash
# `make chaos`: the full chaos suite (tests/chaos/chaos.py, 200 runs) against
# a stack of its own, brought up here and stopped after (pass or fail), with
# the sanitizer build the test stack uses. Prints the figures; exits with
# chaos.py's status (0 nothing lost, 1 something lost, 2 could not run).
#
# Environment: PADDOCK_STATE_DIR (default .paddock-chaos), PADDOCK_BUILD_DIR
# (default build-test, shared with ./dev test), JOBS (default 2), CHAOS_ARGS
# (more chaos.py arguments, e.g. "--runs 100 --seed 7").
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PADDOCK_STATE_DIR=${PADDOCK_STATE_DIR:-$REPO/.paddock-chaos}
export PADDOCK_BUILD_DIR=${PADDOCK_BUILD_DIR:-$REPO/build-test}
export PADDOCK_SERVICE_ENV=${PADDOCK_SERVICE_ENV:-$'ASAN_OPTIONS=detect_leaks=0'}
STACK=$REPO/deploy/local/stack.sh

"$STACK" preflight
cmake -S "$REPO" -B "$PADDOCK_BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPADDOCK_SANITIZE=ON
cmake --build "$PADDOCK_BUILD_DIR" -j"${JOBS:-2}"
trap '"$STACK" down; exit 130' INT TERM
rc=0
"$STACK" up || rc=$?
if [[ $rc -eq 0 ]]; then
        # shellcheck disable=SC2086 # CHAOS_ARGS is a list of arguments
        ( set -a && . "$PADDOCK_STATE_DIR/endpoints.env" && set +a &&
                exec /usr/bin/python3 "$REPO/tests/chaos/chaos.py" --runs 200 ${CHAOS_ARGS:-} ) || rc=$?
else
        echo "make chaos: the stack did not come up (logs: $PADDOCK_STATE_DIR/logs)" >&2
fi
"$STACK" down || true
trap - INT TERM
exit "$rc"
