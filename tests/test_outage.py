"""An outage of the outgoing server, seen from the shop: `status` shows the backlog and
why; the owner is alerted once per outage (outbox and fallback maildir); retries close
enough together that mail goes out within minutes of the server's return. Real database, a real SMTP server (the sink) that answers 451 while "down" or a
port nobody listens on; the CLI through its runner; only the clock is injected."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from gateway import store
from gateway.config import parse
from gateway.errors import ConfigError
from gateway.outage import ALERTED, OVER, step
from gateway.outbox import Backlog, OutboxSender, SmtpTransport, backoff
from gateway.pipeline import Pipeline, Received
from gateway.render import Alert, Renderer, alert_message
from gateway.service import Service
from tests.conftest import example_text
from tests.mailtools import Clock, Sink, free_port, gateway_config

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin
DOWN = "451 4.3.0 Mail server temporarily unavailable"




def queue(config: Any, engine: sa.Engine, now: datetime, count: int) -> None:
    pipeline = Pipeline(config, engine, lambda: now)
    with store.begin(engine) as conn:
        for n in range(count):
            message = alert_message(Renderer(config), f"o{n}@shop.example", Alert("test"), now=now)
            pipeline.queue(conn, "alert", message, f"o{n}@shop.example", now)


def customer_mail(pipeline: Pipeline, now: datetime, n: int = 1) -> None:
    """A customer's mail, stored and decided: one acknowledgment queued."""
    raw = (f"From: kim{n}@customer.example\r\nTo: support@shop.example\r\nSubject: Order {n}\r\n"
           f"Message-ID: <o{n}@customer.example>\r\n\r\nWhere is my parcel?\r\n").encode()  # fmt: skip
    pipeline.accept(Received(raw, "smtp", now, f"kim{n}@customer.example", ("support@shop.example",)))
    assert pipeline.process_pending()


def pending(engine: sa.Engine) -> int:
    o = store.outbox.c
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(o.status == "pending")).scalar_one())


def test_backoff_doubles_from_30_seconds_and_stops_at_5_minutes() -> None:
    schedule = [backoff(n) for n in range(1, 9)]
    assert schedule == [timedelta(seconds=s) for s in (30, 60, 120, 240, 300, 300, 300, 300)]
    assert backoff(0) == timedelta(seconds=30)  # never a wait of zero
    assert backoff(10_000) == timedelta(minutes=5)  # no overflow after days of failures


def test_after_a_long_outage_the_backlog_goes_out_within_5_minutes(
    tmp_path: Path, database_url: str, sink: Sink
) -> None:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port)
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    clock = Clock()
    sender = OutboxSender(engine, SmtpTransport(config.send), clock)
    try:
        queue(config, engine, NOW, 3)
        sink.reply = DOWN
        while clock() < NOW + timedelta(hours=3):  # three hours down, tried whenever due
            assert sender.send_due() == 0
            due = sender.next_due()
            assert due is not None and due - clock() <= timedelta(minutes=5)
            clock.now = due
        assert pending(engine) == 3 and sink.received == []
        sink.reply = "250 2.0.0 OK"  # the server is back: the next attempt sends everything
        clock.advance(timedelta(minutes=5))
        assert sender.send_due() == 3
        assert len(sink.received) == 3 and pending(engine) == 0
    finally:
        sender.close()
        engine.dispose()


