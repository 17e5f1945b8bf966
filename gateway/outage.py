"""Outgoing mail that does not go out: the owner hears it once per outage.

Owns: noticing, from the outbox backlog, that mail has waited longer than `[send]
alert_after` (the submission server is down, refuses the login or answers 4xx) and
telling the owner once — an alert queued in the outbox like every other (it arrives when
sending works again, or at once when only some mail is held up) and, for the SMTP
transport, a copy written to the fallback maildir (`[oauth] alert_maildir`, default the
[send] path), which does not depend on the server. The outage is over when nothing that
failed is still waiting and nothing has waited too long; the next one alerts again.

The state is two events, `send-outage` (the owner was told) and `send-outage-over`, so a
restart neither forgets an alert nor repeats it. `step()` decides (pure); `OutageWatch`
reads the backlog, records, queues and writes. It never sends through the outbox's
transport itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import Message
from typing import TYPE_CHECKING

from . import store
from .config import Config
from .durations import format_duration
from .outbox import Backlog, SendFailed, backlog, write_aside
from .store import Engine

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger("sla_gateway.outbox")

ALERTED, OVER = "send-outage", "send-outage-over"


def step(waiting: Backlog, alerted: bool, now: datetime, alert_after: timedelta) -> str | None:
    """ALERTED when the owner must be told now, OVER when the outage they were told
    about has ended, None when nothing changes."""
    if alerted:
        over = waiting.failing == 0 and waiting.waiting(now) <= alert_after
        return OVER if over else None
    return ALERTED if waiting.pending and waiting.waiting(now) > alert_after else None


class OutageWatch:
    """`check()` whenever convenient (every few seconds): alerts at most once per outage."""

    def __init__(self, config: Config, engine: Engine, clock: Callable[[], datetime],
                 pipeline: Pipeline) -> None:  # fmt: skip
        self.config = config
        self.engine = engine
        self.clock = clock
        self.pipeline = pipeline

    def check(self) -> bool:
        """Look at the backlog; returns whether an alert was queued."""
        now = self.clock()
        with store.reading(self.engine) as conn:  # reads only: no write lock every few seconds
            waiting = backlog(conn)
            latest = store.latest_event(conn, (ALERTED, OVER))
        change = step(waiting, latest is not None and latest.kind == ALERTED, now,
                      self.config.send.alert_after)  # fmt: skip
        if change is None:
            return False
        with store.begin(self.engine) as conn:
            if change == OVER:
                store.add_event(conn, now, OVER, {})
                log.info("event=send-outage-over")
                return False
            store.add_event(conn, now, ALERTED, {"pending": waiting.pending,
                                                 "error": (waiting.last_error or "")[:500]})  # fmt: skip
            messages = self.messages(waiting, now)
            for recipient, message in messages:
                store.enqueue(conn, "alert", message, recipient, now)
        log.error("event=send-outage pending=%s waiting=%s error=%r", waiting.pending,
                  format_duration(self._age(waiting, now)), waiting.last_error)  # fmt: skip
        if self.config.send.transport == "smtp":  # the server may be what is broken
            try:
                folder = write_aside(self.config, messages)
                log.warning("event=send-outage-alert-to-maildir path=%s", folder)
            except SendFailed as exc:
                log.error("event=send-outage-alert-undeliverable error=%r", str(exc))
        return True

    def messages(self, waiting: Backlog, now: datetime) -> list[tuple[str, Message]]:
        from .render import Alert, alert_message, alert_recipients

        send = self.config.send
        alert = Alert("outage", {
            "waited": self._age(waiting, now).total_seconds(), "pending": waiting.pending,
            "oldest": self.config.calendar.local(waiting.oldest_at or now).replace(microsecond=0),
            "attempts": waiting.attempts, "last_error": waiting.last_error or "",
            "give_up_after": send.give_up_after.total_seconds(), "transport": send.transport,
            "server": f"{send.host}:{send.port}" if send.transport == "smtp" else send.path,
        })  # fmt: skip
        return [(recipient, alert_message(self.pipeline.renderer, recipient, alert, now=now))
                for recipient in alert_recipients(self.config)]  # fmt: skip

    @staticmethod
    def _age(waiting: Backlog, now: datetime) -> timedelta:
        return timedelta(seconds=int(waiting.waiting(now).total_seconds()))
