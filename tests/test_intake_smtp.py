"""End to end over real sockets: smtplib -> the gateway's SMTP listener -> database ->
acknowledgment -> an aiosmtpd sink. Also: recipients, sizes, temporary failures, loops,
duplicates, rate limits, the circuit breaker, restarts and the outbox's retries."""

from __future__ import annotations

import re
import signal
import smtplib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import store
from gateway.config import Config
from gateway.model import Received
from gateway.pipeline import Pipeline
from gateway.service import Service
from tests.conftest import DATA
from tests.mailtools import Clock, Sink, gateway_config

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin




@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(tmp_path: Path, database_url: str, sink: Sink) -> Config:
    return gateway_config(tmp_path, database_url, sink_port=sink.port)


@pytest.fixture
def gateway(config: Config, clock: Clock) -> Iterator[Service]:
    service = Service(config, clock=clock)
    service.start()
    yield service
    service.close()


def mail(
    subject: str = "Where is my parcel?",
    sender: str = "kim@customer.example",
    message_id: str = "m1@customer.example",
    body: str = "Hello, my parcel has not arrived yet.",
    extra: str = "",
) -> bytes:
    return (
        f"From: Kim Meyer <{sender}>\r\nTo: support@shop.example\r\nSubject: {subject}\r\n"
        f"Date: Mon, 23 Nov 2026 04:00:00 -0500\r\nMessage-ID: <{message_id}>\r\n{extra}"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def send(config: Config, raw: bytes, *, mail_from: str = "kim@customer.example",
         to: tuple[str, ...] = ("support@shop.example",)) -> Any:  # fmt: skip
    assert config.listen is not None
    wire = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # as an MTA sends it
    with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
        return client.sendmail(mail_from, list(to), wire)


def rows(config_or_engine: Any, table: sa.Table) -> list[Any]:
    engine = config_or_engine if isinstance(config_or_engine, sa.Engine) else None
    assert engine is not None
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table).order_by(table.c.id)))


