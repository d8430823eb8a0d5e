# Developer entry points. `make test` is the project's test command (CI runs it
# from .ci/run). It works with or without Docker:
#   * Docker answers  -> builds the local Redis image once and the integration
#                        tests run every Redis in its own container (faults on);
#   * no Docker       -> the tests spawn native `redis-server` processes.
# Override the image with `make test REDIS_TEST_IMAGE=redis:7`, or point the
# tests at an existing server with `REDIS_URL=redis://... make test`.

SHELL := /bin/bash
CARGO ?= cargo
REDIS_TEST_IMAGE ?= sandbox-coordinator/redis-test:7.0
# Extra arguments for nextest, e.g. `make test NEXTEST_ARGS='--test harness'`.
NEXTEST_ARGS ?=
export REDIS_TEST_IMAGE

# Label the test harness puts on its containers (tests/support/mod.rs).
TEST_CONTAINER_LABEL := sandbox-coordinator.test-redis

# Non-empty when a Docker engine answers.
DOCKER_OK := $(shell docker info >/dev/null 2>&1 && echo yes)

.PHONY: all redis-image test test-clean fmt fmt-check clippy demo bench

all: fmt-check clippy test

redis-image:
ifeq ($(DOCKER_OK),yes)
	bash docker/build-redis-image.sh "$(REDIS_TEST_IMAGE)"
else
	@echo "redis-image: no Docker engine answers (docker info failed); skipping, tests will use native redis-server"
endif

# Removes containers left behind by killed test processes (a test that times
# out is SIGTERM/SIGKILLed by nextest and cannot run its destructors).
ifeq ($(DOCKER_OK),yes)
CLEAN_TEST_CONTAINERS = ids=$$(docker ps -aq --filter "label=$(TEST_CONTAINER_LABEL)"); \
	if [ -n "$$ids" ]; then echo "removing leftover test containers: $$ids"; docker rm -f -v $$ids >/dev/null; fi
else
CLEAN_TEST_CONTAINERS = true
endif

ifeq ($(DOCKER_OK),yes)
test: redis-image
endif
# Doctests first so that nextest's summary is the last thing printed.
test:
	$(CARGO) test --doc -p sandbox-coordinator
	@rc=0; \
	echo "REDIS_TEST_IMAGE=$(REDIS_TEST_IMAGE) $(CARGO) nextest run --workspace --all-targets $(NEXTEST_ARGS)"; \
	REDIS_TEST_IMAGE=$(REDIS_TEST_IMAGE) $(CARGO) nextest run --workspace --all-targets $(NEXTEST_ARGS) || rc=$$?; \
	$(CLEAN_TEST_CONTAINERS); \
	exit $$rc

test-clean:
	@$(CLEAN_TEST_CONTAINERS)

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The demo runs against a private redis-server that sandboxctl starts on a
# unix socket; install Debian's package first if it is missing.
demo:
	@if ! command -v redis-server >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing redis-server (apt-get install redis-server)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
		else \
			echo "redis-server is not installed: run 'sudo apt-get install redis-server' (Debian/Ubuntu), then 'make demo' again"; \
			exit 1; \
		fi; \
	fi
	$(CARGO) run --release -p sandboxctl -- demo

bench:
	$(CARGO) bench

# The race-and-fault suite's soak profile (tests/linearizability.rs `soak`):
# every scenario of tests/linearizability.rs and tests/faults.rs in turn,
# with more clients, until DURATION has passed; a progress bar on a
# terminal, and a summary table at the end (also in target/soak-summary.md).
# `make soak DURATION=10m`. Runs under `cargo test`, not nextest, whose
# slow-timeout would end a long run.
# With Docker the soak insists on containers (no silent native fallback,
# which cannot pause).
DURATION ?= 10m
ifeq ($(DOCKER_OK),yes)
SOAK_BACKEND := REDIS_TEST_BACKEND=container
endif
.PHONY: soak
ifeq ($(DOCKER_OK),yes)
soak: redis-image
endif
soak:
	@rc=0; \
	echo "SOAK_DURATION=$(DURATION) REDIS_TEST_IMAGE=$(REDIS_TEST_IMAGE) $(CARGO) test --release --test linearizability -- --ignored --exact soak --nocapture"; \
	SOAK_DURATION=$(DURATION) REDIS_TEST_IMAGE=$(REDIS_TEST_IMAGE) $(SOAK_BACKEND) $(CARGO) test --release --test linearizability -- --ignored --exact soak --nocapture || rc=$$?; \
	$(CLEAN_TEST_CONTAINERS); \
	exit $$rc
