# Developer entry points. `make test` is the project's test command (CI runs it
# from .ci/run). It first installs what it needs and is missing (`make deps`:
# redis-server, redis-tools and openssl from apt as root, else it prints the
# apt-get command; cargo-nextest with cargo install). It works with or
# without Docker:
#   * Docker answers  -> builds the local Redis image once and the integration
#                        tests run every Redis in its own container (faults on);
#   * no Docker       -> the tests spawn native `redis-server` processes.
# The cluster, TLS and replication harnesses always run native processes
# (redis-server + redis-cli installed; no Docker needed).
# Override the image with `make test REDIS_TEST_IMAGE=redis:7`, or point the
# tests at an existing server with `REDIS_URL=redis://... make test`.
# `make test-valkey` runs the same suite on Valkey 8 (REDIS_TEST_SERVER=valkey,
# the local Valkey image, valkey-server + valkey-cli for native processes).
#
# Tests that need what the chosen backend cannot do (names starting with
# `needs_pause_` / `needs_restart_`, see tests/support/mod.rs) are left out
# with a nextest filterset, so nextest reports them as SKIPPED.

SHELL := /bin/bash
CARGO ?= cargo
# redis (default) or valkey: which server every test harness runs.
REDIS_TEST_SERVER ?= redis
ifeq ($(REDIS_TEST_SERVER),valkey)
REDIS_TEST_IMAGE ?= sandbox-coordinator/valkey-test:8.0
else
REDIS_TEST_IMAGE ?= sandbox-coordinator/redis-test:7.0
endif
VALKEY_TEST_IMAGE ?= sandbox-coordinator/valkey-test:8.0
# Extra arguments for nextest, e.g. `make test NEXTEST_ARGS='--test harness'`.
NEXTEST_ARGS ?=
export REDIS_TEST_IMAGE REDIS_TEST_SERVER

# Label the test harness puts on its containers (tests/support/mod.rs).
TEST_CONTAINER_LABEL := sandbox-coordinator.test-redis

# Non-empty when a Docker engine answers.
DOCKER_OK := $(shell docker info >/dev/null 2>&1 && echo yes)

# The backend the integration tests will get, decided like
# tests/support/mod.rs does (REDIS_URL, then REDIS_TEST_BACKEND, then Docker),
# and the tests it cannot serve.
ifneq ($(strip $(REDIS_URL)),)
TEST_BACKEND := external
else ifneq ($(filter container docker,$(REDIS_TEST_BACKEND)),)
TEST_BACKEND := container
else ifeq ($(REDIS_TEST_BACKEND),native)
TEST_BACKEND := native
else ifeq ($(DOCKER_OK),yes)
TEST_BACKEND := container
else
TEST_BACKEND := native
endif
NEEDS_PAUSE := test(/(^|::)needs_pause_/)
NEEDS_RESTART := test(/(^|::)needs_restart_/)
ifeq ($(TEST_BACKEND),native)
SKIP_FILTER := -E 'not $(NEEDS_PAUSE)'
SKIP_NOTE := the native backend cannot pause: needs_pause_* tests are skipped
else ifeq ($(TEST_BACKEND),external)
SKIP_FILTER := -E 'not ($(NEEDS_PAUSE) | $(NEEDS_RESTART))'
SKIP_NOTE := an external server (REDIS_URL) can neither pause nor restart: needs_pause_* and needs_restart_* tests are skipped
else
SKIP_FILTER :=
SKIP_NOTE := containers: every test runs
endif

.PHONY: all deps redis-image test test-valkey test-clean fmt fmt-check clippy demo bench

# What the tests need beyond Rust, as `package:command` pairs: Debian's
# redis-server, redis-tools (redis-cli) and openssl (the TLS harness makes
# its certificates with it). The cluster, TLS and replication harnesses run
# native servers even when Docker answers, so these are needed either way.
# With REDIS_TEST_SERVER=valkey (make test-valkey): valkey-server and
# valkey-tools, from bookworm-backports on Debian 12 (.ci/run adds that
# suite).
ifeq ($(REDIS_TEST_SERVER),valkey)
TEST_PACKAGES := redis-server:redis-server redis-tools:redis-cli openssl:openssl valkey-server:valkey-server valkey-tools:valkey-cli
else
TEST_PACKAGES := redis-server:redis-server redis-tools:redis-cli openssl:openssl
endif

# $(call APT_ENSURE,package:command ...): installs, with apt-get as root,
# each package whose command is missing; otherwise prints the exact
# command to run and fails.
define APT_ENSURE
missing=""; \
for pc in $(1); do command -v "$${pc#*:}" >/dev/null 2>&1 || missing="$$missing $${pc%%:*}"; done; \
if [ -n "$$missing" ]; then \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing (apt-get install -y$$missing)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	else \
		echo "missing:$$missing. Run 'sudo apt-get install -y$$missing' (Debian/Ubuntu), then 'make $(or $(MAKECMDGOALS),$@)' again"; \
		exit 1; \
	fi; \
fi
endef

# Installs what `make test` needs when it is missing (see TEST_PACKAGES),
# and cargo-nextest (`cargo install --locked cargo-nextest`).
deps:
	@$(call APT_ENSURE,$(TEST_PACKAGES))
	@if ! $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "installing cargo-nextest (cargo install --locked cargo-nextest)"; \
		$(CARGO) install --locked cargo-nextest; \
	fi

all: fmt-check clippy test

