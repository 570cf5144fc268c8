# Paddock: the recipes live in ./dev (make cannot quote paths with spaces, and
# a clone may be anywhere); these targets call it. Run make from the
# repository root (or with -C). `./dev` with no argument is `./dev up`.
#
#   make up | test | down | status | purge | clean-test-state | build | install | preflight
#   make test CTEST_ARGS="-R 'unit|e2e.run'"
#   make chaos [CHAOS_ARGS="--runs 100 --seed 7"]   (tests/chaos/run.sh: 200 runs under faults)
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_RUNS=N] [FUZZ_TARGETS="jwt hook"]   (tests/fuzz/run.sh)
#
# JOBS=N sets the parallel build jobs (default 2).

.PHONY: all up test down status purge clean-test-state build install preflight fuzz chaos

all: build

up down status purge clean-test-state build install preflight:
	./dev $@

test:
	./dev test $(CTEST_ARGS)

# clang + libFuzzer builds of the parsers of untrusted input, each run for
# FUZZ_SECONDS (tests/fuzz/README.md); ./dev install provides clang
fuzz:
	./tests/fuzz/run.sh

# the full chaos suite: 200 runs under faults against a stack of its own
# (.paddock-chaos), its figures printed (tests/chaos/chaos.py)
chaos:
	./tests/chaos/run.sh
