"""The runner's paths that only trouble takes: an unexpected exception while applying a
plan (rolled back, then set aside with its error), two runners claiming the same
messages (each processed once; a runner that loses the race writes nothing), and a
database that is locked (SMTP answers 451; the runner retries the message later instead
of setting it aside). Also: the rate limits and the breaker come from the database, so a
new runner (a restart) sees what the last one queued."""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import runner as runner_module
from gateway import store
from gateway.config import Config
from gateway.errors import TemporaryError
from gateway.model import Received
from gateway.pipeline import Pipeline
from gateway.service import Service
from tests.mailtools import Sink, gateway_config

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin, open


def mail(n: int, sender: str | None = None, subject: str | None = None) -> bytes:
    sender = sender or f"c{n}@customer.example"
    subject = subject or f"Parcel {n}"
    return (
        f"From: Customer {n} <{sender}>\r\nTo: support@shop.example\r\nSubject: {subject}\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <r{n}@customer.example>\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\nWhere is my parcel {n}?\r\n"
    ).encode()


def received(n: int) -> Received:
    return Received(mail(n), "smtp", NOW, f"c{n}@customer.example", ("support@shop.example",))


@pytest.fixture
def config(tmp_path: Path, database_url: str, sink: Sink) -> Config:
    return gateway_config(tmp_path, database_url, sink_port=sink.port)


@pytest.fixture
def engine(config: Config) -> Iterator[sa.Engine]:
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    yield engine
    engine.dispose()


