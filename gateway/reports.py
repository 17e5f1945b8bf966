"""The operator's read-only views: tickets, one conversation's timeline (`tickets REF`),
report and digest figures, status and the set-aside messages. Owns turning the store's
rows and figures (gateway/store/queries.py) into plain dicts and digest values for
output; it writes nothing and holds no SQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from . import store
from .config import Config
from .configkeys import PRIORITIES
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


def _by_priority(name: str) -> int:
    """Sort key: the priorities highest first, any other name after them."""
    return PRIORITIES.index(name) if name in PRIORITIES else len(PRIORITIES)


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
            open_kind: str | None) -> dict[str, Any]:  # fmt: skip
    """One conversation as `tickets` shows it at `now`. An open reply clock past its due
    time counts as breached whether or not the scheduler has run since."""
    overdue = open_due is not None and open_due <= now
    breached = bool(row.breached) or overdue
    state = "breached" if overdue and row.state == "awaiting_team" else row.state
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
            if only_open and row.open_due is None:
                continue
            if only_at_risk and not is_at_risk(row.open_due, row.open_warn, now):
                continue
            ticket = _ticket(config, row, now, row.open_due, row.open_kind)
            if only_breached and not ticket["breached"]:
                continue
            result.append(ticket)
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
    priorities = tuple((name, Figures.of(figures[name])) for name in PRIORITIES if name in figures)
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
            for name, f in sorted(figures.items(), key=lambda kv: _by_priority(kv[0]))
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
    for name in sorted((k for k in figures if k != "*"), key=_by_priority):
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
        periods=tuple(periods), breaches=tuple(breaches), at_risk=tuple(at_risk[:AT_RISK_SHOWN]),
        at_risk_more=max(len(at_risk) - AT_RISK_SHOWN, 0), open_on_time=len(owed) - len(at_risk), oldest=oldest,
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
                      "breach_notices": int(recent.get("breach", 0)), "digests": int(recent.get("digest", 0)),
                      "reminders": int(recent.get("reminder", 0)), "closing_notices": int(recent.get("closed", 0))},
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
                 "open": "reopened"}  # fmt: skip
VIA_WORDS = {"address": "by address", "cli": "from the command line", "archive": "by archiving"}
MAIL_KINDS = frozenset({"received", "customer-message", "reply", "command-mail"})
CYCLE_WORDS = {"first": "first reply", "next": "next reply"}
NOTICE_WORDS = {"breach": "breach notice", "reminder": "reminder", "closed": "closing notice",
                "notice": "notice"}  # fmt: skip


def conversation_view(engine: Engine, config: Config, reference: str, now: datetime) -> dict[str, Any] | None:
    """`tickets REF`: the conversation's figures (as `tickets --json` has them) and its
    `timeline`, oldest first — received, acknowledged or not (with the rule), replies
    with their business time against the promise, commands, pauses and resumptions,
    warnings, breaches, notices to the customer, resolution. Each entry has `at` (shop
    time), `kind`, `text` (one line for people) and its figures. None: no such reference."""
    with store.reading(engine) as conn:
        row_id = store.conversation_by_reference(conn, reference.strip().upper())
        if row_id is None:
            return None
        row = store.conversation(conn, row_id)
        open_cycle = store.open_cycle_of(conn, row.id)
        found = store.conversation_events(conn, row.id)
        queued = store.conversation_outbox(conn, row.id)
        cycles = store.conversation_cycles(conn, row.id)
        alerts = store.alerts_naming(conn, row.reference)
    view = _ticket(config, row, now, open_cycle.due_at if open_cycle is not None else None,
                   open_cycle.kind if open_cycle is not None else None)  # fmt: skip
    view["priority_reason"] = row.priority_reason
    view["timeline"] = _Timeline(config, row, cycles).build(found, alerts, queued)
    return view


class _Timeline:
    """One conversation's events, alerts and queued mail -> timeline entries, oldest
    first. Each event kind has its handler (`HANDLERS`); the state is followed along so
    that pauses of the resolution clock and the waiting before each resumption show."""

    PAUSED: ClassVar[tuple[str, ...]] = ("pending", "resolved")

    def __init__(self, config: Config, row: Any, cycles: list[Any]) -> None:
        self.config, self.row, self.cycles = config, row, cycles
        self.clock = config.clock_for(row.priority)
        self.entries: list[tuple[datetime, bool, int, dict[str, Any]]] = []
        self.state = "awaiting_team"
        self.paused_at: datetime | None = None
        self.received = False
        self.acks_purged = 0  # acknowledgments whose outbox row retention deleted

    def build(self, found: list[Any], alerts: list[Any], queued: list[Any]) -> list[dict[str, Any]]:
        acknowledged = sum(1 for event in found if event.kind == "acknowledged")
        self.acks_purged = max(0, acknowledged - sum(1 for q in queued if q.kind == "ack"))
        for event in found:
            handler = self.HANDLERS.get(event.kind)
            if handler is None and (event.kind.endswith("-cancelled") or event.kind.endswith("-sent-after-cancel")):
                handler = _Timeline.cancelled
            (handler or _Timeline.other)(self, event, event.message_at or event.at, _detail(event.detail))
        for alert in alerts:
            self.alert(alert.at, _detail(alert.detail))
        for q in queued:
            self.queued(q)
        # At one instant: the mail itself first, then what it caused, in recorded order.
        return [entry for *_, entry in sorted(self.entries, key=lambda e: (e[0], e[1], e[2]))]

    def add(self, at: datetime, kind: str, text: str, **fields: Any) -> None:
        entry = {"at": _iso(self.config, at), "kind": kind, "text": text, **fields}
        self.entries.append((at, kind not in MAIL_KINDS, len(self.entries), entry))

    def moved(self, at: datetime, new: str | None, why: str) -> None:
        """A pause or resumption of the resolution clock when the state changes."""
        if not new or new == self.state:
            return
        was_paused, now_paused = self.state in self.PAUSED, new in self.PAUSED
        if new == "pending":
            self.add(at, "paused", f"waiting for the customer ({why}): the resolution clock stops")
        if was_paused and not now_paused and self.paused_at is not None:
            waited = int(self.clock.elapsed(self.paused_at, at).total_seconds())
            self.add(at, "resumed", f"the resolution clock runs again ({why}) after waiting "
                     f"{in_words(waited)} of business time", waited_business_seconds=waited)  # fmt: skip
        if now_paused != was_paused:
            self.paused_at = at if now_paused else None
        self.state = new

    # ------------------------------------------------------------------ event kinds

    def customer(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        """A customer's mail (acknowledged or not): the first opens the conversation."""
        who = event.from_addr or self.row.customer
        if not self.received:
            self.received = True
            priority = detail.get("priority") or self.row.priority
            decided = self.row.priority_reason.split("; raised: ")[0].split("; set by ")[0]  # not later changes
            self.add(at, "received", f"received from {who}: priority {priority} ({decided or 'no rule matched'})",
                     **{"from": who, "priority": priority})  # fmt: skip
        else:
            text = f"{who} wrote again"
            if detail.get("reopened"):
                text += "; the conversation is open again"
            if raised := detail.get("raised"):
                text += f"; priority raised from {raised.get('from')} to {raised.get('to')}"
            self.add(at, "customer-message", text, **{"from": who})
        if event.kind == "not-acknowledged":
            rule, reason = detail.get("rule"), detail.get("reason") or ""
            if rule:
                text = f"not acknowledged: rule {rule}" + (f" ({reason})" if reason else "")
            elif self.row.source == "replay":
                text = "not acknowledged: replayed from saved mail, nothing is sent"
            else:
                text = "not acknowledged"
            self.add(at, "not-acknowledged", text, rule=rule, reason=reason)
        elif self.acks_purged:  # the oldest ones: retention deletes by age
            self.acks_purged -= 1
            self.add(at, "acknowledgment", "acknowledged (the record of its sending is past retention_days)",
                     recipient=None, status="purged")  # fmt: skip
        if ignored := detail.get("ignored_commands"):
            self.add(at, "ignored-commands", "commands in a customer's mail ignored: "
                     + ", ".join("+" + c for c in ignored), commands=ignored)  # fmt: skip
        self.moved(at, detail.get("state"), "the customer wrote")

    def reply(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        """A team reply, measured against its cycle's promise when it closed one."""
        who = event.from_addr or "the team"
        kind = detail.get("cycle")
        if kind and detail.get("business_seconds") is not None:
            seconds, met = int(detail["business_seconds"]), bool(detail.get("met"))
            cycle = next((c for c in self.cycles if c.replied_at == event.message_at and c.kind == kind), None)
            target = round(cycle.window_seconds * cycle.stretch) if cycle is not None else None
            verdict = "on time" if met else (f"late by {in_words(seconds - target)}" if target is not None else "late")
            promise = f" (promised within {in_words(target)})" if target is not None else ""
            self.add(at, "reply", f"reply from {who}: {CYCLE_WORDS.get(kind, kind)} in {in_words(seconds)}"
                     f" of business time, {verdict}{promise}", by=who, cycle=kind, business_seconds=seconds,
                     target_seconds=target, met=met)  # fmt: skip
        else:
            self.add(at, "reply", f"reply from {who}" + (f" ({detail['note']})" if detail.get("note") else ""),
                     by=who, cycle=None, business_seconds=None, target_seconds=None, met=None)  # fmt: skip
        pending = detail.get("state") == "pending"
        self.moved(at, detail.get("state"), "the team asked a question" if pending else "the team replied")

    def command_mail(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        self.add(at, "command-mail", f"mail from {event.from_addr or 'the team'} to a command address only: no reply")

    def command(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        """+resolved, +pending, +open, a priority — by address, from the shell, by archiving."""
        command, by = str(detail.get("command", "")), str(detail.get("by", ""))
        if command == "note":  # `set --note` alone
            self.note(event, at, detail)
            return
        via = VIA_WORDS.get(str(detail.get("via", "")), str(detail.get("via", "")))
        change = detail.get("change")
        if command in PRIORITIES:
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
        self.add(at, "command", text, command=command, by=by, via=detail.get("via"), note=detail.get("note"),
                 state=detail.get("state"))  # fmt: skip
        settled = detail.get("settled_cycle")
        if isinstance(settled, dict):  # resolved or pending before any reply: the clock ends
            seconds, met = settled.get("business_seconds"), bool(settled.get("met"))
            which = CYCLE_WORDS.get(str(settled.get("cycle")), "reply")
            by_what = "the resolution" if command == "resolved" else f"+{command}"
            self.add(at, "settled", f"{which} clock ended by {by_what}, without a mail: "
                     f"{in_words(seconds)} of business time, {'met' if met else 'missed'}",
                     cycle=settled.get("cycle"), business_seconds=seconds, met=met)  # fmt: skip
        if command == "resolved" and change != "none":
            spent, wait = detail.get("resolution_business_seconds"), detail.get("customer_wait_business_seconds")
            text = f"resolved by {by}: {in_words(spent)} of business time on the clock"
            if wait:
                text += f", {in_words(wait)} waiting for the customer"
            self.add(at, "resolved", text + _against(self.row, spent), by=by, resolution_business_seconds=spent,
                     customer_wait_business_seconds=wait)  # fmt: skip
        self.moved(at, detail.get("state"), f"+{command}")

    def note(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        self.add(at, "note", f"note by {detail.get('by', '')}: {detail.get('note', '')}",
                 by=detail.get("by"), note=detail.get("note"))  # fmt: skip

    def closed_quiet(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        """close_after resolved it, at the team's last reply."""
        resolved_at = _instant(detail.get("resolved_at")) or at
        spent = detail.get("resolution_business_seconds")
        text = (f"resolved by close_after ({detail.get('after', '')} without a word from the customer),"
                f" at the team's last reply: {in_words(spent)} of business time on the clock")  # fmt: skip
        self.add(resolved_at, "resolved", text + _against(self.row, spent), by="close_after",
                 resolution_business_seconds=spent)  # fmt: skip
        self.moved(resolved_at, "resolved", "close_after")

    def breached(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        kind, due = detail.get("cycle", "first"), _instant(detail.get("due_at"))
        self.add(at, "breached", f"{CYCLE_WORDS.get(kind, kind)} promise missed"
                 + (f" (due {_when(self.config, due)})" if due else ""), cycle=kind)  # fmt: skip

    def resolution_breached(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        due = _instant(detail.get("due_at"))
        self.add(at, "resolution-breached", "resolution promise missed"
                 + (f" (due {_when(self.config, due)})" if due else ""))  # fmt: skip

    def cancelled(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        """An acknowledgment or notice made moot by the team's reply (or sent all the same)."""
        what = "acknowledgment" if event.kind.startswith("ack") else NOTICE_WORDS.get(
            event.kind.split("-")[0], event.kind.split("-")[0])  # fmt: skip
        verb = "cancelled" if event.kind.endswith("-cancelled") else "sent anyway"
        reason = detail.get("reason", "")
        self.add(at, event.kind, f"{what} {verb}" + (f": {reason}" if reason else ""))

    def send_failed(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        self.add(at, "send-failed", f"sending failed: {detail.get('error', '')}")

    def other(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        self.add(at, event.kind, event.kind.replace("-", " "), detail=detail)

    def shown_by_the_outbox(self, event: Any, at: datetime, detail: dict[str, Any]) -> None:
        """A notice to the customer was queued: its outbox row is the timeline's entry."""

    HANDLERS: ClassVar[dict[str, Callable[[_Timeline, Any, datetime, dict[str, Any]], None]]] = {
        "acknowledged": customer,
        "not-acknowledged": customer,
        "team-reply": reply,
        "team-command": command_mail,
        "command": command,
        "note": note,
        "resolved": closed_quiet,
        "breached": breached,
        "resolution-breached": resolution_breached,
        "send-failed": send_failed,
        "breach": shown_by_the_outbox,
        "reminder": shown_by_the_outbox,
        "closed": shown_by_the_outbox,
    }

    # ------------------------------------------------------------------ not events

    def alert(self, at: datetime, detail: dict[str, Any]) -> None:
        """An alert mail to the owner that named this conversation (warnings and breaches)."""
        for key, text in (("warnings", "warning to the owner: the reply is due soon"),
                          ("breaches", "alert to the owner: the reply promise was missed"),
                          ("resolution_warnings", "warning to the owner: the resolution is due soon"),
                          ("resolution_breaches", "alert to the owner: the resolution promise was missed")):  # fmt: skip
            if self.row.reference in detail.get(key, ()):
                self.add(at, "warning" if key.endswith("warnings") else "alert", text, about=key)

    def queued(self, q: Any) -> None:
        """The acknowledgment or a notice to the customer: when sent (else queued), and how it went."""
        when = q.sent_at if q.status == "sent" and q.sent_at is not None else q.created_at
        if q.kind == "ack":
            self.add(when, "acknowledgment", f"acknowledgment to {q.recipient}: {q.status}",
                     recipient=q.recipient, status=q.status)  # fmt: skip
        else:
            self.add(when, "notice", f"{NOTICE_WORDS.get(q.kind, q.kind)} to {q.recipient}: {q.status}",
                     notice=q.kind, recipient=q.recipient, status=q.status)  # fmt: skip


def _against(row: Any, spent: Any) -> str:
    """ "; target 8 hours, met" (or missed by how much); nothing without a target."""
    target = row.resolve_window_seconds
    if target is None or spent is None:
        return ""
    if int(spent) <= target:
        return f"; target {in_words(target)}, met"
    return f"; target {in_words(target)}, missed by {in_words(int(spent) - target)}"


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
