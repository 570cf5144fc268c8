#!/usr/bin/env bash
# The governed demo run `./dev up` finishes with, done with the CLI alone
# (issue 11 "Done means"): the real Claude Code works on a task in a crun
# sandbox through the run's model gateway. Log in with the local stack's
# credentials; put the team's model key (a team secret); create and approve a
# `models` catalog item; create and publish examples/demo-agent/sandbox.json
# (claude-code, image node-agents, the issue-task prompt template); launch it
# with a task (--var issue=42 --var-file task=examples/demo-agent/task.md);
# watch its tool calls, model calls and token totals live; then show the run
# (usage, agent session), its artifact manifest and the workspace diff
# (downloaded through the presigned S3 URL).
#
# The model: without PADDOCK_DEMO_ANTHROPIC_API_KEY (the default, and the
# only mode tests and CI use) it is the test model simulator tests/modelsim,
# scripted by examples/demo-agent/model-script.json, serving HTTPS in the
# stack's test upstream network with a certificate of the stack's test CA:
# nothing leaves this machine, and the demo says so. With the variable set,
# the key goes into the team secret and the item names
# PADDOCK_DEMO_ANTHROPIC_UPSTREAM (default https://api.anthropic.com).
# The node-agents image (Node.js and the pinned CLIs, ~6 minutes to build
# once) is built into the runner's image cache when no node has it.
#
# Environment: PADDOCK_STATE_DIR (default <repo>/.paddock, holds endpoints.env
# and credentials), PADDOCK_BUILD_DIR (default <repo>/build). The session is
# stored like any `paddock login` ($PADDOCK_CONFIG_DIR, default
# ~/.config/paddock), so the CLI keeps working after the demo.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PADDOCK_STATE_DIR=${PADDOCK_STATE_DIR:-$repo/.paddock}
build=${PADDOCK_BUILD_DIR:-$repo/build}
paddock=$build/cli/paddock
runner=$build/services/runner-agent/paddock-runner-agent
demo_dir=$repo/examples/demo-agent

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

[[ -x $paddock ]] || die "no CLI at $paddock: build it first (cmake --build $build --target paddock) or set PADDOCK_BUILD_DIR"
[[ -r $PADDOCK_STATE_DIR/endpoints.env ]] || die "no $PADDOCK_STATE_DIR/endpoints.env: start the local stack first (deploy/local/stack.sh up)"
[[ -r $PADDOCK_STATE_DIR/credentials ]] || die "no $PADDOCK_STATE_DIR/credentials: the local stack writes it on first start"
[[ -r $demo_dir/sandbox.json ]] || die "no demo sandbox file $demo_dir/sandbox.json"

set -a
# shellcheck disable=SC1091
. "$PADDOCK_STATE_DIR/endpoints.env"
set +a
[[ -n ${PADDOCK_API_URL:-} ]] || die "PADDOCK_API_URL is missing from $PADDOCK_STATE_DIR/endpoints.env"

