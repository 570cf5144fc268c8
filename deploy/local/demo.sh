#!/usr/bin/env bash
# The governed demo run `make up` finishes with: log in with the local stack's
# credentials, create and publish examples/demo-sandbox.json, launch it, watch
# its events live, then show the run, its artifact manifest and the start of
# the workspace diff (downloaded through the presigned S3 URL).
#
# Environment: PADDOCK_STATE_DIR (default <repo>/.paddock, holds endpoints.env
# and credentials), PADDOCK_BUILD_DIR (default <repo>/build), PADDOCK_DEMO_FILE
# (default examples/demo-sandbox.json). The session is stored like any `paddock
# login` ($PADDOCK_CONFIG_DIR, default ~/.config/paddock), so the CLI keeps
# working after the demo.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PADDOCK_STATE_DIR=${PADDOCK_STATE_DIR:-$repo/.paddock}
build=${PADDOCK_BUILD_DIR:-$repo/build}
paddock=$build/cli/paddock
demo_file=${PADDOCK_DEMO_FILE:-$repo/examples/demo-sandbox.json}

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

[[ -x $paddock ]] || die "no CLI at $paddock: build it first (cmake --build $build --target paddock) or set PADDOCK_BUILD_DIR"
[[ -r $PADDOCK_STATE_DIR/endpoints.env ]] || die "no $PADDOCK_STATE_DIR/endpoints.env: start the local stack first (deploy/local/stack.sh up)"
[[ -r $PADDOCK_STATE_DIR/credentials ]] || die "no $PADDOCK_STATE_DIR/credentials: the local stack writes it on first start"
[[ -r $demo_file ]] || die "no demo sandbox file $demo_file"

set -a
# shellcheck disable=SC1091
. "$PADDOCK_STATE_DIR/endpoints.env"
set +a
[[ -n ${PADDOCK_API_URL:-} ]] || die "PADDOCK_API_URL is missing from $PADDOCK_STATE_DIR/endpoints.env"

# Only loopback is allowed: refuse to download from anywhere else.
is_loopback_url() {
        [[ $1 =~ ^https?://(127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\]|localhost)(:[0-9]+)?/ ]]
}

say "paddock login (API $PADDOCK_API_URL)"
"$paddock" login

# Names are unique in a tenant and the stack keeps its data across `make up`s.
name="demo-hello-$(date -u +%Y%m%d-%H%M%S)"
say "sandbox create -f ${demo_file#"$repo"/} --name $name"
sandbox=$("$paddock" sandbox create -f "$demo_file" --name "$name")
echo "sandbox $sandbox"

say "sandbox publish $sandbox"
version=$("$paddock" sandbox publish "$sandbox")
echo "version $version"

say "run launch --sandbox $sandbox --version $version"
t_launch=$(now_ms)
run=$("$paddock" run launch --sandbox "$sandbox" --version "$version")
echo "run $run"

say "run watch $run (live)"
first_file=$(mktemp)
trap 'rm -f "$first_file"' EXIT
set +e
"$paddock" run watch "$run" 2>&1 | while IFS= read -r line; do
        [[ -s $first_file ]] || now_ms >"$first_file"
        printf '%s\n' "$line"
done
watch_rc=${PIPESTATUS[0]}
set -e
if [[ -s $first_file ]]; then
        echo "(first event arrived $(( $(cat "$first_file") - t_launch )) ms after the launch request)"
fi

say "run show $run"
"$paddock" run show "$run"

# Evidence assembles artifacts from Kafka chunks after the run ends: give it a moment.
say "run artifacts $run"
diff_name=
for _ in $(seq 1 30); do
        manifest=$("$paddock" run artifacts "$run")
        diff_name=$(awk 'NR > 1 && $2 == "diff" { print $1; exit }' <<<"$manifest")
        [[ -n $diff_name ]] && break
        sleep 1
done
echo "$manifest"

if [[ -n $diff_name ]]; then
        say "first lines of $diff_name (via its presigned URL)"
        url=$("$paddock" run artifacts "$run" --url "$diff_name")
        if is_loopback_url "$url"; then
                curl -fsS --max-time 30 "$url" | head -n 40 || true
        else
                echo "demo: not downloading from a non-loopback URL" >&2
        fi
else
        echo "demo: no diff artifact appeared within 30 s" >&2
        watch_rc=1
fi

if [[ $watch_rc -eq 0 ]]; then
        say "demo run $run succeeded"
else
        say "demo run $run did not succeed (see above)"
fi
exit "$watch_rc"
