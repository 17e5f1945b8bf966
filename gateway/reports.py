"""The operator's read-only views: tickets, report and digest figures, status and the
set-aside messages. Owns turning the store's rows and figures (gateway/store/queries.py)
into plain dicts and digest values for output; it writes nothing and holds no SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import store
from .config import Config
from .store import (
    Engine,
    breaches_in,
    first_reply_figures,
    hourly_volume,
    intake_figures,
    next_reply_figures,
    oldest_unanswered,
    open_clocks,
    refusals,
)


def is_at_risk(due_at: datetime | None, warn_at: datetime | None, now: datetime) -> bool:
    """What "at risk" means everywhere (`tickets --at-risk`, the digest): a reply the team
    still owes, past its warning point (`alerts.warn_at`) and not yet due."""
    return due_at is not None and due_at > now and warn_at is not None and warn_at <= now


AT_RISK_SHOWN = 10  # at-risk conversations the digest lists; the rest are counted


def ticket_rows(
    engine: Engine, config: Config, now: datetime, *, since: datetime | None = None,
    only_open: bool = False, only_breached: bool = False, only_at_risk: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """One dict per conversation: its promise, first reply and state; `breached` is true
    when the first reply came late or an open reply clock is past due."""
    result = []
    with store.reading(engine) as conn:
        for row in store.tickets(conn, since):
            open_due = row.open_due
            overdue = open_due is not None and open_due <= now
            breached = bool(row.breached) or overdue
            is_open = open_due is not None
            at_risk = is_at_risk(open_due, row.open_warn, now)
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
    with store.reading(engine) as conn:
        return store.replay_counts(conn)


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
    with store.reading(engine) as conn:
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
    with store.reading(engine) as conn:
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
        owed = open_clocks(conn, since=now)
        at_risk = [
            Item(r.reference, r.customer, r.subject, r.priority, r.due_at, int(cal.elapsed(now, r.due_at).total_seconds()))
            for r in owed if is_at_risk(r.due_at, r.warn_at, now)
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
        periods=tuple(periods), breaches=tuple(breaches), at_risk=tuple(at_risk[:AT_RISK_SHOWN]),
        at_risk_more=max(len(at_risk) - AT_RISK_SHOWN, 0), open_on_time=len(owed) - len(at_risk), oldest=oldest,
        by_hour=by_hour, by_weekday=by_weekday, open_hours=open_hours, open_days=open_days,
        trend=tuple(trend), suggestions=tuple(suggestions), refused=refused,
    )  # fmt: skip


# ---------------------------------------------------------------------------- status


SERVICE_ALIVE = 90  # seconds: a heartbeat younger than this means the service runs


def service_running(engine: Engine, now: datetime) -> bool:
    """Whether `sla-gateway run` is alive (its heartbeat), so that a command leaves the
    sending to it instead of draining the outbox beside it."""
    from datetime import timedelta

    with store.reading(engine) as conn:
        beat = store.heartbeat(conn)
    return beat is not None and beat.beat_at >= now - timedelta(seconds=SERVICE_ALIVE)


def status(engine: Engine, now: datetime) -> dict[str, Any]:
    """Is the service alive, what is queued or set aside, when did each folder last sync."""
    from datetime import timedelta

    with store.reading(engine) as conn:
        beat = store.heartbeat(conn)
        outbox = store.outbox_counts(conn)
        waiting = store.message_counts(conn)
        shunted, stored = waiting.get("shunted", 0), waiting.get("stored", 0)
        recent = store.sent_since(conn, now - timedelta(hours=1))
        folders = [
            {
                "inbox": r.inbox,
                "folder": r.folder,
                "last_uid": r.last_uid,
                "synced_at": r.updated_at.isoformat(),
            }
            for r in store.sync_folders(conn)
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
    with store.reading(engine) as conn:
        counts = store.message_counts(conn, ids)
    return counts.get("shunted", 0), counts.get("stored", 0)


SET_ASIDE_LISTED = 100  # `status --json` lists the oldest this many set-aside messages


def set_aside(conn: Any, config: Config, *, ids: Any = None,
              limit: int | None = SET_ASIDE_LISTED) -> list[dict[str, Any]]:  # fmt: skip
    """Set-aside (shunted) messages, oldest first: id, received_at (shop time, whole
    seconds), from, subject and the error that set each aside. `ids`: only those."""
    rows = []
    for row in store.set_aside_messages(conn, ids=ids, limit=limit):
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
