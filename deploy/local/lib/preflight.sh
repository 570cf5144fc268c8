# deploy/local/lib/preflight.sh — sourced by deploy/local/stack.sh (not run on its own).

# ---------------------------------------------------------------- preflight
#
# What `up` needs from the machine, checked before anything is installed or
# started, so that it stops with one line saying why and what to do instead
# of failing halfway.

preflight_host() {
        [[ $(id -u) -eq 0 ]] || cannot "this runs as uid $(id -u), not root: PostgreSQL runs as user postgres and sandboxes need crun and namespaces" \
                "run it as root (sudo ./dev ...)"
        local os='' like='' pretty='' n
        if [[ -r /etc/os-release ]]; then
                # shellcheck disable=SC1091
                os=$(. /etc/os-release && echo "${ID:-}")
                like=$(. /etc/os-release && echo "${ID_LIKE:-}")
                pretty=$(. /etc/os-release && echo "${PRETTY_NAME:-}")
        fi
        if [[ $os != debian && " $like " != *" debian "* ]] || ! command -v apt-get >/dev/null ||
                ! command -v dpkg-query >/dev/null; then
                cannot "this is ${pretty:-a system without /etc/os-release}, not Debian with apt, which installs the packages" \
                        "use Debian 12 (bookworm)"
        fi
        n=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)
        ((n > 0)) || cannot "user namespaces are disabled (user.max_user_namespaces = $n), and every sandbox runs in one" \
                "enable them: sysctl -w user.max_user_namespaces=15000"
        if [[ $(dpkg-query -W -f='${Status}' postgresql-common 2>/dev/null || true) == "install ok installed" ]] &&
                ! id -u postgres >/dev/null 2>&1; then
                cannot "PostgreSQL is installed but there is no user postgres to run it as" \
                        "recreate the user: apt-get install --reinstall postgresql-common"
        fi
}

# Characters no path of the stack may hold: a newline or a single quote
# (endpoints.env quotes paths with single quotes), a double quote or a
# backslash (the build puts the source path into C strings), a semicolon
# (CMake's list separator). Spaces are fine.
preflight_paths() {
        local what path c
        for what in "clone:$REPO" "state dir:$STATE" "build dir:$BUILD"; do
                path=${what#*:}
                for c in $'\n' "'" '"' '\' ';'; do
                        [[ $path != *"$c"* ]] ||
                                cannot "the ${what%%:*} path $(printf '%q' "$path") holds a newline, quote, backslash or semicolon, which the build and endpoints.env cannot carry" \
                                        "use a path without them"
                done
        done
}

cmd_preflight() {
        preflight_host
        preflight_paths
        data_dir_check
        say "preflight passed: state in $STATE, data in $DATA${DATA_WHY:+ (in the state dir, $DATA_WHY)}"
}