def count(engine: sa.Engine, table: sa.Table, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


def test_an_unexpected_error_while_applying_rolls_back_and_sets_the_message_aside(
    config: Config, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = Pipeline(config, engine, lambda: NOW)
    bad, _ = pipeline.accept(received(1))
    good, _ = pipeline.accept(received(2))

    def broken_flip(conn: Any, row_id: int, **values: Any) -> bool:
        if row_id == bad:  # the conversation and the ack are written by now
            raise RuntimeError("disk on fire")
        return real_flip(conn, row_id, **values)

    real_flip = store.flip_processed
    monkeypatch.setattr(store, "flip_processed", broken_flip)
    outcomes = pipeline.process_pending()
    assert [(o.message_row, o.status) for o in outcomes] == [(bad, "shunted"), (good, "processed")]
    m = store.messages.c
    with engine.connect() as conn:
        row = conn.execute(sa.select(store.messages).where(m.id == bad)).one()
    assert row.status == "shunted" and row.error == "RuntimeError: disk on fire"
    # Nothing of its plan survived: one conversation and one acknowledgment, the good one's.
    assert count(engine, store.conversations) == 1
    assert count(engine, store.outbox, store.outbox.c.source_message_id == bad) == 0
    assert count(engine, store.outbox, store.outbox.c.kind == "ack") == 1
    assert count(engine, store.events, store.events.c.kind == "shunted") == 1
    # Its reference number was given back with the rollback: the good one's is the first.
    assert references(engine) == ["SHOP-1001"]


def references(engine: sa.Engine) -> list[str]:
    c = store.conversations.c
    with engine.connect() as conn:
        return list(conn.execute(sa.select(c.reference).order_by(c.id)).scalars())


def test_references_are_consecutive_whatever_else_arrives_or_fails(
    tmp_path: Path, database_url: str, sink: Sink
) -> None:
    """Machine mail, team replies and a message set aside by a failing template take no
    number: the conversations are SHOP-1001, SHOP-1002, SHOP-1003, in order."""
    templates = tmp_path / "templates"
    templates.mkdir()
    builtin = (Path(__file__).parent.parent / "templates" / "ack.txt.j2").read_text()
    (templates / "ack.txt.j2").write_text(
        '{% if "explode" in subject %}{{ no_such_value }}{% endif %}' + builtin
    )
    config = gateway_config(tmp_path, database_url, sink_port=sink.port, extra={
        '# templates = "/etc/sla-gateway/templates"': f'templates = "{templates}"'})
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    try:
        pipeline = Pipeline(config, engine, lambda: NOW)
        bounce = (
            b"From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\nTo: support@shop.example\r\n"
            b"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
            b"Message-ID: <bounce@mx.example>\r\n\r\nThe mail could not be delivered.\r\n"
        )
        pipeline.accept(received(1))
        pipeline.accept(Received(bounce, "smtp", NOW, "", ("support@shop.example",)))
        pipeline.accept(Received(mail(2, subject="This will explode"), "smtp", NOW,
                                 "c2@customer.example", ("support@shop.example",)))  # fmt: skip
        pipeline.accept(received(3))
        pipeline.accept(received(4))
        outcomes = pipeline.process_pending()
        assert [o.status for o in outcomes] == ["processed", "processed", "shunted", "processed", "processed"]
        assert references(engine) == ["SHOP-1001", "SHOP-1002", "SHOP-1003"]
        assert [o.reference for o in outcomes if o.status == "processed" and o.conversation_id] == [
            "SHOP-1001", "SHOP-1002", "SHOP-1003"]  # fmt: skip
    finally:
        engine.dispose()


def test_the_upgrade_numbers_on_after_the_highest_reference(database_url: str, tmp_path: Path,
                                                           sink: Sink) -> None:  # fmt: skip
    """Before revision 0014 references were numbered after the message row (with gaps):
    the counter starts after the highest one already given, so none is given twice."""
    config = gateway_config(tmp_path, database_url, sink_port=sink.port)
    engine = store.make_engine(config.database)
    try:
        store.upgrade(engine, "0013")
        with store.begin(engine) as conn:
            conn.execute(store.conversations.insert().values(
                reference="SHOP-1042", inbox="shop", customer="old@customer.example", subject="old",
                priority="normal", state="closed", received_at=NOW, window_seconds=3600, due_at=NOW,
                created_at=NOW))  # fmt: skip
        store.upgrade(engine)
        pipeline = Pipeline(config, engine, lambda: NOW)
        pipeline.accept(received(1))
        pipeline.process_pending()
        assert references(engine) == ["SHOP-1042", "SHOP-1043"]
    finally:
        engine.dispose()


def test_a_new_prefix_starts_at_1001_and_counts_alone(engine: sa.Engine) -> None:
    """Each prefix has its own numbers; one first used later (a new inbox) starts at 1001."""
    with store.begin(engine) as conn:
        assert [store.next_reference(conn, "SHOP") for _ in range(3)] == ["SHOP-1001", "SHOP-1002", "SHOP-1003"]
        assert store.next_reference(conn, "B2B") == "B2B-1001"
        assert store.next_reference(conn, "SHOP") == "SHOP-1004"


def test_two_runners_process_each_message_once(config: Config, engine: sa.Engine) -> None:
    """Two runners (two gateways' worth: separate engines) drain the same stored mail at
    the same time: every message is processed by exactly one of them and acknowledged
    once. (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the flip-if-still-stored guard.)"""
    pipeline = Pipeline(config, engine, lambda: NOW)
    for n in range(30):
        pipeline.accept(received(n))
    engines = [store.make_engine(config.database) for _ in range(2)]
    done: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def drain(k: int) -> None:
        runner = Pipeline(config, engines[k], lambda: NOW).runner
        try:
            while True:
                try:
                    outcome = runner.process_next()
                except TemporaryError:  # SQLite: the other writer held the lock too long
                    continue
                if outcome is None:
                    return
                if outcome.status == "processed":
                    done[k].append(outcome.message_row)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for e in engines:
        e.dispose()
    assert errors == []
    assert sorted(done[0] + done[1]) == list(range(1, 31))  # each once, none lost
    assert count(engine, store.outbox, store.outbox.c.kind == "ack") == 30
    assert count(engine, store.conversations) == 30
    assert count(engine, store.events, store.events.c.kind == "acknowledged") == 30
    assert sorted(references(engine)) == sorted(f"SHOP-{1001 + n}" for n in range(30))


def test_a_runner_that_loses_the_race_writes_nothing(
    config: Config, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While runner A decides a message, runner B tries the same one. PostgreSQL: A holds
    the row (FOR UPDATE), B skips it. SQLite: B processes it, and A, finding it no longer
    stored at its flip, rolls back everything it wrote. Either way: one conversation,
    one acknowledgment."""
    pipeline = Pipeline(config, engine, lambda: NOW)
    row, _ = pipeline.accept(received(1))
    other = store.make_engine(config.database)
    b = Pipeline(config, other, lambda: NOW).runner
    a = pipeline.runner
    seen: list[Any] = []
    started: list[bool] = []
    real_decide = runner_module.decide

    def decide_after_b(*args: Any) -> Any:
        if not started:  # A decides first; B's own decision takes the plain path
            started.append(True)
            worker = threading.Thread(target=lambda: seen.append(b.process_next()))
            worker.start()
            worker.join(timeout=30)
        return real_decide(*args)

    monkeypatch.setattr(runner_module, "decide", decide_after_b)
    try:
        outcome = a.process_next()
    finally:
        other.dispose()
    assert row is not None
    if engine.dialect.name == "postgresql":
        assert seen == [None]  # B found nothing it could take
        assert outcome is not None and outcome.status == "processed"
    else:
        [b_outcome] = seen
        assert b_outcome is not None and (b_outcome.message_row, b_outcome.status) == (row, "processed")
        assert outcome is not None and (outcome.message_row, outcome.status) == (row, "lost")
    assert count(engine, store.conversations) == 1
    assert count(engine, store.outbox, store.outbox.c.kind == "ack") == 1
    assert count(engine, store.events, store.events.c.kind == "acknowledged") == 1
    assert references(engine) == ["SHOP-1001"]  # the loser's number was rolled back too


def _hold_write_lock(engine: sa.Engine) -> Any:
    """Another program's transaction that keeps every writer out (and, on PostgreSQL,
    every reader of the messages table too)."""
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")
        conn.exec_driver_sql("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
    return conn


def test_a_locked_database_means_451_at_intake_and_a_retry_in_the_runner(
    config: Config, sink: Sink
) -> None:
    """The database stays locked longer than a writer waits (SQLite's busy timeout,
    PostgreSQL's lock_timeout): the SMTP client hears 451 (try again later), and the runner, which was deciding a
    message stored before, fails temporarily and leaves it stored; once the lock goes,
    the client's retry is stored and both are processed and acknowledged."""
    service = Service(config, clock=lambda: NOW)
    service.start(workers=False)
    try:
        first, _ = service.pipeline.accept(received(1))
        lock = _hold_write_lock(service.engine)
        answers: list[Any] = []
        failures: list[BaseException] = []

        def deliver() -> None:
            assert config.listen is not None
            try:
                with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=60) as client:
                    client.sendmail("c2@customer.example", ["support@shop.example"], mail(2))
                answers.append("250")
            except smtplib.SMTPDataError as exc:
                answers.append(exc.smtp_code)

        def process() -> None:
            try:
                service.runner.process_next()
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=deliver), threading.Thread(target=process)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        lock.exec_driver_sql("ROLLBACK")
        lock.close()
        assert time.monotonic() - started >= 9  # both waited out the lock wait
        assert answers == [451]
        assert [type(f) for f in failures] == [TemporaryError]
        m = store.messages.c
        with service.engine.connect() as conn:
            assert conn.execute(sa.select(m.status).where(m.id == first)).scalar_one() == "stored"
        # The database is back: the client retries, the runner tries again.
        assert config.listen is not None
        with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=30) as client:
            client.sendmail("c2@customer.example", ["support@shop.example"], mail(2))
        service.run_once()
        with service.engine.connect() as conn:
            assert list(conn.execute(sa.select(m.status).order_by(m.id)).scalars()) == ["processed"] * 2
        acks = sink.wait_for(2)
        assert sorted(a.rcpt_tos[0] for a in acks) == ["c1@customer.example", "c2@customer.example"]
    finally:
        service.close()