redis-image:
ifeq ($(DOCKER_OK),yes)
	REDIS_TEST_SERVER=$(REDIS_TEST_SERVER) bash docker/build-redis-image.sh "$(REDIS_TEST_IMAGE)"
else
	@echo "redis-image: no Docker engine answers (docker info failed); skipping, tests will use native $(REDIS_TEST_SERVER)-server"
endif

# Removes containers left behind by killed test processes (a test that times
# out is SIGTERM/SIGKILLed by nextest and cannot run its destructors): those
# whose owner process (label `<label>.owner`, "pid=N ns=...", set by
# tests/support/mod.rs) is gone. A container of a run still going on (a
# soak, another `make test` on the same machine) is left alone.
ifeq ($(DOCKER_OK),yes)
CLEAN_TEST_CONTAINERS = ids=""; \
	for id in $$(docker ps -aq --filter "label=$(TEST_CONTAINER_LABEL)"); do \
		owner=$$(docker inspect -f '{{index .Config.Labels "$(TEST_CONTAINER_LABEL).owner"}}' "$$id" 2>/dev/null); \
		pid=$${owner\#pid=}; pid=$${pid%% *}; \
		case "$$pid" in ''|*[!0-9]*) ;; *) ps -p "$$pid" >/dev/null 2>&1 && continue ;; esac; \
		ids="$$ids $$id"; \
	done; \
	if [ -n "$$ids" ]; then echo "removing leftover test containers:$$ids"; docker rm -f -v $$ids >/dev/null; fi
else
CLEAN_TEST_CONTAINERS = true
endif

ifeq ($(DOCKER_OK),yes)
test: deps redis-image
else
test: deps
endif
# Doctests first so that nextest's summary is the last thing printed. The
# doctest runs against a private server that .ci/with-redis starts for it.
test:
	bash .ci/with-redis $(CARGO) test --doc -p sandbox-coordinator
	@echo "backend $(TEST_BACKEND) ($(REDIS_TEST_SERVER)): $(SKIP_NOTE)"
	@rc=0; \
	echo "REDIS_TEST_SERVER=$(REDIS_TEST_SERVER) REDIS_TEST_IMAGE=$(REDIS_TEST_IMAGE) $(CARGO) nextest run --workspace --all-targets $(SKIP_FILTER) $(NEXTEST_ARGS)"; \
	$(CARGO) nextest run --workspace --all-targets $(SKIP_FILTER) $(NEXTEST_ARGS) || rc=$$?; \
	$(CLEAN_TEST_CONTAINERS); \
	exit $$rc

# The same suite on Valkey 8: the test binaries are the ones `make test`
# built (the server is chosen at run time).
test-valkey:
	$(MAKE) test REDIS_TEST_SERVER=valkey REDIS_TEST_IMAGE=$(VALKEY_TEST_IMAGE)

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
	@$(call APT_ENSURE,redis-server:redis-server)
	$(CARGO) run --release -p sandboxctl -- demo

# Both benchmark programs (benches/, package sandbox-coordinator-bench).
bench:
	$(CARGO) bench -p sandbox-coordinator-bench

# The race-and-fault suite's soak profile (tests/linearizability.rs `soak`):
# every scenario of tests/linearizability.rs and tests/faults.rs in turn,
# with more clients, until DURATION has passed; a progress bar on a
# terminal, and a summary table at the end (also in target/soak-summary.md).
# `make soak DURATION=10m`. Runs under `cargo test`, not nextest, whose
# slow-timeout would end a long run.
# With Docker the soak insists on containers (no silent native fallback,
# which cannot pause).
# `make soak PROFILE=cluster DURATION=10m` is the cluster profile
# (tests/cluster.rs `soak_cluster`): the race on a Redis Cluster of 3
# masters x 1 replica (native redis-server processes, no Docker needed),
# with wait_for_replicas(1), and one fault per round on the master of the
# racing team's slot, in turn: kill -9 with its replica promoted, the slot
# moved to another master (MIGRATE), the replica restarted. Every history
# is checked; the summary adds faults by kind and acknowledged transitions
# lost (also in target/soak-cluster-summary.md).
DURATION ?= 10m
PROFILE ?= standalone
ifeq ($(DOCKER_OK),yes)
SOAK_BACKEND := REDIS_TEST_BACKEND=container
endif
.PHONY: soak
ifeq ($(PROFILE),cluster)
SOAK_CMD := $(CARGO) test --release --test cluster -- --ignored --exact soak_cluster --nocapture
soak:
	@command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "the cluster soak needs redis-server and redis-cli: make deps"; exit 1; }
	@echo "SOAK_DURATION=$(DURATION) $(SOAK_CMD)"
	@SOAK_DURATION=$(DURATION) $(SOAK_CMD)
else ifeq ($(PROFILE),standalone)
ifeq ($(DOCKER_OK),yes)
soak: redis-image
endif
soak:
	@rc=0; \
	echo "SOAK_DURATION=$(DURATION) REDIS_TEST_IMAGE=$(REDIS_TEST_IMAGE) $(CARGO) test --release --test linearizability -- --ignored --exact soak --nocapture"; \
	SOAK_DURATION=$(DURATION) REDIS_TEST_IMAGE=$(REDIS_TEST_IMAGE) $(SOAK_BACKEND) $(CARGO) test --release --test linearizability -- --ignored --exact soak --nocapture || rc=$$?; \
	$(CLEAN_TEST_CONTAINERS); \
	exit $$rc
else
soak:
	@echo "PROFILE=$(PROFILE): unknown; use PROFILE=standalone (default) or PROFILE=cluster"; exit 1
endif
