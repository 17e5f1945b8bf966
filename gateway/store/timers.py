"""The scheduler's statements: due reply cycles, quiet conversations, digests, purging.

Owns every read and write behind the SLA timers (gateway/scheduler.py): when the next
timer falls due, which cycles passed their deadline or their warning, which breached
conversations may get the customer's notice, which waiting conversations went quiet,
which shunted messages are news for the set-aside alert, claiming a day's digest, and
the retention purge. The caller opens the transaction and decides; these only
read and mark.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update

from .schema import (
    conversations,
    cycles,
    digests,
    events,
    folder_uids,
    heartbeats,
    insert_ignore,
    messages,
    outbox,
    reply_keys,
)

__all__ = [
    "ack_recipient",
    "breached_unnotified",
    "claim_digest",
    "conversation",
    "cycles_breached_unalerted",
    "cycles_past_due",
    "cycles_to_warn",
    "digest_done",
    "first_record_at",
    "mark_breaches_notified",
    "next_timers",
    "purge_before",
    "quiet_conversations",
    "resolutions_breached_unalerted",
    "resolutions_past_due",
    "resolutions_to_warn",
    "shunted_since",
    "update_conversation",
    "update_cycle",
]


def next_timers(conn: Any) -> tuple[datetime | None, datetime | None]:
    """(The earliest warning not yet given, the earliest deadline not yet breached) of
    open reply cycles and running resolution clocks."""
    y, c = cycles.c, conversations.c
    warn = conn.execute(
        select(func.min(y.warn_at)).where(y.replied_at.is_(None), y.warned_at.is_(None))
    ).scalar()
    due = conn.execute(
        select(func.min(y.due_at)).where(y.replied_at.is_(None), y.breached.is_(False))
    ).scalar()
    resolve_warn = conn.execute(
        select(func.min(c.resolve_warn_at)).where(c.resolve_warned_at.is_(None))
    ).scalar()
    resolve_due = conn.execute(
        select(func.min(c.resolve_due_at)).where(c.resolution_breached.is_(False))
    ).scalar()
    earliest = [t for t in (warn, resolve_warn) if t is not None]
    latest = [t for t in (due, resolve_due) if t is not None]
    return min(earliest, default=None), min(latest, default=None)


def cycles_past_due(conn: Any, now: datetime) -> list[Any]:
    """Open cycles past their deadline at `now` and not yet marked breached."""
    y = cycles.c
    return list(conn.execute(
        select(cycles).where(y.replied_at.is_(None), y.breached.is_(False), y.due_at <= now)
    ))  # fmt: skip


# Run for most messages: built once. An UPDATE without .values() sets the columns its
# parameters name, so one statement serves every set of changed columns.
_CONVERSATION = select(conversations).where(conversations.c.id == bindparam("_row"))
_UPDATE_CONVERSATION = update(conversations).where(conversations.c.id == bindparam("_row"))
_UPDATE_CYCLE = update(cycles).where(cycles.c.id == bindparam("_row"))


def conversation(conn: Any, conversation_id: int) -> Any:
    """One conversation's row."""
    return conn.execute(_CONVERSATION, {"_row": conversation_id}).one()


def update_conversation(conn: Any, conversation_id: int, **values: Any) -> None:
    if values:
        conn.execute(_UPDATE_CONVERSATION, {"_row": conversation_id, **values})


def update_cycle(conn: Any, cycle_id: int, **values: Any) -> None:
    if values:
        conn.execute(_UPDATE_CYCLE, {"_row": cycle_id, **values})


def breached_unnotified(conn: Any) -> list[Any]:
    """Breached, still unanswered reply cycles (first or next) of conversations not
    replayed whose customer has not had their breach notice: the conversation's columns
    with the cycle's `cycle_id`, `cycle_kind`, `cycle_due`, `cycle_window` and `cycle_stretch`."""
    y, c = cycles.c, conversations.c
    return list(conn.execute(
        select(conversations, y.id.label("cycle_id"), y.kind.label("cycle_kind"),
               y.due_at.label("cycle_due"), y.window_seconds.label("cycle_window"),
               y.stretch.label("cycle_stretch"))
        .join(cycles, y.conversation_id == c.id)
        .where(y.breached.is_(True), y.replied_at.is_(None), y.customer_notified_at.is_(None),
               c.source.is_(None))
        .order_by(y.due_at)
    ))  # fmt: skip


