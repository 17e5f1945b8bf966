"""The owner's "sign-in needed" alert: queued when the token store reports a refused sign-in.

Owns: turning each `oauth-login-required` event (recorded by tokens.py, which never sends
mail) into one alert to the owner, queued through the pipeline's enqueue in the same
transaction as the note that it was queued (an `oauth-alerted` event naming the last
event it covers), so each refusal is told once, across restarts. When the broken account
is the one that sends, the outbox cannot carry the alert: it is written to a local
maildir instead (`[oauth] alert_maildir`, default the [send] path), where a local mail
reader or monitoring can pick it up; `status` and the log say the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import store
from .config import Config
from .outbox import SendFailed, write_aside
from .pipeline import Pipeline
from .render import Alert, alert_message, alert_recipients

log = logging.getLogger("sla_gateway.signin")


def sign_in_alert(config: Config, account: str, why: str, command: str) -> Alert:
    return Alert("sign-in", {"account": account, "why": why, "command": command,
                             "give_up_after": config.send.give_up_after.total_seconds()})  # fmt: skip


def queue_alerts(pipeline: Pipeline, clock: Callable[[], datetime]) -> int:
    """Alert the owner about every sign-in refused since the last alert; how many were
    queued (or written aside)."""
    config, engine = pipeline.config, pipeline.engine
    aside: list[tuple[str, Any]] = []
    queued = 0
    with store.begin(engine) as conn:
        pending = store.unalerted_sign_ins(conn)
        if not pending:
            return 0
        now = clock()
        for _, detail in pending:
            account = str(detail.get("account", "?"))
            alert = sign_in_alert(config, account, str(detail.get("reason", "")),
                                  str(detail.get("command", "login")))  # fmt: skip
            for recipient in alert_recipients(config):
                message = alert_message(pipeline.renderer, recipient, alert, now=now)
                if detail.get("sender"):
                    aside.append((recipient, message))
                else:
                    pipeline.queue(conn, "alert", message, recipient, now)
                    queued += 1
        store.add_event(conn, now, "oauth-alerted", {"through": pending[-1][0]})
    if aside:
        try:
            folder = write_aside(config, aside)
        except SendFailed as exc:
            log.error("event=oauth-alert-undeliverable error=%r", str(exc))
        else:
            log.warning("event=oauth-alert-to-maildir path=%s", folder)
    return queued + len(aside)



