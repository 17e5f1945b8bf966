"""The database: tables, engine set-up, migrations, and (as the pipeline grows) every query.

Owns: the SQLAlchemy table definitions for conversations (and who takes part in them),
messages, the outbox, events, mailbox sync state and sent digests; creating engines with durable settings (SQLite in WAL
mode with full sync, foreign keys on); running the Alembic migrations; and every
transaction; and (its last section) every statement of intake, the runner and the queue. All timestamps are stored in UTC and
come back as aware datetimes. The pure core never imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy import (
    Engine as Engine,  # re-exported: the type the rest of the gateway names
)
from sqlalchemy.engine import make_url
from sqlalchemy.types import TypeDecorator, TypeEngine

from .errors import ConfigError, Problem, TemporaryError
from .rules import AckHistory

MIGRATIONS = Path(__file__).parent / "migrations"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, whatever the backend stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class LosslessText(TypeDecorator[str]):
    """Text that is stored whatever it holds and comes back exactly as it went in.

    An SMTP envelope may carry 8-bit bytes that are not UTF-8 (aiosmtpd hands them over
    as surrogate escapes, which no database takes) or a NUL (which PostgreSQL refuses).
    Such a value is written marked: MARK first, then each NUL as MARK, each escaped byte
    0x80-0xFF as U+E080-U+E0FF, and the few characters those stand for, when really
    there, preceded by ESCAPE. Everything else, nearly every value, is written as is."""

    impl: TypeEngine[Any] | type[TypeEngine[Any]] = Text
    cache_ok = True
    MARK, ESCAPE = "\ue000", "\ue001"

    def __init__(self, length: int | None = None) -> None:
        super().__init__()
        if length is not None:
            self.impl = String(length)

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.escape(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.unescape(value)

    @classmethod
    def escape(cls, value: str) -> str:
        if not value.startswith(cls.MARK) and not any(
            c == "\0" or "\udc80" <= c <= "\udcff" for c in value
        ):
            return value
        out = [cls.MARK]
        for c in value:
            if c == "\0":
                out.append(cls.MARK)
            elif "\udc80" <= c <= "\udcff":
                out.append(chr(ord(c) - 0xDC80 + 0xE080))
            elif c in (cls.MARK, cls.ESCAPE) or "\ue080" <= c <= "\ue0ff":
                out.append(cls.ESCAPE + c)
            else:
                out.append(c)
        return "".join(out)

    @classmethod
    def unescape(cls, value: str) -> str:
        if not value.startswith(cls.MARK):
            return value
        out: list[str] = []
        chars = iter(value[1:])
        for c in chars:
            if c == cls.ESCAPE:
                out.append(next(chars, ""))
            elif c == cls.MARK:
                out.append("\0")
            elif "\ue080" <= c <= "\ue0ff":
                out.append(chr(ord(c) - 0xE080 + 0xDC80))
            else:
                out.append(c)
        return "".join(out)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("reference", String(32), nullable=False, unique=True),
    Column("inbox", String(64), nullable=False),
    Column("customer", String(320), nullable=False),
    Column("subject", Text, nullable=False, default=""),
    Column("priority", String(16), nullable=False),
    Column("priority_reason", Text, nullable=False, default=""),
    Column("state", String(24), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("window_seconds", Integer, nullable=False),
    Column("stretch", Float, nullable=False, default=1.0),
    Column("season", String(128)),
    Column("due_at", UTCDateTime, nullable=False),
    Column("warn_at", UTCDateTime),
    Column("first_reply_at", UTCDateTime),
    Column("first_reply_business_seconds", Integer),
    Column("breached", Boolean, nullable=False, default=False),
    Column("next_due_at", UTCDateTime),
    Column("last_customer_at", UTCDateTime),
    Column("last_team_at", UTCDateTime),
    Column("warned_at", UTCDateTime),
    Column("breach_alerted_at", UTCDateTime),
    Column("closed_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("customer_notified_at", UTCDateTime),  # the one breach notice to the customer
    Column("source", String(16)),  # "replay" for conversations rebuilt from saved mail
    Index(None, "received_at"),
    # Covers every column the report and digest aggregate, so figures over a million
    # conversations are read from the index alone.
    Index(
        "ix_conversations_figures",
        "received_at",
        "priority",
        "first_reply_business_seconds",
        "breached",
        "first_reply_at",
        "due_at",
    ),
    Index(None, "state", "due_at"),
    Index(None, "customer", "received_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dedup_key", String(255), nullable=False, unique=True),  # dedup.dedup_key
    Column("message_id", String(995)),
    Column("conversation_id", Integer, ForeignKey("conversations.id")),
    Column("inbox", String(64)),
    Column("direction", String(12), nullable=False, default="customer"),  # customer/team/ours
    Column("source", String(16), nullable=False),  # smtp / imap / replay / cli
    Column("status", String(16), nullable=False, default="stored"),  # stored/processed/shunted
    Column("error", Text),
    Column("received_at", UTCDateTime, nullable=False),
    Column("envelope_from", LosslessText(998)),
    Column("envelope_to", LosslessText()),  # both as the SMTP client sent them
    Column("from_addr", String(998)),
    Column("subject", Text),
    Column("skip_rule", String(32)),
    Column("skip_reason", Text),
    Column("acknowledged", Boolean, nullable=False, default=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("raw", LargeBinary),  # emptied after retention_days; figures stay
    Column("match", String(16)),  # team replies: how they were matched to a conversation
    Index(None, "message_id"),
    Index(None, "status"),
    Index(None, "conversation_id"),
    Index(None, "received_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # ack / alert / breach / digest / notice
    Column("conversation_id", Integer, ForeignKey("conversations.id")),
    Column("source_message_id", Integer, ForeignKey("messages.id")),
    Column("sender", String(998), nullable=False),
    Column("recipient", String(998), nullable=False),
    Column("message_id", String(995), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    # pending / sent / failed / cancelled (an acknowledgment made moot by the team's reply)
    Column("status", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Index(None, "status", "next_attempt_at"),
    Index(None, "recipient", "created_at"),
    Index(None, "kind", "created_at"),  # the breaker's counts of recent acknowledgments
)

# Who may continue a conversation by its reference tag, its subject or its thread headers
# (see conversations.py): its customer and every address its messages came from or were
# sent or copied to. Our own addresses and web-form senders are never written here.
participants = Table(
    "participants",
    metadata,
    Column("conversation_id", Integer, ForeignKey("conversations.id"), primary_key=True),
    Column("address", String(320), primary_key=True),
    Index(None, "address"),
)

# A team reply that matched no conversation (yet), by what could match it when the
# customer's mail is processed after it: "<" + a Message-ID it answers, "@" + a recipient.
# Its rows go when it is matched.
reply_keys = Table(
    "reply_keys",
    metadata,
    Column("message_row", Integer, ForeignKey("messages.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Index(None, "key"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("conversation_id", Integer, ForeignKey("conversations.id")),
    Column("message_row", Integer, ForeignKey("messages.id")),
    Column("detail", Text, nullable=False, default="{}"),  # JSON
    Index(None, "at"),
    Index(None, "kind", "at"),
)

# One reply cycle: the team owes an answer from `started_at` (the customer's message) until
# `replied_at`. The first cycle is the first reply; each later one a "next" reply.
cycles = Table(
    "cycles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("conversation_id", Integer, ForeignKey("conversations.id"), nullable=False),
    Column("kind", String(8), nullable=False),  # "first" or "next"
    Column("priority", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("window_seconds", Integer, nullable=False),
    Column("stretch", Float, nullable=False, default=1.0),
    Column("due_at", UTCDateTime, nullable=False),
    Column("warn_at", UTCDateTime),
    Column("replied_at", UTCDateTime),
    Column("business_seconds", Integer),
    Column("breached", Boolean, nullable=False, default=False),
    Column("warned_at", UTCDateTime),  # warning queued (or not needed)
    Column("breach_alerted_at", UTCDateTime),  # breach alert queued (or not needed)
    Index(None, "conversation_id"),
    Index(None, "replied_at", "due_at"),
    Index(None, "started_at"),
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("inbox", String(64), primary_key=True),
    Column("folder", String(255), primary_key=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("last_uid", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Every message of the folder with an INTERNALDATE before this was seen (stored, or
    # history at the first sync): after a UIDVALIDITY change, only later ones may be new.
    # NULL in rows from before it was kept: then `updated_at` serves.
    Column("seen_before", UTCDateTime),
)

# One row per running service: `status` tells from it whether the gateway is alive.
heartbeats = Table(
    "heartbeats",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("beat_at", UTCDateTime, nullable=False),
)

# One row per mailbox signed in with OAuth 2.0. The tokens are Fernet ciphertext (the key
# comes from the environment or a systemd credential, never from here); the rest is plain
# so that `status` can report on them without the key.
oauth_tokens = Table(
    "oauth_tokens",
    metadata,
    Column("account", String(64), primary_key=True),  # oauth.account_key(...)
    Column("username", String(320), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("client_id", String(255), nullable=False),
    Column("refresh_token", Text, nullable=False),  # encrypted
    Column("access_token", Text),  # encrypted; the current one, shared by every connection
    Column("access_issued_at", UTCDateTime),
    Column("access_expires_at", UTCDateTime),
    Column("scope", Text, nullable=False, default=""),
    Column("obtained_at", UTCDateTime, nullable=False),  # the owner's sign-in
    Column("refreshed_at", UTCDateTime),
    Column("status", String(16), nullable=False, default="active"),  # active / login-required
    Column("problem", Text),  # why the owner must sign in again (never a token)
    Column("problem_at", UTCDateTime),
)

digests = Table(
    "digests",
    metadata,
    Column("day", Date, primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("outbox_id", Integer, ForeignKey("outbox.id")),
)


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
    return engine


@contextmanager
def begin(engine: Engine) -> Iterator[Connection]:
    """A write transaction. Writers wait for each other in the database itself (SQLite's
    busy timeout: 10 s, then "database is locked", a temporary error)."""
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


def insert_ignore(engine_or_conn: Any, table: Table) -> Any:
    """An INSERT that silently skips rows violating a unique constraint."""
    name = engine_or_conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


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
    return conn.execute(
        select(events).where(events.c.kind.in_(kinds)).order_by(events.c.id.desc()).limit(1)
    ).first()


# ---- runner: claim, context, apply, shunt
# Every statement of intake, the runner and the queue: storing a raw message, claiming
# the next stored one, reading what its decision needs, writing the plan, setting it
# aside, and queueing outgoing mail.

_MSGID = re.compile(r"<([^<>\s]+)>")


def insert_raw(conn: Connection, values: dict[str, Any]) -> tuple[int | None, bool]:
    """Store one raw message unless its dedup key is known: (row id, is_new)."""
    inserted = conn.execute(insert_ignore(conn, messages).returning(messages.c.id), values).scalar()
    if inserted is not None:
        return int(inserted), True
    existing = conn.execute(
        select(messages.c.id).where(messages.c.dedup_key == values["dedup_key"])
    ).scalar_one_or_none()
    return (int(existing) if existing is not None else None), False


def claim(conn: Connection, row_id: int | None = None) -> Any:
    """The next stored message (oldest first), or the stored message `row_id`; None when
    there is none. On PostgreSQL the row stays locked until the caller's transaction
    ends and rows other runners hold are skipped, so several runners on one database
    take different messages; SQLite has one writer, so a plain ordered select serves
    (and `flip_processed` still refuses a message someone else finished meanwhile)."""
    m = messages.c
    query = select(messages).where(m.status == "stored")
    query = query.where(m.id == row_id) if row_id is not None else query.order_by(m.id).limit(1)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return conn.execute(query).first()


def ack_history(
    conn: Connection, ack_to: str, now: datetime, *, day_start: datetime, once_per_sender: timedelta
) -> AckHistory:
    """What the rate limits need about one recipient, from indexed queries: its
    acknowledgments within once_per_sender (when, for which subjects) and whether mail
    from it was machine mail in that time, today's count (from `day_start`), and the
    last minute's and hour's acknowledgments to anyone."""
    from .tracker import normalize_subject

    o, c, m = outbox.c, conversations.c, messages.c
    recipient = ack_to.lower()
    since = now - once_per_sender
    horizon = min(since, day_start)
    # By the (recipient, created_at) index; the kind is checked here, or the planner may
    # take the (kind, created_at) index and read every recent acknowledgment.
    acks = [
        (at, subject)
        for kind, at, subject in conn.execute(
            select(o.kind, o.created_at, c.subject)
            .select_from(outbox.outerjoin(conversations, c.id == o.conversation_id))
            .where(o.recipient == recipient, o.created_at > horizon)
        )
        if kind == "ack"
    ]
    recent = [(at, normalize_subject(subject or "")) for at, subject in acks if at > since]
    today = sum(1 for at, _ in acks if at >= day_start)
    hour_ago, minute_ago = now - timedelta(hours=1), now - timedelta(minutes=1)
    hour, minute = conn.execute(
        select(func.count(), func.count().filter(o.created_at > minute_ago))
        .where(o.kind == "ack", o.created_at > hour_ago)
    ).one()  # fmt: skip
    machine_rule = None
    if recent:  # only then can once-per-sender apply: ask what this sender sent lately
        machine_rule = conn.execute(
            select(m.skip_rule)
            .where(m.received_at > since, m.direction == "machine",
                   or_(func.lower(m.from_addr) == recipient, func.lower(m.envelope_from) == recipient))
            .order_by(m.id.desc())
            .limit(1)
        ).scalar()  # fmt: skip
    return AckHistory(
        max((at for at, _ in recent), default=None), today, int(minute), int(hour),
        tuple(subject for _, subject in recent), machine_rule,
    )  # fmt: skip


def latest_event_at(conn: Connection, kind: str) -> tuple[datetime, int] | None:
    """When the latest event of a kind was recorded (and its id), from the (kind, at) index."""
    e = events.c
    row = conn.execute(
        select(e.at, e.id).where(e.kind == kind).order_by(e.at.desc(), e.id.desc()).limit(1)
    ).first()
    return (row.at, row.id) if row is not None else None


def latest_events(conn: Connection, kinds: tuple[str, ...]) -> dict[str, datetime]:
    """When the latest event of each of these kinds was recorded (kinds never recorded
    are left out): one statement, from the (kind, at) index."""
    e = events.c
    rows = conn.execute(select(e.kind, func.max(e.at)).where(e.kind.in_(kinds)).group_by(e.kind))
    return {kind: at for kind, at in rows if at is not None}


def breaker_open(latest: dict[str, datetime]) -> bool:
    """Whether the circuit breaker is open: its latest event (of `latest_events`) says so."""
    opened, closed = latest.get("circuit-open"), latest.get("circuit-closed")
    return opened is not None and (closed is None or closed < opened)


def conversations_quoted(
    conn: Connection, references: tuple[str, ...], message_ids: tuple[str, ...]
) -> list[Any]:
    """The conversations with one of these references, or for which we sent one of these
    Message-IDs, oldest first."""
    c, o = conversations.c, outbox.c
    ids = select(o.conversation_id).where(o.message_id.in_(message_ids))
    return list(
        conn.execute(
            select(conversations).where(c.reference.in_(references) | c.id.in_(ids)).order_by(c.id)
        )
    )


def open_conversation(conn: Connection, values: dict[str, Any]) -> int:
    key = conn.execute(conversations.insert(), values).inserted_primary_key
    assert key is not None
    return int(key[0])


# "stored" -> "processed", only if nobody else got there first; the values come as
# parameters (one compiled statement, not one per message).
_FLIP = update(messages).where(messages.c.id == bindparam("flip_id"), messages.c.status == "stored")


def flip_processed(conn: Connection, row_id: int, **values: Any) -> bool:
    """Mark a stored message processed, with what was decided; False when it was no
    longer stored (another runner finished it first)."""
    return bool(conn.execute(_FLIP, dict(flip_id=row_id, status="processed", **values)).rowcount == 1)


def shunt(conn: Connection, row_id: int, error: str, now: datetime) -> None:
    """Set a message aside with its error (and an event saying so)."""
    conn.execute(
        update(messages).where(messages.c.id == row_id).values(status="shunted", error=error[:2000])
    )
    add_event(conn, now, "shunted", {"error": error[:500]}, message_row=row_id)


def beat(conn: Connection, name: str, values: dict[str, Any]) -> None:
    """Record a heartbeat: an upsert that a second beat (a gateway just restarted)
    cannot lose."""
    h = heartbeats.c
    update_it = heartbeats.update().where(h.name == name).values(**values)
    if not conn.execute(update_it).rowcount and not conn.execute(
        insert_ignore(conn, heartbeats).values(name=name, **values)
    ).rowcount:
        conn.execute(update_it)  # another beat inserted it meanwhile


def clear_beat(conn: Connection, name: str) -> None:
    conn.execute(heartbeats.delete().where(heartbeats.c.name == name))


def conversation_inbox(conn: Connection, conversation_id: int) -> str | None:
    c = conversations.c
    return conn.execute(select(c.inbox).where(c.id == conversation_id)).scalar()


def token_row(conn: Connection, account: str) -> Any:
    return conn.execute(select(oauth_tokens).where(oauth_tokens.c.account == account)).first()


def save_tokens(conn: Connection, account: str, values: dict[str, Any], *, insert: bool) -> None:
    """Update an account's token row; with `insert`, create it when there is none."""
    t = oauth_tokens.c
    if conn.execute(update(oauth_tokens).where(t.account == account).values(**values)).rowcount or not insert:
        return
    conn.execute(oauth_tokens.insert().values(account=account, **{"scope": "", **values}))