def test_status_shows_the_backlog_and_why_while_the_server_answers_451(
    tmp_path: Path, database_url: str, sink: Sink, run_cli: Callable[..., Result]
) -> None:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port)
    cli = ("--config", str(config.path))
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    clock = Clock(NOW + timedelta(microseconds=250_000))
    sender = OutboxSender(engine, SmtpTransport(config.send), clock)
    try:
        customer_mail(Pipeline(config, engine, clock), clock())
        sink.reply = DOWN
        for _ in range(5):  # tried at 10:00:00, :30, 10:01:30, 10:03:30, 10:07:30
            assert sender.send_due() == 0
            clock.now = sender.next_due() or clock.now
        clock.now = NOW + timedelta(minutes=9, seconds=5, microseconds=1)
        text = run_cli(*cli, "status", now=clock()).output
        assert "outbox: 1 pending, 0 failed" in text
        assert (
            "sending: 1 waiting, the oldest since 2026-11-23 10:00:00 CET (9 minutes); 5 attempts, "
            f"last error: {DOWN}; next try 2026-11-23 10:12:30 CET" in text
        )
        assert "last hour: 0 acknowledgments" in text  # queued is not sent
        info = json.loads(run_cli(*cli, "status", "--json", now=clock()).output)
        assert info["backlog"] == {
            "pending": 1, "oldest_at": "2026-11-23T10:00:00+01:00", "waiting_seconds": 544,
            "attempts": 5, "last_error": DOWN, "next_try_at": "2026-11-23T10:12:30+01:00",
            "text": text.split("sending: ")[1].splitlines()[0],
        }  # fmt: skip
        assert info["last_hour"]["acknowledgments"] == 0

        sink.reply = "250 2.0.0 OK"
        clock.now = sender.next_due() or clock.now  # 10:12:30.25
        assert sender.send_due() == 1
        text = run_cli(*cli, "status", now=clock()).output
        assert "outbox: 0 pending, 0 failed" in text and "sending:" not in text
        assert "last hour: 1 acknowledgment, 0 alerts, 0 breach notices, 0 reminders, 0 closing notices, 0 digests" in text  # plurals
        info = json.loads(run_cli(*cli, "status", "--json", now=clock()).output)
        assert info["backlog"]["pending"] == 0 and info["backlog"]["oldest_at"] is None
        later = run_cli(*cli, "status", now=clock() + timedelta(minutes=61)).output
        assert "last hour: 0 acknowledgments" in later  # an hour after it was sent
    finally:
        sender.close()
        engine.dispose()


def test_status_names_a_server_that_cannot_be_reached(
    tmp_path: Path, database_url: str, run_cli: Callable[..., Result]
) -> None:
    port = free_port()  # nobody listens there
    config = gateway_config(tmp_path, database_url, sink_port=port)
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    clock = Clock()
    sender = OutboxSender(engine, SmtpTransport(config.send), clock)
    try:
        customer_mail(Pipeline(config, engine, clock), clock())
        assert sender.send_due() == 0
        info = json.loads(run_cli("--config", str(config.path), "status", "--json", now=clock()).output)
        backlog = info["backlog"]
        assert (backlog["pending"], backlog["attempts"]) == (1, 1)
        assert backlog["last_error"].startswith(f"cannot connect to 127.0.0.1:{port}: ")
        assert "Connection refused" in backlog["last_error"]
        assert backlog["next_try_at"] == "2026-11-23T10:00:30+01:00"
    finally:
        sender.close()
        engine.dispose()


SUBJECT = "[sla-gateway] Outgoing mail is not going out"


def outage_alerts(engine: sa.Engine, folder: Path) -> tuple[int, int]:
    """(alerts about the outage in the outbox, copies in the fallback maildir)."""
    o = store.outbox.c
    with engine.connect() as conn:
        raws = list(conn.execute(sa.select(o.raw).where(o.kind == "alert")).scalars())
    queued = sum(1 for raw in raws if message_from_bytes(raw)["Subject"] == SUBJECT)
    files = list((folder / "new").iterdir()) if (folder / "new").exists() else []
    aside = sum(1 for f in files if message_from_bytes(f.read_bytes())["Subject"] == SUBJECT)
    return queued, aside


def minutes(service: Service, clock: Clock, count: int) -> None:
    for _ in range(count):
        clock.advance(timedelta(minutes=1))
        service.run_once()


