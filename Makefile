# streamlearn — everything a fresh machine needs is installed by these targets.
#   make demo    the main job        make test   the whole suite (CI runs this)
#   make up / down / status          the local Kafka + Redis stack (no Docker)
#   make bench                       benchmarks against the real stack

SHELL       := /bin/bash
PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed
SL          := $(BIN)/streamlearn
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
BENCH       ?= kafka
SCENARIO    ?= sudden
SECONDS     ?= 300

.PHONY: help install system-deps up down status topics demo test test-unit test-integration \
        lint bench clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

# Debian packages the stack needs: redis-server, a JDK for Kafka, Maven to fetch Kafka's jars,
# prometheus for promtool and the Prometheus server, a compose client to check docker-compose.yml.
system-deps: ## install missing system packages (apt-get)
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v java >/dev/null         || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null          || missing="$$missing maven"; \
	command -v promtool >/dev/null     || missing="$$missing prometheus"; \
	docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null \
	                                   || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: system-deps $(STAMP) ## create .venv and install streamlearn with its dev tools

up: install ## start Kafka (KRaft) + redis-server and create the topics (idempotent)
	$(SL) stack up
	$(SL) topics create

down: ## stop exactly the processes 'make up' started
	@if [ -x $(SL) ]; then $(SL) stack down; else echo "nothing to stop (no .venv)"; fi

status: ## what runs
	@if [ -x $(SL) ]; then $(SL) stack status; else echo "not installed (no .venv)"; fi

demo: install ## the main job: the whole loop on a scenario (SCENARIO=sudden, SECONDS=300), report in reports/demo
	@was_up=0; $(SL) stack status >/dev/null 2>&1 && was_up=1; \
	$(SL) stack up && $(SL) demo run --scenario $(SCENARIO) --seconds $(SECONDS); rc=$$?; \
	if [ $$was_up = 0 ]; then $(SL) stack down; fi; exit $$rc

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install lint ## the whole suite: unit, then integration on the real stack
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-integration: install
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

bench: install ## run benchmarks (BENCH=kafka by default; BENCH=all for every one)
	$(BIN)/python -m bench $(BENCH)

clean: down ## stop the stack and delete its state (keeps the jar cache)
	rm -rf .streamlearn/kafka .streamlearn/redis .streamlearn/logs .streamlearn/run
