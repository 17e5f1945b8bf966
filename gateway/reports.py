"""The operator's read-only views: tickets, report and digest figures, status and the
set-aside messages. Owns turning the store's rows and figures (gateway/store/queries.py)
into plain dicts and digest values for output; it writes nothing and holds no SQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from . import store
from .config import Config
from .conversations import resolution_of
from .store import (
    Engine,
    backlog_figures,
    breaches_in,
    first_reply_figures,
    hourly_volume,
    intake_figures,
    next_reply_figures,
    oldest_unanswered,
    oldest_unresolved,
    open_clocks,
    refusals,
    resolution_figures,
)

PRIORITY_ORDER = ("urgent", "high", "normal", "low")


def in_words(seconds: float | None) -> str:
    """A duration for people, in words: "45 minutes", "1 hour 30 minutes", "26 hours"
    (business hours are never folded into days), "20 seconds" under a minute."""
    if seconds is None:
        return "—"
    total = round(seconds)
    if total < 60:
        return f"{total} second" + ("" if total == 1 else "s")
    hours, minutes = divmod(round(total / 60), 60)
    parts = [f"{hours} hour" + ("" if hours == 1 else "s")] if hours else []
    if minutes:
        parts.append(f"{minutes} minute" + ("" if minutes == 1 else "s"))
    return " ".join(parts)


def _iso(config: Config, moment: datetime | None) -> str | None:
    return config.calendar.local(moment).isoformat() if moment is not None else None


def _resolution_now(config: Config, row: Any, now: datetime) -> tuple[int, int, bool]:
    """(Resolution business seconds, customer waiting business seconds, breached) of a
    conversation at `now`: final once resolved (breached: more than the target), counted
    up to `now` while open (breached: marked so, or a running clock past its due time,
    whether or not the scheduler has run since)."""
    clock = config.clock_for(row.priority)
    r = resolution_of(row)
    if row.state == "resolved":  # judged by the final time (close_after resolves in the past)
        late = r.target is not None and r.spent > r.target
        return int(r.spent.total_seconds()), int(r.wait.total_seconds()), late
    spent = int(r.spent_at(clock, now).total_seconds())
    wait = int(r.wait_at(clock, now).total_seconds())
    overdue = row.resolve_due_at is not None and row.resolve_due_at <= now
    return spent, wait, bool(row.resolution_breached) or overdue


def _ticket(config: Config, row: Any, now: datetime, open_due: datetime | None,
            open_kind: str | None, breached: bool, state: str) -> dict[str, Any]:  # fmt: skip
    spent, wait, resolution_breached = _resolution_now(config, row, now)
    return {
        "reference": row.reference,
        "inbox": row.inbox,
        "customer": row.customer,
        "subject": row.subject,
        "priority": row.priority,
        "priority_set_by": row.priority_set_by,
        "received_at": _iso(config, row.received_at),
        "due_at": _iso(config, row.due_at),
        "first_reply_at": _iso(config, row.first_reply_at),
        "first_reply_business_seconds": row.first_reply_business_seconds,
        "state": state,
        "breached": breached,
        "next_due_at": _iso(config, open_due) if open_kind == "next" else None,
        "open_due_at": _iso(config, open_due),
        "resolve_target_seconds": row.resolve_window_seconds,
        "resolve_due_at": _iso(config, row.resolve_due_at),
        "resolved_at": _iso(config, row.resolved_at),
        "resolved_by": row.resolved_by,
        "resolution_business_seconds": spent,
        "customer_wait_business_seconds": wait,
        "resolution_breached": resolution_breached,
    }


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
            result.append(_ticket(config, row, now, open_due, row.open_kind, breached, state))
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
    backlog = backlog_figures(conn, start, end)
    return Period(label, start, end, Figures.of(figures.get("*")), priorities,
                  Figures.of(next_reply_figures(conn, start, end, now)), intake["acknowledged"],
                  tuple(sorted(intake["not_acknowledged"].items(), key=lambda kv: -kv[1])),
                  Figures.of(resolution_figures(conn, start, end, now).get("*")),
                  backlog["opened"], backlog["resolved"])  # fmt: skip


def report(
    engine: Engine, config: Config, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """The `report --json` object: every figure for [start, end)."""
    with store.reading(engine) as conn:
        figures = first_reply_figures(conn, start, end, now)
        intake = intake_figures(conn, start, end)
        next_reply = next_reply_figures(conn, start, end, now)
        resolution = resolution_figures(conn, start, end, now)
        backlog = backlog_figures(conn, start, end)
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
        "resolution": _resolution_json(config, resolution),
        "backlog": backlog,
    }  # fmt: skip


def _figure_json(f: dict[str, Any]) -> dict[str, Any]:
    return {"count": f["count"], "met": f["met"], "breached": f["breached"], "compliance": f["compliance"],
            "p50_seconds": f["p50"], "p80_seconds": f["p80"], "p90_seconds": f["p90"]}  # fmt: skip


def _resolution_json(config: Config, figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`report --json`'s "resolution": all priorities together, then each with its target."""
    empty = {"count": 0, "met": 0, "breached": 0, "compliance": None, "p50": None, "p80": None, "p90": None}
    targets = {p.name: p.resolve for p in config.priorities}
    priorities = {}
    for name in sorted((k for k in figures if k != "*"),
                       key=lambda k: PRIORITY_ORDER.index(k) if k in PRIORITY_ORDER else 9):  # fmt: skip
        target = targets.get(name)
        priorities[name] = {**_figure_json(figures[name]),
                            "target_seconds": int(target.total_seconds()) if target else None}  # fmt: skip
    return {**_figure_json(figures.get("*", empty)), "priorities": priorities}