def test_the_owner_is_alerted_once_per_outage(tmp_path: Path, database_url: str, sink: Sink) -> None:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port)
    assert config.send.alert_after == timedelta(minutes=15)  # the default
    aside = tmp_path / "outbox"  # no [oauth] alert_maildir: the [send] path
    clock = Clock()
    service = Service(config, clock=clock)
    service.start(workers=False)
    try:
        sink.reply = DOWN
        customer_mail(service.pipeline, clock(), 1)
        service.run_once()
        minutes(service, clock, 15)
        assert outage_alerts(service.engine, aside) == (0, 0)  # 15 min: not longer than that
        minutes(service, clock, 1)
        assert outage_alerts(service.engine, aside) == (1, 1)  # queued and written aside
        [written] = (aside / "new").iterdir()
        alert = message_from_bytes(written.read_bytes(), policy=policy.default)
        assert alert["To"] == "owner@shop.example"
        text = alert.get_body().get_content()  # type: ignore[union-attr]
        assert "for 16m: 1 message is waiting" in text
        assert f"last error, after 6 attempts: {DOWN}" in text
        assert "the oldest since 2026-11-23 10:00:00 CET" in text
        minutes(service, clock, 60)
        assert outage_alerts(service.engine, aside) == (1, 1)  # once per outage
    finally:
        service.close()
    service = Service(config, clock=clock)  # a restart remembers it told the owner
    service.start(workers=False)
    try:
        minutes(service, clock, 5)
        assert outage_alerts(service.engine, aside) == (1, 1)
        sink.reply = "250 2.0.0 OK"  # the server is back: at most 5 min to the next try
        minutes(service, clock, 5)
        assert sorted(d.rcpt_tos[0] for d in sink.received) == ["kim1@customer.example", "owner@shop.example"]
        assert pending(service.engine) == 0
        with service.engine.connect() as conn:
            assert store.latest_event(conn, (ALERTED, OVER)).kind == OVER

        sink.reply = DOWN  # a later outage alerts again
        customer_mail(service.pipeline, clock(), 2)
        minutes(service, clock, 17)
        assert outage_alerts(service.engine, aside) == (2, 2)
        minutes(service, clock, 30)
        assert outage_alerts(service.engine, aside) == (2, 2)
    finally:
        service.close()


def test_an_alert_maildir_takes_the_copy(tmp_path: Path, database_url: str) -> None:
    """The closed port: nothing listens; `[oauth] alert_maildir` and a shorter alert_after."""
    config = gateway_config(tmp_path, database_url, sink_port=free_port(),
                            extra={'# give_up_after = "2d"': 'alert_after = "5m"'},
                            append=f'\n[oauth]\nalert_maildir = "{tmp_path / "alerts"}"\n')  # fmt: skip
    clock = Clock()
    service = Service(config, clock=clock)
    service.start(workers=False)
    try:
        customer_mail(service.pipeline, clock(), 1)
        minutes(service, clock, 6)
        assert outage_alerts(service.engine, tmp_path / "alerts") == (1, 1)
        alert = message_from_bytes(next((tmp_path / "alerts" / "new").iterdir()).read_bytes(),
                                   policy=policy.default)  # fmt: skip
        assert "cannot connect to 127.0.0.1:" in alert.get_body().get_content()  # type: ignore[union-attr]
    finally:
        service.close()


def test_a_stuck_sender_is_one_outage_not_an_alert_every_check() -> None:
    """Mail that waits without ever being tried (the sender hangs) alerts once; the
    outage ends only when nothing failed is left and nothing waits too long."""
    after = timedelta(minutes=15)
    untried = Backlog(pending=3, oldest_at=NOW, next_try_at=NOW)
    failed = Backlog(pending=3, oldest_at=NOW, attempts=2, last_error=DOWN, next_try_at=NOW, failing=3)
    fresh = Backlog(pending=1, oldest_at=NOW + timedelta(minutes=59), next_try_at=NOW)
    late = NOW + timedelta(hours=1)
    assert step(untried, False, NOW + after, after) is None
    assert step(untried, False, late, after) == ALERTED
    assert step(untried, True, late, after) is None
    assert step(failed, True, late, after) is None
    assert step(fresh, True, late, after) == OVER  # a new mail, not yet tried, is no outage
    assert step(Backlog(), True, late, after) == OVER
    assert step(Backlog(), False, late, after) is None


def test_alert_after_is_a_duration_like_the_others(tmp_path: Path) -> None:
    text = example_text()
    assert '# alert_after = "15m"' in text  # documented in the example
    config = parse(text.replace('# alert_after = "15m"', 'alert_after = "1h30m"'), "gw.toml")
    assert config.send.alert_after == timedelta(hours=1, minutes=30)
    with pytest.raises(ConfigError) as info:
        parse(text.replace('# alert_after = "15m"', 'alert_after = "15"'), "gw.toml")
    assert [str(p) for p in info.value.problems] == [
        'gw.toml: send.alert_after: "15" has no unit; use h and m units, e.g. "30m", "4h" or "1h30m"'
    ]
