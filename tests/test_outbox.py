"""The outbox sender's bookkeeping: what went out is recorded whatever ends a run of
sends — the end, a stop, an error nobody expected — so nothing goes out twice without a
crash. Real database, real maildir transport; the faults are injected by a subclass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import store
from gateway.outbox import MaildirTransport, OutboxSender, to_crlf
from gateway.pipeline import Pipeline, Received
from gateway.render import Alert, Renderer, alert_message
from tests.mailtools import Sink, gateway_config

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
            message = alert_message(Renderer(config), f"o{n}@shop.example", Alert("test"), now=NOW)
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


class WatchingMaildir(MaildirTransport):
    """A maildir that, at every send, notes how many rows the outbox already calls sent."""

    def __init__(self, path: Path, engine: sa.Engine) -> None:
        super().__init__(path)
        self.engine = engine
        self.seen: list[int] = []
        self.raws: list[bytes] = []

    def send(self, sender: str, recipient: str, raw: bytes) -> None:
        self.seen.append(statuses(self.engine).count("sent"))
        self.raws.append(raw)
        super().send(sender, recipient, raw)


def test_each_success_is_recorded_before_the_next_send(tmp_path: Path, database_url: str) -> None:
    """A crash (kill -9) can come at any moment: when a message is handed to the
    transport, every one sent before it is already committed as sent, so at most the
    one in flight goes out again — as the outbox holds it, same bytes, same Message-ID."""
    _, engine = queue_five(tmp_path, database_url)
    try:
        transport = WatchingMaildir(tmp_path / "out", engine)
        assert OutboxSender(engine, transport, lambda: NOW).send_due() == 5
        assert transport.seen == [0, 1, 2, 3, 4]
        with engine.connect() as conn:
            stored = list(conn.execute(sa.select(store.outbox.c.raw).order_by(store.outbox.c.id)).scalars())
        assert transport.raws == stored
    finally:
        engine.dispose()


class HoldingSink(Sink):
    """A sink that stores message number `hold_at` and delays its 250 until `release` is
    set: the moment a kill -9 hits a sender waiting for the answer to a delivered mail."""

    def __init__(self, hold_at: int) -> None:
        super().__init__()
        self.hold_at = hold_at
        self.holding, self.release = threading.Event(), threading.Event()
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        answer = await super().handle_DATA(server, session, envelope)  # stored, as a server does
        self.count += 1
        if self.count == self.hold_at:
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        return answer


def start_gateway(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    """`sla-gateway run`, the real command (one process), in a process group of its own,
    so that a signal to the group reaches everything it runs."""
    command = [str(Path(sys.executable).with_name("sla-gateway")), "--config", str(config_path), "run"]
    with log.open("ab") as err:
        return subprocess.Popen(command, cwd=config_path.parent, stdin=subprocess.DEVNULL,
                                stdout=err, stderr=err, start_new_session=True)  # fmt: skip


def test_a_kill_9_while_sending_resends_at_most_the_one_in_flight(tmp_path: Path, database_url: str) -> None:
    """40 acknowledgments queued; the service is killed (SIGKILL) while
    the server has taken the 25th but not yet said 250; restarted, it sends the rest.
    Every acknowledgment arrives; only the 25th twice, both copies the stored bytes."""
    sink = HoldingSink(hold_at=25)
    sink.start()
    config = gateway_config(tmp_path, database_url, sink_port=sink.port)
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    now = datetime.now(UTC)  # the service runs on the real clock
    pipeline = Pipeline(config, engine, lambda: now)
    for n in range(40):
        raw = (f"From: c{n}@customer.example\r\nTo: support@shop.example\r\nSubject: Order {n}\r\n"
               f"Message-ID: <k{n}@customer.example>\r\n\r\nWhere is my order {n}?\r\n").encode()  # fmt: skip
        pipeline.accept(Received(raw, "smtp", now, f"c{n}@customer.example", ("support@shop.example",)))
    while pipeline.process_pending(limit=200):
        pass
    o = store.outbox.c
    with engine.connect() as conn:
        queued = {r.message_id: r.raw for r in conn.execute(sa.select(o.message_id, o.raw).where(o.kind == "ack"))}
    assert len(queued) == 40
    log = tmp_path / "gateway.log"
    process = start_gateway(config.path, log)
    try:
        assert sink.holding.wait(60), log.read_text()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        sink.release.set()  # the server kept the message; its 250 reaches nobody
        assert statuses(engine).count("sent") == 24  # every 250 heard was recorded
        process = start_gateway(config.path, log)
        sink.wait_for(41, timeout=60)
        deadline = time.monotonic() + 30
        while statuses(engine).count("pending") and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        sink.stop()
    assert statuses(engine) == ["sent"] * 40
    engine.dispose()
    copies = Counter(str(d.message["Message-ID"]).strip("<>") for d in sink.received)
    assert set(copies) == set(queued)
    assert [mid for mid, n in copies.items() if n > 1] == [list(queued)[24]]
    held = [d.raw for d in sink.received if str(d.message["Message-ID"]).strip("<>") == list(queued)[24]]
    assert held[0] == held[1] == to_crlf(queued[list(queued)[24]])


class _HangsUpAfterData(Sink):
    """Takes the message, then hangs up instead of answering 250 (the first `times`)."""

    times: int = 1

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.times > 0:
            self.times -= 1
            server.transport.close()
        return reply


def test_a_hang_up_after_the_message_is_no_immediate_resend(tmp_path: Path, database_url: str) -> None:
    """The server may have kept a message it did not confirm: it is not sent again at once
    on a new connection (a duplicate without any crash), only at the next attempt."""
    from gateway.outbox import SendFailed, SmtpTransport

    server = _HangsUpAfterData()
    server.start()
    try:
        config = gateway_config(tmp_path, database_url, sink_port=server.port)
        transport = SmtpTransport(config.send)
        raw = b"From: support@shop.example\r\nTo: kim@customer.example\r\nSubject: x\r\n\r\nx\r\n"
        with pytest.raises(SendFailed) as failed:
            transport.send("support@shop.example", "kim@customer.example", raw)
        assert not failed.value.permanent
        assert len(server.received) == 1  # one copy, not two (the sink stored it before hanging up)
        transport.send("support@shop.example", "kim@customer.example", raw)  # the later attempt
        assert len(server.wait_for(2)) == 2
        transport.close()
    finally:
        server.stop()


def test_a_connection_dropped_while_idle_is_replaced_before_the_next_message(
    tmp_path: Path, database_url: str
) -> None:
    from gateway.outbox import SmtpTransport

    server = Sink()
    server.start()
    try:
        config = gateway_config(tmp_path, database_url, sink_port=server.port)
        transport = SmtpTransport(config.send)
        raw = b"From: support@shop.example\r\nTo: kim@customer.example\r\nSubject: x\r\n\r\nx\r\n"
        transport.send("support@shop.example", "kim@customer.example", raw)
        port = server.port
        server.stop()  # the server restarts: the kept-open connection is dead
        server.port, server._controller = port, None
        from aiosmtpd.controller import Controller

        server._controller = Controller(server, hostname="127.0.0.1", port=port)
        server._controller.start()
        transport.send("support@shop.example", "kim@customer.example", raw)  # NOOP finds it
        assert len(server.wait_for(2)) == 2
        transport.close()
    finally:
        server.stop()
