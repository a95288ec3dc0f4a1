# mail-proxy developer tasks. `make` alone lists them.
.DEFAULT_GOAL := help
# Everything runs in a project virtual environment, so the README's commands work on any
# supported Python, system Pythons that refuse `pip install` (PEP 668) included.
BASE_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
PACKAGES := core/mail_proxy api/mail_proxy_api sender/mail_proxy_sender operator/mail_proxy_operator cli/mail_proxy_cli

.PHONY: help install run test lint typecheck imports bench check
.PHONY: chart-crds chart-check

help: ## Show this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# `python3 -m venv` alone fails on Debian without python3-venv (and leaves a pip-less folder):
# the script falls back to apt (as root) or to installing pip from a wheel, else says what to do.
# It runs every time (a check when the venv is fine), so a half-made .venv is repaired.
install: ## Install mail-proxy with the embedded Postgres and the dev tools (editable, in .venv)
	$(BASE_PYTHON) scripts/bootstrap_venv.py $(VENV)
	$(PIP) install --quiet -e '.[dev]' -e clients/python -e clients/django-anymail
	@touch $(STAMP)

# `make run` installs only when the venv is older than what it is built from (the editable
# install picks up code changes by itself); `make install` always installs.
STAMP := $(VENV)/.installed
$(STAMP): pyproject.toml clients/python/pyproject.toml clients/django-anymail/pyproject.toml
	$(MAKE) install

run: $(STAMP) ## Install (when pyproject.toml changed) and run the service on an embedded Postgres
	$(VENV)/bin/mail-proxy serve

test: install ## Install and run every test (lint, types and import contracts included)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PYTHON) -m pytest $(PYTEST_ARGS)

lint: ## ruff check + format check
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck: ## mypy --strict on the packages
	$(PYTHON) -m mypy

imports: ## import-linter contracts (core imports no component; components are independent)
	$(VENV)/bin/lint-imports

bench: install ## Run the benchmarks (they print figures; nothing is asserted)
	$(PYTHON) bench/enqueue.py
	$(PYTHON) bench/delivery.py
	$(PYTHON) bench/delivery.py --sink-delay 0.2 --max-connections 100 --messages 3000 --skip-limits
	$(PYTHON) bench/backlog.py --messages 100000
	$(PYTHON) bench/large_file.py
	$(PYTHON) bench/webhook_fanout.py

check: lint typecheck imports test chart-check ## Everything CI runs

chart-crds: ## Copy crds/*.yaml into the Helm chart (templated, kept on uninstall)
	$(PYTHON) scripts/chart_crds.py

chart-check: ## Lint, render, kubeconform and really install the Helm chart on a local API server
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYTHON=$(CURDIR)/$(PYTHON) scripts/chart-check.sh