def digest_inputs(engine: Engine, config: Config, day: Any, now: datetime) -> Any:
    """Everything the digest shows for local date `day`, aggregated in SQL."""
    from datetime import timedelta

    from .digest import (
        DigestData,
        Item,
        Unresolved,
        local_volume,
        opening_grid,
        previous_business_day,
        suggest,
    )

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
        at_risk = [
            Item(r.reference, r.customer, r.subject, r.priority, r.due_at, int(cal.elapsed(now, r.due_at).total_seconds()))
            for r in open_clocks(conn) if r.due_at > now
        ]  # fmt: skip
        oldest_row = oldest_unanswered(conn)
        oldest = None
        if oldest_row is not None:
            oldest = Item(oldest_row.reference, oldest_row.customer, oldest_row.subject, oldest_row.priority,
                          oldest_row.due_at, int(cal.elapsed(oldest_row.started_at, now).total_seconds()))  # fmt: skip
        unresolved_row = oldest_unresolved(conn)
        unresolved = None
        if unresolved_row is not None:
            spent, _, _ = _resolution_now(config, unresolved_row, now)
            unresolved = Unresolved(unresolved_row.reference, unresolved_row.customer, unresolved_row.subject,
                                    unresolved_row.priority, cal.local(unresolved_row.received_at), spent,
                                    unresolved_row.state == "pending")  # fmt: skip
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
        trend=tuple(trend), suggestions=tuple(suggestions), refused=refused, oldest_unresolved=unresolved,
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


# ---------------------------------------------------------------------------- one conversation

COMMAND_WORDS = {"resolved": "resolved", "pending": "set pending (waiting for the customer)",
                 "open": "reopened", "note": "a note"}  # fmt: skip
VIA_WORDS = {"address": "by address", "cli": "from the command line", "archive": "by archiving"}
MAIL_KINDS = frozenset({"received", "customer-message", "reply", "command-mail"})
CYCLE_WORDS = {"first": "first reply", "next": "next reply"}
NOTICE_WORDS = {"breach": "breach notice", "reminder": "reminder", "close": "closing notice",
                "notice": "notice"}  # fmt: skip


def conversation_view(engine: Engine, config: Config, reference: str, now: datetime) -> dict[str, Any] | None:
    """`tickets REF`: the conversation's figures (as `tickets --json` has them) and its
    `timeline`, oldest first — received, acknowledged or not (with the rule), replies
    with their business time against the promise, commands, pauses and resumptions,
    warnings, breaches, notices to the customer, resolution. Each entry has `at` (shop
    time), `kind`, `text` (one line for people) and its figures. None: no such reference."""
    with store.reading(engine) as conn:
        row = store.conversation_row(conn, reference.strip().upper())
        if row is None:
            return None
        open_cycle = store.open_cycle_of(conn, row.id)
        found = store.conversation_events(conn, row.id)
        queued = store.conversation_outbox(conn, row.id)
        cycles = store.conversation_cycles(conn, row.id)
        alerts = store.alerts_naming(conn, row.reference)
    open_due = open_cycle.due_at if open_cycle is not None else None
    overdue = open_due is not None and open_due <= now
    state = "breached" if overdue and row.state == "awaiting_team" else row.state
    view = _ticket(config, row, now, open_due, open_cycle.kind if open_cycle is not None else None,
                   bool(row.breached) or overdue, state)  # fmt: skip
    view["priority_reason"] = row.priority_reason
    view["timeline"] = [entry for _, _, entry in sorted(
        _entries(config, row, found, queued, cycles, alerts), key=lambda e: (e[0], e[1]))]  # fmt: skip
    return view


