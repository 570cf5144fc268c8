#!/usr/bin/env bash
# `make fuzz` (tests/fuzz/README.md): builds the fuzz targets with clang,
# libFuzzer, ASan and UBSan into build-fuzz/, runs each for FUZZ_SECONDS
# (default 60) and prints, per target, the executions, exec/s, coverage
# (libFuzzer's cov: edges and ft: features), the corpus size and the result.
# New inputs go to build-fuzz/fuzz-corpus/<target> (the committed seeds in
# tests/fuzz/corpus/<target> are only read); a crash, leak, timeout or
# out-of-memory input is written to build-fuzz/fuzz-artifacts/<target>/.
#
#   FUZZ_SECONDS=N        seconds per target (default 60)
#   FUZZ_RUNS=N           stop a target after N executions instead (e.g. 10000000)
#   FUZZ_TARGETS="a b"    only these targets (default: all of tests/fuzz/CMakeLists.txt)
#   JOBS=N                parallel build jobs (default 2)
#   PADDOCK_FUZZ_BUILD_DIR  build dir (default build-fuzz)
#
# Exits 1 if any target found something or could not run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${PADDOCK_FUZZ_BUILD_DIR:-$REPO/build-fuzz}
SECS=${FUZZ_SECONDS:-60}
RUNS=${FUZZ_RUNS:-}
JOBS=${JOBS:-2}
ALL=$(sed -n 's/^set(PADDOCK_FUZZ_TARGETS \(.*\))$/\1/p' "$REPO/tests/fuzz/CMakeLists.txt")
TARGETS=${FUZZ_TARGETS:-$ALL}

die() { printf 'fuzz: error: %s\n' "$*" >&2; exit 1; }
[[ $SECS =~ ^[1-9][0-9]*$ ]] || die "FUZZ_SECONDS must be a positive number of seconds, not \"$SECS\""
[[ -z $RUNS || $RUNS =~ ^[1-9][0-9]*$ ]] || die "FUZZ_RUNS must be a positive number of executions, not \"$RUNS\""
for t in $TARGETS; do
        [[ " $ALL " == *" $t "* ]] || die "no fuzz target \"$t\" (targets: $ALL)"
done
CC=$(command -v clang-14 || command -v clang) ||
        die "clang is not installed; run: ./dev install (it installs clang-14 and libclang-rt-14-dev)"
compgen -G "/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null ||
        die "libFuzzer is not installed; run: ./dev install (it installs libclang-rt-14-dev)"

mkdir -p "$BUILD"
cmake -S "$REPO" -B "$BUILD" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DPADDOCK_SANITIZE=ON -DPADDOCK_FUZZ=ON -DPADDOCK_TESTS=OFF >"$BUILD/fuzz-cmake.log" 2>&1 ||
        die "cmake failed (log: $BUILD/fuzz-cmake.log)"
build_args=()
for t in $TARGETS; do build_args+=(--target "fuzz_$t"); done
cmake --build "$BUILD" -j"$JOBS" "${build_args[@]}"

# UB aborts (-fno-sanitize-recover); leaks are reported (libFuzzer's -detect_leaks).
# A 16 MB quarantine still holds every block an input frees (inputs allocate
# far less) while ASan's default 256 MB keeps handing out fresh pages: page
# faults were a third of the time of jwks and spec (perf), and the smaller
# one nearly doubles their executions per second.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:quarantine_size_mb=16}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rows=()
failed=0
for t in $TARGETS; do
        work=$BUILD/fuzz-corpus/$t art=$BUILD/fuzz-artifacts/$t log=$BUILD/fuzz-logs/$t.log
        mkdir -p "$work" "$art" "$(dirname "$log")"
        if [[ -n $RUNS ]]; then limit=(-runs="$RUNS"); else limit=(-max_total_time="$SECS"); fi
        args=("${limit[@]}" -print_final_stats=1 -timeout=30 -rss_limit_mb=2048
              -artifact_prefix="$art/" "$work" "$REPO/tests/fuzz/corpus/$t")
        printf 'fuzz: %s: running (%s)\n' "$t" "${RUNS:+$RUNS executions}${RUNS:-$SECS s}"
        rc=0
        "$BUILD/tests/fuzz/fuzz_$t" "${args[@]}" >"$log" 2>&1 || rc=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
        last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
        cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
        ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
        corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
        if [[ $rc -eq 0 ]]; then
                result=clean
        else
                result="FOUND (exit $rc; log: $log; inputs: $art)"
                failed=1
        fi
        rows+=("$(printf '%-13s %13s %9s %7s %7s %11s  %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" \
                "${corp:-?}" "$result")")
done
printf '\n%-13s %13s %9s %7s %7s %11s  %s\n' target executions exec/s cov ft corpus result
printf '%s\n' "${rows[@]}"
exit "$failed"