def mark_breaches_notified(conn: Any, now: datetime) -> None:
    """Breach notices are off: every breached, unanswered cycle needs none."""
    y = cycles.c
    conn.execute(
        update(cycles).where(y.breached.is_(True), y.replied_at.is_(None), y.customer_notified_at.is_(None))
        .values(customer_notified_at=now)
    )  # fmt: skip


def ack_recipient(conn: Any, conversation_id: int) -> str | None:
    """Who the conversation's acknowledgment went to (None: it was never acknowledged)."""
    o = outbox.c
    value = conn.execute(
        select(o.recipient).where(o.conversation_id == conversation_id, o.kind == "ack").limit(1)
    ).scalar()
    return None if value is None else str(value)


_ALERT_COLUMNS = (cycles, conversations.c.reference, conversations.c.customer,
                  conversations.c.subject, conversations.c.inbox)  # fmt: skip


def cycles_to_warn(conn: Any, now: datetime) -> list[Any]:
    """Open cycles whose warning time has passed and no warning was given, soonest due
    first, with their conversation's reference, customer, subject and inbox."""
    y, c = cycles.c, conversations.c
    return list(conn.execute(
        select(*_ALERT_COLUMNS).join(conversations, c.id == y.conversation_id)
        .where(y.replied_at.is_(None), y.warned_at.is_(None), y.warn_at.isnot(None), y.warn_at <= now)
        .order_by(y.due_at)
    ))  # fmt: skip


def cycles_breached_unalerted(conn: Any) -> list[Any]:
    """Open breached cycles whose breach alert has not been queued, soonest due first."""
    y, c = cycles.c, conversations.c
    return list(conn.execute(
        select(*_ALERT_COLUMNS).join(conversations, c.id == y.conversation_id)
        .where(y.replied_at.is_(None), y.breached.is_(True), y.breach_alerted_at.is_(None))
        .order_by(y.due_at)
    ))  # fmt: skip


def resolutions_past_due(conn: Any, now: datetime) -> list[Any]:
    """Conversations whose running resolution clock passed its due time at `now`, not yet
    marked breached."""
    c = conversations.c
    return list(conn.execute(
        select(conversations).where(c.resolve_due_at <= now, c.resolution_breached.is_(False))
    ))  # fmt: skip


def resolutions_to_warn(conn: Any, now: datetime) -> list[Any]:
    """Running resolution clocks past their warning time with no warning given yet."""
    c = conversations.c
    return list(conn.execute(
        select(conversations)
        .where(c.resolve_warn_at <= now, c.resolve_warned_at.is_(None), c.resolve_due_at.isnot(None))
        .order_by(c.resolve_due_at)
    ))  # fmt: skip


def resolutions_breached_unalerted(conn: Any) -> list[Any]:
    """Conversations whose resolution was breached, whose clock still runs (one resolved
    or pending since — while its alert waited for opening hours — needs no alert any
    more) and whose alert is not queued yet."""
    c = conversations.c
    return list(conn.execute(
        select(conversations)
        .where(c.resolution_breached.is_(True), c.resolve_alerted_at.is_(None), c.resolve_due_at.isnot(None))
        .order_by(c.resolve_due_at)
    ))  # fmt: skip


def shunted_since(conn: Any, after_event: int) -> list[Any]:
    """The "shunted" events after event id `after_event` (id, at, message_row) whose
    message is still set aside, oldest first; replayed history is left out."""
    e, m = events.c, messages.c
    return list(conn.execute(
        select(e.id, e.at, e.message_row).join(messages, m.id == e.message_row)
        .where(e.kind == "shunted", e.id > after_event, m.status == "shunted", m.source != "replay")
        .order_by(e.id)
    ))  # fmt: skip


