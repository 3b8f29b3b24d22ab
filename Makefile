# max-tps-ecs: the front door. CI (.ci/run) runs `make test`; everything CI does can be
# run here the same way. Local services come from infra/local/stack.sh (no Docker).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
JOBS ?= 2
EDGE_ADDR ?= 127.0.0.1:8080
OPENAPI_ADDR ?= 127.0.0.1:18080
OPENAPI_SPEC ?= openapi/ticketing.yaml
# operationIds of openapi/ticketing.yaml that the edge implements so far (empty = all).
# Not paymentCallback: the edge under test runs PAYMENT_MODE=instant, where the route is
# a 404, and with a provider no generated request carries a valid HMAC of its body, so
# every one would stop at 401 before the body is read (tests/tests/payment.rs covers it).
SCHEMATHESIS_OPS ?= ping health enter challenge roomStatus roomEvents fairness summary seats hold release paymentIntent commit status
SCHEMATHESIS_ADMIN_OPS ?= revokeBuyer
SCHEMATHESIS_MAX_EXAMPLES ?= 50
SCHEMATHESIS_ARGS ?=

STACK := infra/local/stack.sh
EDGE := infra/local/edge.sh
WORKER := infra/local/worker.sh
# Local service URLs, for recipes: $(WITH_ENV) cmd...
WITH_ENV := eval "$$($(STACK) env)"; export EDGE_ADDR='$(EDGE_ADDR)';

export CARGO_BUILD_JOBS := $(JOBS)
export OPENAPI_ADDR OPENAPI_SPEC SCHEMATHESIS_OPS SCHEMATHESIS_ADMIN_OPS SCHEMATHESIS_MAX_EXAMPLES SCHEMATHESIS_ARGS

.PHONY: help deps services services-stop cluster cluster-stop services-status build build-edge run start stop \
	test test-rust test-cluster openapi-test fmt lint lint-sh clean-data bench bench-worker capacity

help: ## list the targets
	@echo "make TARGET   (variables: CARGO=$(CARGO) EDGE_ADDR=$(EDGE_ADDR) JOBS=$(JOBS) SCHEMATHESIS_OPS='$(SCHEMATHESIS_OPS)')"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install what is missing: redis-server, postgresql, curl (apt), schemathesis (.run/venv)
	$(STACK) deps

services: deps ## start Redis (127.0.0.1:16379) and PostgreSQL (127.0.0.1:15432), data in .run/
	$(STACK) up

services-stop: ## stop Redis and PostgreSQL
	$(STACK) down

cluster: deps ## a local Redis Cluster: 3 primaries + 3 replicas on CLUSTER_PORT.. (17001-17006), data in .run/cluster/
	$(STACK) cluster-up

cluster-stop: ## stop the local Redis Cluster (its data stays; `infra/local/stack.sh cluster-clean` deletes it)
	$(STACK) cluster-down

services-status: ## show whether Redis, PostgreSQL and a `make start` edge and worker run
	@$(STACK) status || true
	@$(EDGE) status || true
	@$(WORKER) status || true

build: ## cargo build --release of every binary
	$(CARGO) build --release -j$(JOBS) --workspace --bins

build-edge: ## cargo build --release of the edge and the worker (which migrates and seeds before the edge starts)
	$(CARGO) build --release -j$(JOBS) -p edge --bin edge -p worker --bin worker

run: deps build ## services, migrations, demo event, edge and worker in the foreground on EDGE_ADDR; Ctrl-C stops it all
	EDGE_ADDR='$(EDGE_ADDR)' infra/local/run.sh

start: services build ## services, migrations, demo event, edge and worker in the background (.run/{edge,worker}.{pid,log}), waits for health
	$(WITH_ENV) $(EDGE) start --addr '$(EDGE_ADDR)' --pidfile .run/edge.pid --log .run/edge.log
	$(WITH_ENV) $(WORKER) start --pidfile .run/worker.pid --log .run/worker.log
	@echo "edge: http://$(EDGE_ADDR)   metrics: http://$${METRICS_ADDR:-127.0.0.1:9100}/metrics   try: curl -s http://$(EDGE_ADDR)/public/ping   stop: make stop"

stop: ## stop the background edge, worker and services
	$(EDGE) stop --pidfile .run/edge.pid
	$(WORKER) stop --pidfile .run/worker.pid
	$(STACK) down

test: services ## test-rust, openapi-test, infra-test, fuzz-short, mutfuzz-short, fault-short, e2e and images-test (all run; fails if any fails); what CI runs
	$(MAKE) --no-print-directory -k test-rust openapi-test infra-test fuzz-short mutfuzz-short fault-short e2e images-test

