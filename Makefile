# Paddock: build, local stack and tests. Everything runs on this machine, on
# 127.0.0.1 (deploy/local/stack.sh holds the details).
#
#   ./dev or make install   Debian packages needed to build, run and test (fast when present)
#   ./dev or make build     RelWithDebInfo build into build/
#   ./dev or make up        install + build + local stack up (+ deploy/local/demo.sh)
#   ./dev or make down      stop the local stack (data kept in .paddock/)
#   ./dev or make status    what runs, and the endpoints
#   ./dev or make test      sanitizer build into build-test/, its own stack in
#                  .paddock-test/, ctest against it, that stack stopped after

REPO       := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
STACK      := $(REPO)/deploy/local/stack.sh
JOBS       ?= 2
STATE_DIR  ?= $(or $(PADDOCK_STATE_DIR),$(REPO)/.paddock)
TEST_STATE := $(REPO)/.paddock-test
TEST_BUILD := $(REPO)/build-test

.PHONY: all install build up down status test clean-test-state

all: build

install:
	$(STACK) install

build:
	cmake -S $(REPO) -B $(REPO)/build -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(REPO)/build -j$(JOBS)

up: install build
	PADDOCK_STATE_DIR=$(STATE_DIR) PADDOCK_BUILD_DIR=$(REPO)/build $(STACK) up
	@if [ -x $(REPO)/deploy/local/demo.sh ]; then \
		PADDOCK_STATE_DIR=$(STATE_DIR) PADDOCK_BUILD_DIR=$(REPO)/build $(REPO)/deploy/local/demo.sh; \
	elif [ -f $(REPO)/deploy/local/demo.sh ]; then \
		PADDOCK_STATE_DIR=$(STATE_DIR) PADDOCK_BUILD_DIR=$(REPO)/build bash $(REPO)/deploy/local/demo.sh; \
	fi
	@echo
	@echo "The stack is up (state: $(STATE_DIR)). Stop it with: ./dev down (or make down)"

down:
	PADDOCK_STATE_DIR=$(STATE_DIR) $(STACK) down

status:
	@PADDOCK_STATE_DIR=$(STATE_DIR) PADDOCK_BUILD_DIR=$(REPO)/build $(STACK) status

# The test stack's services are ASan builds; librdkafka and libwebsockets keep
# some allocations until exit, so leak checks are off for the services only.
# Unit tests keep them on. The stack goes down whatever ctest says (also on ^C),
# and make exits with ctest's status.
test: install
	cmake -S $(REPO) -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPADDOCK_SANITIZE=ON
	cmake --build $(TEST_BUILD) -j$(JOBS)
	@export PADDOCK_STATE_DIR=$(TEST_STATE) PADDOCK_BUILD_DIR=$(TEST_BUILD) \
		PADDOCK_SERVICE_ENV='ASAN_OPTIONS=detect_leaks=0'; \
	trap '$(STACK) down; exit 130' INT TERM; \
	rc=0; \
	$(STACK) up || rc=$$?; \
	if [ $$rc -eq 0 ]; then \
		( set -a; . $(TEST_STATE)/endpoints.env; set +a; \
		  exec ctest --test-dir $(TEST_BUILD) --output-on-failure ) || rc=$$?; \
	else \
		echo "make test: the test stack did not come up (logs: $(TEST_STATE)/logs)" >&2; \
	fi; \
	$(STACK) down || true; \
	exit $$rc

# Forget the test stack's data (PostgreSQL, Ceph); the next `make test` starts fresh.
clean-test-state:
	PADDOCK_STATE_DIR=$(TEST_STATE) $(STACK) down
	rm -rf $(TEST_STATE)