def wait_processed(engine: sa.Engine, count: int, timeout: float = 15.0) -> None:
    """Wait (bounded) until `count` messages have left the "stored" state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            done = conn.execute(
                sa.select(sa.func.count())
                .select_from(store.messages)
                .where(store.messages.c.status != "stored")
            ).scalar_one()
        if done >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} messages not processed in {timeout} s")


# ------------------------------------------------------------------ the happy path


def test_customer_mail_is_stored_and_acknowledged(
    gateway: Service, config: Config, sink: Sink
) -> None:
    raw = mail(subject="I was charged twice!")
    send(config, raw)
    [ack] = sink.wait_for(1)
    assert ack.rcpt_tos == ["kim@customer.example"]  # exactly one recipient: the return path
    msg = ack.message
    assert msg["To"] == "kim@customer.example"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Precedence"] == "bulk"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-SLA-Gateway-Loop"] == "support@shop.example"
    assert msg["In-Reply-To"] == "<m1@customer.example>"
    assert "<m1@customer.example>" in msg["References"]
    assert msg["Message-ID"].endswith("@shop.example>")
    assert msg["Subject"] == "Re: I was charged twice! [SHOP-1001]"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    text = msg.get_body(("plain",)).get_content()
    # urgent: 30 business minutes from Monday 10:00 CET.
    assert "You will hear from us by Monday, November 23, 2026, 10:30\u202fAM CET" in text
    assert "(4:30\u202fAM UTC−05:00 your time)" in text  # the sender's own offset, from Date
    assert "SHOP-1001" in text
    assert "Monday–Friday: 9:00\u202fAM–5:00\u202fPM" in text
    assert not list(msg.iter_attachments())
    gateway.stop()  # let the worker record the send
    [stored] = rows(gateway.engine, store.messages)
    assert stored.raw == raw
    assert (stored.status, stored.acknowledged, stored.source) == ("processed", True, "smtp")
    [conversation] = rows(gateway.engine, store.conversations)
    assert (conversation.reference, conversation.priority) == ("SHOP-1001", "urgent")
    assert conversation.due_at == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    [out] = rows(gateway.engine, store.outbox)
    assert (out.kind, out.status, out.recipient) == ("ack", "sent", "kim@customer.example")


def test_only_support_addresses_are_accepted(gateway: Service, config: Config) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        send(config, mail(), to=("someone@elsewhere.example",))
    code, text = info.value.recipients["someone@elsewhere.example"]
    assert code == 550
    assert b"relaying denied" in text
    assert send(config, mail(message_id="alias@customer.example"), to=("HELP@shop.example",)) == {}


def test_oversize_message_gets_552(
    tmp_path: Path, database_url: str, sink: Sink, clock: Clock
) -> None:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port,
                            extra={'max_message_size = "25MB"': "max_message_size = 2000"})  # fmt: skip
    service = Service(config, clock=clock)
    service.start()
    try:
        with pytest.raises(smtplib.SMTPResponseException) as info:
            send(config, mail(body="x" * 5000))
        assert info.value.smtp_code == 552
        assert rows(service.engine, store.messages) == []
    finally:
        service.close()


def test_database_failure_gives_451_and_nothing_is_lost(
    gateway: Service, config: Config, sink: Sink
) -> None:
    with gateway.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE messages RENAME TO messages_away")
    with pytest.raises(smtplib.SMTPDataError) as info:
        send(config, mail())
    assert info.value.smtp_code == 451
    with gateway.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE messages_away RENAME TO messages")
    send(config, mail())  # the sending server retries
    assert len(sink.wait_for(1)) == 1


# ------------------------------------------------------------------ never answer a machine


@pytest.mark.parametrize(
    "name",
    ["bounce_postfix", "ooo_exchange", "mailing_list", "noreply_sender", "own_ack", "spam_flag"],
)
def test_machine_mail_is_stored_but_never_acknowledged(
    gateway: Service, config: Config, sink: Sink, name: str
) -> None:
    raw = (DATA / "machine" / f"{name}.eml").read_bytes()
    send(config, raw, mail_from="" if name == "bounce_postfix" else "x@machine.example")
    send(config, mail(message_id="after@customer.example"))  # processed in order, after it
    [ack] = sink.wait_for(1)
    assert ack.message["In-Reply-To"] == "<after@customer.example>"
    machine, human = rows(gateway.engine, store.messages)
    assert machine.status == "processed" and not machine.acknowledged
    assert machine.skip_rule is not None
    assert machine.raw.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    assert human.acknowledged


def test_null_envelope_sender_is_not_acknowledged(
    gateway: Service, config: Config, sink: Sink
) -> None:
    send(config, mail(), mail_from="")
    send(config, mail(message_id="after@customer.example", sender="lea@customer.example"),
         mail_from="lea@customer.example")  # fmt: skip
    [ack] = sink.wait_for(1)
    assert ack.rcpt_tos == ["lea@customer.example"]
    first = rows(gateway.engine, store.messages)[0]
    assert first.skip_rule == "no-return-path"


# ------------------------------------------------------------------ one conversation, one ack


def test_duplicates_and_several_addresses_give_one_ack(
    gateway: Service, config: Config, sink: Sink
) -> None:
    raw = mail()
    send(config, raw, to=("support@shop.example", "help@shop.example"))  # To + Cc in one go
    send(config, raw)  # and again, as a forward of the same message
    send(config, mail(message_id="next@customer.example", sender="ole@customer.example"),
         mail_from="ole@customer.example")  # fmt: skip
    acks = sink.wait_for(2)
    assert sorted(a.rcpt_tos[0] for a in acks) == ["kim@customer.example", "ole@customer.example"]
    assert len(rows(gateway.engine, store.messages)) == 2


def test_follow_ups_are_threaded_not_acknowledged(
    gateway: Service, config: Config, sink: Sink
) -> None:
    send(config, mail())
    [ack] = sink.wait_for(1)
    ack_id = ack.message["Message-ID"]
    reply = mail(subject="Re: Where is my parcel? [SHOP-1001]", message_id="m2@customer.example",
                 extra=f"In-Reply-To: {ack_id}\r\nReferences: <m1@customer.example> {ack_id}\r\n")  # fmt: skip
    send(config, reply)
    tagged = mail(subject="Again about [SHOP-1001]", message_id="m3@customer.example")
    send(config, tagged)
    send(config, mail(message_id="m4@customer.example", sender="new@customer.example"),
         mail_from="new@customer.example")  # fmt: skip
    acks = sink.wait_for(2)
    assert [a.rcpt_tos[0] for a in acks] == ["kim@customer.example", "new@customer.example"]
    messages = rows(gateway.engine, store.messages)
    assert [m.conversation_id for m in messages[:3]] == [1, 1, 1]
    assert [m.skip_rule for m in messages] == [None, "follow-up", "follow-up", None]


# ------------------------------------------------------------------ limits


def test_once_per_sender(gateway: Service, config: Config, sink: Sink, clock: Clock) -> None:
    send(config, mail(message_id="a@customer.example", subject="First question"))
    sink.wait_for(1)
    clock.advance(timedelta(hours=2))
    # The same subject again (a person's new question is acknowledged: tests/test_loops.py).
    send(config, mail(message_id="b@customer.example", subject="Re: First question"))
    wait_processed(gateway.engine, 2)
    clock.advance(timedelta(hours=23))
    send(config, mail(message_id="c@customer.example", subject="Third question"))
    # The owner's breach alert for the first two may come before or after the third
    # acknowledgment (the clock jumped while the processor was busy): count the customer's.
    deadline = time.monotonic() + 15
    while len(acks := [a for a in sink.received if a.rcpt_tos == ["kim@customer.example"]]) < 2:
        assert time.monotonic() < deadline, sink.received
        time.sleep(0.02)
    assert [a.message["In-Reply-To"] for a in acks] == [
        "<a@customer.example>",
        "<c@customer.example>",
    ]
    skipped = rows(gateway.engine, store.messages)[1]
    assert skipped.skip_rule == "once-per-sender"
    assert skipped.conversation_id is not None  # still a conversation the team must answer


def test_circuit_breaker_stops_acks_and_alerts_once(
    tmp_path: Path, database_url: str, sink: Sink, clock: Clock
) -> None:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port,
                            extra={"max_per_minute = 60 ": "max_per_minute = 2 "})  # fmt: skip
    service = Service(config, clock=clock)
    service.start()
    try:
        for n in range(5):
            send(config, mail(message_id=f"n{n}@customer.example", sender=f"c{n}@customer.example"),
                 mail_from=f"c{n}@customer.example")  # fmt: skip
        wait_processed(service.engine, 5)
        clock.advance(timedelta(minutes=2))  # the rate falls: acknowledgments resume
        send(config, mail(message_id="later@customer.example", sender="later@customer.example"),
             mail_from="later@customer.example")  # fmt: skip
        delivered = sink.wait_for(4)
        recipients = [d.rcpt_tos[0] for d in delivered]
        assert recipients == [
            "c0@customer.example", "c1@customer.example", "owner@shop.example", "later@customer.example",
        ]  # fmt: skip
        alert = delivered[2].message
        assert alert["Subject"] == "[sla-gateway] Acknowledgments paused: unusual volume"
        assert alert["Auto-Submitted"] == "auto-generated"
        skipped = [m.skip_rule for m in rows(service.engine, store.messages)]
        assert skipped == [
            None,
            None,
            "circuit-breaker",
            "circuit-breaker",
            "circuit-breaker",
            None,
        ]
    finally:
        service.close()


# ------------------------------------------------------------------ crashes and restarts


def test_restart_after_store_before_processing(config: Config, clock: Clock, sink: Sink) -> None:
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    # The listener committed and answered 250, then the process died.
    Pipeline(config, engine, clock).accept(Received(mail(), "smtp", NOW, "kim@customer.example",
                                                    ("support@shop.example",)))  # fmt: skip
    for _ in range(2):  # start, stop, start again: exactly one acknowledgment
        service = Service(config, clock=clock, engine=engine)
        service.start()
        sink.wait_for(1)
        service.stop()
    assert len(sink.received) == 1
    engine.dispose()


def test_restart_after_processing_before_sending(config: Config, clock: Clock, sink: Sink) -> None:
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    pipeline = Pipeline(config, engine, clock)
    row, _ = pipeline.accept(
        Received(mail(), "smtp", NOW, "kim@customer.example", ("support@shop.example",))
    )
    assert row is not None
    pipeline.process(row)  # decided and queued; the process died before sending
    assert pipeline.process(row) is None  # processing again is a no-op
    service = Service(config, clock=clock, engine=engine)
    service.start()
    sink.wait_for(1)
    service.stop()
    assert len(sink.received) == 1
    assert [r.status for r in rows(engine, store.outbox)] == ["sent"]
    engine.dispose()


# ------------------------------------------------------------------ the outbox


def test_permanent_refusal_is_recorded_not_retried(
    config: Config, clock: Clock, sink: Sink
) -> None:
    sink.reply = "550 5.1.1 No such user"
    service = Service(config, clock=clock)
    service.start()
    try:
        send(config, mail())
        service.stop()
        service.run_once()  # whatever the worker had not done yet, deterministically
        [out] = rows(service.engine, store.outbox)
        assert out.status == "failed"
        assert out.last_error == "550 5.1.1 No such user"
        assert out.attempts == 1
    finally:
        service.close()


def test_temporary_refusal_is_retried_with_backoff(
    config: Config, clock: Clock, sink: Sink
) -> None:
    sink.reply = "451 4.3.0 Try later"
    service = Service(config, clock=clock)
    try:
        service.start()
        send(config, mail())
        service.stop()
        service.run_once()  # whatever the worker had not done yet, deterministically
        [out] = rows(service.engine, store.outbox)
        assert (out.status, out.attempts, out.last_error) == ("pending", 1, "451 4.3.0 Try later")
        assert out.next_attempt_at == NOW + timedelta(seconds=30)
        sink.reply = "250 2.0.0 OK"
        service.run_once()  # not due yet: nothing sent
        assert sink.received == []
        clock.advance(timedelta(seconds=31))
        service.run_once()
        assert len(sink.wait_for(1)) == 1
        assert rows(service.engine, store.outbox)[0].status == "sent"
    finally:
        service.close()


def test_maildir_transport(tmp_path: Path, database_url: str, clock: Clock) -> None:
    config = gateway_config(tmp_path, database_url)
    service = Service(config, clock=clock)
    service.start()
    try:
        send(config, mail())
        service.stop()
        service.run_once()
        files = list((tmp_path / "outbox" / "new").iterdir())
        assert len(files) == 1
        assert b"Auto-Submitted: auto-replied" in files[0].read_bytes()
    finally:
        service.close()


def test_message_processed_after_its_deadline_is_not_acknowledged(
    config: Config, clock: Clock
) -> None:
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    pipeline = Pipeline(config, engine, clock)
    row, _ = pipeline.accept(
        Received(mail(), "smtp", NOW, "kim@customer.example", ("support@shop.example",))
    )
    assert row is not None
    clock.advance(timedelta(days=3))  # the gateway was down over the deadline
    outcome = pipeline.process(row)
    assert outcome is not None and outcome.skip is not None
    assert outcome.skip.rule == "too-late"
    assert outcome.conversation_id is not None  # still measured
    assert rows(engine, store.outbox) == []
    engine.dispose()


def test_starttls_and_auth(tmp_path: Path, database_url: str, sink: Sink, clock: Clock) -> None:
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    secret = tmp_path / "listen-password"
    secret.write_text("s3cret\n")
    config = gateway_config(
        tmp_path, database_url, sink_port=sink.port,
        extra={
            '# tls_cert = "/etc/sla-gateway/tls/cert.pem"': f'tls_cert = "{cert}"',
            '# tls_key = "/etc/sla-gateway/tls/key.pem"': f'tls_key = "{key}"',
            "require_auth = false": "require_auth = true",
            '# username = "forwarder"': 'username = "forwarder"',
            '# password_env = "SLA_GATEWAY_LISTEN_PASSWORD"': f'password_file = "{secret}"',
        },
    )  # fmt: skip
    assert config.listen is not None
    service = Service(config, clock=clock)
    service.start()
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    try:
        with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
            client.starttls(context=context)
            with pytest.raises(smtplib.SMTPSenderRefused) as info:  # no AUTH yet
                client.sendmail("kim@customer.example", ["support@shop.example"], mail())
            assert info.value.smtp_code == 530
        with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
            client.starttls(context=context)
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("forwarder", "wrong")
        with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
            client.starttls(context=context)
            client.login("forwarder", "s3cret")
            assert client.sendmail("kim@customer.example", ["support@shop.example"], mail()) == {}
        assert len(sink.wait_for(1)) == 1
    finally:
        service.close()


def test_a_burst_decided_together_still_sees_each_decision(
    config: Config, clock: Clock, sink: Sink
) -> None:
    """Messages stored before the processor runs are decided in batches; a batch ends
    before a message that depends on one in it, so a follow-up written in the same burst
    as its original is threaded, and a second conversation from the same sender with the
    same subject gets no second acknowledgment (once_per_sender), as when they arrive one
    by one."""
    service = Service(config, clock=clock)
    service.start(workers=False)
    try:
        burst = [mail(sender=f"c{n}@customer.example", message_id=f"b{n}@customer.example",
                      subject=f"Order {n}") for n in range(30)]  # fmt: skip
        burst.insert(5, mail(message_id="f1@customer.example", subject="Re: Order 1",
                             sender="c1@customer.example",
                             extra="In-Reply-To: <b1@customer.example>\r\n"))  # fmt: skip
        burst.insert(9, mail(message_id="n2@customer.example", subject="Order 2",  # again
                             sender="c2@customer.example"))  # fmt: skip
        for raw in burst:
            sender = re.search(rb"<([^>]+)>", raw).group(1).decode()  # type: ignore[union-attr]
            service.pipeline.accept(Received(raw, "smtp", clock(), sender,
                                             ("support@shop.example",)))  # fmt: skip
        service.run_once()
        messages = rows(service.engine, store.messages)
        assert [m.status for m in messages] == ["processed"] * 32
        conversations = rows(service.engine, store.conversations)
        assert len(conversations) == 31  # the follow-up joined its conversation
        by_id = {m.message_id: m for m in messages}
        assert by_id["f1@customer.example"].conversation_id == by_id["b1@customer.example"].conversation_id
        assert not by_id["f1@customer.example"].acknowledged
        assert by_id["n2@customer.example"].skip_rule == "once-per-sender"
        assert sum(m.acknowledged for m in messages) == 30
        assert len(sink.wait_for(30)) == 30
    finally:
        service.close()


def test_run_is_one_process_that_acknowledges_and_stops_cleanly(config: Config, sink: Sink) -> None:
    """`sla-gateway run` is the production layout: one process (listener, committer,
    runner and sender are threads; no child process), mail in, acknowledgment out, and
    SIGTERM stops it with exit status 0."""
    import subprocess
    import sys

    assert config.listen is not None
    command = [str(Path(sys.executable).with_name("sla-gateway")), "--config", str(config.path), "run"]
    gateway = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
        for n in range(3):
            send(config, mail(message_id=f"p{n}@customer.example", sender=f"p{n}@customer.example"),
                 mail_from=f"p{n}@customer.example")  # fmt: skip
        acks = sink.wait_for(3)
        assert sorted(a.rcpt_tos[0] for a in acks) == [f"p{n}@customer.example" for n in range(3)]
        tasks = Path(f"/proc/{gateway.pid}/task")
        children = [c for t in tasks.iterdir() for c in (t / "children").read_text().split()]
        assert children == []  # no forked worker
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=30) == 0
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()


def test_daily_limit_counts_the_shop_day_across_restarts(
    tmp_path: Path, database_url: str, sink: Sink, clock: Clock
) -> None:
    """max_per_sender_per_day: the third conversation of one sender on one shop day gets
    no acknowledgment, also after a restart (the count comes back from the outbox), and
    the next shop day starts again."""
    config = gateway_config(tmp_path, database_url, sink_port=sink.port, extra={
        'once_per_sender = "24h" ': 'once_per_sender = "1m" ',
        "max_per_sender_per_day = 5 ": "max_per_sender_per_day = 2 ",
    })  # fmt: skip

    def conversation(n: int) -> Any:
        service = Service(config, clock=clock)  # a restart before each one
        service.start(workers=False)
        try:
            service.pipeline.accept(Received(mail(message_id=f"d{n}@customer.example",
                                                  subject=f"Question {n}"), "smtp", clock(),
                                             "kim@customer.example", ("support@shop.example",)))  # fmt: skip
            service.run_once()
            return rows(service.engine, store.messages)[-1]
        finally:
            service.close()

    first, second = conversation(1), (clock.advance(timedelta(minutes=5)), conversation(2))[1]
    assert first.acknowledged and second.acknowledged
    clock.advance(timedelta(minutes=5))
    third = conversation(3)
    assert not third.acknowledged and third.skip_rule == "daily-limit"
    clock.advance(timedelta(hours=15))  # Tuesday in Berlin
    assert conversation(4).acknowledged
