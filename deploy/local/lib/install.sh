# deploy/local/lib/install.sh — sourced by deploy/local/stack.sh (not run on its own).

PACKAGES=(
        build-essential cmake pkg-config git
        librdkafka-dev libpq-dev libcurl4-openssl-dev libjansson-dev libwebsockets-dev
        libssl-dev protobuf-c-compiler libprotobuf-c-dev libcmocka-dev
        crun postgresql kcat radosgw ceph-mon ceph-osd ceph-common
        python3 python3-boto3 python3-psycopg python3-confluent-kafka python3-websocket
        python3-requests python3-pytest python3-cryptography python3-pytest-timeout python3-jsonschema python3-yaml
        iproute2 diffutils debootstrap uuid-runtime curl jq procps util-linux openssl ca-certificates
        zsh   # tests/e2e/test_cli_core.py checks the completion script with it
        nodejs chromium   # the dashboard (web/, npm), its browser tests (tests/browser), tests/k8s
        clang-14 libclang-rt-14-dev   # make fuzz (tests/fuzz): libFuzzer is in libclang-rt-14-dev, only a Recommends of clang-14
)

# ---------------------------------------------------------------- install

cmd_install() {
        preflight_host
        local missing=() p st
        for p in "${PACKAGES[@]}"; do
                st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
                [[ $st == "install ok installed" ]] || missing+=("$p")
        done
        # Debian's npm, unless the machine's Node.js brings its own (NodeSource's does)
        command -v npm >/dev/null || missing+=(npm)
        if [[ ${#missing[@]} -eq 0 ]]; then
                say "all ${#PACKAGES[@]} packages already installed"
                return 0
        fi
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends "${missing[@]}" || die "apt-get install failed"
        # Debian may create its own PostgreSQL cluster on 5432; the stack never uses it.
        say "packages installed"
}
