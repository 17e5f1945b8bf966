"""Reload without restart: SIGHUP (`systemctl reload`) makes the running gateway read its
configuration and templates again and use them for new mail; a bad file is refused in one
log line and the running configuration kept; a key that needs a restart is named and keeps
its running value. End to end over the real `sla-gateway run` and a real SMTP socket."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from babel.dates import format_date

from gateway.config import parse
from gateway.reload import merge
from gateway.service import Service
from tests.mailtools import free_port, gateway_config

SLA = str(Path(sys.executable).with_name("sla-gateway"))
CLOSED = 'closed = ["2026-12-24", "2026-12-31"]'


class Gateway:
    """`sla-gateway run` in a subprocess, its log lines collected as they come."""

    def __init__(self, config_path: Path, port: int, cwd: Path) -> None:
        self.port = port
        self.lines: list[str] = []
        self.process = subprocess.Popen([SLA, "--config", str(config_path), "run"], cwd=cwd,
                                        stderr=subprocess.PIPE, text=True)  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                assert self.process.poll() is None, self.log()
                assert time.monotonic() < deadline, "the service did not start listening"
                time.sleep(0.1)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def log(self) -> str:
        return "\n".join(self.lines)

    def reload(self, event: str) -> list[str]:
        """SIGHUP, then wait for the log line of `event`; the lines logged meanwhile."""
        start = len(self.lines)
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while not any(f"event={event} " in line for line in self.lines[start:]):
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"no event={event}:\n{self.log()}"
            time.sleep(0.1)
        return self.lines[start:]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self._reader.join(timeout=10)


def send(port: int, sender: str, subject: str) -> None:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = "support@shop.example"
    mail["Subject"] = subject
    mail["Message-ID"] = f"<{subject.replace(' ', '-')}@customer.example>"
    mail["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    mail.set_content("Hello, where is my parcel?\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(mail)


def ack_to(outbox: Path, recipient: str, gateway: Gateway) -> EmailMessage:
    """The acknowledgment written to the maildir for `recipient` (waits for it)."""
    deadline = time.monotonic() + 30
    while True:
        for path in sorted((outbox / "new").glob("*")) if (outbox / "new").is_dir() else []:
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if message["To"] == recipient and message["Auto-Submitted"] == "auto-replied":
                assert isinstance(message, EmailMessage)
                return message
        assert gateway.process.poll() is None, gateway.log()
        assert time.monotonic() < deadline, f"no acknowledgment to {recipient}:\n{gateway.log()}"
        time.sleep(0.1)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def test_sighup_applies_a_new_closure_and_new_wording_to_new_mail_and_refuses_a_bad_file(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    config = gateway_config(tmp_path, database_url, listen_port=port)
    outbox = tmp_path / "outbox"
    gateway = Gateway(config.path, port, tmp_path)
    try:
        send(port, "kim@customer.example", "Parcel one")
        before = ack_to(outbox, "kim@customer.example", gateway)
        assert str(before["Subject"]).startswith("Re: Parcel one [SHOP-")

        # An emergency closure from today for three weeks, new wording for the subject, and
        # another listener port (which needs a restart).
        today = datetime.now(UTC).date()
        span = f'closed = ["{today - timedelta(days=1)}..{today + timedelta(days=21)}"]'
        templates = tmp_path / "templates"
        templates.mkdir()
        (templates / "ack.subject.j2").write_text("Got it: {{ subject }} [{{ reference }}]\n")
        text = config.path.read_text()
        assert CLOSED in text and f"port = {port} " in text
        text = text.replace(CLOSED, span).replace(f"port = {port} ", f"port = {free_port()} ")
        text = text.replace('# templates = "/etc/sla-gateway/templates"', f'templates = "{templates}"')
        config.path.write_text(text)
        logged = gateway.reload("reloaded")
        assert any("event=reload-needs-restart key=listen.port" in line
                   and "needs a restart: listen.port" in line for line in logged), logged  # fmt: skip

        send(port, "lea@customer.example", "Parcel two")  # the running port: kept
        after = ack_to(outbox, "lea@customer.example", gateway)
        assert str(after["Subject"]).startswith("Got it: Parcel two [SHOP-")
        reopens = parse(text, str(config.path)).calendar.next_open(datetime.now(UTC))
        back = format_date(reopens.astimezone(config.calendar.tz), format="full", locale="en")
        assert "We are closed today" in text_of(after) and back in text_of(after)
        assert back not in text_of(before)

        # A broken file: refused in one line, and the last good configuration stays.
        config.path.write_text(text.replace("[business_hours]", "[business_hours", 1))
        logged = gateway.reload("reload-refused")
        refused = [line for line in logged if "event=reload-refused" in line]
        assert len(refused) == 1 and str(config.path) in refused[0], logged
        assert "Traceback" not in gateway.log()
        send(port, "max@customer.example", "Parcel three")
        kept = ack_to(outbox, "max@customer.example", gateway)
        assert str(kept["Subject"]).startswith("Got it: Parcel three [SHOP-")
    finally:
        gateway.stop()
    assert gateway.process.returncode == 0, gateway.log()


def test_a_template_that_does_not_render_is_refused(tmp_path: Path, database_url: str) -> None:
    """The same checks as `check`: every template is rendered before a reload applies."""
    templates = tmp_path / "templates"
    templates.mkdir()
    config = gateway_config(tmp_path, database_url, extra={
        '# templates = "/etc/sla-gateway/templates"': f'templates = "{templates}"'})  # fmt: skip
    service = Service(config)
    try:
        (templates / "ack.txt.j2").write_text("Hello {{ no_such_value }}\n")
        assert service.reload() is False
        assert service.config is config and service.pipeline.config is config
        (templates / "ack.txt.j2").write_text("Hello {{ reference }}\n")
        assert service.reload() is True
        assert service.pipeline.renderer.render("ack.txt.j2", "en", {"reference": "SHOP-1"}) == "Hello SHOP-1\n"
    finally:
        service.close()


def test_what_needs_a_restart_keeps_its_running_value(tmp_path: Path, database_url: str) -> None:
    running = gateway_config(tmp_path, database_url, listen_port=2600)
    text = running.path.read_text()
    changed = (text.replace("port = 2600 ", "port = 2601 ")
               .replace(CLOSED, 'closed = ["2026-12-24..2026-12-28"]')
               .replace('path = "', 'path = "/elsewhere', 1)
               .replace("max_per_minute = 60", "max_per_minute = 30"))  # fmt: skip
    assert "max_per_minute = 30" in changed and "/elsewhere" in changed
    applied, restart = merge(running, parse(changed, str(running.path)))
    assert restart == ["listen.port", "send.path"]
    assert applied.listen == running.listen and applied.send.path == running.send.path
    assert applied.hours.closed[0] == (datetime(2026, 12, 24).date(), datetime(2026, 12, 28).date())
    assert applied.calendar.closure(datetime(2026, 12, 27).date()) is not None
    assert applied.acknowledge.max_per_minute == 30
    assert merge(running, running) == (running, [])


def test_the_unit_reloads_with_sighup() -> None:
    unit = (Path(__file__).resolve().parent.parent / "systemd" / "sla-gateway.service").read_text()
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in unit