def test_the_breaker_and_the_limits_are_read_from_the_database(config: Config, engine: sa.Engine) -> None:
    """What one runner queued counts for the next (a restart): nothing is kept in memory
    that a rollback or a restart could make wrong. A fresh runner for every message:
    once-per-sender sees the earlier acknowledgment, the breaker (2 a minute) counts the
    earlier ones and opens once, and the alert goes out once."""
    config = replace(config, acknowledge=replace(config.acknowledge, max_per_minute=2))
    now = [NOW]

    def arrive(n: int, sender: str, subject: str) -> str | None:
        pipeline = Pipeline(config, engine, lambda: now[0])
        pipeline.accept(Received(mail(n, sender, subject), "smtp", now[0], sender, ("support@shop.example",)))
        [outcome] = pipeline.process_pending()
        now[0] += timedelta(seconds=5)
        return outcome.skip.rule if outcome.skip is not None else None

    assert arrive(1, "kim@customer.example", "Refund") is None
    assert arrive(2, "kim@customer.example", "Refund") == "once-per-sender"
    assert arrive(3, "lee@customer.example", "Parcel") is None
    assert arrive(4, "ole@customer.example", "Invoice") == "circuit-breaker"
    assert arrive(5, "pia@customer.example", "Invoice") == "circuit-breaker"
    e, o = store.events.c, store.outbox.c
    assert count(engine, store.events, e.kind == "circuit-open") == 1
    assert count(engine, store.outbox, o.kind == "alert") == len(config.alerts.to or ("x",))
    now[0] += timedelta(minutes=2)  # the rate fell: acknowledged again, the breaker closes
    assert arrive(6, "uwe@customer.example", "Question") is None
    assert count(engine, store.events, e.kind == "circuit-closed") == 1
