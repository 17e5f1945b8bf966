"""The tables: every column, index and type the gateway stores, in one place.

Owns the SQLAlchemy table definitions (conversations and who takes part in them,
messages, the outbox, events, cycles, mailbox sync state, heartbeats, OAuth tokens and
sent digests), the two column types that keep values exact across SQLite and
PostgreSQL, and the dialect-specific INSERT that skips duplicates. No queries: those
live in the store's other modules. Migrations (gateway/migrations) must agree with it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
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
)
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "LosslessText",
    "UTCDateTime",
    "conversations",
    "cycles",
    "digests",
    "events",
    "exception_notices",
    "folder_uids",
    "heartbeats",
    "insert_ignore",
    "messages",
    "metadata",
    "oauth_tokens",
    "outbox",
    "participants",
    "reference_counters",
    "remedy_codes",
    "reply_keys",
    "sync_state",
]

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
    # The resolution clock (tracker.Resolution): banked business seconds, the running
    # segment's start, completed and current waiting for the customer, due and warning.
    Column("resolve_window_seconds", Integer),  # the target; NULL: no promise
    Column("resolution_business_seconds", Integer, nullable=False, default=0),
    Column("resolution_running_since", UTCDateTime),
    Column("customer_wait_business_seconds", Integer, nullable=False, default=0),
    Column("waiting_since", UTCDateTime),
    Column("resolve_due_at", UTCDateTime),
    Column("resolve_warn_at", UTCDateTime),
    Column("resolution_breached", Boolean, nullable=False, default=False),
    Column("resolve_warned_at", UTCDateTime),
    Column("resolve_alerted_at", UTCDateTime),
    Column("resolved_at", UTCDateTime),
    Column("resolved_by", String(320)),  # a team address, "cli", "archive", "close_after"
    Column("priority_set_by", String(16), nullable=False, default="keywords"),  # / vip / agent
    # `remind_after`: how many reminders went out in the pause that began at `reminded_pause`
    # (another pause — a different waiting_since — starts again from none).
    Column("reminders_sent", Integer, nullable=False, default=0),
    Column("reminded_pause", UTCDateTime),
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
    Index(None, "resolve_due_at"),
    Index(None, "resolution_breached", "resolve_alerted_at"),  # the alerts not yet sent
    Index(None, "resolve_warn_at"),
    Index(None, "resolved_at"),
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
    Index(None, "direction", "received_at"),  # the rate limits: a sender's recent machine mail
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # ack / alert / breach / reminder / closed / digest / notice
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
    Index(None, "message_id"),  # threading: a reply naming the Message-ID of our mail
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
    Column("customer_notified_at", UTCDateTime),  # its one breach notice queued (or not needed)
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

# Where each message read over IMAP sits in a watched folder: its UID there (under the
# folder's UIDVALIDITY), written in the transaction that stored it, and when the poller
# found it gone from the folder (archived, moved, deleted): `[inbox.imap]
# resolve_on_archive` resolves a conversation once none of its customer messages is left.
folder_uids = Table(
    "folder_uids",
    metadata,
    Column("inbox", String(64), primary_key=True),
    Column("folder", String(255), primary_key=True),
    Column("uidvalidity", BigInteger, primary_key=True),
    Column("uid", BigInteger, primary_key=True),
    Column("message_row", Integer, ForeignKey("messages.id"), nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    Column("left_at", UTCDateTime),  # NULL while the message is in the folder
    Index(None, "message_row"),
    # What is present in a folder (left_at NULL first), and what left before retention's cutoff.
    Index(None, "left_at", "inbox", "folder", "uidvalidity"),
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

# The last number given out per reference prefix ("SHOP" -> 1042 for SHOP-1042). It is
# raised in the transaction that opens the conversation, so a rolled-back or set-aside
# message gives its number back and references have no gaps. Inboxes sharing a prefix
# share its numbers (references stay unique).
reference_counters = Table(
    "reference_counters",
    metadata,
    Column("prefix", String(16), primary_key=True),
    Column("last_number", Integer, nullable=False),
)

digests = Table(
    "digests",
    metadata,
    Column("day", Date, primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("outbox_id", Integer, ForeignKey("outbox.id")),
    Index(None, "outbox_id"),  # retention deletes outbox rows: the key's check reads it
)


# `sla-gateway notice set`: the current exception ("our courier is on strike"), told in
# acknowledgments and breach notices until `until` or until cleared. The newest uncleared
# row is the one in force; older ones stay as history.
exception_notices = Table(
    "exception_notices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("text", Text, nullable=False),
    Column("until", UTCDateTime),  # NULL: until cleared
    Column("set_at", UTCDateTime, nullable=False),
    Column("set_by", String(320), nullable=False, default=""),
    Column("cleared_at", UTCDateTime),
)

# `[[breach.remedy]] codes_file`: every coupon code given, so none is ever given twice.
remedy_codes = Table(
    "remedy_codes",
    metadata,
    Column("code", String(255), primary_key=True),
    Column("codes_file", Text, nullable=False),
    Column("conversation_id", Integer, ForeignKey("conversations.id"), nullable=False),
    Column("given_at", UTCDateTime, nullable=False),
    Index(None, "conversation_id"),
)


def insert_ignore(engine_or_conn: Any, table: Table) -> Any:
    """An INSERT that silently skips rows violating a unique constraint."""
    name = engine_or_conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()

