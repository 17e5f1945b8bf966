"""The runner's statements: claim, the decision's context, apply, shunt; heartbeats and
the token store's rows.

Owns every statement of the runner loop (gateway/runner.py): claiming the next stored
message (`FOR UPDATE SKIP LOCKED` on PostgreSQL, an ordered select on SQLite), reading
what a decision needs (recent acknowledgments, the breaker's events, quoted
conversations), numbering references (a per-prefix counter raised in the transaction
that opens the conversation, so a rollback leaves no gap), opening conversations,
flipping a message to processed or setting it aside; and the heartbeat and OAuth token
rows. Values in, rows out; no decisions.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, or_, select, update

from ..rules import AckHistory
from . import add_event
from .schema import (
    conversations,
    events,
    heartbeats,
    insert_ignore,
    messages,
    oauth_tokens,
    outbox,
    reference_counters,
)

# Every statement of intake and the runner: storing a raw message, claiming the next
# stored one, reading what its decision needs, writing the plan, setting it aside.
# (Outgoing mail is queued by outgoing.enqueue.)


def insert_raw(conn: Connection, values: dict[str, Any]) -> tuple[int | None, bool]:
    """Store one raw message unless its dedup key is known: (row id, is_new)."""
    inserted = conn.execute(insert_ignore(conn, messages).returning(messages.c.id), values).scalar()
    if inserted is not None:
        return int(inserted), True
    existing = conn.execute(
        select(messages.c.id).where(messages.c.dedup_key == values["dedup_key"])
    ).scalar_one_or_none()
    return (int(existing) if existing is not None else None), False


# The statements run for every message, built once with parameters (building one costs
# more than running it).
_m, _o, _c, _e = messages.c, outbox.c, conversations.c, events.c
_NEXT_STORED = select(messages).where(_m.status == "stored").order_by(_m.id).limit(1)
_STORED = select(messages).where(_m.status == "stored", _m.id == bindparam("row_id"))
_CLAIMS = {
    (row, locking): query.with_for_update(skip_locked=True) if locking else query
    for row, query in ((False, _NEXT_STORED), (True, _STORED))
    for locking in (False, True)
}
# By the (recipient, created_at) index; the kind is checked in Python, or the planner may
# take the (kind, created_at) index and read every recent acknowledgment.
_ACKS_TO = (
    select(_o.kind, _o.created_at, _c.subject)
    .select_from(outbox.outerjoin(conversations, _c.id == _o.conversation_id))
    .where(_o.recipient == bindparam("recipient"), _o.created_at > bindparam("horizon"))
)
_ACK_RATE = select(func.count(), func.count().filter(_o.created_at > bindparam("minute_ago"))).where(
    _o.kind == "ack", _o.created_at > bindparam("hour_ago"))  # fmt: skip
_MACHINE_RULE = (
    select(_m.skip_rule)
    .where(_m.received_at > bindparam("since"), _m.direction == "machine",
           or_(func.lower(_m.from_addr) == bindparam("sender"),
               func.lower(_m.envelope_from) == bindparam("sender")))
    .order_by(_m.received_at.desc(), _m.id.desc())  # by the (direction, received_at) index
    .limit(1)
)  # fmt: skip
_LATEST_EVENTS = select(_e.kind, func.max(_e.at)).where(
    _e.kind.in_(bindparam("kinds", expanding=True))).group_by(_e.kind)  # fmt: skip


def claim(conn: Connection, row_id: int | None = None) -> Any:
    """The next stored message (oldest first), or the stored message `row_id`; None when
    there is none. On PostgreSQL the row stays locked until the caller's transaction
    ends and rows other runners hold are skipped, so several runners on one database
    take different messages; SQLite has one writer, so a plain ordered select serves
    (and `flip_processed` still refuses a message someone else finished meanwhile)."""
    query = _CLAIMS[(row_id is not None, conn.dialect.name == "postgresql")]
    return conn.execute(query, {"row_id": row_id} if row_id is not None else {}).first()


def ack_history(
    conn: Connection, ack_to: str, now: datetime, *, day_start: datetime, once_per_sender: timedelta
) -> AckHistory:
    """What the rate limits need about one recipient, from indexed queries: its
    acknowledgments within once_per_sender (when, for which subjects) and whether mail
    from it was machine mail in that time, today's count (from `day_start`), and the
    last minute's and hour's acknowledgments to anyone."""
    from ..tracker import normalize_subject

    recipient = ack_to.lower()
    since = now - once_per_sender
    horizon = min(since, day_start)
    acks = [
        (at, subject)
        for kind, at, subject in conn.execute(_ACKS_TO, {"recipient": recipient, "horizon": horizon})
        if kind == "ack"
    ]
    recent = [(at, normalize_subject(subject or "")) for at, subject in acks if at > since]
    today = sum(1 for at, _ in acks if at >= day_start)
    hour_ago, minute_ago = now - timedelta(hours=1), now - timedelta(minutes=1)
    hour, minute = conn.execute(_ACK_RATE, {"minute_ago": minute_ago, "hour_ago": hour_ago}).one()
    machine_rule = None
    if recent:  # only then can once-per-sender apply: ask what this sender sent lately
        machine_rule = conn.execute(_MACHINE_RULE, {"since": since, "sender": recipient}).scalar()
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
    rows = conn.execute(_LATEST_EVENTS, {"kinds": list(kinds)})
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
    # Two statements: an OR over a subquery would read every conversation on PostgreSQL.
    ids = [i for i in conn.execute(select(o.conversation_id).where(o.message_id.in_(message_ids)))
           .scalars() if i is not None] if message_ids else []  # fmt: skip
    if not references and not ids:
        return []
    return list(
        conn.execute(
            select(conversations).where(c.reference.in_(references) | c.id.in_(ids)).order_by(c.id)
        )
    )


FIRST_NUMBER = 1001  # a prefix's first conversation is PREFIX-1001


def next_reference(conn: Connection, prefix: str) -> str:
    """The next reference of `prefix` ("SHOP-1043"), counted in the caller's transaction:
    rolled back with it (a message set aside gives its number back), so references have no
    gaps. On PostgreSQL the counter row stays locked until that transaction ends, so two
    runners never get the same number; SQLite has one writer."""
    number = conn.execute(_BUMP, {"b_prefix": prefix}).scalar()
    if number is None:  # the prefix's first conversation (or one from before the counters)
        conn.execute(insert_ignore(conn, reference_counters).values(prefix=prefix, last_number=_start(conn)))
        number = conn.execute(_BUMP, {"b_prefix": prefix}).scalar_one()
    return f"{prefix}-{number}"


_BUMP = (
    update(reference_counters).where(reference_counters.c.prefix == bindparam("b_prefix"))
    .values(last_number=reference_counters.c.last_number + 1).returning(reference_counters.c.last_number)
)  # fmt: skip


def _start(conn: Connection) -> int:
    """Where a prefix without a counter row starts counting. Once counters are in use
    (migration 0014 seeded one for every prefix that had conversations), such a prefix is
    new: PREFIX-1001. A database with conversations but no counter at all was filled some
    other way: numbers after the highest row ids, which no reference numbered before the
    counters (message row id + 1000) can have reached — read from the primary keys only."""
    if conn.execute(select(reference_counters.c.prefix).limit(1)).first() is not None:
        return FIRST_NUMBER - 1
    conversation = conn.execute(select(func.max(conversations.c.id))).scalar()
    if not conversation:  # the very first conversation
        return FIRST_NUMBER - 1
    message = conn.execute(select(func.max(messages.c.id))).scalar() or 0
    return max(int(conversation), int(message)) + FIRST_NUMBER - 1


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

