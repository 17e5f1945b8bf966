"""Nothing is set aside silently: a message that cannot be processed alerts the owner
(through the outbox, merged: at most one alert an hour, listing what was set aside since
the previous one, held outside business hours), `status` lists set-aside messages with
their reasons, and `retry` exits 1 when one is set aside again. Mail arrives over real
SMTP and alerts leave over real SMTP."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from gateway import store
from gateway.config import Config
from gateway.pipeline import Received
from gateway.service import Service
from tests.mailtools import Clock, Sink, gateway_config

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin, open
# A custom template that works for the sample mail `check` renders (and for most mail)
# but fails for a mail whose subject has fewer than three words.
THIRD_WORD = "Hello,\n\nabout “{{ subject.split()[2] }}”: reference {{ reference }}.\n"




def mail(subject: str, message_id: str, sender: str = "kim@customer.example") -> bytes:
    return (
        f"From: Kim Meyer <{sender}>\r\nTo: support@shop.example\r\nSubject: {subject}\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{message_id}>\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\nHello, where is my parcel?\r\n"
    ).encode()


def send(config: Config, raw: bytes, sender: str = "kim@customer.example") -> None:
    assert config.listen is not None
    with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
        client.sendmail(sender, ["support@shop.example"], raw)


@pytest.fixture
def config(tmp_path: Path, database_url: str, sink: Sink) -> Config:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "ack.txt.j2").write_text(THIRD_WORD, encoding="utf-8")
    return gateway_config(tmp_path, database_url, sink_port=sink.port, extra={
        '# templates = "/etc/sla-gateway/templates"': f'templates = "{templates}"'})  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(config: Config, clock: Clock) -> Iterator[Service]:
    """The listener on a real socket; processing, timers and sending stepped by the test."""
    service = Service(config, clock=clock)
    service.start(workers=False)
    yield service
    service.close()


def alerts(sink: Sink) -> list[Any]:
    return [d.message for d in sink.received if d.rcpt_tos == ["owner@shop.example"]]


def statuses(service: Service) -> list[str]:
    with service.engine.connect() as conn:
        return [r.status for r in conn.execute(store.messages.select().order_by(store.messages.c.id))]


def test_set_aside_mail_alerts_the_owner_at_most_hourly(
    service: Service, config: Config, sink: Sink, clock: Clock, run_cli: Callable[..., Result]
) -> None:
    assert run_cli("--config", str(config.path), "check").exit_code == 0  # check cannot know

    send(config, mail("Parcel", "s1@customer.example"))
    service.run_once()
    assert statuses(service) == ["shunted"]
    [alert] = alerts(sink)  # queued in the outbox, sent by the sender
    assert alert["Subject"] == "[sla-gateway] 1 message set aside, not acknowledged"
    assert alert["Auto-Submitted"] == "auto-generated"
    body = alert.get_content()
    assert "#1  received Mon 23 Nov 10:00 CET  kim@customer.example  “Parcel”" in body
    assert f"UndefinedError: list object has no element 2 (template {config.templates}/ack.txt.j2:3)" in body
    assert "sla-gateway retry" in body

    clock.advance(timedelta(minutes=10))
    send(config, mail("Refund", "s2@customer.example"))
    send(config, mail("Where is my parcel?", "ok@customer.example", "lee@customer.example"),
         "lee@customer.example")  # fmt: skip
    service.run_once()
    assert statuses(service) == ["shunted", "shunted", "processed"]
    assert len(alerts(sink)) == 1  # within the hour: no second alert
    assert [d.rcpt_tos for d in sink.received][-1] == ["lee@customer.example"]  # others still acked

    clock.advance(timedelta(minutes=51))
    send(config, mail("Invoice", "s3@customer.example"))
    service.run_once()
    _, second = alerts(sink)
    assert second["Subject"] == "[sla-gateway] 2 messages set aside, not acknowledged"
    body = second.get_content()
    assert "“Refund”" in body and "“Invoice”" in body and "“Parcel”" not in body
    with service.engine.connect() as conn:
        kinds = [r.kind for r in conn.execute(store.outbox.select())]
    assert kinds.count("alert") == 2

    service.run_once()  # nothing new: nothing more
    assert len(alerts(sink)) == 2


def test_the_alert_waits_for_business_hours(
    service: Service, config: Config, sink: Sink, clock: Clock
) -> None:
    clock.now = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)  # Saturday night in Berlin
    send(config, mail("Parcel", "night@customer.example"))
    service.run_once()
    assert statuses(service) == ["shunted"]
    assert alerts(sink) == []
    clock.now = datetime(2026, 11, 30, 8, 5, tzinfo=UTC)  # Monday 09:05
    assert service.scheduler.next_due() is not None
    service.run_once()
    [alert] = alerts(sink)
    assert "“Parcel”" in alert.get_content()


def test_replayed_history_raises_no_set_aside_alert(
    service: Service, config: Config, sink: Sink, clock: Clock, tmp_path: Path
) -> None:
    from gateway.replay import replay

    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / "junk.eml").write_bytes(b"\x00\x01 not mail\r\n")
    replay(config, service.engine, folder, now=clock())
    service.run_once()
    assert alerts(sink) == []


# ---------------------------------------------------------------------------- status, retry


def test_status_lists_set_aside_messages_with_their_reasons(
    service: Service, config: Config, run_cli: Callable[..., Result], clock: Clock
) -> None:
    for n in range(7):
        clock.advance(timedelta(seconds=1, microseconds=250_000))
        send(config, mail(f"Case{n}", f"st{n}@customer.example", f"c{n}@customer.example"),
             f"c{n}@customer.example")  # fmt: skip
    service.pipeline.accept(Received(b"\x00\x01 not mail", "smtp", clock(), "x@y.example",
                                     ("support@shop.example",)))  # fmt: skip
    service.run_once()
    cli = ("--config", str(config.path))

    info = json.loads(run_cli(*cli, "status", "--json", now=clock()).output)
    assert info["messages_set_aside"] == 8
    rows = info["set_aside"]
    assert [r["id"] for r in rows] == list(range(1, 9))
    first = rows[0]
    assert set(first) == {"id", "received_at", "from", "subject", "error"}
    assert first["received_at"] == "2026-11-23T10:00:01+01:00"  # shop time, whole seconds
    assert (first["from"], first["subject"]) == ("c0@customer.example", "Case0")
    template = config.templates
    assert first["error"] == f"UndefinedError: list object has no element 2 (template {template}/ack.txt.j2:3)"
    assert rows[-1]["from"] == "x@y.example" and rows[-1]["error"]  # junk: the envelope says who

    result = run_cli(*cli, "status", now=clock())
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = lines.index("messages: 0 waiting, 8 set aside — see `sla-gateway retry`")
    assert lines[at + 1] == ("  #1 2026-11-23 10:00:01 CET from c0@customer.example “Case0”: "
                             f"UndefinedError: list object has no element 2 (template {template}/ack.txt.j2:3)")  # fmt: skip
    assert [line.split()[0] for line in lines[at + 1 : at + 6]] == ["#1", "#2", "#3", "#4", "#5"]
    assert lines[at + 6] == "  and 3 more (see `sla-gateway status --json`)"


def test_status_says_nothing_extra_when_nothing_is_set_aside(
    service: Service, config: Config, run_cli: Callable[..., Result]
) -> None:
    info = json.loads(run_cli("--config", str(config.path), "status", "--json").output)
    assert info["set_aside"] == []
    text = run_cli("--config", str(config.path), "status").output
    assert "messages: 0 waiting, 0 set aside\n" in text


def test_retry_exits_1_when_the_running_service_sets_a_message_aside_again(
    tmp_path: Path, database_url: str, sink: Sink, run_cli: Callable[..., Result]
) -> None:
    """The service normally runs: `retry` releases the set-aside messages to it, waits for
    its processor and says how many were set aside again (exit 1), instead of exit 0."""
    config = gateway_config(tmp_path, database_url, sink_port=sink.port)
    clock = Clock()
    service = Service(config, clock=clock)
    service.start()  # its own processor and sender threads
    try:
        service.pipeline.accept(Received(b"\x00\x01 not mail", "smtp", clock(), "x@y.example",
                                         ("support@shop.example",)))  # fmt: skip
        service.wake()
        deadline = time.monotonic() + 15
        while statuses(service) != ["shunted"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [alert] = sink.wait_for(1)  # the service's own timers and sender, promptly
        assert alert.rcpt_tos == ["owner@shop.example"]
        result = run_cli("--config", str(config.path), "retry", now=clock())
        assert "1 set-aside messages processed again (1 set aside again)" in result.output
        assert result.exit_code == 1, result.output
        assert statuses(service) == ["shunted"]
    finally:
        service.close()
