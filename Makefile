# The shared vocabulary of README, CI and hooks.  `make demo` and `make test` are the two commands.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --locked --no-sync
PYTEST_ARGS ?=

.PHONY: demo test install uv browsers bench-tools services services-down lint format dbt-parse clean

uv:  ## install uv (from PyPI) when it is missing
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet 'uv>=0.9'

browsers:  ## Debian's Chromium (+ CJK and emoji fonts) for the dashboard browser test, when missing
	@command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "noto sans cjk" || \
		apt-get install -y -qq chromium fonts-noto-cjk fonts-noto-color-emoji || \
		(apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk fonts-noto-color-emoji)

bench-tools:  ## Debian's wrk, the HTTP load generator of benchmarks/api_latency.py (and its test), when missing
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -qq wrk || (apt-get update -qq && apt-get install -y -qq wrk)

install: uv  ## the virtual environment with the locked dependencies
	$(UV) sync --locked
	$(RUN) python -c "from orchestration.lib.environment import ensure_manifest; ensure_manifest(force=True)"

demo: install  ## simulate, run every asset, start the four UIs (embedded profile by default)
	$(RUN) hems demo

services: install  ## bring up the stack services (installs InfluxDB 1.6 from Debian when missing)
	$(RUN) hems services up

services-down:
	$(RUN) hems services down

test: services browsers bench-tools  ## the whole suite, both profiles, against the real services
	$(RUN) pytest $(PYTEST_ARGS)

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format:
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

dbt-parse:
	$(RUN) python -c "from orchestration.lib.environment import ensure_manifest; ensure_manifest(force=True)"

clean:
	rm -rf var transforms/dbt/target transforms/dbt/logs
