"""SLA timers: warnings before a breach, the breach itself, and closing quiet conversations.

Owns: reading due times from the database and acting on them — one warning per reply
cycle when `warn_at` of its window has passed, one breach alert when it is due and still
unanswered, merged into one mail when several fall due together; the breached state; the
optional one-time breach notice to the customer; closing conversations that waited for
the customer longer than `close_after`; and the owner's alert about messages set aside
(shunted) because they could not be processed — at most one an hour, listing everything
set aside since the previous one. With `only_in_business_hours`, alerts wait for the
next opening. Each alert is queued in the same transaction that marks it done, so a
restart never loses one and never sends one twice. It sends nothing itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from . import store
from .config import Config
from .conversations import resolve_quiet
from .pipeline import Pipeline
from .render import Alert, alert_message, alert_recipients, breach_notice
from .store import Engine
from .tracker import QUIET, Event, transition

log = logging.getLogger("sla_gateway.scheduler")

SET_ASIDE_EVERY = timedelta(hours=1)  # at most one set-aside alert in this time
SET_ASIDE_SHOWN = 20  # messages listed in one set-aside alert; the rest are counted


def _existed_on(config: Config, day: Any, first: datetime | None) -> bool:
    """Whether the gateway existed before shop-local `day` ended: something (a message, an
    event, the service's start) was recorded by then. A first start sends no digest about
    the day before it."""
    if first is None:
        return False
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), config.calendar.tz)
    return first < end


class Scheduler:
    """Acts on every timer that is due at `clock()`; call `run_due()` often."""

    def __init__(
        self, config: Config, engine: Engine, clock: Callable[[], datetime], pipeline: Pipeline
    ) -> None:
        self.config = config
        self.engine = engine
        self.clock = clock
        self.pipeline = pipeline  # for its renderer
        self._purged_at: datetime | None = None

    def next_due(self) -> datetime | None:
        """The earliest moment a timer needs attention (for the service's sleep)."""
        with store.reading(self.engine) as conn:
            warn, due = store.next_timers(conn)
            set_aside = self._set_aside_due(conn)
        found = [t for t in (warn, due, set_aside) if isinstance(t, datetime)]
        return min(found) if found else None

    def run_due(self) -> int:
        """Handle everything due now; returns how many alerts/notices were queued."""
        now = self.clock()
        with store.begin(self.engine) as conn:
            self._mark_breaches(conn, now)
            self._mark_resolution_breaches(conn, now)
            queued = self._customer_notices(conn, now)
            if not self.config.alerts.only_in_business_hours or self.config.calendar.is_open(now):
                queued += self._alerts(conn, now)
                queued += self._set_aside_alert(conn, now)
            self._close_quiet(conn, now)
        queued += self.daily_digest(now)
        self.purge(now)
        return queued

    def purge(self, now: datetime, *, force: bool = False) -> int:
        """`retention_days`: drop stored message bodies (ours and customers') older than
        that, keeping every row and figure. At most once an hour; returns rows emptied."""
        if not force and self._purged_at is not None and now - self._purged_at < timedelta(hours=1):
            return 0
        self._purged_at = now
        cutoff = now - timedelta(days=self.config.retention_days)
        with store.begin(self.engine) as conn:
            emptied = store.empty_old_bodies(conn, cutoff)
            if emptied:
                store.add_event(
                    conn, now, "purged", {"rows": emptied, "before": cutoff.isoformat()}
                )
        return int(emptied)

    def daily_digest(self, now: datetime, *, force_day: Any = None) -> int:
        """At `[digest] at` (shop time), the previous business day's digest — once per day,
        even across restarts (the `digests` row and the outbox rows commit together), and
        none for a day that ended before the gateway's first record (its first start).
        `force_day` (the `digest --send` command) makes that day's digest regardless."""
        from .digest import previous_business_day
        from .render import digest_message
        from .reports import digest_inputs

        cfg = self.config.digest
        if not cfg.to and force_day is None:
            return 0
        local = self.config.calendar.local(now)
        if force_day is None:
            if local.hour * 60 + local.minute < cfg.at:
                return 0
            day = previous_business_day(self.config.calendar, local.date())
        else:
            day = force_day
        with store.reading(self.engine) as conn:
            if store.digest_done(conn, day):
                return 0
            first = store.first_record_at(conn) if force_day is None else None
        if force_day is None and not _existed_on(self.config, day, first):
            return 0  # the gateway was not there yet that day: nothing to tell about it
        data = digest_inputs(self.engine, self.config, day, now)
        send = not (cfg.skip_empty and data.empty)
        recipients = cfg.to or (self.config.inboxes[0].address,)
        with store.begin(self.engine) as conn:
            if not store.claim_digest(conn, day, now):
                return 0  # another process was first
            if send:
                for recipient in recipients:
                    message = digest_message(self.pipeline.renderer, data, to=recipient, now=now)
                    store.enqueue(conn, "digest", message, recipient, now)
            store.add_event(conn, now, "digest", {"day": day.isoformat(), "sent": send})
        log.info("event=digest day=%s sent=%s", day, send)
        return len(recipients) if send else 0

    # ------------------------------------------------------------------ the steps

    def _mark_breaches(self, conn: Any, now: datetime) -> None:
        for cycle in store.cycles_past_due(conn, now):
            store.update_cycle(conn, cycle.id, breached=True)
            conversation = store.conversation(conn, cycle.conversation_id)
            state, _ = transition(conversation.state, Event.DEADLINE_PASSED)
            values: dict[str, Any] = {"state": state.value}
            if cycle.kind == "first":
                values["breached"] = True
            store.update_conversation(conn, conversation.id, **values)
            store.add_event(conn, now, "breached", {"cycle": cycle.kind, "due_at": cycle.due_at},
                            conversation_id=conversation.id)  # fmt: skip

    def _mark_resolution_breaches(self, conn: Any, now: datetime) -> None:
        for conv in store.resolutions_past_due(conn, now):
            store.update_conversation(conn, conv.id, resolution_breached=True)
            store.add_event(conn, now, "resolution-breached", {"due_at": conv.resolve_due_at},
                            conversation_id=conv.id)  # fmt: skip

    def _customer_notices(self, conn: Any, now: datetime) -> int:
        """`[breach] notify_customer`: one honest message per conversation, at the breach."""
        if not self.config.tracking.notify_customer_on_breach:
            return 0
        queued = 0
        for conv in store.breached_unnotified(conn):
            recipient = store.ack_recipient(conn, conv.id)
            if recipient is None:  # never acknowledged (a machine, a rate limit): stay quiet
                store.update_conversation(conn, conv.id, customer_notified_at=now)
                continue
            window = timedelta(seconds=conv.cycle_window) * conv.cycle_stretch
            new_due = self.config.clock_for(conv.priority).add(now, window)
            inbox = self.config.inbox_named(conv.inbox)
            message = breach_notice(self.pipeline.renderer, inbox=inbox, reference=conv.reference,
                                    subject=conv.subject, to=recipient, promised=conv.cycle_due,
                                    new_due=new_due, now=now)  # fmt: skip
            store.enqueue(conn, "breach", message, recipient, now, conv.id)
            store.update_conversation(conn, conv.id, customer_notified_at=now)
            queued += 1
        return queued

    def _alerts(self, conn: Any, now: datetime) -> int:
        """One mail with every warning and breach alert now due."""
        warnings = store.cycles_to_warn(conn, now)
        breaches = store.cycles_breached_unalerted(conn)
        # A cycle already past due gets the breach alert, not a warning as well.
        breached_ids = {b.id for b in breaches}
        late_warnings = [w for w in warnings if w.id in breached_ids or w.due_at <= now]
        warnings = [w for w in warnings if w not in late_warnings]
        for w in late_warnings:
            store.update_cycle(conn, w.id, warned_at=now)
        # The resolution promise, in the same mail: warned once, alerted once.
        unresolved = store.resolutions_breached_unalerted(conn)
        overdue_ids = {u.id for u in unresolved}
        resolving = [r for r in store.resolutions_to_warn(conn, now)
                     if r.id not in overdue_ids and r.resolve_due_at > now]  # fmt: skip
        if not warnings and not breaches and not unresolved and not resolving:
            return 0
        cal = self.config.calendar

        def conversation(row: Any, due: datetime, **extra: Any) -> dict[str, Any]:
            return {"reference": row.reference, "priority": row.priority, "customer": row.customer,
                    "subject": row.subject, "due": cal.local(due), **extra}  # fmt: skip

        def late(row: Any, due: datetime) -> float:
            return self.config.clock_for(row.priority).elapsed(due, now).total_seconds()

        alert = Alert("replies", {
            "breaches": [conversation(b, b.due_at, late=late(b, b.due_at)) for b in breaches],
            "warnings": [conversation(w, w.due_at, left=-late(w, w.due_at)) for w in warnings],
            "unresolved": [conversation(u, u.resolve_due_at, late=late(u, u.resolve_due_at))
                           for u in unresolved],
            "resolving": [conversation(r, r.resolve_due_at, left=-late(r, r.resolve_due_at))
                          for r in resolving],
            "resolved_address": self._resolved_address(),
        })  # fmt: skip
        for recipient in alert_recipients(self.config):
            message = alert_message(self.pipeline.renderer, recipient, alert, now=now)
            store.enqueue(conn, "alert", message, recipient, now)
        for w in warnings:
            store.update_cycle(conn, w.id, warned_at=now)
        for b in breaches:
            store.update_cycle(conn, b.id, breach_alerted_at=now, warned_at=b.warned_at or now)
        for r in resolving:
            store.update_conversation(conn, r.id, resolve_warned_at=now)
        for u in unresolved:
            store.update_conversation(conn, u.id, resolve_alerted_at=now,
                                      resolve_warned_at=u.resolve_warned_at or now)  # fmt: skip
        store.add_event(conn, now, "alert", {"warnings": [w.reference for w in warnings],
                                             "breaches": [b.reference for b in breaches],
                                             "resolution_warnings": [r.reference for r in resolving],
                                             "resolution_breaches": [u.reference for u in unresolved]})  # fmt: skip
        log.info("event=alert warnings=%s breaches=%s", len(warnings), len(breaches))
        return 1

    def _resolved_address(self) -> str:
        local, _, domain = self.config.inboxes[0].address.partition("@")
        return f"{local}+resolved@{domain}"

    def _set_aside_news(self, conn: Any) -> tuple[Any, list[Any]]:
        """The last set-aside alert's event (or None) and the "shunted" events after it
        whose message is still set aside, oldest first. Replayed history raises none."""
        last = store.latest_event(conn, ("set-aside-alert",))
        through = int(json.loads(last.detail).get("through", 0)) if last is not None else 0
        return last, store.shunted_since(conn, through)

    def _set_aside_due(self, conn: Any) -> datetime | None:
        """When the next set-aside alert may be queued; None: nothing new is set aside."""
        last, news = self._set_aside_news(conn)
        if not news:
            return None
        first: datetime = news[0].at
        return first if last is None else max(first, last.at + SET_ASIDE_EVERY)

    def _set_aside_alert(self, conn: Any, now: datetime) -> int:
        """One alert listing the messages set aside since the last one, at most hourly."""
        last, news = self._set_aside_news(conn)
        if not news or (last is not None and now < last.at + SET_ASIDE_EVERY):
            return 0
        from .reports import set_aside

        ids = list(dict.fromkeys(int(n.message_row) for n in news))
        rows = set_aside(conn, self.config, ids=ids, limit=None)
        if not rows:
            return 0
        count = len(rows)
        alert = Alert("set-aside", {
            "rows": [{"id": row["id"], "received": self.config.calendar.local(datetime.fromisoformat(row["received_at"])),
                      "from": row["from"], "subject": row["subject"],
                      "error": (row["error"].splitlines() or [""])[0][:200]}
                     for row in rows[:SET_ASIDE_SHOWN]],
            "more": max(0, count - SET_ASIDE_SHOWN),
            "every": SET_ASIDE_EVERY.total_seconds(),
        })  # fmt: skip
        for recipient in alert_recipients(self.config):
            message = alert_message(self.pipeline.renderer, recipient, alert, now=now)
            store.enqueue(conn, "alert", message, recipient, now)
        store.add_event(conn, now, "set-aside-alert",
                        {"through": max(n.id for n in news), "messages": ids})  # fmt: skip
        log.info("event=set-aside-alert messages=%s", count)
        return 1

    def _close_quiet(self, conn: Any, now: datetime) -> None:
        """Resolve conversations that waited for the customer longer than close_after."""
        limit = now - self.config.tracking.close_after
        for row in store.quiet_conversations(conn, [s.value for s in QUIET], limit):
            resolve_quiet(conn, self.config, row, now)
