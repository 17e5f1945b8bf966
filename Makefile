# Two commands from a fresh clone:
#   make run    install into .venv and run the gateway on the example configuration
#               (SQLite in var/, SMTP listener on 127.0.0.1:2525, acknowledgments written
#               to the maildir var/outbox/new/)
#   make test   install everything the tests need (Python packages into .venv, Debian
#               packages such as Dovecot via scripts/install-system-deps), then lint,
#               type-check and test
# GATEWAY_TEST_DATABASE_URL=postgresql+psycopg://... make test  also runs the suite on PostgreSQL.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?= config/gateway.example.toml

.PHONY: run test install lint system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/sla-gateway --config $(CONFIG) check
	$(BIN)/sla-gateway --config $(CONFIG) run

system-deps:
	scripts/install-system-deps

lint: install
	$(BIN)/ruff check gateway tests bench
	$(BIN)/mypy

test: lint system-deps
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/calendar_add.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
