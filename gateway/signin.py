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
from .durations import format_duration
from .outbox import SendFailed, write_aside
from .pipeline import Pipeline
from .render import alert_message

log = logging.getLogger("sla_gateway.signin")


def alert_text(config: Config, account: str, why: str, command: str) -> str:
    return (
        f"sla-gateway can no longer sign in to the mailbox {account}: the authorization "
        f"server refused its refresh token ({why}).\n\n"
        "This happens when the app's access is revoked, the password is changed, or the "
        "sign-in has not been used for a long time.\n\n"
        "Nothing is lost: mail stays in the mailbox and outgoing messages stay queued "
        f"(for {format_duration(config.send.give_up_after)}; after that they are marked "
        "failed, and `sla-gateway retry` sends them). "
        f"To fix it, run on the server:\n\n    sla-gateway {command}\n\n"
        "and approve the sign-in in any browser. The gateway picks up the new sign-in by itself.\n"
    )


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
            text = alert_text(config, account, str(detail.get("reason", "")), str(detail.get("command", "login")))
            for recipient in config.alerts.to or (config.inboxes[0].address,):
                message = alert_message(config, recipient, subject=f"Sign-in needed for {account}",
                                        text=text, now=now)  # fmt: skip
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



