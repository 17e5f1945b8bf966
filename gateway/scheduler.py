"""SLA timers: warnings before a breach, the breach itself, and closing quiet conversations.

Owns: reading due times from the database and acting on them — one warning per reply
cycle when `warn_at` of its window has passed, one breach alert when it is due and still
unanswered, merged into one mail when several fall due together; the breached state; the
follow-through with the customer (a breach notice per missed reply clock with the
exception notice and the remedy for its lateness, reminders while the team waits for the
customer, the closing notice); closing conversations that waited for the customer longer
than `close_after`; and the owner's alert about messages set aside
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
from pathlib import Path
from typing import Any

from . import store
from .config import Config
from .conversations import resolve_quiet
from .durations import format_duration
from .pipeline import Pipeline
from .render import (
    Alert,
    alert_message,
    alert_recipients,
    breach_notice,
    follow_up_context,
    follow_up_message,
)
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
            reminder = self._next_reminder(conn)
        found = [t for t in (warn, due, set_aside, reminder) if isinstance(t, datetime)]
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
            queued += self._close_quiet(conn, now)
            queued += self._reminders(conn, now)
        queued += self.daily_digest(now)
        self.purge(now)
        return queued

    def close_quiet(self, now: datetime) -> None:
        """Only the close_after step, in its own transaction (`replay` runs it before the
        rest: a conversation it resolves at the team's last reply was resolved then, not
        breached while nobody looked)."""
        with store.begin(self.engine) as conn:
            self._close_quiet(conn, now)

    def purge(self, now: datetime, *, force: bool = False) -> int:
        """`retention_days`: drop what no figure needs from before then — stored message
        bodies (ours and customers'), the outbox rows of sent acknowledgments (never
        those the rate limits still look at: `once_per_sender` and a day), the reply keys
        of team replies that never matched — keeping every conversation, cycle and
        message row the figures are made of. At most once an hour; returns rows changed."""
        if not force and self._purged_at is not None and now - self._purged_at < timedelta(hours=1):
            return 0
        self._purged_at = now
        cutoff = now - timedelta(days=self.config.retention_days)
        acks_before = now - self.config.acknowledge.once_per_sender - timedelta(days=1)
        with store.begin(self.engine) as conn:
            done = store.purge_before(conn, cutoff, acks_before=acks_before)
            changed = sum(done.values())
            if changed:
                store.add_event(conn, now, "purged", {**done, "before": cutoff.isoformat()})
        return changed

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
        """The first inbox's +resolved address, with its own command delimiter."""
        inbox = self.config.inboxes[0]
        local, _, domain = inbox.address.partition("@")
        return f"{local}{inbox.command_delimiter}resolved@{domain}"

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

    def _close_quiet(self, conn: Any, now: datetime) -> int:
        """Resolve conversations that waited for the customer longer than close_after;
        with `close_notice`, tell each customer (returns how many notices were queued)."""
        limit = now - self.config.tracking.close_after
        queued = 0
        for row in store.quiet_conversations(conn, [s.value for s in QUIET], limit):
            if resolve_quiet(conn, self.config, row, now) and self.config.tracking.close_notice:
                queued += self._close_notice(conn, row, now)
        return queued

    # ------------------------------------------------------------------ follow-through
    # What the customer hears after the acknowledgment: a breach notice per missed reply
    # clock (with the exception notice and the remedy for its lateness), reminders while
    # the team waits for them, the closing notice. Each is marked done in the transaction
    # that queues it, and each obeys the acknowledgment's limits: nothing while the
    # circuit breaker is open, nothing beyond `max_per_sender_per_day`, only to customers
    # who were acknowledged. What is held is recorded and never sent later.

    def _held(self, conn: Any, recipient: str, now: datetime) -> str | None:
        """Why nothing more may go to `recipient` now (None: it may)."""
        latest = store.latest_events(conn, ("circuit-open", "circuit-closed"))
        if store.breaker_open(latest):
            return "circuit-breaker"
        day_start = self.config.calendar.local(now).replace(hour=0, minute=0, second=0, microsecond=0)
        if store.sent_to_since(conn, recipient, day_start) >= self.config.acknowledge.max_per_sender_per_day:
            return "daily-limit"
        return None

    def _send_follow_up(self, conn: Any, kind: str, conv: Any, now: datetime,
                        compose: Callable[[str, list[str]], Any], detail: dict[str, Any]) -> int:  # fmt: skip
        """Queue `compose(recipient, thread)` for the conversation's acknowledged customer,
        unless the limits hold it; records the event either way. Returns 1 when queued."""
        recipient = store.ack_recipient(conn, conv.id)
        if recipient is None:  # never acknowledged (a machine, a rate limit): stay quiet
            store.add_event(conn, now, f"{kind}-skipped", {**detail, "why": "never acknowledged"},
                            conversation_id=conv.id)  # fmt: skip
            return 0
        held = self._held(conn, recipient, now)
        if held is not None:
            store.add_event(conn, now, f"{kind}-held", {**detail, "why": held}, conversation_id=conv.id)
            log.info("event=%s-held reference=%s why=%s", kind, conv.reference, held)
            return 0
        message = compose(recipient, store.customer_message_ids(conn, conv.id))
        self.pipeline.queue(conn, kind, message, recipient, now, conv.id)
        store.add_event(conn, now, kind, detail, conversation_id=conv.id)
        log.info("event=%s reference=%s", kind, conv.reference)
        return 1

    def _notice_text(self, conn: Any, now: datetime) -> str:
        found = store.current_notice(conn, now)
        return str(found.text) if found is not None else ""

    def _customer_notices(self, conn: Any, now: datetime) -> int:
        """`[breach] notify_customer`: one honest message per missed reply clock (the first
        reply's or a next reply's), at the breach. With notices off, breached clocks are
        marked as needing none, so switching them on never sends old news."""
        if not self.config.tracking.notify_customer_on_breach:
            store.mark_breaches_notified(conn, now)
            return 0
        queued = 0
        for conv in store.breached_unnotified(conn):
            store.update_cycle(conn, conv.cycle_id, customer_notified_at=now)
            store.update_conversation(conn, conv.id, customer_notified_at=now)
            clock = self.config.clock_for(conv.priority)
            new_due = clock.add(now, timedelta(seconds=conv.cycle_window) * conv.cycle_stretch)
            # How late the reply is expected to be: the remedy is chosen by it, now, once.
            late = clock.elapsed(conv.cycle_due, new_due)
            remedy = self.config.tracking.remedy_for(late)
            detail: dict[str, Any] = {"cycle": conv.cycle_kind, "due_at": conv.cycle_due,
                                      "new_due": new_due, "expected_late_seconds": int(late.total_seconds())}  # fmt: skip
            inbox = self.config.inbox_named(conv.inbox)
            if remedy is not None:
                detail["remedy_late_by"] = format_duration(remedy.late_by)

            def compose(to: str, thread: list[str], conv: Any = conv, remedy: Any = remedy,
                        new_due: datetime = new_due, inbox: Any = inbox,
                        detail: dict[str, Any] = detail) -> Any:  # fmt: skip
                code = ""
                if remedy is not None and remedy.codes_file:  # taken only when it goes out
                    code = self._code_for(conn, remedy.codes_file, conv, now)
                    detail["code"] = code or None
                return breach_notice(
                    self.pipeline.renderer, inbox=inbox, reference=conv.reference,
                    subject=conv.subject, to=to, promised=conv.cycle_due, new_due=new_due, now=now,
                    thread=thread, notice=self._notice_text(conn, now),
                    remedy=remedy.text_for(inbox.language) if remedy is not None else "", code=code,
                )  # fmt: skip

            queued += self._send_follow_up(conn, "breach", conv, now, compose, detail)
        return queued

    def _code_for(self, conn: Any, codes_file: str, conv: Any, now: datetime) -> str:
        """The conversation's coupon code from `codes_file`: the one it was given before,
        else the file's first code never given; "" when none is left (the owner is alerted
        once per running out)."""
        given = store.code_of_conversation(conn, conv.id, codes_file)
        if given is not None:
            return given
        used = store.codes_given(conn, codes_file)
        try:
            lines = Path(codes_file).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            self._codes_exhausted(conn, codes_file, len(used), now, f"cannot be read: {exc.strerror or exc}")
            return ""
        for line in lines:
            code = line.strip()
            usable = code and not code.startswith("#") and code not in used and len(code) <= 255
            if usable and store.give_code(conn, code, codes_file, conv.id, now):
                return code
        self._codes_exhausted(conn, codes_file, len(used), now, "has no unused code left")
        return ""

    def _codes_exhausted(self, conn: Any, codes_file: str, given: int, now: datetime, why: str) -> None:
        """Alert the owner that a codes file ran out — once, until codes are given from it
        again (a refilled file that runs out again is news)."""
        if any(d.get("file") == codes_file and d.get("given") == given
               for d in store.event_details(conn, "codes-exhausted")):  # fmt: skip
            return
        alert = Alert("codes", {"file": codes_file, "given": given, "unreadable": why != "has no unused code left"})
        for recipient in alert_recipients(self.config):
            message = alert_message(self.pipeline.renderer, recipient, alert, now=now)
            store.enqueue(conn, "alert", message, recipient, now)
        store.add_event(conn, now, "codes-exhausted", {"file": codes_file, "given": given, "why": why})
        log.warning("event=codes-exhausted file=%s given=%s", codes_file, given)

    def _reminder_step(self, row: Any) -> tuple[int, datetime] | None:
        """(the next reminder's step, when it is due) for a pending conversation, or None."""
        steps = self.config.tracking.remind_after
        sent = row.reminders_sent if row.reminded_pause == row.waiting_since else 0
        if sent >= len(steps) or row.waiting_since is None:
            return None
        return sent, self.config.clock_for(row.priority).add(row.waiting_since, steps[sent])

    def _next_reminder(self, conn: Any) -> datetime | None:
        if not self.config.tracking.remind_after:
            return None
        found = [s[1] for row in store.waiting_for_customer(conn) if (s := self._reminder_step(row))]
        return min(found, default=None)

    def _reminders(self, conn: Any, now: datetime) -> int:
        """`[tracking] remind_after`: a reminder at each step after the pause began, for
        customers the team waits for; never one step twice, and when several steps are
        past (the service was down) only one reminder, for the latest of them."""
        steps = self.config.tracking.remind_after
        if not steps:
            return 0
        queued = 0
        for row in store.waiting_for_customer(conn):
            found = self._reminder_step(row)
            if found is None or found[1] > now:
                continue
            step, _ = found
            clock = self.config.clock_for(row.priority)
            while step + 1 < len(steps) and clock.add(row.waiting_since, steps[step + 1]) <= now:
                step += 1
            store.update_conversation(conn, row.id, reminders_sent=step + 1, reminded_pause=row.waiting_since)
            inbox = self.config.inbox_named(row.inbox)

            def compose(to: str, thread: list[str], row: Any = row, inbox: Any = inbox) -> Any:
                context = follow_up_context(self.config, inbox=inbox, reference=row.reference,
                                            subject=row.subject, since=row.waiting_since)  # fmt: skip
                return follow_up_message(self.pipeline.renderer, "reminder", inbox=inbox,
                                         reference=row.reference, to=to, context=context,
                                         now=now, thread=thread)  # fmt: skip

            detail = {"step": step + 1, "after": format_duration(steps[step]),
                      "waiting_since": row.waiting_since}  # fmt: skip
            queued += self._send_follow_up(conn, "reminder", row, now, compose, detail)
        return queued

    def _close_notice(self, conn: Any, row: Any, now: datetime) -> int:
        """`[tracking] close_notice`: tell the customer close_after resolved their case."""
        if row.source is not None:
            return 0
        inbox = self.config.inbox_named(row.inbox)
        since = row.last_team_at or row.waiting_since or now

        def compose(to: str, thread: list[str]) -> Any:
            context = follow_up_context(self.config, inbox=inbox, reference=row.reference,
                                        subject=row.subject, since=since)  # fmt: skip
            return follow_up_message(self.pipeline.renderer, "closed", inbox=inbox,
                                     reference=row.reference, to=to, context=context, now=now,
                                     thread=thread)  # fmt: skip

        return self._send_follow_up(conn, "closed", row, now, compose, {"since": since})
