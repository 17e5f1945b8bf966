"""Conversations in the database: opening them, matching team replies, moving their state.

Owns: the writes that reply tracking makes inside the pipeline's transaction — a new
conversation and its first reply cycle; a team reply closing the open cycle (measured in
business time by `tracker.measure`) and moving the state; a customer follow-up starting a
next-reply cycle or raising the priority; and finding which conversation a team reply
belongs to (In-Reply-To/References, our reference tag, or — last resort, recorded as
such — recipient and normalised subject among open conversations). Decisions come from
the pure `tracker`; this module only reads and writes rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from . import store
from .config import PRIORITIES, Config
from .model import Classification, Parsed
from .tracker import (
    Clock,
    Event,
    State,
    measure,
    normalize_subject,
    reply_event,
    start_clock,
    transition,
)

_TAG = re.compile(r"\[([A-Z][A-Z0-9]{0,15}-\d+)\]")


def subject_tags(subject: str) -> list[str]:
    """Our conversation references in a subject line ("[SHOP-1042]" -> "SHOP-1042")."""
    return _TAG.findall(subject)


@dataclass(frozen=True)
class Match:
    conversation: Any  # a conversations row, or None
    how: str | None  # "references", "reference-tag", "subject", or None


def find_by_thread(conn: Any, parsed: Parsed) -> Match:
    """The conversation a message continues by its thread headers or our subject tag."""
    c = store.conversations.c
    ids = list(dict.fromkeys((*parsed.in_reply_to, *parsed.references)))[-50:]
    if ids:
        conv_id = conn.execute(
            select(store.messages.c.conversation_id)
            .where(
                store.messages.c.message_id.in_(ids), store.messages.c.conversation_id.isnot(None)
            )
            .limit(1)
        ).scalar()
        if conv_id is None:
            conv_id = conn.execute(
                select(store.outbox.c.conversation_id)
                .where(
                    store.outbox.c.message_id.in_(ids), store.outbox.c.conversation_id.isnot(None)
                )
                .limit(1)
            ).scalar()
        if conv_id is not None:
            row = conn.execute(select(store.conversations).where(c.id == conv_id)).first()
            return Match(row, "references")
    for tag in subject_tags(parsed.subject):
        row = conn.execute(select(store.conversations).where(c.reference == tag)).first()
        if row is not None:
            return Match(row, "reference-tag")
    return Match(None, None)


def find_for_reply(conn: Any, parsed: Parsed) -> Match:
    """Thread headers and tag first; else the newest open conversation with one of the
    reply's recipients whose normalised subject is the same."""
    found = find_by_thread(conn, parsed)
    if found.conversation is not None:
        return found
    recipients = [a.key for a in (*parsed.to, *parsed.cc)]
    subject = normalize_subject(parsed.subject)
    if not recipients or not subject:
        return Match(None, None)
    c = store.conversations.c
    candidates = conn.execute(
        select(store.conversations)
        .where(c.customer.in_(recipients), c.state != State.CLOSED.value)
        .order_by(c.received_at.desc())
        .limit(20)
    )
    for row in candidates:
        if normalize_subject(row.subject) == subject:
            return Match(row, "subject")
    return Match(None, None)


def _clock(config: Config, priority: str, started_at: datetime, *, next_reply: bool) -> Clock:
    p = config.priority(priority)
    window = p.next_reply if next_reply else p.first_reply
    return start_clock(config.calendar, started_at, window, config.alerts.warn_at)


def open_cycle(
    conn: Any, config: Config, conversation_id: int, priority: str, started_at: datetime, *,
    kind: str, replay: bool, now: datetime,
) -> Clock:  # fmt: skip
    clock = _clock(config, priority, started_at, next_reply=kind == "next")
    conn.execute(
        store.cycles.insert(), dict(
            conversation_id=conversation_id,
            kind=kind,
            priority=priority,
            started_at=started_at,
            window_seconds=int(clock.window.total_seconds()),
            stretch=clock.stretch,
            due_at=clock.due_at,
            warn_at=clock.warn_at,
            breached=False,
            # Rebuilt history raises no alarms: its warnings and breaches are long past.
            warned_at=now if replay else None,
            breach_alerted_at=now if replay else None,
        )
    )
    return clock


def open_cycle_row(conn: Any, conversation_id: int) -> Any:
    y = store.cycles.c
    return conn.execute(
        select(store.cycles)
        .where(y.conversation_id == conversation_id, y.replied_at.is_(None))
        .order_by(y.id.desc())
        .limit(1)
    ).first()


