#!/usr/bin/env bash
# Runs the dashboard's browser journeys (by default dashboard.test.mjs, then
# the single sign-on of oidc.test.mjs; or the journey files named) with node's
# test runner against the stack named by the caller's environment
# (endpoints.env, as every e2e test). playwright-core comes from
# package-lock.json, installed by `npm ci` into BUILD_DIR/browser-tests (again
# only when the lock changed; no install scripts, no browser download): it
# drives Debian's chromium.
#   run.sh BUILD_DIR [JOURNEY.test.mjs...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:?usage: run.sh BUILD_DIR [JOURNEY.test.mjs...]}
shift
journeys=("$@")
# by default the dashboard, then single sign-on against oidc-provider, which runs
# inside the stack's test upstream network namespace (the api refuses loopback providers)
[[ ${#journeys[@]} -gt 0 ]] || journeys=(dashboard.test.mjs oidc.test.mjs)
deps=$build/browser-tests
mkdir -p "$deps"
if [[ ! -d $deps/node_modules ]] || ! cmp -s "$here/package-lock.json" "$deps/package-lock.json"; then
        cp "$here/package.json" "$here/package-lock.json" "$deps/"
        (cd "$deps" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
[[ -x ${PADDOCK_CHROMIUM:-/usr/bin/chromium} ]] || { echo "browser tests: no chromium (apt-get install chromium: stack.sh install)" >&2; exit 1; }
export PADDOCK_BROWSER_MODULES=$deps/node_modules
export PADDOCK_BROWSER_ARTIFACTS=${PADDOCK_BROWSER_ARTIFACTS:-$build/browser-artifacts}
mkdir -p "$PADDOCK_BROWSER_ARTIFACTS"
rc=0
for j in "${journeys[@]}"; do
        node --test --test-reporter=spec --test-concurrency=1 "$here/$j" || rc=$?
done
echo "browser tests: screenshots in $PADDOCK_BROWSER_ARTIFACTS:"
ls -1 "$PADDOCK_BROWSER_ARTIFACTS" | sed 's/^/  /'
exit "$rc"
