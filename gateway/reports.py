"""Read-only queries for the operator's commands: tickets, report and digest figures,
status and the set-aside messages. Owns turning rows into plain dicts for output; it
never writes."""

from __future__ import annotations

from datetime import UTC, datetime
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


# ---------------------------------------------------------------------------- figures
# Everything below aggregates in SQL (counts, sums, percentiles by window functions), so
# a report over a million conversations reads numbers, not rows.

PERCENTILES = (("p50", 0.5), ("p80", 0.8), ("p90", 0.9))


def _pct_columns(seconds: Any, rank: Any, n: Any) -> list[Any]:
    from sqlalchemy import case

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
    from sqlalchemy import case, literal

    c = store.conversations.c
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
        partition = [c.priority] if key is c.priority else []
        ranked = (
            select(
                key.label("k"),
                c.first_reply_business_seconds.label("s"),
                func.row_number()
                .over(partition_by=partition, order_by=c.first_reply_business_seconds)
                .label("rn"),
                func.count().over(partition_by=partition).label("n"),
            )
            .where(*window, c.first_reply_business_seconds.isnot(None))
            .subquery()
        )
        pct = select(ranked.c.k, *_pct_columns(ranked.c.s, ranked.c.rn, ranked.c.n)).group_by(
            ranked.c.k
        )
        for row in conn.execute(pct):
            entry = out.setdefault(row.k, {"count": 0, "met": 0, "breached": 0, "answered": 0})
            entry.update(p50=row.p50, p80=row.p80, p90=row.p90)
    for entry in out.values():
        decided = entry["met"] + entry["breached"]
        entry["compliance"] = entry["met"] / decided if decided else None
        for name, _ in PERCENTILES:
            entry.setdefault(name, None)
    return out


