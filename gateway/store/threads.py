"""What threading and reply tracking read and write: participants, thread lookups,
unmatched replies, cycles, conversation state.

Owns every statement of gateway/conversations.py, which decides (which conversation a
message belongs to, the participant rule, the order of adopted replies, the tracker's
transitions) and calls these: who takes part in a conversation; which conversations a
message's thread headers or subject tag name; the keys kept for a team reply that
matched nothing, and adopting such a reply later; what is still queued for the customer
and cancelling it; opening and finding reply cycles. Conversation and cycle updates are
`update_conversation` and `update_cycle` (timers.py). Values in, rows out; no decisions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update

from ..tracker import State
from .schema import conversations, cycles, insert_ignore, messages, outbox, participants, reply_keys

__all__ = [
    "add_cycle",
    "add_participants",
    "add_reply_keys",
    "adopt_reply",
    "cancel_pending",
    "conversation_by_reference",
    "conversation_or_none",
    "mark_unacknowledged",
    "messages_with_id",
    "open_conversations_of",
    "open_cycle_of",
    "participant",
    "participants_of",
    "pending_for_customer",
    "references_of",
    "replies_keyed",
    "team_reply_after",
    "thread_owners",
    "unmatched_team_replies",
]


# The statements run for every message are built once, with parameters (IN lists as
# expanding parameters): building a statement costs more than running it.
_m, _o, _p, _c, _k, _y = messages.c, outbox.c, participants.c, conversations.c, reply_keys.c, cycles.c
_PARTICIPANT = select(_p.conversation_id).where(
    _p.conversation_id == bindparam("conv"), _p.address == bindparam("address"))  # fmt: skip
_PARTICIPANTS = select(_p.address).where(_p.conversation_id == bindparam("conv"))
_CONVERSATION = select(conversations).where(_c.id == bindparam("conv"))
_STORED_OWNERS = select(_m.message_id, _m.conversation_id).where(
    _m.message_id.in_(bindparam("ids", expanding=True)), _m.conversation_id.isnot(None))  # fmt: skip
_SENT_OWNERS = select(_o.message_id, _o.conversation_id).where(
    _o.message_id.in_(bindparam("ids", expanding=True)), _o.conversation_id.isnot(None))  # fmt: skip
_BY_REFERENCE = select(_c.id).where(_c.reference == bindparam("reference"))
_WITH_ID = select(func.count()).where(_m.message_id == bindparam("message_id"))
_KEYED = select(_k.message_row, _k.key).where(_k.key.in_(bindparam("keys", expanding=True)))
_OPEN_CYCLE = (select(cycles).where(_y.conversation_id == bindparam("conv"), _y.replied_at.is_(None))
               .order_by(_y.id.desc()).limit(1))  # fmt: skip


# ---------------------------------------------------------------------------- participants


def add_participants(conn: Any, conversation_id: int, addresses: Iterable[str]) -> None:
    """Record these (already normalised) addresses as taking part; known ones are skipped."""
    values = [{"conversation_id": conversation_id, "address": a} for a in addresses]
    if values:
        conn.execute(insert_ignore(conn, participants), values)


def participant(conn: Any, conversation_id: int, address: str) -> bool:
    """Whether `address` (already normalised) takes part in the conversation."""
    return conn.execute(_PARTICIPANT, {"conv": conversation_id, "address": address}).first() is not None


def participants_of(conn: Any, conversation_id: int) -> list[str]:
    """The addresses taking part in the conversation."""
    return list(conn.execute(_PARTICIPANTS, {"conv": conversation_id}).scalars())


# ---------------------------------------------------------------------------- lookups


def conversation_or_none(conn: Any, conversation_id: int) -> Any:
    """One conversation's row, or None (`timers.conversation` insists on one)."""
    return conn.execute(_CONVERSATION, {"conv": conversation_id}).first()


def thread_owners(conn: Any, ids: list[str]) -> list[tuple[str, int]]:
    """(Message-ID, conversation id) of the stored messages, then of the outbox rows, with
    one of these Message-IDs that belong to a conversation."""
    return [
        (row[0], row[1])
        for row in (*conn.execute(_STORED_OWNERS, {"ids": ids}), *conn.execute(_SENT_OWNERS, {"ids": ids}))
    ]


def conversation_by_reference(conn: Any, reference: str) -> int | None:
    """The id of the conversation with this reference ("SHOP-1042"), or None."""
    found = conn.execute(_BY_REFERENCE, {"reference": reference}).scalar()
    return None if found is None else int(found)


def references_of(conn: Any, conversation_ids: list[int]) -> dict[int, str]:
    """The references of these conversations, by id."""
    c = conversations.c
    return dict(conn.execute(select(c.id, c.reference).where(c.id.in_(conversation_ids))).all())