def _entries(config: Config, row: Any, found: list[Any], queued: list[Any], cycles: list[Any],
             alerts: list[Any]) -> list[tuple[datetime, int, dict[str, Any]]]:  # fmt: skip
    """(time, order, entry) for every step of the conversation."""
    clock = config.clock_for(row.priority)
    out: list[tuple[datetime, int, dict[str, Any]]] = []
    order = 0

    def add(at: datetime, kind: str, text: str, **fields: Any) -> None:
        nonlocal order
        order += 1  # at one instant: the mail itself first, then what it caused
        rank = order if kind not in MAIL_KINDS else order - 1_000_000
        out.append((at, rank, {"at": _iso(config, at), "kind": kind, "text": text, **fields}))

    state = "awaiting_team"
    paused_at: datetime | None = None
    first = True

    def moved(at: datetime, new: str | None, why: str) -> None:
        """A pause or resumption of the resolution clock when the state changes."""
        nonlocal state, paused_at
        if not new or new == state:
            return
        was_paused, now_paused = state in ("pending", "resolved"), new in ("pending", "resolved")
        if new == "pending":
            add(at, "paused", f"waiting for the customer ({why}): the resolution clock stops")
        if was_paused and not now_paused and paused_at is not None:
            waited = int(clock.elapsed(paused_at, at).total_seconds())
            add(at, "resumed", f"the resolution clock runs again ({why}) after waiting "
                f"{in_words(waited)} of business time", waited_business_seconds=waited)  # fmt: skip
        if now_paused and not was_paused:
            paused_at = at
        elif was_paused and not now_paused:
            paused_at = None
        state = new

    for event in found:
        detail = _detail(event.detail)
        at = event.message_at or event.at
        kind = event.kind
        if kind in ("acknowledged", "not-acknowledged"):
            who = event.from_addr or row.customer
            if first:
                first = False
                decided = row.priority_reason.split("; raised: ")[0].split("; set by ")[0]  # not later changes
                text = (f"received from {who}: priority {detail.get('priority') or row.priority}"
                        f" ({decided or 'no rule matched'})")  # fmt: skip
                add(at, "received", text, **{"from": who, "priority": detail.get("priority") or row.priority})
            else:
                text = f"{who} wrote again"
                if detail.get("reopened"):
                    text += "; the conversation is open again"
                raised = detail.get("raised")
                if raised:
                    text += f"; priority raised from {raised.get('from')} to {raised.get('to')}"
                add(at, "customer-message", text, **{"from": who})
            if kind == "not-acknowledged":
                rule = detail.get("rule") or "-"
                reason = detail.get("reason") or ""
                add(at, "not-acknowledged", f"not acknowledged: rule {rule}" + (f" ({reason})" if reason else ""),
                    rule=rule, reason=reason)  # fmt: skip
            if detail.get("ignored_commands"):
                add(at, "ignored-commands", "commands in a customer's mail ignored: "
                    + ", ".join("+" + c for c in detail["ignored_commands"]), commands=detail["ignored_commands"])  # fmt: skip
            moved(at, detail.get("state"), "the customer wrote")
        elif kind == "team-reply":
            who = event.from_addr or "the team"
            cycle_kind = detail.get("cycle")
            if cycle_kind and detail.get("business_seconds") is not None:
                seconds = int(detail["business_seconds"])
                cycle = next((c for c in cycles if c.replied_at == event.message_at and c.kind == cycle_kind), None)
                target = int(timedelta(seconds=cycle.window_seconds * cycle.stretch).total_seconds()) if cycle else None
                met = bool(detail.get("met"))
                verdict = "on time" if met else (
                    f"late by {in_words(seconds - target)}" if target is not None else "late")  # fmt: skip
                promise = f" (promised within {in_words(target)})" if target is not None else ""
                text = (f"reply from {who}: {CYCLE_WORDS.get(cycle_kind, cycle_kind)} in {in_words(seconds)}"
                        f" of business time, {verdict}{promise}")  # fmt: skip
                add(at, "reply", text, by=who, cycle=cycle_kind, business_seconds=seconds,
                    target_seconds=target, met=met)  # fmt: skip
            else:
                add(at, "reply", f"reply from {who}" + (f" ({detail['note']})" if detail.get("note") else ""),
                    by=who, cycle=None, business_seconds=None, target_seconds=None, met=None)  # fmt: skip
            moved(at, detail.get("state"), "the team asked a question" if detail.get("state") == "pending"
                  else "the team replied")  # fmt: skip
        elif kind == "team-command":
            add(at, "command-mail", f"mail from {event.from_addr or 'the team'} to a command address only: no reply")
        elif kind == "command" and detail.get("command") == "note":  # `set --note` alone
            add(at, "note", f"note by {detail.get('by', '')}: {detail.get('note', '')}",
                by=detail.get("by"), note=detail.get("note"))  # fmt: skip
        elif kind == "command":
            command = str(detail.get("command", ""))
            by = detail.get("by", "")
            via = VIA_WORDS.get(str(detail.get("via", "")), str(detail.get("via", "")))
            change = detail.get("change")
            if command in PRIORITY_ORDER:
                what = f"priority set to {command}" + (f" (was {detail['from']})" if detail.get("from") else "")
            else:
                what = COMMAND_WORDS.get(command, command)
            text = f"+{command}: {what}, by {by} {via}"
            if change == "none":
                text += " (no change)"
            elif change and change != "confirmed":
                text += f" ({change})"
            if detail.get("note"):
                text += f"; note: {detail['note']}"
            add(at, "command", text, command=command, by=by, via=detail.get("via"),
                note=detail.get("note"), state=detail.get("state"))  # fmt: skip
            if command == "resolved" and change != "none":
                add(at, "resolved", _resolved_text(by, detail) + _against(row, detail.get("resolution_business_seconds")), by=by,
                    resolution_business_seconds=detail.get("resolution_business_seconds"),
                    customer_wait_business_seconds=detail.get("customer_wait_business_seconds"))  # fmt: skip
            moved(at, detail.get("state"), f"+{command}")
        elif kind == "note":
            add(at, "note", f"note by {detail.get('by', '')}: {detail.get('note', '')}",
                by=detail.get("by"), note=detail.get("note"))  # fmt: skip
        elif kind == "resolved":  # close_after
            resolved_at = _instant(detail.get("resolved_at")) or at
            spent = detail.get("resolution_business_seconds")
            text = (f"resolved by close_after ({detail.get('after', '')} without a word from the customer),"
                    f" at the team's last reply: {in_words(spent)} of business time on the clock")  # fmt: skip
            text += _against(row, spent)
            add(resolved_at, "resolved", text, by="close_after", resolution_business_seconds=spent)
            moved(resolved_at, "resolved", "close_after")
        elif kind == "breached":
            cycle_kind = detail.get("cycle", "first")
            due = _instant(detail.get("due_at"))
            add(at, "breached", f"{CYCLE_WORDS.get(cycle_kind, cycle_kind)} promise missed"
                + (f" (due {_when(config, due)})" if due else ""), cycle=cycle_kind)  # fmt: skip
        elif kind == "resolution-breached":
            due = _instant(detail.get("due_at"))
            add(at, "resolution-breached", "resolution promise missed"
                + (f" (due {_when(config, due)})" if due else ""))  # fmt: skip
        elif kind.endswith("-cancelled") or kind.endswith("-sent-after-cancel"):
            what = NOTICE_WORDS.get(kind.split("-")[0], "acknowledgment" if kind.startswith("ack") else kind)
            reason = detail.get("reason", "")
            verb = "cancelled" if kind.endswith("-cancelled") else "sent anyway"
            add(at, kind, f"{what} {verb}" + (f": {reason}" if reason else ""))
        elif kind == "send-failed":
            add(at, kind, f"sending failed: {detail.get('error', '')}")
        else:
            add(at, kind, kind.replace("-", " "), detail=detail)
    for alert in alerts:
        detail = _detail(alert.detail)
        for key, text in (("warnings", "warning to the owner: the reply is due soon"),
                          ("breaches", "alert to the owner: the reply promise was missed"),
                          ("resolution_warnings", "warning to the owner: the resolution is due soon"),
                          ("resolution_breaches", "alert to the owner: the resolution promise was missed")):  # fmt: skip
            if row.reference in detail.get(key, ()):
                add(alert.at, "warning" if key.endswith("warnings") else "alert", text, about=key)
    for q in queued:
        status = q.status
        when = q.sent_at if status == "sent" and q.sent_at is not None else q.created_at
        if q.kind == "ack":
            text = f"acknowledgment to {q.recipient}: {status}"
            add(when, "acknowledgment", text, recipient=q.recipient, status=status)
        else:
            what = NOTICE_WORDS.get(q.kind, q.kind)
            add(when, "notice", f"{what} to {q.recipient}: {status}", notice=q.kind, recipient=q.recipient,
                status=status)  # fmt: skip
    return out


def _against(row: Any, spent: Any) -> str:
    """ "; target 8 hours, met" (or missed by how much); nothing without a target."""
    target = row.resolve_window_seconds
    if target is None or spent is None:
        return ""
    if int(spent) <= target:
        return f"; target {in_words(target)}, met"
    return f"; target {in_words(target)}, missed by {in_words(int(spent) - target)}"


def _resolved_text(by: str, detail: dict[str, Any]) -> str:
    spent = detail.get("resolution_business_seconds")
    wait = detail.get("customer_wait_business_seconds")
    text = f"resolved by {by}: {in_words(spent)} of business time on the clock"
    if wait:
        text += f", {in_words(wait)} waiting for the customer"
    return text


def _detail(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _instant(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _when(config: Config, moment: datetime) -> str:
    return f"{config.calendar.local(moment):%a %d %b %H:%M}"