def next_reply_figures(conn: Any, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
    from sqlalchemy import case

    y = store.cycles.c
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


def intake_figures(conn: Any, start: datetime, end: datetime) -> dict[str, Any]:
    """Acknowledgments sent, and messages not acknowledged by the rule that stopped them."""
    o, m = store.outbox.c, store.messages.c
    acks = conn.execute(
        select(func.count()).where(o.kind == "ack", o.status != "cancelled",
                                   o.created_at >= start, o.created_at < end)
    ).scalar_one()
    rules = {
        row[0]: row[1]
        for row in conn.execute(
            select(m.skip_rule, func.count())
            .where(m.skip_rule.isnot(None), m.received_at >= start, m.received_at < end)
            .group_by(m.skip_rule)
        )
    }
    return {"acknowledged": acks, "not_acknowledged": rules}


def hourly_volume(conn: Any, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """Conversations per UTC hour (at most 24 per day of the range), for local bucketing."""
    c = store.conversations.c
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
    c = store.conversations.c
    return list(conn.execute(
        select(c.reference, c.customer, c.subject, c.priority, c.due_at, c.first_reply_at,
               c.first_reply_business_seconds, c.window_seconds, c.stretch)
        .where(c.due_at >= start, c.due_at < end, c.due_at <= now,
               (c.breached.is_(True)) | (c.first_reply_at.is_(None)))
        .order_by(c.due_at).limit(limit)
    ))  # fmt: skip


def open_clocks(conn: Any, limit: int = 10) -> list[Any]:
    """Reply cycles the team still owes, soonest deadline first."""
    y, c = store.cycles.c, store.conversations.c
    return list(conn.execute(
        select(c.reference, c.customer, c.subject, y.priority, y.started_at, y.due_at, y.kind)
        .join(store.conversations, c.id == y.conversation_id)
        .where(y.replied_at.is_(None))
        .order_by(y.due_at).limit(limit)
    ))  # fmt: skip


def oldest_unanswered(conn: Any) -> Any:
    y, c = store.cycles.c, store.conversations.c
    return conn.execute(
        select(c.reference, c.customer, c.subject, y.priority, y.started_at, y.due_at)
        .join(store.conversations, c.id == y.conversation_id)
        .where(y.replied_at.is_(None))
        .order_by(y.started_at)
        .limit(1)
    ).first()


# ---------------------------------------------------------------------------- digest


def _period(conn: Any, label: str, start: datetime, end: datetime, now: datetime) -> Any:
    from .digest import Figures, Period

    figures = first_reply_figures(conn, start, end, now)
    intake = intake_figures(conn, start, end)
    priorities = tuple((name, Figures.of(figures.get(name))) for name in ("urgent", "high", "normal", "low")
                       if name in figures)  # fmt: skip
    return Period(label, start, end, Figures.of(figures.get("*")), priorities,
                  Figures.of(next_reply_figures(conn, start, end, now)), intake["acknowledged"],
                  tuple(sorted(intake["not_acknowledged"].items(), key=lambda kv: -kv[1])))  # fmt: skip


def report(
    engine: Engine, config: Config, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """The `report --json` object: every figure for [start, end)."""
    with engine.connect() as conn:
        figures = first_reply_figures(conn, start, end, now)
        intake = intake_figures(conn, start, end)
        next_reply = next_reply_figures(conn, start, end, now)
    overall = figures.pop("*", {"count": 0, "met": 0, "breached": 0, "compliance": None})
    return {
        "since": config.calendar.local(start).isoformat(),
        "until": config.calendar.local(end).isoformat(),
        "conversations": overall["count"],
        "acknowledged": intake["acknowledged"],
        "not_acknowledged": intake["not_acknowledged"],
        "compliance": overall["compliance"],
        "met": overall["met"],
        "breached": overall["breached"],
        "next_reply": next_reply,
        "priorities": {
            name: {
                "count": f["count"], "met": f["met"], "breached": f["breached"], "compliance": f["compliance"],
                "p50_seconds": f.get("p50"), "p80_seconds": f.get("p80"), "p90_seconds": f.get("p90"),
                "target_seconds": int(config.priority(name).first_reply.total_seconds())
                if name in {p.name for p in config.priorities} else None,
            }
            for name, f in sorted(figures.items(), key=lambda kv: ("urgent", "high", "normal", "low").index(kv[0])
                                  if kv[0] in ("urgent", "high", "normal", "low") else 9)
        },
    }  # fmt: skip


def digest_inputs(engine: Engine, config: Config, day: Any, now: datetime) -> Any:
    """Everything the digest shows for local date `day`, aggregated in SQL."""
    from datetime import timedelta

    from .digest import DigestData, Item, local_volume, opening_grid, previous_business_day, suggest

    cal = config.calendar
    tz = cal.tz

    def midnight(d: Any) -> datetime:
        return datetime.combine(d, datetime.min.time(), tz)

    day_start, day_end = midnight(day), midnight(day + timedelta(days=1))
    periods = []
    with engine.connect() as conn:
        periods.append(_period(conn, "day", day_start, day_end, now))
        periods.append(_period(conn, "7 days", midnight(day - timedelta(days=6)), day_end, now))
        periods.append(_period(conn, "30 days", midnight(day - timedelta(days=29)), day_end, now))
        breaches = []
        for row in breaches_in(conn, day_start, day_end, now):
            target = timedelta(seconds=row.window_seconds) * row.stretch
            if row.first_reply_business_seconds is not None:
                late = timedelta(seconds=row.first_reply_business_seconds) - target
            else:
                late = cal.elapsed(row.due_at, now)
            breaches.append(Item(row.reference, row.customer, row.subject, row.priority, row.due_at,
                                 max(int(late.total_seconds()), 0)))  # fmt: skip
        at_risk = [
            Item(r.reference, r.customer, r.subject, r.priority, r.due_at, int(cal.elapsed(now, r.due_at).total_seconds()))
            for r in open_clocks(conn) if r.due_at > now
        ]  # fmt: skip
        oldest_row = oldest_unanswered(conn)
        oldest = None
        if oldest_row is not None:
            oldest = Item(oldest_row.reference, oldest_row.customer, oldest_row.subject, oldest_row.priority,
                          oldest_row.due_at, int(cal.elapsed(oldest_row.started_at, now).total_seconds()))  # fmt: skip
        by_hour, by_weekday = local_volume(
            cal, hourly_volume(conn, midnight(day - timedelta(days=29)), day_end)
        )
        # Refusals since the previous digest's day ended: those of closed days (a Sunday,
        # a holiday) are in the next digest, not in none.
        since = midnight(previous_business_day(cal, day) + timedelta(days=1))
        refused = refusals(conn, min(since, day_start), day_end)
        trend = []
        for offset in range(29, -1, -1):
            d = day - timedelta(days=offset)
            f = first_reply_figures(
                conn, midnight(d), midnight(d + timedelta(days=1)), now, by_priority=False
            ).get("*")
            trend.append((d, f["compliance"] if f else None, f["p50"] if f else None))
        ninety = first_reply_figures(conn, midnight(day - timedelta(days=89)), day_end, now)
        suggestions = []
        months = [
            first_reply_figures(
                conn,
                midnight(day - timedelta(days=30 * (m + 1) - 1)),
                midnight(day - timedelta(days=30 * m - 1)),
                now,
                percentiles=False,
            )
            for m in (2, 1, 0)
        ]
        for p in config.priorities:
            monthly = [month.get(p.name, {}).get("compliance") for month in months]
            entry = ninety.get(p.name, {})
            suggestions.append(
                suggest(
                    p.name,
                    int(p.first_reply.total_seconds()),
                    entry.get("answered", 0),
                    entry.get("p80"),
                    monthly,
                )
            )
    open_hours, open_days = opening_grid(cal)
    inbox = config.inboxes[0]
    return DigestData(
        shop=inbox.from_name or inbox.address, day=day, timezone=config.hours.timezone,
        periods=tuple(periods), breaches=tuple(breaches), at_risk=tuple(at_risk[:10]), oldest=oldest,
        by_hour=by_hour, by_weekday=by_weekday, open_hours=open_hours, open_days=open_days,
        trend=tuple(trend), suggestions=tuple(suggestions), refused=refused,
    )  # fmt: skip


def refusals(conn: Any, start: datetime, end: datetime) -> tuple[tuple[str, int], ...]:
    """How many mails the listener refused in [start, end), by reason, most first (from
    the "refused" events: one a refusal, or one with the count of an hour's surplus)."""
    import json

    e = store.events.c
    counts: dict[str, int] = {}
    for (detail,) in conn.execute(
        select(e.detail).where(e.kind == "refused", e.at >= start, e.at < end)
    ):
        entry = json.loads(detail)
        reason = str(entry.get("reason", "other"))
        counts[reason] = counts.get(reason, 0) + int(entry.get("count", 1))
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# ---------------------------------------------------------------------------- status


SERVICE_ALIVE = 90  # seconds: a heartbeat younger than this means the service runs


def service_running(engine: Engine, now: datetime) -> bool:
    """Whether `sla-gateway run` is alive (its heartbeat), so that a command leaves the
    sending to it instead of draining the outbox beside it."""
    from datetime import timedelta

    h = store.heartbeats.c
    with engine.connect() as conn:
        beat = conn.execute(select(h.beat_at).where(h.name == "service")).scalar()
    return beat is not None and beat >= now - timedelta(seconds=SERVICE_ALIVE)


def status(engine: Engine, now: datetime) -> dict[str, Any]:
    """Is the service alive, what is queued or set aside, when did each folder last sync."""
    from datetime import timedelta

    o, m, h, s = store.outbox.c, store.messages.c, store.heartbeats.c, store.sync_state.c
    with engine.connect() as conn:
        beat = conn.execute(select(store.heartbeats).where(h.name == "service")).first()
        outbox: dict[str, int] = dict(conn.execute(select(o.status, func.count()).where(o.status.in_(["pending", "failed"]))
                                   .group_by(o.status)).all())  # fmt: skip
        shunted = conn.execute(select(func.count()).where(m.status == "shunted")).scalar_one()
        stored = conn.execute(select(func.count()).where(m.status == "stored")).scalar_one()
        hour = now - timedelta(hours=1)
        recent: dict[str, int] = dict(
            conn.execute(
                select(o.kind, func.count()).where(o.status == "sent", o.sent_at >= hour)
                .group_by(o.kind)
            ).all()
        )
        folders = [
            {
                "inbox": r.inbox,
                "folder": r.folder,
                "last_uid": r.last_uid,
                "synced_at": r.updated_at.isoformat(),
            }
            for r in conn.execute(select(store.sync_state).order_by(s.inbox, s.folder))
        ]
    running = beat is not None and beat.beat_at >= now - timedelta(seconds=SERVICE_ALIVE)
    return {
        "running": running,
        "pid": beat.pid if beat is not None else None,
        "host": beat.host if beat is not None else None,
        "started_at": beat.started_at.isoformat() if beat is not None else None,
        "last_heartbeat": beat.beat_at.isoformat() if beat is not None else None,
        "outbox_pending": int(outbox.get("pending", 0)),
        "outbox_failed": int(outbox.get("failed", 0)),
        "messages_waiting": int(stored),
        "messages_set_aside": int(shunted),
        "last_hour": {"acknowledgments": int(recent.get("ack", 0)), "alerts": int(recent.get("alert", 0)),
                      "breach_notices": int(recent.get("breach", 0)), "digests": int(recent.get("digest", 0))},
        "imap": folders,
    }  # fmt: skip


def processing_state(engine: Engine, ids: list[int]) -> tuple[int, int]:
    """Of these messages: how many are set aside (shunted), how many still wait (stored)."""
    m = store.messages.c
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for at in range(0, len(ids), 500):
            rows = conn.execute(select(m.status, func.count()).where(m.id.in_(ids[at : at + 500]))
                                .group_by(m.status))  # fmt: skip
            for status, n in rows:
                counts[status] = counts.get(status, 0) + int(n)
    return counts.get("shunted", 0), counts.get("stored", 0)


SET_ASIDE_LISTED = 100  # `status --json` lists the oldest this many set-aside messages


def set_aside(conn: Any, config: Config, *, ids: Any = None,
              limit: int | None = SET_ASIDE_LISTED) -> list[dict[str, Any]]:  # fmt: skip
    """Set-aside (shunted) messages, oldest first: id, received_at (shop time, whole
    seconds), from, subject and the error that set each aside. `ids`: only those."""
    m = store.messages.c
    query = (
        select(m.id, m.received_at, m.envelope_from, m.from_addr, m.subject, m.error, m.raw)
        .where(m.status == "shunted")
        .order_by(m.id)
    )
    if ids is not None:
        query = query.where(m.id.in_(list(ids)))
    if limit is not None:
        query = query.limit(limit)
    rows = []
    for row in conn.execute(query):
        sender, subject = _headline(row.raw)
        rows.append({
            "id": row.id,
            "received_at": config.calendar.local(row.received_at).replace(microsecond=0).isoformat(),
            "from": row.from_addr or sender or row.envelope_from or "",
            "subject": row.subject or subject,
            "error": row.error or "",
        })  # fmt: skip
    return rows


def _headline(raw: bytes | None) -> tuple[str, str]:
    """(From address, Subject) read from a stored message's headers, for people; empty
    when unreadable (a set-aside message may be anything) or purged."""
    from email.header import decode_header, make_header
    from email.parser import BytesParser
    from email.policy import compat32
    from email.utils import parseaddr

    from .render import clean_header

    if not raw:
        return "", ""
    try:
        headers = BytesParser(policy=compat32).parsebytes(raw[:65536], headersonly=True)
        sender = parseaddr(str(headers.get("From", "")))[1]
    except Exception:  # whatever the bytes are, `status` must show the rest
        return "", ""
    try:
        subject = str(make_header(decode_header(str(headers.get("Subject", "")))))
    except Exception:  # a malformed encoded word: show it as it is
        subject = str(headers.get("Subject", ""))
    return clean_header(sender, 200), clean_header(subject, 150)