def team_reply(conn: Any, config: Config, conversation: Any, parsed: Parsed, replied_at: datetime,
               now: datetime) -> dict[str, Any]:  # fmt: skip
    """Close the open cycle with this reply, measure it, and move the state.

    Replies can arrive out of order (the Sent folder is read after a customer's newer
    message came in over SMTP): a reply older than the open cycle changes nothing but
    `last_team_at`; a reply that closes a cycle while the customer has written since
    opens the next cycle from that customer message."""
    c = store.conversations.c
    last_team = max(t for t in (conversation.last_team_at, replied_at) if t is not None)
    values: dict[str, Any] = {"last_team_at": last_team}
    detail: dict[str, Any] = {}
    cycle = open_cycle_row(conn, conversation.id)
    if cycle is None or replied_at < cycle.started_at:
        conn.execute(update(store.conversations).where(c.id == conversation.id).values(**values))
        return {
            "state": conversation.state,
            "note": "older than the open reply clock; nothing to measure",
        }
    clock = Clock(
        cycle.started_at, timedelta(seconds=cycle.window_seconds), cycle.stretch, cycle.due_at, None
    )
    result = measure(config.calendar, clock, replied_at)
    seconds = int(result.business_time.total_seconds())
    conn.execute(
        update(store.cycles)
        .where(store.cycles.c.id == cycle.id)
        .values(replied_at=replied_at, business_seconds=seconds, breached=not result.met)
    )
    detail = {"cycle": cycle.kind, "business_seconds": seconds, "met": result.met}
    if cycle.kind == "first":
        values.update(
            first_reply_at=replied_at, first_reply_business_seconds=seconds,
            breached=bool(conversation.breached or not result.met),
        )  # fmt: skip
    values["next_due_at"] = None
    state, _ = transition(conversation.state, reply_event(parsed))
    customer_since = conversation.last_customer_at
    if (
        customer_since is not None
        and customer_since > replied_at
        and customer_since > cycle.started_at
    ):
        # The customer wrote after this reply: the team owes the next answer already.
        state, _ = transition(state, Event.CUSTOMER_MESSAGE)
        nxt = open_cycle(conn, config, conversation.id, conversation.priority, customer_since,
                         kind="next", replay=conversation.source == "replay", now=now)  # fmt: skip
        values["next_due_at"] = nxt.due_at
        detail["next_due_at"] = nxt.due_at.isoformat()
    values["state"] = state.value
    conn.execute(update(store.conversations).where(c.id == conversation.id).values(**values))
    detail["state"] = state.value
    return detail


def customer_followup(
    conn: Any, config: Config, conversation: Any, classification: Classification, at: datetime, *,
    replay: bool, now: datetime,
) -> dict[str, Any]:  # fmt: skip
    """The customer wrote again: maybe a higher priority; maybe a new reply clock."""
    c = store.conversations.c
    detail: dict[str, Any] = {}
    values: dict[str, Any] = {"last_customer_at": at}
    priority = conversation.priority
    rank = {name: i for i, name in enumerate(PRIORITIES)}
    if rank[classification.priority] < rank[priority]:
        # Raised: the promise is recomputed from the original receipt.
        detail["raised"] = {
            "from": priority,
            "to": classification.priority,
            "why": classification.reason,
        }
        priority = classification.priority
        values.update(
            priority=priority,
            priority_reason=f"{conversation.priority_reason}; raised: {classification.reason}"[
                :2000
            ],
        )
        cycle = open_cycle_row(conn, conversation.id)
        if cycle is not None:
            clock = _clock(config, priority, cycle.started_at, next_reply=cycle.kind == "next")
            conn.execute(
                update(store.cycles)
                .where(store.cycles.c.id == cycle.id)
                .values(priority=priority, window_seconds=int(clock.window.total_seconds()), stretch=clock.stretch,
                        due_at=clock.due_at, warn_at=clock.warn_at)
            )  # fmt: skip
            if cycle.kind == "first":
                values.update(due_at=clock.due_at, window_seconds=int(clock.window.total_seconds()))
            else:
                values["next_due_at"] = clock.due_at
            detail["due_at"] = clock.due_at.isoformat()
    state, new_clock = transition(conversation.state, Event.CUSTOMER_MESSAGE)
    if new_clock:
        clock = open_cycle(
            conn, config, conversation.id, priority, at, kind="next", replay=replay, now=now
        )
        values["next_due_at"] = clock.due_at
        values["closed_at"] = None
        detail["next_due_at"] = clock.due_at.isoformat()
    values["state"] = state.value
    conn.execute(update(store.conversations).where(c.id == conversation.id).values(**values))
    detail["state"] = state.value
    return detail
