#!/usr/bin/env bash
# run-validate.sh K8S_DIR ARGS...: validate.mjs with what deps.sh set up in K8S_DIR.
set -euo pipefail
dir=$1
shift
exec node "$(dirname "$0")/validate.mjs" --node-modules "$dir/node_modules" --kubectl "$(cat "$dir/kubectl.path")" "$@"
