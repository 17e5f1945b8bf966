"""The reports' queries: tickets, report and digest figures, status counts, set-aside lists.

Owns every read behind `tickets`, `report`, `status`, `replay`'s summary and the daily
digest. Figures are aggregated in SQL (counts, sums, percentiles by window functions),
so a report over a million conversations reads numbers, not rows. It only reads; the
caller opens the connection and turns rows into output (gateway/reports.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, select

from .schema import conversations, cycles, events, heartbeats, messages, outbox, sync_state

__all__ = [
    "PERCENTILES",
    "alerts_naming",
    "backlog_figures",
    "breaches_in",
    "conversation_cycles",
    "conversation_events",
    "conversation_outbox",
    "first_reply_figures",
    "heartbeat",
    "hourly_volume",
    "intake_figures",
    "message_counts",
    "next_reply_figures",
    "oldest_unanswered",
    "oldest_unresolved",
    "open_clocks",
    "outbox_counts",
    "refusals",
    "replay_counts",
    "resolution_figures",
    "sent_since",
    "set_aside_messages",
    "sync_folders",
    "tickets",
]

PERCENTILES = (("p50", 0.5), ("p80", 0.8), ("p90", 0.9))


def tickets(conn: Any, since: datetime | None = None) -> list[Any]:
    """Every conversation (received at or after `since`), oldest first, with its open
    reply cycle's `open_due`, `open_warn` and `open_kind` (None when none is open)."""
    c, y = conversations.c, cycles.c
    open_cycle = (
        select(y.conversation_id, func.max(y.id).label("cycle_id"))
        .where(y.replied_at.is_(None))
        .group_by(y.conversation_id)
        .subquery()
    )
    current = cycles.alias("current")
    query = (
        select(conversations, current.c.due_at.label("open_due"), current.c.warn_at.label("open_warn"),
               current.c.kind.label("open_kind"))
        .outerjoin(open_cycle, open_cycle.c.conversation_id == c.id)
        .outerjoin(current, and_(current.c.id == open_cycle.c.cycle_id))
        .order_by(c.received_at)
    )  # fmt: skip
    if since is not None:
        query = query.where(c.received_at >= since)
    return list(conn.execute(query))


# ---------------------------------------------------------------------------- one conversation


def conversation_events(conn: Any, conversation_id: int) -> list[Any]:
    """The conversation's events in the order they were written (id, at, kind, detail,
    message_row), each with its message's `message_at`, `direction` and `from_addr`
    (None for events about no message)."""
    e, m = events.c, messages.c
    return list(conn.execute(
        select(e.id, e.at, e.kind, e.detail, e.message_row, m.received_at.label("message_at"),
               m.direction, m.from_addr)
        .outerjoin(messages, m.id == e.message_row)
        .where(e.conversation_id == conversation_id)
        .order_by(e.id)
    ))  # fmt: skip


def conversation_outbox(conn: Any, conversation_id: int) -> list[Any]:
    """What was queued for the conversation (acknowledgments, notices), oldest first."""
    o = outbox.c
    return list(conn.execute(
        select(o.id, o.kind, o.recipient, o.status, o.created_at, o.sent_at, o.last_error,
               o.source_message_id)
        .where(o.conversation_id == conversation_id)
        .order_by(o.id)
    ))  # fmt: skip


def conversation_cycles(conn: Any, conversation_id: int) -> list[Any]:
    """The conversation's reply cycles (first, then next replies), oldest first."""
    y = cycles.c
    return list(conn.execute(select(cycles).where(y.conversation_id == conversation_id).order_by(y.id)))


def alerts_naming(conn: Any, reference: str) -> list[Any]:
    """The owner's alert mails (events "alert": warnings and breaches in one mail) that
    named this conversation, oldest first (at, detail)."""
    e = events.c
    quoted = json.dumps(reference)
    return [
        row for row in conn.execute(
            select(e.at, e.detail).where(e.kind == "alert", e.detail.contains(quoted, autoescape=True)).order_by(e.id)
        )
    ]  # fmt: skip


def replay_counts(conn: Any) -> dict[str, int]:
    """What `replay` rebuilt: conversations, team replies (and how many matched none),
    machine mail."""
    m, c = messages.c, conversations.c
    conversations_n = conn.execute(select(func.count()).where(c.source == "replay")).scalar_one()
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
        "conversations": conversations_n,
        "team_replies": team,
        "unmatched": unmatched,
        "machine": machine,
    }


# ---------------------------------------------------------------------------- figures


def _pct_columns(seconds: Any, rank: Any, n: Any) -> list[Any]:
    # Nearest rank: the smallest value whose rank reaches p * n.
    return [func.min(case((rank >= n * p, seconds))).label(name) for name, p in PERCENTILES]