test-rust: services ## cargo nextest (or cargo test) of the workspace against the local services
	$(WITH_ENV) \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast --build-jobs $(JOBS); \
	else \
		echo "cargo-nextest not found; using cargo test"; \
		$(CARGO) test --workspace --no-fail-fast -j$(JOBS); \
	fi

test-cluster: deps ## the Redis client against real Redis Clusters (each test starts its own: reshard, ASK/MOVED, failover, the edge's holds through a failover)
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --no-fail-fast --build-jobs $(JOBS) -p codec -p edge -E 'test(cluster) | binary(cluster)'; \
	else \
		$(CARGO) test -j$(JOBS) -p codec cluster && $(CARGO) test -j$(JOBS) -p edge --test cluster; \
	fi

openapi-test: deps build-edge ## schemathesis against openapi/ticketing.yaml, edge on OPENAPI_ADDR; IDENTITY=none, then jwt
	infra/local/openapi-test.sh
	OPENAPI_IDENTITY=jwt infra/local/openapi-test.sh

fmt: ## cargo fmt --all
	$(CARGO) fmt --all

lint: lint-ci ## rustfmt check + clippy -D warnings, and lint-ci
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -j$(JOBS) -- -D warnings

.PHONY: lint-ci
lint-ci: deps ## .github/workflows checked by actionlint and zizmor (both from .run/venv)
	.run/venv/bin/python -m pip install -q --disable-pip-version-check -r infra/local/requirements-lint.txt
	PATH="$(CURDIR)/.run/venv/bin:$$PATH" actionlint .github/workflows/*.yml
	.run/venv/bin/zizmor --offline .github/workflows

lint-sh: ## shellcheck the shell scripts (infra, infra/local, infra/docker, .ci/run, worker/bench.sh, perf/mutfuzz.sh, perf/faults.sh, perf/soak.sh)
	@command -v shellcheck >/dev/null 2>&1 || infra/install-shellcheck.sh
	shellcheck -x infra/local/*.sh infra/*.sh infra/docker/*.sh .ci/run worker/bench.sh perf/mutfuzz.sh perf/faults.sh perf/soak.sh \
		perf/compression.sh tests/browser/run.sh

clean-data: ## stop the services and delete their data (.run/ except the venv)
	$(EDGE) stop --pidfile .run/edge.pid
	$(WORKER) stop --pidfile .run/worker.pid
	$(EDGE) stop --pidfile .run/edge-openapi.pid
	$(STACK) clean

bench: ## perf/bench.sh: loadgen max searches (summary, hold; each driver; nginx in the same run), stepup, mixed + journey with audits -> perf/results/
	@if [ -f perf/bench.sh ]; then \
		bash perf/bench.sh; \
	else \
		echo "perf/bench.sh does not exist yet"; \
	fi

capacity: services ## perf/capacity.sh: each route alone and the seed's mix at LOADS, CPU per request and process -> perf/results/capacity.md (model, check, sizing)
	bash perf/capacity.sh

bench-worker: services ## worker/bench.sh: orders/s into PostgreSQL from a pre-filled stream, per WORKER_BATCH
	worker/bench.sh

FUZZ_SECONDS ?= 300
FUZZ_SHORT_SECONDS ?= 5
.PHONY: fuzz fuzz-short
fuzz: services ## every fuzz target (edge/fuzz: HTTP heads, JSON bodies, RESP replies, room tokens, commit messages, identity tokens and key files) FUZZ_SECONDS each, then mutfuzz
	edge/fuzz/run.sh $(FUZZ_SECONDS)
	perf/mutfuzz.sh $(MUTFUZZ_SECONDS)

fuzz-short: ## the fuzz targets FUZZ_SHORT_SECONDS each (in make test: a new crash fails CI)
	edge/fuzz/run.sh $(FUZZ_SHORT_SECONDS)

MUTFUZZ_SECONDS ?= 300
MUTFUZZ_SHORT_SECONDS ?= 10
.PHONY: mutfuzz mutfuzz-short
mutfuzz: services ## perf/mutfuzz.sh: mutated requests of every operation at a running edge + worker for MUTFUZZ_SECONDS, then the audit
	perf/mutfuzz.sh $(MUTFUZZ_SECONDS)

mutfuzz-short: services ## the same for MUTFUZZ_SHORT_SECONDS (a 5xx, a crash or a commit never final fails)
	perf/mutfuzz.sh $(MUTFUZZ_SHORT_SECONDS)

.PHONY: fault fault-short soak
fault: services ## perf/faults.sh MODE=long: each fault (kill -9 worker/edge/Redis, PostgreSQL restart, Redis SIGSTOP, fault proxy) under loadgen mixed + audit -> perf/results/faults.md
	MODE=long bash perf/faults.sh

fault-short: services ## perf/faults.sh MODE=short: the same faults, seconds each; fails if one does (for make test)
	MODE=short bash perf/faults.sh

soak: services ## perf/soak.sh: loadgen soak 30 min at 800/s, edge and worker RSS and open files judged flat -> perf/results/soak/
	bash perf/soak.sh

.PHONY: profile callgrind
profile: ## perf/profile.sh: flamegraph of the edge under loadgen (perf record -e cpu-clock, inferno) -> perf/results/flamegraph-*.svg
	bash perf/profile.sh

callgrind: ## perf/callgrind.sh: edge instructions per request for a fixed batch (valgrind) -> perf/results/callgrind-*.md
	bash perf/callgrind.sh

.PHONY: e2e browser-test
E2E_OUT ?= .run/e2e
e2e: services build-edge ## tests/browser: the buyer page in headless Chromium (apt chromium + npm ci playwright-core, installed if missing) against an edge + worker, from another origin (CORS) -> .run/e2e/report.html
	OUT_DIR='$(E2E_OUT)' tests/browser/run.sh

browser-test: e2e ## the same as e2e

# ----------------------------------------------------------------------------- images
# Tagged IMAGE_TAG from the environment, `local` when unset (not a make variable:
# 01-ecr's default is the commit).
.PHONY: images images-test

images: ## infra/docker/build.sh: edge and worker images with buildah (apt, installed if missing), FROM scratch + glibc + busybox; prints sizes
	infra/docker/build.sh

images-test: services images ## infra/docker/test.sh: the images under podman (default / no-io_uring / unconfined seccomp), worker migrate + run, a journey
	$(WITH_ENV) infra/docker/test.sh

# ----------------------------------------------------------------------------- AWS (infra/)
# The seed's Quick Start: one numbered step each, re-runnable, in the region of
# AWS_REGION (or AWS_DEFAULT_REGION). infra/README.md says what each makes and costs.
INFRA_STEPS := 00-network 01-ecr 02-cluster 03-dataplane 04-taskdefs 05-services 06-autoscaling 07-cloudfront 08-db-init 09-observability
.PHONY: $(INFRA_STEPS) all teardown infra-test

00-network: ## AWS: VPC over two AZs, subnets, IGW, NAT, gateway endpoints, security groups
	infra/00_network_bootstrap.sh
01-ecr: ## AWS: ECR repositories; images built by infra/docker/build.sh and pushed with buildah
	infra/01_ecr_build_push.sh
02-cluster: ## AWS: ECS cluster, least-privilege task and execution roles, log groups
	infra/02_cluster_and_roles.sh
03-dataplane: ## AWS: SQS FIFO + DLQ, DynamoDB seat locks, secrets, ElastiCache Redis, Aurora Serverless v2
	infra/03_data_plane.sh
04-taskdefs: ## AWS: edge and worker task definitions
	infra/04_task_defs.sh
05-services: ## AWS: ALB, target group, listener, edge and worker services
	infra/05_alb_services.sh
06-autoscaling: ## AWS: edge CPU / requests / p95 scaling, worker queue scaling, alarms
	infra/06_autoscaling.sh
07-cloudfront: ## AWS: the one CloudFront distribution over the regions' ALBs, /public/* cached by the edge's Cache-Control
	infra/07_cloudfront.sh
08-db-init: ## AWS: worker migrate (and DB_SEED) as one-off Fargate tasks
	infra/08_db_init.sh
09-observability: ## AWS: CloudWatch dashboard (EMF + ALB/ECS/SQS/ElastiCache/Aurora) and operations alarms
	infra/09_observability.sh

all: ## AWS: 00-network .. 09-observability in order (AWS_REGION=ap-northeast-1 make all, then ap-northeast-2)
	for step in $(INFRA_STEPS); do $(MAKE) --no-print-directory "$$step"; done

teardown: ## AWS: delete everything 00..09 made in AWS_REGION (asks first, or CONFIRM=yes); the standby region first
	infra/99_teardown.sh

infra-test: ## infra/ against moto's server on loopback: 00..09 in both regions twice, settings checked, teardowns
	infra/infra-test.sh
