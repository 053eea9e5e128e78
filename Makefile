# ChargeScape — the two commands: `make run` and `make test`. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# axe-core for tests/browser (installed into .local/npm with the venv when npm is on PATH).
AXE_CORE_VERSION := 4.10.3
# Ruff/pytest/celery etc. are always run from the venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Where the embedded servers and dev files live (git-ignored).
export XDG_RUNTIME_DIR ?= /tmp
# Pytest workers; "auto" = one per core.
TEST_WORKERS ?= auto

# Python >= 3.12: newest on PATH first, then pyenv's installed versions.
# Python >= 3.12: the newest that runs, on PATH first (a pyenv shim may exist yet not run), then
# among pyenv's installed versions.
PYTHON ?= $(shell \
  ok() { "$$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }; \
  for v in 3.14 3.13 3.12; do \
    p=$$(command -v python$$v 2>/dev/null); \
    if [ -n "$$p" ] && ok "$$p"; then echo "$$p"; exit 0; fi; \
  done; \
  if command -v pyenv >/dev/null 2>&1; then \
    for v in 3.14 3.13 3.12; do \
      for p in $$(ls -d "$$(pyenv root)"/versions/$$v*/bin/python$$v 2>/dev/null | sort -rV); do \
        if ok "$$p"; then echo "$$p"; exit 0; fi; \
      done; \
    done; \
  fi)

.PHONY: help run test lint bench audit migrate shell clean python-check

help:
	@echo "make run    - start the whole stack (embedded PostgreSQL/Valkey unless DATABASE_URL/REDIS_URL)"
	@echo "make test   - lint, then the full test suite"
	@echo "make lint   - ruff, import-linter, bandit, migrations check"
	@echo "make bench  - benchmarks (bench/); BENCH_ARGS=--quick for a short run"
	@echo "make audit  - pip-audit over requirements.lock (needs PyPI/OSV vulnerability data)"

python-check:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "ChargeScape needs Python 3.12 or newer (python3.12, python3.13 or python3.14)."; \
	  echo "Install one (e.g. 'pyenv install 3.12' or your OS package python3.12) and re-run."; \
	  exit 1; fi

$(STAMP): requirements.lock pyproject.toml | python-check
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade "pip>=25"
	$(VPY) -m pip install --quiet --require-hashes -r requirements.lock
	@# axe-core for the browser tests' accessibility checks (tests/browser), pinned, from npm.
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --no-save --no-audit --no-fund --silent --prefix .local/npm axe-core@$(AXE_CORE_VERSION); \
	else echo "npm not found: tests/browser need axe-core (apt-get install -y nodejs npm, then make again)"; fi
	@touch $(STAMP)

run: $(STAMP)
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(VPY) -m chargescape.embedded -- $(VPY) manage.py runstack

lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(VPY) -m bandit -q -r accounts chargescape programs vehicles -x '*/migrations/*' -ll
	DJANGO_DEBUG=1 $(VPY) -m chargescape.embedded -- $(VPY) manage.py makemigrations --check --dry-run

# Development settings (pytest-django still runs every test with DEBUG off); `-p no:cacheprovider`
# keeps clean clones clean. Exit code 5 ("no tests ran") fails like any other failure.
test: lint
	DJANGO_DEBUG=1 $(VPY) -m chargescape.embedded -- \
	  $(VPY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Every benchmark runs (PostgreSQL/Redis as for tests); the exit code says whether all met target.
bench: $(STAMP)
	@status=0; for script in bench/*.py; do echo "== $$script"; \
	  DJANGO_DEBUG=1 $(VPY) -m chargescape.embedded -- $(VPY) $$script $(BENCH_ARGS) || status=1; \
	done; exit $$status

# Known-vulnerable dependencies (docs/security.md): pip-audit in a venv of its own, so the app's
# lock stays free of it; --strict fails on any package it could not check, too.
PIP_AUDIT_VERSION := 2.10.1
audit: | python-check
	@test -x .local/audit/bin/pip-audit || { $(PYTHON) -m venv .local/audit && \
	  .local/audit/bin/pip install --quiet "pip-audit==$(PIP_AUDIT_VERSION)"; }
	.local/audit/bin/pip-audit --strict --disable-pip --require-hashes -r requirements.lock

migrate: $(STAMP)
	DJANGO_DEBUG=1 $(VPY) -m chargescape.embedded -- $(VPY) manage.py migrate

shell: $(STAMP)
	DJANGO_DEBUG=1 $(VPY) -m chargescape.embedded -- $(VPY) manage.py shell

clean:
	rm -rf $(VENV) .local/staticfiles .pytest_cache