def open_conversations_of(conn: Any, addresses: list[str], limit: int) -> list[Any]:
    """The newest `limit` conversations not closed that one of `addresses` takes part in."""
    c, p = conversations.c, participants.c
    return list(conn.execute(
        select(conversations)
        .where(
            c.id.in_(select(p.conversation_id).where(p.address.in_(addresses))),
            c.state != State.RESOLVED.value,
        )
        .order_by(c.received_at.desc())
        .limit(limit)
    ))  # fmt: skip


def messages_with_id(conn: Any, message_id: str) -> int:
    """How many stored messages carry this Message-ID."""
    return int(conn.execute(_WITH_ID, {"message_id": message_id}).scalar_one())


# ---------------------------------------------------------------------------- unmatched replies


def add_reply_keys(conn: Any, message_row: int, keys: list[str]) -> None:
    """Keep what could match a team reply later; known keys are skipped."""
    conn.execute(
        insert_ignore(conn, reply_keys), [{"message_row": message_row, "key": k} for k in keys]
    )


def replies_keyed(conn: Any, keys: list[str]) -> list[tuple[int, str]]:
    """(message row, key) of the kept keys among `keys`."""
    return [(row[0], row[1]) for row in conn.execute(_KEYED, {"keys": keys})]


def unmatched_team_replies(conn: Any, message_rows: list[int]) -> list[Any]:
    """Of these messages, the team's in no conversation (id, received_at, subject, raw)."""
    m = messages.c
    return list(conn.execute(
        select(m.id, m.received_at, m.subject, m.raw).where(
            m.id.in_(message_rows), m.conversation_id.is_(None), m.direction == "team"
        )
    ))  # fmt: skip


_TEAM_REPLY_AFTER = (
    select(messages.c.id, messages.c.received_at, messages.c.raw)
    .where(messages.c.conversation_id == bindparam("conversation"), messages.c.direction == "team",
           messages.c.received_at > bindparam("after"))
    .order_by(messages.c.received_at, messages.c.id).limit(1)
)  # fmt: skip


def team_reply_after(conn: Any, conversation_id: int, after: datetime) -> Any:
    """The conversation's earliest team message received after `after` (id,
    received_at, raw), or None."""
    return conn.execute(_TEAM_REPLY_AFTER, {"conversation": conversation_id, "after": after}).first()


def adopt_reply(conn: Any, message_row: int, conversation_id: int, match: str) -> None:
    """An unmatched reply joins the conversation (matched by `match`); its keys go."""
    m, k = messages.c, reply_keys.c
    conn.execute(
        update(messages)
        .where(m.id == message_row)
        .values(conversation_id=conversation_id, match=match)
    )
    conn.execute(delete(reply_keys).where(k.message_row == message_row))


# ---------------------------------------------------------------------------- queued for the customer


_PENDING_FOR_CUSTOMER = (
    select(outbox.c.id, outbox.c.kind, outbox.c.source_message_id)
    .where(outbox.c.conversation_id == bindparam("conversation"),
           outbox.c.kind.in_(bindparam("kinds", expanding=True)), outbox.c.status == "pending")
    .order_by(outbox.c.id)
)  # fmt: skip


def pending_for_customer(conn: Any, conversation_id: int, kinds: Iterable[str]) -> list[Any]:
    """The conversation's outbox rows of these kinds still pending (id, kind,
    source_message_id), oldest first."""
    return list(conn.execute(_PENDING_FOR_CUSTOMER, {"conversation": conversation_id, "kinds": list(kinds)}))


def cancel_pending(conn: Any, outbox_id: int, reason: str) -> bool:
    """Cancel an outbox row if it is still pending; False when it no longer was."""
    o = outbox.c
    flipped = conn.execute(
        update(outbox)
        .where(o.id == outbox_id, o.status == "pending")
        .values(status="cancelled", last_error=reason)
    ).rowcount
    return bool(flipped == 1)


def mark_unacknowledged(conn: Any, message_row: int) -> None:
    """The customer's message has no acknowledgment after all (it was cancelled)."""
    conn.execute(update(messages).where(messages.c.id == message_row).values(acknowledged=False))


# ---------------------------------------------------------------------------- cycles


def add_cycle(conn: Any, values: dict[str, Any]) -> None:
    """A new reply cycle."""
    conn.execute(cycles.insert(), values)


def open_cycle_of(conn: Any, conversation_id: int) -> Any:
    """The conversation's newest cycle without a reply, or None."""
    return conn.execute(_OPEN_CYCLE, {"conv": conversation_id}).first()
