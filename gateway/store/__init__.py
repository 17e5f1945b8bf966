"""The database: engines, transactions, migrations, and every SQL statement the gateway runs.

A small package; each module owns one part and nothing outside it writes SQL or imports
SQLAlchemy (the migrations aside; tests/test_store_owner.py checks it):

  schema.py    the tables and column types
  __init__.py  engines with durable settings (SQLite in WAL mode with full sync, foreign
               keys on), write transactions, the Alembic migrations, events
  outgoing.py  the outbox: enqueue (every outgoing mail), the sender's claim and record
  queries.py   the reports: tickets, report and digest figures, status (heartbeat,
               counts, folders), set-aside lists
  timers.py    what the scheduler reads and marks: due cycles, quiet conversations, digests
  followup.py  what the customer hears after the acknowledgment: the exception notice,
               coupon codes given, reminders, what we sent a customer today
  intake.py    IMAP sync state, earlier events' details, releasing set-aside messages
  folders.py   where IMAP messages sit: each one's UID per watched folder, and when it left
  runner.py    the runner's claim, decision context, apply and shunt; heartbeats; tokens
  bulk.py      loading history in bulk (benchmarks and tests)
  threads.py   what threading and reply tracking read and write: participants, thread
               lookups, unmatched replies, cycles, conversation state

Callers open the transaction (`begin`, or `reading` for reads) and pass its connection.
All timestamps are stored in UTC and come back as aware datetimes. The pure core never
imports this package.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, inspect
from sqlalchemy import Engine as Engine  # the type callers annotate with
from sqlalchemy.engine import make_url

from ..errors import ConfigError, Problem, TemporaryError
from .bulk import *  # noqa: F403
from .folders import *  # noqa: F403
from .followup import *  # noqa: F403
from .intake import *  # noqa: F403
from .outgoing import *  # noqa: F403
from .queries import *  # noqa: F403
from .schema import *  # noqa: F403
from .schema import events
from .threads import *  # noqa: F403
from .timers import *  # noqa: F403

MIGRATIONS = Path(__file__).parent.parent / "migrations"


def reading(engine: Engine) -> Connection:
    """A connection for reads (`with store.reading(engine) as conn:`); takes no write lock."""
    return engine.connect()


def display_url(url: str) -> str:
    """A database URL fit to show: its password hidden (as given when it cannot be read)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


# ---------------------------------------------------------------------------- engines


LOCK_WAIT_MS = 10_000  # how long a writer waits for another's lock before it gives up


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a commit survives power loss: 250 means stored
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={LOCK_WAIT_MS}")
    cursor.close()


def _postgresql_lock_wait(dbapi_connection: Any, _record: Any) -> None:
    # Without a limit PostgreSQL waits for a lock for ever: a client would hang instead of
    # hearing 451, and a runner would stall instead of trying again.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"SET lock_timeout = {LOCK_WAIT_MS}")
    cursor.close()
    dbapi_connection.commit()


def make_engine(url: str) -> Engine:
    """An engine with durable settings; creates the directory of a SQLite file."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(
            [Problem("(config)", "database", f'"{url}" is not a database URL')]
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        # A server connection may have gone away while pooled; a SQLite file cannot.
        engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except ImportError as exc:
        raise ConfigError(
            [
                Problem(
                    "(config)",
                    "database",
                    f"the driver for {parsed.drivername} is not installed ({exc.name})",
                    "pip install 'sla-gateway[postgresql]' for PostgreSQL",
                )
            ]
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgresql_lock_wait)
    return engine


@contextmanager
def begin(engine: Engine) -> Iterator[Connection]:
    """A write transaction. Writers wait for each other in the database itself, at most
    `LOCK_WAIT_MS` (SQLite's busy timeout, PostgreSQL's lock_timeout), then fail with a
    temporary error: "database is locked", "canceling statement due to lock timeout")."""
    with engine.begin() as conn:
        yield conn


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to `revision` (idempotent)."""
    from alembic import command

    try:
        command.upgrade(_alembic_config(engine), revision)
    except Exception as exc:
        if is_temporary(exc):
            hint = "" if engine.dialect.name == "sqlite" else "; is the database server running and reachable?"
            raise TemporaryError(f"cannot migrate the database: {brief(exc)}{hint}") from exc
        raise


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()  # type: ignore[arg-type]


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


def brief(exc: BaseException) -> str:
    """A database error in one line for people: the driver's first line, without the SQL
    and SQLAlchemy's link to its background page."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def is_temporary(exc: BaseException) -> bool:
    """A database failure that may pass: locked, gone away, connection dropped."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    # PostgreSQL files "program limit exceeded" (a value too big for an index, ...) under
    # operational errors too, but it fails the same way every time: the row's fault.
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return not (isinstance(sqlstate, str) and sqlstate.startswith("54"))


# ---------------------------------------------------------------------------- queries



_EVENT = events.insert()


def add_event(
    conn: Any,
    at: datetime,
    kind: str,
    detail: dict[str, Any] | None = None,
    conversation_id: int | None = None,
    message_row: int | None = None,
) -> None:
    import json

    conn.execute(
        _EVENT, dict(
            at=at,
            kind=kind,
            conversation_id=conversation_id,
            message_row=message_row,
            detail=json.dumps(detail or {}, ensure_ascii=False, default=str),
        )
    )


def latest_event(conn: Any, kinds: tuple[str, ...]) -> Any:
    from sqlalchemy import select

    e = events.c
    # The latest of each kind by the (kind, at) index, then the latest of those: ordered
    # by id, or over several kinds at once, PostgreSQL reads every event since.
    found = [
        row for kind in kinds
        if (row := conn.execute(select(events).where(e.kind == kind)
                                .order_by(e.at.desc(), e.id.desc()).limit(1)).first()) is not None
    ]  # fmt: skip
    return max(found, key=lambda row: (row.at, row.id), default=None)


from .runner import *  # noqa: E402, F403  (it uses add_event above)