def mark_login_required(conn: Connection, account: str, why: str, now: datetime, *,
                        sealed: str | None) -> bool:  # fmt: skip
    """An active account's sign-in refused (`sealed`: only if its refresh token is still
    that one); False when it was not active (someone else saw it first)."""
    t = oauth_tokens.c
    still = (t.refresh_token == sealed,) if sealed is not None else ()
    return bool(conn.execute(
        update(oauth_tokens).where(t.account == account, t.status == "active", *still)
        .values(status="login-required", problem=why[:500], problem_at=now, access_token=None)
    ).rowcount)  # fmt: skip


def unalerted_sign_ins(conn: Connection) -> list[tuple[int, dict[str, Any]]]:
    """The `oauth-login-required` events after the last one an `oauth-alerted` event
    covers (its "through"), oldest first, with their details."""
    import json

    e = events.c
    latest = latest_event_at(conn, "oauth-alerted")
    through = 0
    if latest is not None:
        detail = conn.execute(select(e.detail).where(e.id == latest[1])).scalar_one()
        through = int(json.loads(detail).get("through", 0))
    rows = conn.execute(
        select(e.id, e.detail).where(e.kind == "oauth-login-required", e.id > through).order_by(e.id)
    )
    return [(int(i), json.loads(d)) for i, d in rows]


def enqueue(conn: Connection, kind: str, message: Any, recipient: str, now: datetime, *,
            sender: str, conversation_id: int | None = None, source_row: int | None = None) -> int:  # fmt: skip
    """Write one outgoing message to the outbox (inside the caller's transaction);
    returns its row id. The one way anything queues mail: the sender sends it."""
    from .render import to_wire

    result = conn.execute(
        outbox.insert(), dict(
            kind=kind, conversation_id=conversation_id, source_message_id=source_row,
            sender=sender, recipient=recipient.lower(),
            message_id=_MSGID.findall(str(message["Message-ID"]))[0], raw=to_wire(message),
            status="pending", attempts=0, next_attempt_at=now, created_at=now,
        )
    )  # fmt: skip
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])
