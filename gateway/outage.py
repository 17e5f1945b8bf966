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
        from .render import alert_message

        send, age = self.config.send, format_duration(self._age(waiting, now))
        oldest = self.config.calendar.local(waiting.oldest_at or now).replace(microsecond=0)
        server = f"the server {send.host}:{send.port}" if send.transport == "smtp" else send.path
        why = (f"The last error, after {waiting.attempts} attempts: {waiting.last_error}"
               if waiting.last_error else "It has not been tried yet: is the service's sender stuck?")  # fmt: skip
        text = (
            f"sla-gateway has not been able to send mail for {age}: {waiting.pending} "
            f"{'message is' if waiting.pending == 1 else 'messages are'} waiting "
            "(acknowledgments, alerts), the oldest since "
            f"{oldest:%Y-%m-%d %H:%M:%S %Z}.\n\n{why}\n\n"
            f"Nothing is lost: they stay queued and are tried again every few minutes (for "
            f"{format_duration(send.give_up_after)}; after that they are marked failed, and "
            f"`sla-gateway retry` sends them). Check {server} and the [send] settings; "
            "`sla-gateway status` shows the backlog.\n\n"
            "You hear this once per outage: the next alert comes only after the mail that "
            "failed has gone out.\n"
        )
        return [(recipient, alert_message(self.config, recipient, subject="Outgoing mail is not going out",
                                          text=text, now=now))
                for recipient in self.config.alerts.to or (self.config.inboxes[0].address,)]  # fmt: skip

    @staticmethod
    def _age(waiting: Backlog, now: datetime) -> timedelta:
        return timedelta(seconds=int(waiting.waiting(now).total_seconds()))
