# user-service: one entry point for setup, code generation, checks, tests and the demo.
# Every target works on a fresh clone: `make demo` and `make test` set up what they need.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON      ?= python3.11
CACHE_DIR   ?= $(HOME)/.cache/user-service
UV_VERSION  := 0.13.9
UV          := $(CACHE_DIR)/uv-$(UV_VERSION)/bin/uv
VENV        := .venv
BIN         := $(VENV)/bin
TOOLS_DIR   ?= $(CACHE_DIR)/tools/bin
GEN_DIR     := service/user_service/gen
PROTO_FILES := $(shell find proto -name '*.proto')
export UV_PYTHON_DOWNLOADS := never
export PATH := $(TOOLS_DIR):$(PATH)
export TOOLS_DIR

.PHONY: help setup proto tools credentials certs run up down status demo dashboards faults fault fault-off incident gameday load load-ui load-credentials test bench bench-fanout bench-workers bench-drivers bench-load bench-memory lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(CACHE_DIR)/uv-$(UV_VERSION)
	$(CACHE_DIR)/uv-$(UV_VERSION)/bin/pip install --quiet uv==$(UV_VERSION)

$(BIN)/python: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

setup: $(BIN)/python $(GEN_DIR)/.stamp ## virtualenv with the locked dependencies, generated code

# Message and stub code from grpcio-tools, typed stubs (.pyi) from mypy-protobuf.
# grpcio-tools writes absolute imports (`from user.v1 import ...`); they are rewritten to
# the package the code lives in, so the generated modules import without sys.path tricks.
$(GEN_DIR)/.stamp: $(PROTO_FILES) $(BIN)/python
	rm -rf $(GEN_DIR) && mkdir -p $(GEN_DIR)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=$(GEN_DIR) --grpc_python_out=$(GEN_DIR) \
	    --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --mypy_out=$(GEN_DIR) \
	    --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc --mypy_grpc_out=$(GEN_DIR) \
	    $(PROTO_FILES)
	find $(GEN_DIR) -name '*.py*' -exec sed -i -E 's/^from (user|auth)\.v1 import/from user_service.gen.\1.v1 import/' {} +
	find $(GEN_DIR) -type d -exec touch {}/__init__.py \;
	@touch $@

proto: $(BIN)/python ## regenerate Python code from proto/ (also run by setup)
	rm -f $(GEN_DIR)/.stamp && $(MAKE) --no-print-directory $(GEN_DIR)/.stamp

tools: ## build the pinned Go programs (tools; Collector, Jaeger, Prometheus) into the cache
	scripts/install-tools.sh

DEV_DIR := .dev

credentials: setup ## generate development credentials into .dev/credentials (never committed)
	$(BIN)/python -m devkit.dev_credentials $(DEV_DIR)/credentials

certs: setup ## generate a development CA, server and client certificates into .dev/certs
	$(BIN)/python -m devkit.dev_certs $(DEV_DIR)/certs

run: setup ## run the server in the foreground with development credentials (see README)
	test -f $(DEV_DIR)/credentials/clients.json || $(MAKE) --no-print-directory credentials
	USER_SERVICE_JWT_SECRET_FILE=$(DEV_DIR)/credentials/jwt.secret \
	USER_SERVICE_AUTH_CLIENTS_FILE=$(DEV_DIR)/credentials/clients.json \
	$(BIN)/user-service serve

# The observability stack: Docker compose when a Docker engine answers, else the same components
# as native processes (built on first use; pid and log files in .stack/). STACK_ENGINE=native|docker
# chooses explicitly; STACK_REPLICAS=2 runs two service replicas natively (compose always runs two).
STACK := $(BIN)/python -m scripts.stack

up: setup ## start the stack (Collector, Jaeger, Prometheus, Grafana with Docker; the service) and wait until healthy
	$(STACK) up

down: setup ## stop the stack
	$(STACK) down

status: setup ## what runs where, with URLs and memory
	$(STACK) status

demo: setup ## make up, every RPC through the CLI, a load run, then what Locust, Prometheus and Jaeger saw
	$(BIN)/python -m scripts.demo

dashboards: setup ## regenerate grafana/dashboards (and grafana/PANELS.md) from scripts/dashboards.py
	$(BIN)/python -m scripts.dashboards

# Faults on purpose (flags/demo.flagd.json, read by every replica; picked up within a second).
faults: setup ## the fault flags and what is in effect
	$(BIN)/python -m scripts.faults list

