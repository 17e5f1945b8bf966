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

.PHONY: run test install install-test lint system-deps bench clean catalogs

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

# Message catalogs: extract every marked sentence (babel.cfg) into messages.pot, bring each
# language's .po up to date with it (new sentences appear untranslated, removed ones are
# dropped), then compile each one as a check (the gateway compiles .po files when it loads
# them, so no .mo is kept). Translate what `--statistics` reports untranslated.
LOCALE    = gateway/locale
LANGUAGES = en de fr es nl
catalogs: install
	$(BIN)/pybabel extract -F babel.cfg -o $(LOCALE)/messages.pot --no-location --sort-output \
		--project sla-gateway --version 0.1.0 --copyright-holder "sla-gateway contributors" \
		--msgid-bugs-address "" -c TRANSLATORS: --no-wrap .
	for lang in $(LANGUAGES); do \
		$(BIN)/pybabel update -i $(LOCALE)/messages.pot -d $(LOCALE) -l $$lang --no-wrap \
			--init-missing --no-fuzzy-matching --ignore-obsolete --ignore-pot-creation-date; \
		$(BIN)/pybabel compile -i $(LOCALE)/$$lang/LC_MESSAGES/messages.po -o /dev/null \
			-l $$lang --statistics; \
	done

bench: install
	$(BIN)/python bench/calendar_add.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
