# deploy/local/lib/data.sh — sourced by deploy/local/stack.sh (not run on its own).

# ---------------------------------------------------------------- where the data lives
#
# PostgreSQL runs as user postgres and the sandboxes as unprivileged uids of
# their user namespace, so the files those use must be reachable by them;
# PostgreSQL, Ceph and the runner-agent bind unix sockets whose paths may not
# exceed 107 bytes; sandboxes run programs from the runner's directory. When
# all of that holds for the state dir, it keeps that data itself (pg/, ceph/,
# runner/). Otherwise (a clone under /root, which is 0700, a 0700 temporary
# directory, a path with a space, a deep path, a noexec mount) the data goes
# to a root-owned directory of its own, $STACKS_ROOT/<hash of the state dir's
# real path>, named in $STATE/data-dir, so that no directory of the user's is
# opened up. `down` keeps it; only `purge` deletes it. (nosuid does not
# matter: sandboxes run with no_new_privs and images without set-id files.)

# The host uid of slot 0's container root (docs/CONTRACTS.md "Runner
# isolation"). Each run slot has a range of its own (100000 + slot * 65536),
# none of them owner or group of anything here, so this one stands for all:
# what it may enter, every sandbox uid may.
SANDBOX_UID=100000
UNIX_PATH_MAX=107  # sizeof(sockaddr_un.sun_path) - 1
# The longest unix socket path under the data dir: a run's capture socket.
LONGEST_SOCKET=runner/runs/00000000-0000-0000-0000-000000000000/capture-exec.sock

# search_blocker WHO DIR: the first directory on the way to DIR (DIR
# included) that WHO (postgres, or sandbox: the sandboxes' uid) may not
# enter; prints nothing if there is none. Directories that do not exist yet
# are created with mode 0755.
search_blocker() {
        local who=$1 dir=$2 d='' part parts=()
        IFS=/ read -r -a parts <<<"${dir#/}"
        for part in "" "${parts[@]}"; do
                d=${d%/}/$part
                [[ -d $d ]] || return 0
                if [[ $who == postgres ]]; then
                        runuser -u postgres -- test -x "$d" 2>/dev/null && continue
                else
                        setpriv --reuid="$SANDBOX_UID" --regid="$SANDBOX_UID" --clear-groups -- test -x "$d" 2>/dev/null &&
                                continue
                fi
                echo "$d"
                return 0
        done
}

# data_dir_problem DIR: why DIR cannot hold the data (one line), or nothing.
data_dir_problem() {
        local dir=$1 near sock opts who b
        if [[ ! $dir =~ ^/[A-Za-z0-9_./+-]*$ ]]; then
                echo "its path holds characters other than letters, digits and _.+-/, and pg_ctl hands the data dir to a shell"
                return
        fi
        near=$dir
        while [[ ! -d $near ]]; do near=$(dirname "$near"); done
        opts=$(findmnt -n -o OPTIONS --target "$near" 2>/dev/null || true)
        if [[ ,$opts, == *,noexec,* ]]; then
                echo "$near is on a noexec mount, where sandboxes cannot run programs"
                return
        fi
        for who in sandbox postgres; do
                # before the install there is no user postgres yet: up checks again
                [[ $who == sandbox ]] || id -u postgres >/dev/null 2>&1 || continue
                b=$(search_blocker "$who" "$dir")
                [[ -n $b ]] || continue
                if [[ $who == postgres ]]; then who="user postgres"; else who="the sandboxes' uid $SANDBOX_UID"; fi
                echo "$who cannot enter $b (mode $(stat -c '%a, owner %U' "$b"))"
                return
        done
        sock=$dir/$LONGEST_SOCKET
        if ((${#sock} > UNIX_PATH_MAX)); then
                echo "a unix socket under it would have a path of ${#sock} bytes, over the $UNIX_PATH_MAX the kernel allows ($sock)"
                return
        fi
}

# Sets DATA, and DATA_WHY when DATA is a per-stack dir not chosen yet.
# Changes nothing on disk.
data_dir_resolve() {
        if [[ -f $STATE/data-dir ]]; then
                DATA=$(cat "$STATE/data-dir")
        elif [[ -e $STATE/pg || -e $STATE/ceph || -e $STATE/runner ]]; then
                DATA=$STATE # the data is here already
        else
                DATA_WHY=$(data_dir_problem "$STATE")
                DATA=$STATE
                [[ -z $DATA_WHY ]] || DATA=$STACKS_ROOT/$(printf '%s' "$STATE" | sha256sum | cut -c1-12)
        fi
}

# The command that deletes this stack, for the preflight's advice.
purge_hint() {
        case $STATE in
        "$REPO/.paddock") echo "./dev purge" ;;
        "$REPO/.paddock-test") echo "./dev clean-test-state" ;;
        *) echo "PADDOCK_STATE_DIR='$STATE' $REPO/deploy/local/stack.sh purge" ;;
        esac
}

# Refuses (one line: why, and the fix) when the data cannot live where it
# would go.
data_dir_check() {
        local problem owner
        data_dir_resolve
        if [[ -f $STATE/data-dir ]]; then
                [[ -d $DATA ]] || cannot "$STATE/data-dir names $DATA, which no longer exists" \
                        "start this stack over with: $(purge_hint)"
                owner=$(cat "$DATA/owner" 2>/dev/null || true)
                if [[ -n $owner && $owner != "$STATE" && -f $owner/data-dir && $(cat "$owner/data-dir") == "$DATA" ]]; then
                        cannot "$DATA holds the data of the stack in $owner (was $STATE copied from it?)" \
                                "start this one over with: $(purge_hint) (it leaves $DATA to $owner)"
                fi
        fi
        problem=$(data_dir_problem "$DATA")
        [[ -n $problem ]] || return 0
        if [[ -n $DATA_WHY ]]; then
                cannot "the state dir cannot hold the data ($DATA_WHY), nor can $DATA: $problem" \
                        "set PADDOCK_STACKS_DIR to a directory with a short plain path that every user may enter"
        fi
        cannot "the stack's data in $DATA cannot be used: $problem" \
                "move the clone, or start this stack over with: $(purge_hint)"
}

# Creates the per-stack dir when the data goes there, and the runner's dir.
data_dir_init() {
        if [[ $DATA != "$STATE" ]]; then
                if [[ ! -f $STATE/data-dir ]]; then
                        say "PostgreSQL, Ceph and runner data go to $DATA, as $STATE cannot hold them: $DATA_WHY"
                        (umask 022 && mkdir -p "$DATA")
                        printf '%s\n' "$DATA" >"$STATE/data-dir"
                fi
                # which state dir it serves (purge checks it; a moved clone takes it over)
                printf '%s\n' "$STATE" >"$DATA/owner"
        fi
        mkdir -p "$DATA/runner"
}

# data_remove DIR: deletes DIR, after unmounting what a killed runner-agent
# may have left mounted under it (its crun tmpfs, run workspaces, netns).
data_remove() {
        local dir=$1 m
        [[ -e $dir ]] || return 0
        findmnt -rn -o TARGET | { grep -F -- "$dir/" || true; } | sort -r | while read -r m; do
                umount -l "$m" 2>/dev/null || warn "could not unmount $m"
        done
        rm -rf --one-file-system -- "$dir"
}