fault: setup ## turn a fault on: make fault NAME=userServiceErrors VARIANT=getUserUnavailable10 [REPLICA=user-service-2]
	$(BIN)/python -m scripts.faults on $(NAME) $(VARIANT) $(if $(REPLICA),--replica $(REPLICA))

fault-off: setup ## turn a fault off (every fault without NAME)
	$(BIN)/python -m scripts.faults off $(NAME)

incident: setup ## a fault's story on the running stack, checked end to end: make incident NAME=errors (no NAME: every story)
	$(BIN)/python -m scripts.incident $(or $(NAME),all)

gameday: setup ## faults in an order SEED fixes, found by the alerts alone: make gameday SEED=7 [FAULTS=4]
	$(BIN)/python -m scripts.gameday $(if $(SEED),--seed $(SEED)) $(if $(FAULTS),--faults $(FAULTS))

# Load runs (Locust): any target; the standard LOCUST_* variables work too.
TARGET     ?= localhost:50051
USERS      ?= 20
SPAWN_RATE ?= 10
DURATION   ?= 30s
PROCESSES  ?= -1
REPORT_DIR ?= reports/load
# Traces start at the load generator; 1% of calls are sampled unless OTEL_* says otherwise.
LOAD_ENV := USER_SERVICE_TARGET=$(TARGET) \
	OTEL_TRACES_SAMPLER=$(or $(OTEL_TRACES_SAMPLER),parentbased_traceidratio) \
	OTEL_TRACES_SAMPLER_ARG=$(or $(OTEL_TRACES_SAMPLER_ARG),0.01)
LOCUST := $(BIN)/python -m loadtest -f loadtest/locustfile.py

load-credentials:
	@test -n "$${USER_SERVICE_CLIENT_SECRET:-}" || test -f $(DEV_DIR)/credentials/client-secrets.json \
	    || $(MAKE) --no-print-directory credentials

load: setup load-credentials ## headless load run against TARGET: CSV + HTML in REPORT_DIR, a per-RPC table, exit 1 past the gate
	$(LOAD_ENV) $(BIN)/python -m loadtest.run --users $(USERS) --spawn-rate $(SPAWN_RATE) \
	    --run-time $(DURATION) --processes $(PROCESSES) --report-dir $(REPORT_DIR) --html

load-ui: setup load-credentials ## the Locust web UI on http://127.0.0.1:8089 against TARGET
	$(LOAD_ENV) $(BIN)/python -m loadtest.seed
	$(LOAD_ENV) $(LOCUST) --web-host 127.0.0.1 --web-port 8089 --processes $(PROCESSES)

test: setup tools ## the whole test suite against real servers on loopback
	$(BIN)/pytest

bench: setup tools ## unary hot path: the service beside the grpc.aio/sync floors, bare and with telemetry (bench/results/unary.md); BASELINE=<git rev>: A/B against that revision
	$(BIN)/python -m bench.telemetry_overhead --write bench/results/unary.md $(if $(BASELINE),--baseline $(BASELINE))

bench-fanout: setup ## SubscribeUsers fan-out: 1,000 subscribers, 200 writes/s — delivery latency, cut-offs, server RSS
	$(BIN)/python -m bench.fanout

bench-workers: setup tools ## scale-out: 1 vs 2 workers on SQLite and PostgreSQL (GetUser, CreateUser), cores used
	$(BIN)/python -m bench.workers

bench-drivers: setup ## asyncpg vs psycopg 3 on this service's queries (why the PostgreSQL store uses asyncpg)
	$(BIN)/python -m bench.postgres_drivers

bench-load: setup tools ## load generator: requests per Locust core vs the documented pattern, streams held; Locust's latency beside ghz's and the server's
	$(BIN)/python -m bench.load_generator
	$(BIN)/python -m bench.load_fidelity

bench-memory: setup ## peak memory of every compose component under the demo's load, run natively (bench/results/memory.json; compose's limits rest on it)
	scripts/install-tools.sh stack && scripts/install-tools.sh bench
	$(BIN)/python -m bench.memory

lint: setup tools ## ruff, mypy, buf lint
	$(BIN)/ruff check service tests scripts bench loadtest devkit
	$(BIN)/ruff format --check service tests scripts bench loadtest devkit
	$(BIN)/mypy
	cd proto && buf lint

fmt: setup ## format the code
	$(BIN)/ruff format service tests scripts bench loadtest devkit
	$(BIN)/ruff check --fix service tests scripts bench loadtest devkit
	cd proto && buf format -w

clean: ## remove the virtualenv, generated code and local data
	rm -rf $(VENV) $(GEN_DIR) data $(DEV_DIR) .mypy_cache .ruff_cache .pytest_cache .hypothesis
