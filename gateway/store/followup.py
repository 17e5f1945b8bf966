"""What the customer hears after the acknowledgment: the statements behind it.

Owns the reads and writes of the follow-through (gateway/scheduler.py and the `notice`
command): the current exception notice (set, cleared, the one in force), the coupon
codes given with breach-notice remedies (never one twice), the conversations waiting for
the customer that may get a reminder, counting what we already sent a customer today,
and the customer's messages our follow-up threads to. The caller opens the transaction
and decides; these only read and mark.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update

from .schema import conversations, exception_notices, messages, outbox, remedy_codes

__all__ = [
    "CUSTOMER_KINDS",
    "clear_notices",
    "code_of_conversation",
    "codes_given",
    "current_notice",
    "customer_message_ids",
    "give_code",
    "sent_to_since",
    "set_notice",
    "waiting_for_customer",
]

# What we send a customer on our own: counted together for `max_per_sender_per_day`, and
# sent with an empty envelope sender under `[send] null_sender`.
CUSTOMER_KINDS = ("ack", "breach", "reminder", "closed")


def set_notice(conn: Any, text: str, until: datetime | None, now: datetime, by: str) -> int:
    """The exception notice from now on (clearing the one before); returns its id."""
    clear_notices(conn, now)
    result = conn.execute(
        exception_notices.insert(), dict(text=text, until=until, set_at=now, set_by=by[:320])
    )
    return int(result.inserted_primary_key[0])


def clear_notices(conn: Any, now: datetime) -> int:
    """No exception notice from now on; returns how many were in force."""
    n = exception_notices.c
    return int(conn.execute(
        update(exception_notices).where(n.cleared_at.is_(None)).values(cleared_at=now)
    ).rowcount)  # fmt: skip


_n = exception_notices.c
# Asked for every acknowledgment: built once, with `now` a parameter.
_CURRENT = (
    select(exception_notices)
    .where(_n.cleared_at.is_(None), _n.set_at <= bindparam("now"),
           _n.until.is_(None) | (_n.until > bindparam("now")))
    .order_by(_n.id.desc()).limit(1)
)  # fmt: skip


def current_notice(conn: Any, now: datetime) -> Any:
    """The exception notice in force at `now` (text, until, set_at, set_by), or None."""
    return conn.execute(_CURRENT, {"now": now}).first()


def codes_given(conn: Any, codes_file: str) -> set[str]:
    """Every code ever given from this file."""
    r = remedy_codes.c
    return {str(c) for c in conn.execute(select(r.code).where(r.codes_file == codes_file)).scalars()}


def code_of_conversation(conn: Any, conversation_id: int, codes_file: str) -> str | None:
    """The code this conversation was already given from this file, if any."""
    r = remedy_codes.c
    value = conn.execute(
        select(r.code).where(r.conversation_id == conversation_id, r.codes_file == codes_file)
        .order_by(r.given_at).limit(1)
    ).scalar()  # fmt: skip
    return None if value is None else str(value)


def give_code(conn: Any, code: str, codes_file: str, conversation_id: int, now: datetime) -> bool:
    """Record `code` as given to the conversation; False when it was given already (the
    code is the key: no code goes out twice, whatever file it came from)."""
    r = remedy_codes.c
    if conn.execute(select(r.code).where(r.code == code)).first() is not None:
        return False
    conn.execute(remedy_codes.insert(), dict(code=code, codes_file=codes_file,
                                             conversation_id=conversation_id, given_at=now))  # fmt: skip
    return True


def waiting_for_customer(conn: Any) -> list[Any]:
    """Pending conversations (not replayed) with the start of their pause, for reminders."""
    c = conversations.c
    return list(conn.execute(
        select(conversations)
        .where(c.state == "pending", c.waiting_since.isnot(None), c.source.is_(None))
        .order_by(c.waiting_since)
    ))  # fmt: skip


def sent_to_since(conn: Any, recipient: str, since: datetime) -> int:
    """How many messages for customers (acknowledgments, notices, reminders) were queued
    to `recipient` since `since` and not cancelled."""
    o = outbox.c
    return int(conn.execute(
        select(func.count()).select_from(outbox)
        .where(o.recipient == recipient.lower(), o.created_at >= since,
               o.kind.in_(CUSTOMER_KINDS), o.status != "cancelled")
    ).scalar() or 0)  # fmt: skip


def customer_message_ids(conn: Any, conversation_id: int, limit: int = 10) -> list[str]:
    """The Message-IDs of the customer's messages in the conversation, oldest first (the
    last `limit`): what our follow-up answers (In-Reply-To the last, References all)."""
    m = messages.c
    found = conn.execute(
        select(m.message_id)
        .where(m.conversation_id == conversation_id, m.direction == "customer", m.message_id.isnot(None))
        .order_by(m.received_at.desc(), m.id.desc()).limit(limit)
    ).scalars()  # fmt: skip
    return [str(v) for v in reversed(list(found))]

