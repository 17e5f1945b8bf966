"""The database: migrations create exactly the declared schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway import store


@pytest.fixture
def engine(database_url: str):
    engine = store.make_engine(database_url)
    yield engine
    engine.dispose()


def test_upgrade_creates_the_schema_and_is_idempotent(engine: sa.Engine) -> None:
    store.upgrade(engine)
    store.upgrade(engine)
    assert set(store.table_names(engine)) >= {
        "conversations",
        "messages",
        "outbox",
        "events",
        "sync_state",
        "digests",
        "alembic_version",
    }
    assert store.current_revision(engine) == store.head_revision()


def test_migrations_match_the_declared_tables(engine: sa.Engine) -> None:
    store.upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, store.metadata) == []


def test_timestamps_come_back_aware_and_in_utc(engine: sa.Engine) -> None:
    store.upgrade(engine)
    received = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as conn:
        conn.execute(
            store.messages.insert().values(
                dedup_key="a@b",
                source="cli",
                received_at=received,
                sha256="0" * 64,
                size=1,
                raw=b"x",
            )
        )
    with engine.connect() as conn:
        row = conn.execute(sa.select(store.messages.c.received_at, store.messages.c.raw)).one()
    assert row.received_at == received
    assert row.received_at.tzinfo == UTC
    assert row.raw == b"x"


def test_dedup_key_is_unique(engine: sa.Engine) -> None:
    store.upgrade(engine)
    values = {
        "dedup_key": "same@id",
        "source": "smtp",
        "received_at": datetime.now(UTC),
        "sha256": "0" * 64,
        "size": 1,
    }
    with engine.begin() as conn:
        conn.execute(store.messages.insert().values(**values))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(store.messages.insert().values(**values))


def test_naive_datetimes_are_refused(engine: sa.Engine) -> None:
    store.upgrade(engine)
    with pytest.raises(sa.exc.StatementError), engine.begin() as conn:
        conn.execute(store.events.insert().values(at=datetime(2026, 1, 1), kind="x"))


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'sub' / 'dir' / 'g.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_a_value_the_index_cannot_take_is_no_passing_failure(engine: sa.Engine) -> None:
    """PostgreSQL reports "index row size exceeds maximum" as an operational error, as it
    does a dropped connection; retrying cannot help, so it is the row's fault."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's limit")
    store.upgrade(engine)
    with pytest.raises(sa.exc.OperationalError) as info, engine.begin() as conn:
        conn.execute(store.messages.insert().values(
            dedup_key="k", message_id="".join(chr(0x4E00 + i * 7919 % 20000) for i in range(990)), source="smtp", received_at=datetime.now(UTC),
            sha256="0" * 64, size=1))  # fmt: skip
    assert not store.is_temporary(info.value)


def test_sign_ins_refused_before_the_upgrade_are_not_alerted_again(database_url: str) -> None:
    """Before revision 0009 the token store queued its alert itself; afterwards signin.py
    alerts what comes after the latest "oauth-alerted" event, which the migration writes
    for what was already there — and a sign-in refused later is still alerted."""
    engine = store.make_engine(database_url)
    try:
        store.upgrade(engine, "0008")
        with store.begin(engine) as conn:
            store.add_event(conn, datetime.now(UTC), "oauth-login-required", {"account": "old@shop.example"})
        store.upgrade(engine)
        with store.begin(engine) as conn:
            assert store.unalerted_sign_ins(conn) == []
            store.add_event(conn, datetime.now(UTC), "oauth-login-required", {"account": "new@shop.example"})
        with engine.connect() as conn:
            assert [d["account"] for _, d in store.unalerted_sign_ins(conn)] == ["new@shop.example"]
    finally:
        engine.dispose()
