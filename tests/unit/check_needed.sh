#!/bin/sh
# check_needed.sh BINARY NAME...: fails if BINARY's dynamic section needs a
# shared library whose name starts with one of NAME (readelf -d, DT_NEEDED).
# unit.cli_deps: the CLI links no libpq and no librdkafka (lib/CMakeLists.txt).
set -eu
bin=$1; shift
needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$needed" ] || { echo "check_needed: $bin: no DT_NEEDED entries read" >&2; exit 1; }
bad=0
for lib in "$@"; do
        for n in $needed; do
                case $n in "$lib".*|"$lib"-*) echo "check_needed: $bin needs $n" >&2; bad=1 ;; esac
        done
done
[ $bad = 0 ] && echo "check_needed: $bin needs none of: $* (needs: $(echo $needed))"
exit $bad