def first_reply_figures(
    conn: Any,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    by_priority: bool = True,
    percentiles: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per priority (and "*" for all): count, met, breached, p50/p80/p90 business seconds of
    first replies, for conversations received in [start, end). Breached counts late replies
    and unanswered conversations already past their deadline at `now`."""
    c = conversations.c
    window = (c.received_at >= start, c.received_at < end)
    met = case((and_(c.first_reply_at.isnot(None), c.breached.is_(False)), 1), else_=0)
    late = case(
        (c.breached.is_(True), 1), (and_(c.first_reply_at.is_(None), c.due_at <= now), 1), else_=0
    )
    answered = case((c.first_reply_business_seconds.isnot(None), 1), else_=0)
    out: dict[str, dict[str, Any]] = {}
    keys: list[Any] = [c.priority, literal("*")] if by_priority else [literal("*")]
    for key in keys:
        if key is c.priority or not by_priority:
            counts = select(
                key.label("k"),
                func.count().label("count"),
                func.sum(met).label("met"),
                func.sum(late).label("breached"),
                func.sum(answered).label("answered"),
            ).where(*window)
            if key is c.priority:
                counts = counts.group_by(c.priority)
            for row in conn.execute(counts):
                if row.count:
                    out[row.k] = {
                        "count": row.count,
                        "met": int(row.met or 0),
                        "breached": int(row.breached or 0),
                        "answered": int(row.answered or 0),
                    }
        else:  # all priorities together: the sums of the per-priority rows
            rows = [v for k, v in out.items() if k != "*"]
            if rows:
                out["*"] = {
                    f: sum(r[f] for r in rows) for f in ("count", "met", "breached", "answered")
                }
        if not percentiles:
            continue
        seconds = c.first_reply_business_seconds
        for row in conn.execute(_percentiles(key, seconds, *window, seconds.isnot(None))):
            entry = out.setdefault(row.k, {"count": 0, "met": 0, "breached": 0, "answered": 0})
            entry.update(p50=row.p50, p80=row.p80, p90=row.p90)
    return _with_compliance(out)


def _with_compliance(out: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each entry's compliance (met of those decided; None when none is) and every
    percentile, None where nothing was measured."""
    for entry in out.values():
        decided = entry["met"] + entry["breached"]
        entry["compliance"] = entry["met"] / decided if decided else None
        for name, _ in PERCENTILES:
            entry.setdefault(name, None)
    return out


def _percentiles(key: Any, seconds: Any, *where: Any) -> Any:
    """p50/p80/p90 (nearest rank) of `seconds` over the conversations `where` selects,
    per priority (`key` the priority column) or for all of them (`key` a literal)."""
    c = conversations.c
    partition = [c.priority] if key is c.priority else []
    ranked = (
        select(
            key.label("k"),
            seconds.label("s"),
            func.row_number().over(partition_by=partition, order_by=seconds).label("rn"),
            func.count().over(partition_by=partition).label("n"),
        )
        .where(*where)
        .subquery()
    )
    return select(ranked.c.k, *_pct_columns(ranked.c.s, ranked.c.rn, ranked.c.n)).group_by(ranked.c.k)


def next_reply_figures(conn: Any, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
    """Next replies (after the first) whose cycle started in [start, end): count, met,
    breached, compliance."""
    y = cycles.c
    met = case((and_(y.replied_at.isnot(None), y.breached.is_(False)), 1), else_=0)
    late = case(
        (y.breached.is_(True), 1), (and_(y.replied_at.is_(None), y.due_at <= now), 1), else_=0
    )
    row = conn.execute(
        select(func.count(), func.sum(met), func.sum(late)).where(
            y.kind == "next", y.started_at >= start, y.started_at < end
        )
    ).one()
    met_n, late_n = int(row[1] or 0), int(row[2] or 0)
    return {"count": row[0], "met": met_n, "breached": late_n,
            "compliance": met_n / (met_n + late_n) if met_n + late_n else None}  # fmt: skip


def resolution_figures(conn: Any, start: datetime, end: datetime, now: datetime) -> dict[str, dict[str, Any]]:
    """Per priority (and "*" for all): count, met, breached, compliance and p50/p80/p90
    resolution business seconds of the conversations with a resolution target that were
    resolved in [start, end); breached also counts those received in [start, end) that
    are still unresolved past their target at `now`. `count` is resolved + overdue."""
    c = conversations.c
    targeted = c.resolve_window_seconds.isnot(None)
    resolved = and_(c.resolved_at.isnot(None), c.resolved_at >= start, c.resolved_at < end)
    overdue = and_(
        c.resolved_at.is_(None), c.received_at >= start, c.received_at < end,
        c.resolution_breached.is_(True) | and_(c.resolve_due_at.isnot(None), c.resolve_due_at <= now),
    )  # fmt: skip
    # A resolved case is judged by its final business time (close_after resolves at the
    # team's last reply, after the running clock may have been flagged).
    late = c.resolution_business_seconds > c.resolve_window_seconds
    met = case((and_(resolved, ~late), 1), else_=0)
    breached = case((and_(resolved, late), 1), (overdue, 1), else_=0)
    out: dict[str, dict[str, Any]] = {}
    rows = conn.execute(
        select(c.priority, func.count(), func.sum(met), func.sum(breached))
        .where(targeted, resolved | overdue)
        .group_by(c.priority)
    )
    for priority, count, met_n, late_n in rows:
        out[str(priority)] = {"count": int(count), "met": int(met_n or 0), "breached": int(late_n or 0)}
    if out:
        out["*"] = {f: sum(r[f] for r in out.values()) for f in ("count", "met", "breached")}
    for key in (c.priority, literal("*")):
        for row in conn.execute(_percentiles(key, c.resolution_business_seconds, targeted, resolved)):
            out.setdefault(str(row.k), {"count": 0, "met": 0, "breached": 0}).update(
                p50=row.p50, p80=row.p80, p90=row.p90
            )
    return _with_compliance(out)


def backlog_figures(conn: Any, start: datetime, end: datetime) -> dict[str, int]:
    """Conversations open (not resolved) at `start`, opened and resolved in [start, end),
    and open at `end` — each a count over one indexed column (received_at, resolved_at):
    open at a moment = received before it - resolved before it."""
    c = conversations.c

    def count(*where: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(conversations).where(*where)).scalar_one())

    received_before_start, resolved_before_start = count(c.received_at < start), count(c.resolved_at < start)
    opened = count(c.received_at >= start, c.received_at < end)
    resolved = count(c.resolved_at >= start, c.resolved_at < end)
    return {"open_at_start": received_before_start - resolved_before_start, "opened": opened,
            "resolved": resolved,
            "open_at_end": received_before_start + opened - resolved_before_start - resolved}  # fmt: skip


def intake_figures(conn: Any, start: datetime, end: datetime) -> dict[str, Any]:
    """Messages received in [start, end) that were acknowledged (their acknowledgment
    queued and not cancelled: `messages.acknowledged`, which outlives the outbox rows
    retention deletes), and those not acknowledged by the rule that stopped them; one
    pass over the period's messages."""
    m = messages.c
    acks = 0
    rules: dict[str, int] = {}
    for rule, count, acknowledged in conn.execute(
        select(m.skip_rule, func.count(), func.count().filter(m.acknowledged.is_(True)))
        .where(m.received_at >= start, m.received_at < end)
        .group_by(m.skip_rule)
    ):  # fmt: skip
        acks += int(acknowledged)
        if rule is not None:
            rules[str(rule)] = int(count)
    return {"acknowledged": acks, "not_acknowledged": rules}


def hourly_volume(conn: Any, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """Conversations per UTC hour (at most 24 per day of the range), for local bucketing."""
    c = conversations.c
    if conn.dialect.name == "postgresql":
        bucket = func.date_trunc("hour", func.timezone("UTC", c.received_at))
    else:
        bucket = func.strftime("%Y-%m-%d %H:00:00", c.received_at)
    rows = conn.execute(
        select(bucket.label("h"), func.count())
        .where(c.received_at >= start, c.received_at < end)
        .group_by(bucket)
    )
    result = []
    for hour, count in rows:
        value = hour if isinstance(hour, datetime) else datetime.fromisoformat(str(hour))
        result.append((value.replace(tzinfo=UTC) if value.tzinfo is None else value, int(count)))
    return result


def breaches_in(
    conn: Any, start: datetime, end: datetime, now: datetime, limit: int = 50
) -> list[Any]:
    """First replies that fell due in [start, end) and were missed (late or still unanswered)."""
    c = conversations.c
    return list(conn.execute(
        select(c.reference, c.customer, c.subject, c.priority, c.due_at, c.first_reply_at,
               c.first_reply_business_seconds, c.window_seconds, c.stretch)
        .where(c.due_at >= start, c.due_at < end, c.due_at <= now,
               (c.breached.is_(True)) | (c.first_reply_at.is_(None)))
        .order_by(c.due_at).limit(limit)
    ))  # fmt: skip


def open_clocks(conn: Any, since: datetime | None = None) -> list[Any]:
    """Reply cycles the team still owes (due after `since`, when given), soonest deadline
    first, with their warning point."""
    y, c = cycles.c, conversations.c
    query = (
        select(c.reference, c.customer, c.subject, y.priority, y.started_at, y.due_at, y.warn_at, y.kind)
        .join(conversations, c.id == y.conversation_id)
        .where(y.replied_at.is_(None))
        .order_by(y.due_at)
    )  # fmt: skip
    if since is not None:
        query = query.where(y.due_at > since)
    return list(conn.execute(query))


def oldest_unanswered(conn: Any) -> Any:
    """The reply cycle that has waited longest for the team (None: nothing waits)."""
    y, c = cycles.c, conversations.c
    return conn.execute(
        select(c.reference, c.customer, c.subject, y.priority, y.started_at, y.due_at)
        .join(conversations, c.id == y.conversation_id)
        .where(y.replied_at.is_(None))
        .order_by(y.started_at)
        .limit(1)
    ).first()


def oldest_unresolved(conn: Any) -> Any:
    """The open (not resolved) conversation received longest ago, with its resolution
    clock's columns (None: every conversation is resolved)."""
    c = conversations.c
    return conn.execute(
        select(conversations).where(c.state != "resolved").order_by(c.received_at, c.id).limit(1)
    ).first()


def refusals(conn: Any, start: datetime, end: datetime) -> tuple[tuple[str, int], ...]:
    """How many mails the listener refused in [start, end), by reason, most first (from
    the "refused" events: one a refusal, or one with the count of an hour's surplus)."""
    e = events.c
    counts: dict[str, int] = {}
    for (detail,) in conn.execute(
        select(e.detail).where(e.kind == "refused", e.at >= start, e.at < end)
    ):
        entry = json.loads(detail)
        reason = str(entry.get("reason", "other"))
        counts[reason] = counts.get(reason, 0) + int(entry.get("count", 1))
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# ---------------------------------------------------------------------------- status


def heartbeat(conn: Any, name: str = "service") -> Any:
    """The heartbeat row of a running service (pid, host, started_at, beat_at) or None."""
    h = heartbeats.c
    return conn.execute(select(heartbeats).where(h.name == name)).first()


def outbox_counts(conn: Any) -> dict[str, int]:
    """Outbox rows pending and failed, by status."""
    o = outbox.c
    return {str(k): int(v) for k, v in conn.execute(
        select(o.status, func.count()).where(o.status.in_(["pending", "failed"])).group_by(o.status)
    ).all()}  # fmt: skip


def message_counts(conn: Any, ids: Iterable[int] | None = None) -> dict[str, int]:
    """Messages by status: of these ids when given, else how many are stored (waiting)
    and shunted (set aside)."""
    m = messages.c
    counts: dict[str, int] = {}
    if ids is None:  # the two `status` shows, each counted from the index
        for status in ("stored", "shunted"):
            counts[status] = int(conn.execute(
                select(func.count()).where(m.status == status)).scalar_one())  # fmt: skip
        return counts
    wanted = list(ids)
    for at in range(0, len(wanted), 500):
        rows = conn.execute(select(m.status, func.count()).where(m.id.in_(wanted[at : at + 500]))
                            .group_by(m.status))  # fmt: skip
        for status, n in rows:
            counts[status] = counts.get(status, 0) + int(n)
    return counts


def sent_since(conn: Any, since: datetime) -> dict[str, int]:
    """Outgoing mail sent at or after `since`, by kind (ack, alert, breach, digest ...)."""
    o = outbox.c
    return {str(k): int(v) for k, v in conn.execute(
        select(o.kind, func.count()).where(o.status == "sent", o.sent_at >= since).group_by(o.kind)
    ).all()}  # fmt: skip


def sync_folders(conn: Any) -> list[Any]:
    """Every IMAP folder's sync state (inbox, folder, last_uid, updated_at), by name."""
    s = sync_state.c
    return list(conn.execute(select(sync_state).order_by(s.inbox, s.folder)))


def set_aside_messages(conn: Any, *, ids: Iterable[int] | None = None,
                       limit: int | None = None) -> list[Any]:  # fmt: skip
    """Set-aside (shunted) messages, oldest first (id, received_at, envelope_from,
    from_addr, subject, error, raw); `ids`: only those; at most `limit`."""
    m = messages.c
    query = (
        select(m.id, m.received_at, m.envelope_from, m.from_addr, m.subject, m.error, m.raw)
        .where(m.status == "shunted")
        .order_by(m.id)
    )
    if ids is not None:
        query = query.where(m.id.in_(list(ids)))
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query))
