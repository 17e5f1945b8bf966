"""The outbox's statements: queueing outgoing mail, and the sender's claim and record.

Owns `enqueue`, the one way anything — the runner, the scheduler, the CLI, the outage
watch, the sign-in alerts — puts a message in the outbox (inside the caller's
transaction, so the row commits with whatever decided to send it); the sender's reads
(rows due, one row, whether a row is still pending) and its records (sent; failed or
retried later); the backlog figures behind `status` and the outage alert; and putting
failed rows back for `retry`. It never talks to a mail server.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.message import Message
from email.utils import parseaddr
from typing import Any

from sqlalchemy import bindparam, func, select, update

from .schema import messages, outbox

__all__ = [
    "enqueue",
    "mark_acknowledged",
    "next_send_at",
    "outbox_backlog",
    "outbox_row",
    "outbox_status",
    "record_retry",
    "record_sent",
    "requeue_failed",
    "rows_due",
]

_MSGID = re.compile(r"<([^<>\s]+)>")

# The statements run for every message sent, built once with parameters.
_o = outbox.c
_INSERT = outbox.insert()
_STATUS = select(_o.status).where(_o.id == bindparam("row_id"))
_SENT = update(outbox).where(_o.id == bindparam("row_id")).values(
    status="sent", sent_at=bindparam("at"), attempts=bindparam("tries"), last_error=None)  # fmt: skip


def enqueue(
    conn: Any,
    kind: str,
    message: Message,
    recipient: str,
    now: datetime,
    conversation_id: int | None = None,
    source_row: int | None = None,
    *,
    null_sender: bool = False,
) -> int:
    """Queue one outgoing message (inside the caller's transaction), due at `now`;
    returns its row id. `kind`: ack / alert / breach / reminder / closed / digest / notice. The envelope
    sender is the From address, or empty with `null_sender` (`[send] null_sender` for
    acknowledgments, so that nothing bounces back into the inbox)."""
    from ..render import to_wire

    sender = "" if null_sender else parseaddr(str(message["From"]))[1]
    result = conn.execute(
        _INSERT,
        dict(
            kind=kind,
            conversation_id=conversation_id,
            source_message_id=source_row,
            sender=sender,
            recipient=recipient.lower(),
            message_id=_MSGID.findall(str(message["Message-ID"]))[0],
            raw=to_wire(message),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        ),
    )
    return int(result.inserted_primary_key[0])


def rows_due(conn: Any, now: datetime, limit: int = 100,
             kinds: tuple[str, ...] | None = None) -> list[Any]:  # fmt: skip
    """Pending rows whose next attempt is due at `now` (of these kinds only, when
    given), in the order they are to be sent."""
    o = outbox.c
    query = select(outbox).where(o.status == "pending", o.next_attempt_at <= now)
    if kinds is not None:
        query = query.where(o.kind.in_(kinds))
    return list(conn.execute(query.order_by(o.next_attempt_at, o.id).limit(limit)))


def outbox_row(conn: Any, row_id: int) -> Any:
    """The outbox row `row_id` if it is still pending, else None."""
    o = outbox.c
    return conn.execute(select(outbox).where(o.id == row_id, o.status == "pending")).first()


def outbox_status(conn: Any, row_id: int) -> str | None:
    """A row's status now (the sender checks it was not cancelled since it was read)."""
    value = conn.execute(_STATUS, {"row_id": row_id}).scalar()
    return None if value is None else str(value)


def next_send_at(conn: Any) -> datetime | None:
    """When the earliest pending row is due (None: nothing is pending)."""
    o = outbox.c
    value = conn.execute(select(func.min(o.next_attempt_at)).where(o.status == "pending")).scalar()
    return value if isinstance(value, datetime) else None


def record_sent(conn: Any, row_id: int, at: datetime, attempts: int) -> str | None:
    """The row went out at `at`, on its `attempts`-th try (also when it was cancelled
    while being sent: it did go out). Returns the status it had until now."""
    was = conn.execute(_STATUS, {"row_id": row_id}).scalar()
    conn.execute(_SENT, {"row_id": row_id, "at": at, "tries": attempts})
    return None if was is None else str(was)


def mark_acknowledged(conn: Any, message_row: int) -> None:
    """The customer's message was acknowledged after all (its acknowledgment went out
    although a reply had cancelled it)."""
    conn.execute(update(messages).where(messages.c.id == message_row).values(acknowledged=True))


def record_retry(conn: Any, row_id: int, status: str, attempts: int, error: str,
                 next_attempt_at: datetime) -> None:  # fmt: skip
    """A failed try: `status` "pending" (tried again at `next_attempt_at`) or "failed";
    nothing when the row was cancelled meanwhile (it stays cancelled)."""
    o = outbox.c
    conn.execute(
        update(outbox).where(o.id == row_id, o.status == "pending")
        .values(status=status, attempts=attempts, last_error=error[:2000],
                next_attempt_at=next_attempt_at)
    )  # fmt: skip


def outbox_backlog(conn: Any) -> tuple[int, datetime | None, int, Any]:
    """The pending rows: (how many, the earliest next attempt, how many have failed at
    least once, the oldest row's created_at/attempts/last_error or None)."""
    o = outbox.c
    count, next_try, failing = conn.execute(
        select(func.count(), func.min(o.next_attempt_at), func.count(o.last_error))
        .where(o.status == "pending")
    ).one()  # fmt: skip
    if not count:
        return 0, None, 0, None
    oldest = conn.execute(
        select(o.created_at, o.attempts, o.last_error).where(o.status == "pending")
        .order_by(o.created_at, o.id).limit(1)
    ).one()  # fmt: skip
    return int(count), next_try, int(failing), oldest


def requeue_failed(conn: Any, now: datetime) -> int:
    """`retry`: every failed row pending again, due now, its attempts and error cleared;
    returns how many."""
    o = outbox.c
    return int(conn.execute(
        update(outbox).where(o.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=now, last_error=None)
    ).rowcount)  # fmt: skip
