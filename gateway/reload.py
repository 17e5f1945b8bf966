"""Reloading the configuration of a running gateway (`systemctl reload`, SIGHUP).

Owns: reading the configuration file and the templates again and validating them exactly
as `check` does (every template rendered with sample values), and deciding what of the
new configuration a running gateway can take over. Everything that shapes new work can:
inboxes' addresses, languages and rules, opening hours, holidays and closures, seasons,
priorities, limits, alerts, the digest, templates and catalogs. What the running process
was built from cannot, and keeps its running value until a restart (`RESTART_ONLY`): the
database, the listener's socket and login, each inbox's IMAP account (its poller threads),
the outgoing transport and its login, and the OAuth token key. `merge()` is pure: it takes
the running and the new configuration and returns the one to apply and the keys that
need a restart. It applies nothing itself; the service does.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from .config import Config, load
from .errors import ConfigError

# [send] keys the running sender reads for each message; the others built its transport.
SEND_LIVE = ("give_up_after", "alert_after", "null_sender")


def read(config: Config, now: datetime) -> Config:
    """The configuration file `config` came from, read and validated again with its
    templates; raises ConfigError with every problem (the running one stays)."""
    from .templatecheck import check_templates

    new = load(config.path, config.calendar.local(now).date())
    problems = check_templates(new, now)
    if problems:
        raise ConfigError(problems)
    return new


def _changed(prefix: str, old: Any, new: Any) -> list[str]:
    """The keys (dotted, as in the file) whose value differs between two values."""
    if old == new:
        return []
    if dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new) and type(old) is type(new):
        return [key for f in dataclasses.fields(old)
                for key in _changed(f"{prefix}.{f.name}", getattr(old, f.name), getattr(new, f.name))]  # fmt: skip
    return [prefix]


def merge(running: Config, new: Config) -> tuple[Config, list[str]]:
    """The configuration to apply — `new`, with the running value of every key that needs
    a restart — and those keys, in file order."""
    restart: list[str] = []
    restart += _changed("database", running.database, new.database)
    restart += _changed("listen", running.listen, new.listen)
    if [i.name for i in running.inboxes] != [i.name for i in new.inboxes]:
        restart.append("inbox")  # an inbox added, removed or renamed: its poller, its name
        inboxes = running.inboxes
    else:
        inboxes = tuple(
            dataclasses.replace(fresh, imap=old.imap)
            for old, fresh in zip(running.inboxes, new.inboxes, strict=True)
        )
        for n, (old, fresh) in enumerate(zip(running.inboxes, new.inboxes, strict=True)):
            restart += _changed(f"inbox[{n}].imap", old.imap, fresh.imap)
    send_live = {name: getattr(new.send, name) for name in SEND_LIVE}
    restart += _changed("send", dataclasses.replace(running.send, **send_live), new.send)
    restart += _changed("oauth", running.oauth, new.oauth)
    applied = dataclasses.replace(
        new, database=running.database, listen=running.listen, inboxes=inboxes,
        send=dataclasses.replace(running.send, **send_live), oauth=running.oauth,
    )  # fmt: skip
    return applied, [key.replace(".imap.oauth.", ".imap.").replace("send.oauth.", "send.") for key in restart]