# Only loopback is allowed: refuse to download from anywhere else.
is_loopback_url() {
        [[ $1 =~ ^https?://(127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\]|localhost)(:[0-9]+)?/ ]]
}

tmp=$(mktemp -d /tmp/paddock-demo.XXXXXX)
sim_pid=
cleanup() {
        [[ -z $sim_pid ]] || kill "$sim_pid" 2>/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT

say "paddock login (API $PADDOCK_API_URL)"
"$paddock" login
team=$("$paddock" --json me | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["teams"][0]["name"])')
stamp=$(date -u +%Y%m%d-%H%M%S)

# The image the agent runs in: built once into the runner's image cache
# (PADDOCK_IMAGE_CACHE_DIR of the runner-agent, outside the checkout), then
# reported by the node's heartbeat.
[[ -x $runner ]] || die "no $runner"
cache_dir=$(sed -n "s/^PADDOCK_IMAGE_CACHE_DIR='\\{0,1\\}\\([^']*\\)'\\{0,1\\}\$/\\1/p" \
        "$PADDOCK_STATE_DIR/env/runner-agent.env" 2>/dev/null | tail -n 1)
cache_dir=${cache_dir:-/var/cache/paddock/images}
if "$runner" image list --cache-dir "$cache_dir" | awk '$1 == "node-agents" { found = ($2 != "(not") } END { exit !found }'; then
        echo "(the node-agents image is in the image cache $cache_dir)"
else
        say "building the node-agents image into $cache_dir (Node.js, Claude Code, Codex; about 6 minutes, once per machine)"
        "$runner" image build node-agents --cache-dir "$cache_dir"
fi
node_has_image() {
        "$paddock" --json node list | /usr/bin/python3 -c '
import json, sys
print(any(n.get("state") == "ready" and "node-agents" in n.get("images", []) for n in json.load(sys.stdin)["items"]))' |
                grep -qx True
}
for _ in $(seq 1 60); do node_has_image && break; sleep 1; done
node_has_image || die "no ready node reported the node-agents image within 60 s (paddock node list)"

# The model behind the gateway.
key_name=DEMO_ANTHROPIC_KEY
if [[ -n ${PADDOCK_DEMO_ANTHROPIC_API_KEY:-} ]]; then
        upstream=${PADDOCK_DEMO_ANTHROPIC_UPSTREAM:-https://api.anthropic.com}
        say "model: $upstream with the key in PADDOCK_DEMO_ANTHROPIC_API_KEY"
        key=$PADDOCK_DEMO_ANTHROPIC_API_KEY
else
        [[ -n ${PADDOCK_TEST_NETNS:-} && -n ${PADDOCK_TEST_UPSTREAM_ADDRS:-} && -r ${PADDOCK_TEST_CA_KEY:-} ]] ||
                die "endpoints.env lacks the test network or test CA (an older stack.sh? run: stack.sh up)"
        host=${PADDOCK_TEST_UPSTREAM_ADDRS%% *}
        say "model: no real key configured (PADDOCK_DEMO_ANTHROPIC_API_KEY unset), so the agent talks to the test model simulator (tests/modelsim, scripted by examples/demo-agent/model-script.json) at https://$host in the stack's test network; nothing leaves this machine"
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$host" \
                -keyout "$tmp/sim.key" -out "$tmp/sim.csr" >/dev/null 2>&1
        printf 'subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$host" >"$tmp/sim.ext"
        openssl x509 -req -in "$tmp/sim.csr" -CA "$PADDOCK_TEST_CA_CERT" -CAkey "$PADDOCK_TEST_CA_KEY" \
                -set_serial "0x$(openssl rand -hex 8)" -days 1 -extfile "$tmp/sim.ext" -out "$tmp/sim.crt" >/dev/null 2>&1 ||
                die "could not sign the simulator's certificate with the stack's test CA"
        ip netns exec "$(basename "$PADDOCK_TEST_NETNS")" /usr/bin/python3 "$repo/tests/modelsim/modelsim.py" serve \
                --host "$host" --https-port 0 --cert "$tmp/sim.crt" --key "$tmp/sim.key" \
                --script "$demo_dir/model-script.json" --log "$tmp/modelsim.jsonl" --ready "$tmp/ready.json" \
                >"$tmp/modelsim.out" 2>&1 &
        sim_pid=$!
        for _ in $(seq 1 50); do [[ -s $tmp/ready.json ]] && break; sleep 0.1; done
        [[ -s $tmp/ready.json ]] || die "the model simulator did not start: $(cat "$tmp/modelsim.out")"
        port=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["https"])' "$tmp/ready.json")
        upstream=https://$host:$port
        key="sk-demo-$(openssl rand -hex 16)" # what the simulator receives: never in the sandbox
fi

say "secret set $team $key_name (the team's model key: sealed to the run, added by the gateway, never in the sandbox)"
printf %s "$key" | "$paddock" secret set "$team" "$key_name"

models_item="demo-claude-$stamp"
say "catalog create models --name $models_item (provider anthropic, $upstream)"
cat >"$tmp/models.json" <<JSON
{"description": "Claude for the demo", "provider": "anthropic", "upstream": "$upstream", "key_secret": "$key_name",
 "models": [{"id": "claude-sonnet-4-5", "usd_per_mtok": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}}]}
JSON
"$paddock" catalog create models --name "$models_item" -f "$tmp/models.json"
sha=$("$paddock" --json catalog show models "$models_item" |
        /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["content_sha256"])')
say "catalog approve models $models_item (as security reviewer)"
"$paddock" catalog approve models "$models_item" --sha256 "$sha" -m "demo: reviewed upstream and prices"

name="demo-agent-$stamp"
/usr/bin/python3 - "$demo_dir/sandbox.json" "$models_item" "$tmp/sandbox.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["spec"]["models"] = [sys.argv[2]]
json.dump(d, open(sys.argv[3], "w"), indent=1)
PY
say "sandbox create -f examples/demo-agent/sandbox.json --name $name (claude-code, node-agents, models $models_item)"
sandbox=$("$paddock" sandbox create -f "$tmp/sandbox.json" --name "$name")
echo "sandbox $sandbox"

say "sandbox publish $sandbox"
version=$("$paddock" sandbox publish "$sandbox")
echo "version $version"

say "run launch --sandbox $name --var issue=42 --var-file task=examples/demo-agent/task.md"
t_launch=$(now_ms)
run=$("$paddock" run launch --sandbox "$sandbox" --version "$version" --var issue=42 \
        --var-file "task=$demo_dir/task.md")
echo "run $run"

say "run watch $run (live: tool calls, model calls, token totals)"
first_file=$tmp/first
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

# the api applies the terminal status a moment after the stream shows it
"$paddock" run wait "$run" >/dev/null 2>&1 || true
say "run show $run (usage: tokens and cost; agent_session: the CLI and its model)"
"$paddock" run show "$run"

if [[ -n $sim_pid ]]; then
        touch "$tmp/modelsim.jsonl" # no call: no log
        /usr/bin/python3 - "$tmp/modelsim.jsonl" "$key" <<'PY'
import json, sys
calls = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
calls = [c for c in calls if c.get("method") == "POST"]
keyed = sum(1 for c in calls if sys.argv[2] in json.dumps(c.get("headers", {})))
print(f"(the model simulator answered {len(calls)} model calls; {keyed} of them carried the team's key, "
      "which the gateway added: the agent only ever held a placeholder)")
PY
fi
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
