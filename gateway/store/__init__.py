"""The database: engines, transactions, migrations, and every SQL statement the gateway runs.

A small package; each module owns one part and nothing outside it writes SQL or imports
SQLAlchemy (the migrations aside; until the runner rework lands, the processing core's
modules listed in tests/test_store_owner.py still hold SQL of their own):

  schema.py    the tables and column types
  __init__.py  engines with durable settings (SQLite in WAL mode with full sync, foreign
               keys on), write transactions, the Alembic migrations, events
  outgoing.py  the outbox: enqueue (every outgoing mail), the sender's claim and record
  queries.py   the reports: tickets, report and digest figures, status (heartbeat,
               counts, folders), set-aside lists
  timers.py    what the scheduler reads and marks: due cycles, quiet conversations, digests
  intake.py    IMAP sync state, earlier events' details, releasing set-aside messages

Callers open the transaction (`begin`, or `reading` for reads) and pass its connection.
All timestamps are stored in UTC and come back as aware datetimes. The pure core never
imports this package.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, inspect
from sqlalchemy import Engine as Engine  # the type callers annotate with
from sqlalchemy.engine import make_url

from ..errors import ConfigError, Problem, TemporaryError
from .intake import *  # noqa: F403
from .outgoing import *  # noqa: F403
from .queries import *  # noqa: F403
from .schema import *  # noqa: F403
from .schema import events
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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a commit survives power loss: 250 means stored
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine with durable settings; creates the directory of a SQLite file."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(
            [Problem("(config)", "database", f'"{url}" is not a database URL')]
        ) from None
    lock_path: Path | None = None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            lock_path = Path(database).expanduser().with_name(Path(database).name + ".lock")
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
        _WRITE_LOCKS[engine] = WriteLock(lock_path)
    return engine


WRITE_LOCK_TIMEOUT = 10.0  # seconds, as SQLite's busy_timeout


class WriteLock:
    """SQLite's writers take turns here rather than in SQLite: the threads of a process on
    a lock, processes (the service's two, a command run beside it) on an flock of a file
    beside the database. SQLite itself makes a waiting writer sleep and retry, 1 ms, then
    2, 5, 10 ... 100 ms, which under load costs far more than waiting on a lock. Without
    the file (read-only, another user's), SQLite's own retrying still keeps it correct."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._reset_after_fork()

    def _reset_after_fork(self) -> None:
        self._thread = threading.Lock()  # a fork copies locks as they were, maybe held
        self._fd: int | None = None  # an inherited flock descriptor is shared with the parent
        self._pid = os.getpid()

    def _file(self) -> int | None:
        if self._fd is None and self.path is not None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self.path = None
        return self._fd

    @contextmanager
    def held(self) -> Iterator[None]:
        """The lock, waited for at most WRITE_LOCK_TIMEOUT (like SQLite's busy timeout):
        a holder that hangs makes writers fail with TemporaryError (SMTP: 451), not wait
        for ever."""
        if self._pid != os.getpid():
            self._reset_after_fork()
        if not self._thread.acquire(timeout=WRITE_LOCK_TIMEOUT):
            raise TemporaryError("the database is busy (another writer in this process)")
        try:
            fd = self._file()
            if fd is None:
                yield
                return
            deadline = time.monotonic() + WRITE_LOCK_TIMEOUT
            pause = 0.0005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TemporaryError(
                            f"the database is busy: another process holds {self.path}"
                        ) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.002)  # a short wait: holders hold briefly
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, WriteLock] = weakref.WeakKeyDictionary()


@contextmanager
def begin(engine: Engine) -> Iterator[Connection]:
    """A write transaction. On SQLite, writers take turns on a `WriteLock`; PostgreSQL
    needs no such thing."""
    lock = _WRITE_LOCKS.get(engine)
    if lock is None:
        with engine.begin() as conn:
            yield conn
        return
    with lock.held(), engine.begin() as conn:
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
            raise TemporaryError(f"cannot migrate the database: {exc}") from exc
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
        events.insert(), dict(
            at=at,
            kind=kind,
            conversation_id=conversation_id,
            message_row=message_row,
            detail=json.dumps(detail or {}, ensure_ascii=False, default=str),
        )
    )


def latest_event(conn: Any, kinds: tuple[str, ...]) -> Any:
    from sqlalchemy import select

    return conn.execute(
        select(events).where(events.c.kind.in_(kinds)).order_by(events.c.id.desc()).limit(1)
    ).first()
