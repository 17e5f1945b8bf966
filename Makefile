# Two commands from a fresh clone:
#   make run    install into .venv what running needs and run the gateway on the example
#               configuration (SQLite in var/, SMTP listener on 127.0.0.1:2525,
#               acknowledgments written to the maildir var/outbox/new/)
#   make test   install everything the tests need (the test tools into .venv, Debian
#               packages such as Dovecot via scripts/install-system-deps), then lint,
#               type-check and test
# GATEWAY_TEST_DATABASE_URL=postgresql+psycopg://... make test  also runs the suite on PostgreSQL.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?= config/gateway.example.toml
# setuptools prints a notice ("Editable installation ... be careful with folders named like
# the package") for every editable install of a project that maps a directory into its
# package (templates/ installs as gateway.templates); it is no problem of this project's.
PIP     = PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip

.PHONY: run test install install-test lint system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# What running needs (the package and its dependencies) ...
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	touch $@

# ... and, for `make test` only, the test tools on top.
$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/sla-gateway --config $(CONFIG) check
	$(BIN)/sla-gateway --config $(CONFIG) run

system-deps:
	scripts/install-system-deps

lint: install-test
	$(BIN)/ruff check gateway tests bench
	$(BIN)/mypy

test: lint system-deps
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/calendar_add.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
