"""Read-only queries for the operator's commands: tickets now; report and digest figures
as they come. Owns turning rows into plain dicts for output; it never writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, func, select

from . import store
from .config import Config


def ticket_rows(
    engine: Engine, config: Config, now: datetime, *, since: datetime | None = None,
    only_open: bool = False, only_breached: bool = False, only_at_risk: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """One dict per conversation: its promise, first reply and state; `breached` is true
    when the first reply came late or an open reply clock is past due."""
    c, y = store.conversations.c, store.cycles.c
    open_cycle = (
        select(y.conversation_id, func.max(y.id).label("cycle_id"))
        .where(y.replied_at.is_(None))
        .group_by(y.conversation_id)
        .subquery()
    )
    current = store.cycles.alias("current")
    query = (
        select(store.conversations, current.c.due_at.label("open_due"), current.c.warn_at.label("open_warn"),
               current.c.kind.label("open_kind"))
        .outerjoin(open_cycle, open_cycle.c.conversation_id == c.id)
        .outerjoin(current, and_(current.c.id == open_cycle.c.cycle_id))
        .order_by(c.received_at)
    )  # fmt: skip
    if since is not None:
        query = query.where(c.received_at >= since)
    result = []
    with engine.connect() as conn:
        for row in conn.execute(query):
            open_due = row.open_due
            overdue = open_due is not None and open_due <= now
            breached = bool(row.breached) or overdue
            is_open = open_due is not None
            at_risk = is_open and not overdue and row.open_warn is not None and row.open_warn <= now
            if only_open and not is_open:
                continue
            if only_breached and not breached:
                continue
            if only_at_risk and not at_risk:
                continue
            state = row.state
            if overdue and state == "awaiting_team":
                state = "breached"  # the scheduler may not have run since
            result.append(
                {
                    "reference": row.reference,
                    "inbox": row.inbox,
                    "customer": row.customer,
                    "subject": row.subject,
                    "priority": row.priority,
                    "received_at": config.calendar.local(row.received_at).isoformat(),
                    "due_at": config.calendar.local(row.due_at).isoformat(),
                    "first_reply_at": config.calendar.local(row.first_reply_at).isoformat()
                    if row.first_reply_at else None,
                    "first_reply_business_seconds": row.first_reply_business_seconds,
                    "state": state,
                    "breached": breached,
                    "next_due_at": config.calendar.local(open_due).isoformat()
                    if open_due is not None and row.open_kind == "next" else None,
                    "open_due_at": config.calendar.local(open_due).isoformat() if open_due is not None else None,
                }
            )  # fmt: skip
    if only_at_risk:
        result.sort(key=lambda r: r["open_due_at"] or "")
    return result


def replay_counts(engine: Engine) -> dict[str, int]:
    m, c = store.messages.c, store.conversations.c
    with engine.connect() as conn:
        conversations = conn.execute(select(func.count()).where(c.source == "replay")).scalar_one()
        team = conn.execute(
            select(func.count()).where(m.source == "replay", m.direction == "team")
        ).scalar_one()
        unmatched = conn.execute(
            select(func.count()).where(
                m.source == "replay", m.direction == "team", m.conversation_id.is_(None)
            )
        ).scalar_one()
        machine = conn.execute(
            select(func.count()).where(m.source == "replay", m.direction.in_(["machine", "ours"]))
        ).scalar_one()
    return {
        "conversations": conversations,
        "team_replies": team,
        "unmatched": unmatched,
        "machine": machine,
    }
