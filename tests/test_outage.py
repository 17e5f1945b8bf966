"""An outage of the outgoing server, seen from the shop: retries close enough together
that mail goes out within minutes of the server's return. Real database, a real SMTP
server (the sink) that answers 451 while "down"; only the clock is injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway import store
from gateway.outbox import OutboxSender, SmtpTransport, backoff
from gateway.pipeline import Pipeline
from gateway.render import alert_message
from tests.mailtools import Sink, gateway_config

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin
DOWN = "451 4.3.0 Mail server temporarily unavailable"


class Clock:
    """The one thing tests fake: time. Moves only when told to."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def queue(config: Any, engine: sa.Engine, now: datetime, count: int) -> None:
    pipeline = Pipeline(config, engine, lambda: now)
    with store.begin(engine) as conn:
        for n in range(count):
            message = alert_message(config, f"o{n}@shop.example", subject=f"n{n}", text="x\n", now=now)
            pipeline.queue(conn, "alert", message, f"o{n}@shop.example", now)


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
