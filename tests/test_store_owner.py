"""The store owns every SQL statement: nothing outside gateway/store/ (and the migrations)
imports SQLAlchemy, and `store.enqueue` is how outgoing mail is queued."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway import store
from gateway.config import Config
from gateway.render import Alert, Renderer, alert_message

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"
OWNERS = ("store", "migrations")  # the packages that may speak SQL

# Modules still holding SQL of their own: none are left, and none may be added.
KNOWN: set[str] = set()

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def _imports_sqlalchemy(path: Path) -> list[int]:
    """The lines where this file imports SQLAlchemy (anywhere: top, function, TYPE_CHECKING)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "sqlalchemy" or name.startswith("sqlalchemy.") for name in names):
            found.append(node.lineno)
    return sorted(found)


def test_only_the_store_and_the_migrations_import_sqlalchemy() -> None:
    offenders = {}
    for path in sorted(GATEWAY.rglob("*.py")):
        relative = path.relative_to(GATEWAY)
        if relative.parts[0] in OWNERS or str(relative) in KNOWN:
            continue
        lines = _imports_sqlalchemy(path)
        if lines:
            offenders[str(relative)] = lines
    assert offenders == {}, f"SQLAlchemy imported outside gateway/store/: {offenders}"


def test_the_check_sees_an_import_anywhere_in_a_file(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text(
        "import json\n\ndef f():\n    from sqlalchemy import select\n    return select\n"
        "import sqlalchemy.engine as e\n",
        encoding="utf-8",
    )
    assert _imports_sqlalchemy(source) == [4, 6]


@pytest.fixture
def engine(database_url: str):
    engine = store.make_engine(database_url)
    store.upgrade(engine)
    yield engine
    engine.dispose()


def test_enqueue_writes_one_pending_row_due_now(engine, example_config: Config) -> None:
    message = alert_message(Renderer(example_config), "Owner@Example.COM", Alert("test"), now=NOW)
    with store.begin(engine) as conn:
        row_id = store.enqueue(conn, "alert", message, "Owner@Example.COM", NOW)
        quiet_id = store.enqueue(conn, "ack", message, "owner@example.com", NOW, null_sender=True)
    with store.reading(engine) as conn:
        row = store.outbox_row(conn, row_id)
        quiet = store.outbox_row(conn, quiet_id)
        due = store.rows_due(conn, NOW)
    assert row.kind == "alert" and row.status == "pending" and row.attempts == 0
    assert row.recipient == "owner@example.com"
    assert row.sender == example_config.inboxes[0].address
    assert f"<{row.message_id}>" == message["Message-ID"]
    assert row.next_attempt_at == NOW and row.created_at == NOW
    assert b"can send mail" in row.raw and b"\r\n" in row.raw  # as it goes on the wire
    assert quiet.sender == ""  # an empty envelope sender: nothing bounces into the inbox
    assert [r.id for r in due] == [row_id, quiet_id]


def test_retry_puts_failed_rows_and_set_aside_messages_back(engine, example_config: Config) -> None:
    message = alert_message(Renderer(example_config), "owner@example.com", Alert("test"), now=NOW)
    with store.begin(engine) as conn:
        row_id = store.enqueue(conn, "alert", message, "owner@example.com", NOW)
        store.record_retry(conn, row_id, "failed", 3, "550 no such user", NOW)
    with store.reading(engine) as conn:
        assert store.outbox_counts(conn) == {"failed": 1}
    later = NOW.replace(hour=11)
    with store.begin(engine) as conn:
        assert store.requeue_failed(conn, later) == 1
        assert store.release_set_aside(conn) == []
    with store.reading(engine) as conn:
        row = store.outbox_row(conn, row_id)
    assert (row.status, row.attempts, row.last_error, row.next_attempt_at) == ("pending", 0, None, later)
