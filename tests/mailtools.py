"""Real mail peers for tests: a free port, an aiosmtpd sink that records what it gets,
and a gateway configuration wired to them. No mocks: everything talks over sockets."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from gateway.config import Config, parse
from tests.conftest import FIXED_NOW, example_text


class Clock:
    """The one thing tests fake: time. Moves only when told to."""

    def __init__(self, now: datetime = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Sink:
    """An SMTP server that stores every message; `reply` lets a test make it refuse."""

    port: int = 0
    received: list[Delivered] = field(default_factory=list)
    reply: str = "250 2.0.0 OK"
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.reply.startswith("250"):
            return self.reply
        with self._cond:
            self.received.append(
                Delivered(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
            self._cond.notify_all()
        return self.reply

    def start(self) -> None:
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Delivered]:
        """Wait (bounded) until at least `count` messages arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} messages, got {len(self.received)}")
                self._cond.wait(left)
            return list(self.received)


def gateway_config(
    tmp_path: Path,
    database_url: str,
    *,
    sink_port: int | None = None,
    listen_port: int | None = None,
    extra: dict[str, str] | None = None,
    append: str = "",
) -> Config:
    """The example configuration pointed at this test's database, ports and folders.

    `extra` replaces whole lines of the example ("old line" -> "new line")."""
    text = example_text().replace(
        'database = "sqlite:///var/sla-gateway.db"', f'database = "{database_url}"'
    )
    text = text.replace("port = 2525 ", f"port = {listen_port or free_port()} ")
    if sink_port is not None:
        text = text.replace('transport = "maildir" ', 'transport = "smtp" ')
        text = text.replace('# host = "smtp.gmail.com"', 'host = "127.0.0.1"')
        text = text.replace("# port = 587 ", f"port = {sink_port} ")
        text = text.replace('# security = "starttls"     ', 'security = "none"     ')
    text = text.replace('path = "var/outbox"', f'path = "{tmp_path / "outbox"}"')
    # No daily digest unless a test asks for one: it would join the mail a test counts.
    text = text.replace(
        'to = ["owner@shop.example"]                     # who gets it', "to = []  # who gets it"
    )
    for old, new in (extra or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "gateway.toml"  # written too, for tests that drive the CLI
    path.write_text(text + append, encoding="utf-8")
    return parse(text + append, str(path))


INIT_SECRET_FILES = ("imap-password", "smtp-password", "oauth-client-secret", "oauth-token-key")


def init_credentials(tmp_path: Path) -> dict[str, str]:
    """The files `init`'s configurations name, in a $CREDENTIALS_DIRECTORY (as systemd's
    LoadCredential= provides them): the environment to pass to commands."""
    directory = tmp_path / "credentials"
    directory.mkdir(exist_ok=True)
    for name in INIT_SECRET_FILES:
        (directory / name).write_text("not-a-real-secret\n", encoding="utf-8")
    return {"CREDENTIALS_DIRECTORY": str(directory)}
