#!/bin/bash
# Records the real Claude Code and Codex CLIs' event streams (stream-json,
# --json) against the model simulator, for tests/unit/runner/test_agent_cli.c:
#
#   tests/modelsim/record_agent_streams.sh ROOTFS OUTDIR
#
# ROOTFS is a built node-agents image (`paddock-runner-agent image build
# node-agents` prints its rootfs). Everything runs in a mount and network
# namespace of its own with only loopback (nothing leaves the machine); the
# CLIs run chrooted in the image as uid 1000 with a scratch /workspace, /tmp
# and HOME, the simulator on 127.0.0.1:18089. Needs root. Writes
# claude-success.jsonl, claude-error.jsonl, codex-success.jsonl,
# codex-error.jsonl in OUTDIR.
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 ROOTFS OUTDIR" >&2; exit 2; }
ROOTFS=$(realpath "$1")
mkdir -p "$2"
OUT=$(realpath "$2")
SIM=$(cd "$(dirname "$0")" && pwd)/modelsim.py
[[ -x $ROOTFS/usr/local/bin/claude && -x $ROOTFS/usr/local/bin/codex ]] || { echo "$ROOTFS has no agent CLIs" >&2; exit 1; }

exec unshare -m -n --propagation private /bin/bash -s "$ROOTFS" "$OUT" "$SIM" <<'EOS'
set -euo pipefail
ROOTFS=$1 OUT=$2 SIM=$3
ip link set lo up
SCRATCH=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$SCRATCH"' EXIT
mount -t proc proc "$ROOTFS/proc"
mount --rbind /dev "$ROOTFS/dev"
mount -t tmpfs -o mode=1777 tmpfs "$ROOTFS/tmp"

# one CLI run: NAME PROVIDER SCRIPT_JSON CMD...
record() {
        local name=$1 script=$2
        shift 2
        mount -t tmpfs -o mode=0755,uid=1000,gid=1000 tmpfs "$ROOTFS/workspace"
        mount -t tmpfs -o mode=0700,uid=1000,gid=1000 tmpfs "$ROOTFS/home/agent"
        printf 'remember the milk\n' > "$ROOTFS/workspace/notes.txt"
        chown 1000:1000 "$ROOTFS/workspace/notes.txt"
        mkdir -p "$ROOTFS/home/agent/.codex"
        cat > "$ROOTFS/home/agent/.codex/config.toml" <<'TOML'
model = "gpt-5.5"
model_provider = "paddock"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[model_providers.paddock]
name = "Paddock model gateway"
base_url = "http://127.0.0.1:18089/v1"
wire_api = "responses"
env_key = "PADDOCK_GATEWAY_KEY"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[features]
plugins = false
unbounded_connection_retries = false
TOML
        chown -R 1000:1000 "$ROOTFS/home/agent/.codex"
        printf '%s\n' "$script" > "$SCRATCH/$name.script.json"
        rm -f "$SCRATCH/ready"
        python3 "$SIM" serve --script "$SCRATCH/$name.script.json" --log "$SCRATCH/$name.requests.jsonl" \
                --http-port 18089 --ready "$SCRATCH/ready" &
        local sim=$!
        for _ in $(seq 100); do [[ -s $SCRATCH/ready ]] && break; sleep 0.05; done
        local t0=$(date +%s.%N) rc=0
        (cd "$ROOTFS/workspace" && chroot --userspec=1000:1000 "$ROOTFS" /usr/bin/env -i \
                PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/agent SHELL=/bin/bash LANG=C.UTF-8 \
                CODEX_HOME=/home/agent/.codex PADDOCK_GATEWAY_KEY=paddock-gateway-placeholder-not-a-key \
                ANTHROPIC_BASE_URL=http://127.0.0.1:18089 ANTHROPIC_API_KEY=paddock-gateway-placeholder-not-a-key \
                ANTHROPIC_SMALL_FAST_MODEL=claude-sonnet-4-5 \
                CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1 \
                DISABLE_ERROR_REPORTING=1 CLAUDE_CODE_MAX_RETRIES=0 IS_SANDBOX=1 \
                NO_PROXY=127.0.0.1,localhost \
                /bin/sh -c 'cd /workspace && exec "$@"' sh "$@" < /dev/null > "$OUT/$name.jsonl" \
                2> "$SCRATCH/$name.stderr") || rc=$?
        echo "$name: exit $rc in $(echo "$(date +%s.%N) - $t0" | bc) s; workspace: $(ls "$ROOTFS/workspace" | tr '\n' ' ')" >&2
        [[ -s $SCRATCH/$name.stderr ]] && sed 's/^/  stderr: /' "$SCRATCH/$name.stderr" | head -20 >&2
        kill $sim; wait $sim 2>/dev/null || true
        umount "$ROOTFS/workspace" "$ROOTFS/home/agent"
}

CLAUDE=(claude -p --output-format stream-json --verbose --no-session-persistence --dangerously-skip-permissions
        --model claude-sonnet-4-5 -- "look around, read notes.txt, then write hello.txt")
CODEX=(codex exec --json --skip-git-repo-check --ephemeral -s danger-full-access --
       "look around, read notes.txt, then write hello.txt")

record claude-success '{"anthropic": [
  {"text": "Let me look around.", "tool_calls": [{"name": "Bash", "input": {"command": "ls -a && echo paddock-ok", "description": "list the workspace"}}], "usage": {"input_tokens": 120, "output_tokens": 30}},
  {"tool_calls": [{"name": "Read", "input": {"file_path": "/workspace/notes.txt"}}], "usage": {"input_tokens": 160, "output_tokens": 20}},
  {"tool_calls": [{"name": "Write", "input": {"file_path": "/workspace/hello.txt", "content": "hello from the agent\n"}}], "usage": {"input_tokens": 200, "output_tokens": 25}},
  {"text": "All done.", "usage": {"input_tokens": 240, "output_tokens": 5}}]}' "${CLAUDE[@]}"
record claude-error '{"anthropic": [{"status": 500}, {"status": 500}, {"status": 500}]}' "${CLAUDE[@]}"
record codex-success '{"openai": [
  {"text": "Let me look around.", "tool_calls": [{"name": "exec_command", "arguments": {"cmd": "ls -a && echo paddock-ok"}}], "usage": {"input_tokens": 120, "output_tokens": 30}},
  {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "cat notes.txt"}}], "usage": {"input_tokens": 160, "output_tokens": 20}},
  {"tool_calls": [{"name": "apply_patch", "custom": "*** Begin Patch\n*** Add File: hello.txt\n+hello from the agent\n*** End Patch\n"}], "usage": {"input_tokens": 200, "output_tokens": 25}},
  {"text": "All done.", "usage": {"input_tokens": 240, "output_tokens": 5}}]}' "${CODEX[@]}"
record codex-error '{"openai": [{"status": 500}, {"status": 500}, {"status": 500}]}' "${CODEX[@]}"
EOS
