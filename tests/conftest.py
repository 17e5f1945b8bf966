"""Shared fixtures: the example configuration, a fixed clock, databases, the CLI runner.

Databases are real: a SQLite file per test, and PostgreSQL as well when
GATEWAY_TEST_DATABASE_URL is set (CI sets it). Each PostgreSQL test gets its own schema,
dropped afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gateway.cli import cli
from gateway.config import Config, load

# Real servers: `dovecot` (IMAP), `oauth_server` (OAuth 2.0), `oauth_smtp` (SMTP + XOAUTH2).
pytest_plugins = ("tests.imapserver", "tests.oauthserver", "tests.smtpoauth")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXAMPLE = ROOT / "config" / "gateway.example.toml"
FIXED_NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday morning in Berlin


@pytest.fixture(scope="session")
def example_config() -> Config:
    return load(EXAMPLE)


def _database_urls() -> list[Any]:
    urls: list[Any] = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get("GATEWAY_TEST_DATABASE_URL"):
        urls.append(pytest.param("postgresql", id="postgresql"))
    return urls


@pytest.fixture(params=_database_urls())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: SQLite in tmp_path, or a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    import sqlalchemy as sa

    base = os.environ["GATEWAY_TEST_DATABASE_URL"]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def sink() -> Iterator[Any]:
    """An aiosmtpd server on a free port that records every message it is given."""
    from tests.mailtools import Sink

    server = Sink()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke the CLI in-process with a fixed clock; returns click's Result."""

    def invoke(
        *args: str,
        input: str | None = None,
        now: datetime = FIXED_NOW,
        env: dict[str, str] | None = None,
    ) -> Result:
        runner = CliRunner()
        return runner.invoke(
            cli,
            list(args),
            input=input,
            obj={"clock": lambda: now},
            env=env,
            catch_exceptions=False,
        )

    return invoke


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a config file made from the example with text replaced or appended."""

    def write(text: str, name: str = "gateway.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def example_text() -> str:
    return EXAMPLE.read_text(encoding="utf-8")