def quiet_conversations(conn: Any, states: Iterable[str], before: datetime) -> list[Any]:
    """Conversations in one of `states` that have waited for the customer since before
    `before`: since their pause began (pending) or the team's last reply (answered)."""
    c = conversations.c
    since = func.coalesce(c.waiting_since, c.last_team_at)
    return list(conn.execute(select(conversations).where(c.state.in_(list(states)), since <= before)))


def digest_done(conn: Any, day: date) -> bool:
    """Whether the digest of `day` was already made."""
    d = digests.c
    return conn.execute(select(d.day).where(d.day == day)).first() is not None


def first_record_at(conn: Any) -> datetime | None:
    """The earliest moment the database knows of: the first message received, event
    recorded or the running service's start (None: a gateway that never ran)."""
    found = [
        conn.execute(select(func.min(messages.c.received_at))).scalar(),
        conn.execute(select(func.min(events.c.at))).scalar(),
        conn.execute(select(func.min(heartbeats.c.started_at))).scalar(),
    ]
    moments = [_aware(m) for m in found if m is not None]
    return min(moments) if moments else None


def _aware(value: Any) -> datetime:
    """An aggregate's datetime (SQLite returns the stored text, or a naive UTC datetime)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def claim_digest(conn: Any, day: date, now: datetime) -> bool:
    """Claim the digest of `day` (its row commits with its outbox rows); False when
    another process was first."""
    claimed = conn.execute(
        insert_ignore(conn, digests).values(day=day, created_at=now).returning(digests.c.day)
    ).first()
    return claimed is not None


DONE = ("sent", "cancelled")  # outbox rows that will never go out again (failed ones can: `retry`)


def purge_before(conn: Any, cutoff: datetime, *, acks_before: datetime) -> dict[str, int]:
    """`retention_days`: what no figure needs any more, from before `cutoff` — the raw
    bodies of messages (processed or set aside) and of outbox rows sent or cancelled (a
    failed one keeps its body: `retry` sends it again);
    the outbox rows of acknowledgments sent or cancelled before `acks_before` (the
    figures count acknowledged messages, and the rate limits look back no further); the
    reply keys of team replies that matched nothing before `cutoff` (their body is gone,
    so adopting one could measure nothing); the UIDs of IMAP messages that left their
    folder before `cutoff` (only present ones matter: archive = resolved). Returns how
    many rows each step changed; every statement reads by an index (received_at, (kind,
    created_at), (status, next_attempt_at), the key's row, left_at). An outbox row's
    last attempt is never before it was queued, so rows last tried before `cutoff` were
    all queued before it (one retried past it is emptied when its last attempt is that
    old)."""
    m, o, k, f = messages.c, outbox.c, reply_keys.c, folder_uids.c
    done = {
        "messages_emptied": conn.execute(
            update(messages).where(m.received_at < cutoff, m.raw.isnot(None), m.status != "stored")
            .values(raw=None)
        ).rowcount,
        "acks_deleted": conn.execute(
            delete(outbox).where(o.kind == "ack", o.created_at < min(cutoff, acks_before),
                                 o.status.in_(DONE))
        ).rowcount,
        "outbox_emptied": conn.execute(
            update(outbox).where(o.status.in_(DONE), o.next_attempt_at < cutoff, func.length(o.raw) > 0)
            .values(raw=b"")
        ).rowcount,
        "folder_uids_deleted": conn.execute(
            delete(folder_uids).where(f.left_at < cutoff)
        ).rowcount,
        "reply_keys_deleted": conn.execute(
            delete(reply_keys).where(k.message_row.in_(
                select(m.id).where(m.received_at < cutoff, m.conversation_id.is_(None),
                                   m.direction == "team")
            ))
        ).rowcount,
    }  # fmt: skip
    return {name: int(count) for name, count in done.items()}
