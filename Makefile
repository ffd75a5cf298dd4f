# Exchange Desk — `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON := $(shell $(PYTHON) -c "import sys; print(sys.executable)")
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
TEST_WORKERS ?= 2

.PHONY: help install clients run migrate seed-day compose-env backup restore lint typecheck test test-fast bench clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

install: $(UV) ## Install uv (into .tools/) and the locked dependencies (into .venv/)
	$(UV) sync --frozen --all-packages

CLIENTS_TS := clients/typescript

clients: $(CLIENTS_TS)/node_modules/.package-lock.json ## Install the TypeScript client example's locked npm packages (needs Node.js 20+ and npm)

$(CLIENTS_TS)/node_modules/.package-lock.json: $(CLIENTS_TS)/package.json $(CLIENTS_TS)/package-lock.json
	@command -v npm >/dev/null || { echo "Node.js 20+ and npm are needed: tests/test_generated_clients.py type-checks and runs the TypeScript client generated from order-api's OpenAPI document" >&2; exit 1; }
	cd $(CLIENTS_TS) && npm ci --no-audit --no-fund
	@touch $@

run: install ## Start the four services on the embedded default (SQLite) with demo data; Ctrl-C stops them
	$(VENV)/bin/python scripts/devstack.py run

migrate: install ## Apply every service's migrations (embedded SQLite, or the *_DATABASE_URL you export)
	$(VENV)/bin/python scripts/devstack.py migrate

seed-day: install ## A realistic day of orders (ORDERS=300 SEED=1 DAY=yyyy-mm-dd, default yesterday; FORCE=1 on a desk with orders) on the make-run desk or the *_DATABASE_URL you export
	$(VENV)/bin/python scripts/seed_day.py --orders $(or $(ORDERS),300) --seed $(or $(SEED),1) $(if $(DAY),--day $(DAY)) $(if $(FORCE),--force)

compose-env: install ## Write deploy/compose.env (keys from var/dev-credentials.json) and mint the compose passwords into ./.env
	$(VENV)/bin/python scripts/devstack.py compose-env

# where `make backup` / `make restore` find PostgreSQL: BACKUP_DATABASE_URL=postgresql://... (local pg_dump and
# pg_restore, a superuser's URL) or COMPOSE=1 (inside the compose stack's postgres container); neither: only
# the embedded SQLite files in var/. deploy/README.md, "Backup and restore".
BACKUP_POSTGRES = $(if $(BACKUP_DATABASE_URL),--database-url "$(BACKUP_DATABASE_URL)")$(if $(COMPOSE), --compose)

backup: install ## Back up var/'s SQLite files and, with BACKUP_DATABASE_URL=... or COMPOSE=1, each service's PostgreSQL schema, to backups/<UTC stamp>/
	$(VENV)/bin/python scripts/backup.py backup $(BACKUP_POSTGRES)

restore: install ## Restore FROM=backups/<stamp> (same BACKUP_DATABASE_URL / COMPOSE) with the services stopped; then migrate and start them
	@test -n "$(FROM)" || { echo "usage: make restore FROM=backups/<stamp> [BACKUP_DATABASE_URL=... | COMPOSE=1]" >&2; exit 2; }
	$(VENV)/bin/python scripts/backup.py restore --from "$(FROM)" $(BACKUP_POSTGRES)

lint: install ## ruff (lint and format check) and the convention linters (scripts/linters/)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@status=0; for linter in scripts/linters/[!_]*.py; do $(VENV)/bin/python $$linter || status=1; done; exit $$status

typecheck: install ## mypy --strict over every package and its tests
	$(VENV)/bin/mypy libs/*/src services/*/src testing/*/src scripts bench tests
	@# each tests/ folder on its own: their module names (conftest, test_migrations) repeat across services
	@for dir in libs/*/tests services/*/tests; do \
		echo "mypy $$dir"; $(VENV)/bin/mypy --cache-dir .mypy_cache/$$(echo $$dir | tr / _) $$dir || exit 1; \
	done

test: install clients ## Everything CI runs: backing services, lint, types, then all tests (PostgreSQL, Redis, processes)
	scripts/ensure-backing-services.sh
	scripts/ensure-promtool.sh
	$(MAKE) --no-print-directory lint typecheck
	@# every test but the fault suite in $(TEST_WORKERS) processes (a test file stays on one), then the fault
	@# suite alone: it measures answers under load, which tests beside it would distort
	@status=0; \
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --ignore=tests/faults || status=1; \
	$(VENV)/bin/pytest tests/faults || status=1; \
	exit $$status

bench: install ## Benchmarks that print their figures (service-to-service HTTP transports, order intake, the FIFO pick under churn)
	scripts/ensure-backing-services.sh
	$(VENV)/bin/python bench/transports.py
	$(VENV)/bin/python bench/orders.py
	$(VENV)/bin/python bench/pick_churn.py

clean: ## Remove the virtualenvs, caches and var/ (dev credentials and embedded databases)
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache $(CLIENTS_TS)/node_modules
