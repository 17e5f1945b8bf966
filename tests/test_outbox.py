"""The outbox sender's bookkeeping: what went out is recorded whatever ends a run of
sends — the end, a stop, an error nobody expected — so nothing goes out twice without a
crash. Real database, real maildir transport; the faults are injected by a subclass."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import store
from gateway.outbox import MaildirTransport, OutboxSender
from gateway.pipeline import Pipeline
from gateway.render import alert_message
from tests.mailtools import gateway_config

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class FaultyMaildir(MaildirTransport):
    """A maildir that, after `after` messages, sets `stop` or raises."""

    def __init__(self, path: Path, after: int, *, stop: threading.Event | None = None) -> None:
        super().__init__(path)
        self.after, self.stop, self.count = after, stop, 0

    def send(self, sender: str, recipient: str, raw: bytes) -> None:
        if self.count == self.after and self.stop is None:
            raise RuntimeError("the disk controller caught fire")
        super().send(sender, recipient, raw)
        self.count += 1
        if self.count == self.after and self.stop is not None:
            self.stop.set()


def queue_five(tmp_path: Path, database_url: str) -> tuple[Any, sa.Engine]:
    config = gateway_config(tmp_path, database_url)
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    pipeline = Pipeline(config, engine, lambda: NOW)
    with store.begin(engine) as conn:
        for n in range(5):
            message = alert_message(config, f"o{n}@shop.example", subject=f"n{n}", text="x\n", now=NOW)
            pipeline.queue(conn, "alert", message, f"o{n}@shop.example", NOW)
    return config, engine


def statuses(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(store.outbox.c.status).order_by(store.outbox.c.id)).scalars())


def test_an_unexpected_error_still_records_what_went_out(tmp_path: Path, database_url: str) -> None:
    _, engine = queue_five(tmp_path, database_url)
    try:
        sender = OutboxSender(engine, FaultyMaildir(tmp_path / "out", 3), lambda: NOW)
        with pytest.raises(RuntimeError):
            sender.send_due()
        assert statuses(engine) == ["sent"] * 3 + ["pending"] * 2
        sender = OutboxSender(engine, MaildirTransport(tmp_path / "out"), lambda: NOW)
        assert sender.send_due() == 2  # the rest, and only the rest
        assert len(list((tmp_path / "out" / "new").iterdir())) == 5
    finally:
        engine.dispose()


def test_a_stop_ends_the_run_after_the_message_at_hand(tmp_path: Path, database_url: str) -> None:
    _, engine = queue_five(tmp_path, database_url)
    try:
        stop = threading.Event()
        sender = OutboxSender(engine, FaultyMaildir(tmp_path / "out", 2, stop=stop), lambda: NOW)
        assert sender.send_due(stopping=stop) == 2
        assert statuses(engine) == ["sent"] * 2 + ["pending"] * 3
    finally:
        engine.dispose()
