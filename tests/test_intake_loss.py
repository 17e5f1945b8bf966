"""End to end over real sockets: what a hostile or broken sender can deliver is kept,
alone, and ends processed or set aside — different mails sharing a Message-ID, ids that
differ only in non-ASCII letters, an 8-bit envelope among clean mail, junk, and a message
the database keeps refusing. (The happy path and the ordinary refusals are in
test_intake_smtp.py.)"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import reports, store
from gateway.config import Config
from gateway.service import Service
from tests.imapserver import Dovecot
from tests.mailtools import Sink, gateway_config

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin


@pytest.fixture
def config(tmp_path: Path, database_url: str, sink: Sink) -> Config:
    return gateway_config(tmp_path, database_url, sink_port=sink.port)


@pytest.fixture
def gateway(config: Config) -> Iterator[Service]:
    service = Service(config, clock=lambda: NOW)
    service.start()
    yield service
    service.close()


def mail(
    message_id: str = "m1@customer.example",
    sender: str = "kim@customer.example",
    body: str = "Hello, my parcel has not arrived yet.",
    *,
    trace: str = "",
) -> bytes:
    """A customer's mail; `trace` is what servers put on top on the way."""
    return (
        f"{trace}From: Kim <{sender}>\r\nTo: support@shop.example\r\nSubject: Where is my parcel?\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{message_id}>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def deliver(config: Config, raw: bytes, mail_from: bytes = b"kim@customer.example") -> str:
    """One SMTP transaction over a plain socket (so that the envelope may hold any
    bytes, as a broken or hostile client sends it); returns the reply to the data."""
    assert config.listen is not None
    with socket.create_connection(("127.0.0.1", config.listen.port), timeout=20) as sock:
        replies = sock.makefile("rb")

        def command(line: bytes) -> str:
            sock.sendall(line + b"\r\n")
            while True:
                reply = replies.readline().decode("utf-8", "replace")
                if reply[3:4] != "-":
                    return reply.strip()

        assert replies.readline().startswith(b"220")
        assert command(b"EHLO client.example").startswith("250")
        assert command(b"MAIL FROM:<" + mail_from + b"> SMTPUTF8 BODY=8BITMIME").startswith("250")
        assert command(b"RCPT TO:<support@shop.example>").startswith("250")
        assert command(b"DATA").startswith("354")
        lines = raw.replace(b"\r\n", b"\n").split(b"\n")
        data = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
        reply = command(data + b".")
        command(b"QUIT")
        return reply


def messages(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(store.messages).order_by(store.messages.c.id)))


def wait_settled(engine: sa.Engine, count: int, timeout: float = 30.0) -> list[Any]:
    """Wait (bounded) until `count` messages are stored and none is still "stored"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = messages(engine)
        if len(found) >= count and all(m.status != "stored" for m in found):
            return found
        time.sleep(0.05)
    raise AssertionError(f"not settled: {[(m.id, m.status) for m in messages(engine)]}")


# ------------------------------------------------------------------ one Message-ID, several mails


def test_message_ids_differing_only_in_non_ascii_letters_are_two_mails(
    gateway: Service, config: Config, sink: Sink
) -> None:
    first = deliver(config, mail("bestellung-ü@shop.example"))
    second = deliver(config, mail("bestellung-ö@shop.example", "ole@customer.example"),
                     b"ole@customer.example")  # fmt: skip
    assert first.startswith("250 2.0.0 Stored as")
    assert second.startswith("250 2.0.0 Stored as")
    acks = sink.wait_for(2)
    assert sorted(a.message["In-Reply-To"] for a in acks) == [
        "<bestellung-ö@shop.example>",
        "<bestellung-ü@shop.example>",
    ]
    stored = wait_settled(gateway.engine, 2)
    assert [m.message_id for m in stored] == ["bestellung-ü@shop.example", "bestellung-ö@shop.example"]


def test_a_reused_message_id_loses_no_mail(gateway: Service, config: Config, sink: Sink) -> None:
    """A mailer that gives every mail the same Message-ID, and a malformed header that
    names two: different content is a different message."""
    replies = [
        deliver(config, mail("static@shop-system.example", "a@customer.example", "First order"),
                b"a@customer.example"),
        deliver(config, mail("static@shop-system.example", "b@customer.example", "Second order"),
                b"b@customer.example"),
        deliver(config, mail("a b@c.example> <d@e.example", "c@customer.example", "Third"),
                b"c@customer.example"),
        deliver(config, mail("a b@c.example> <d@e.example", "d@customer.example", "Fourth"),
                b"d@customer.example"),
    ]  # fmt: skip
    assert all(r.startswith("250 2.0.0 Stored as") for r in replies), replies
    acks = sink.wait_for(4)
    assert sorted(a.rcpt_tos[0] for a in acks) == [f"{c}@customer.example" for c in "abcd"]
    stored = wait_settled(gateway.engine, 4)
    assert [m.message_id for m in stored] == ["static@shop-system.example"] * 2 + ["d@e.example"] * 2


def test_a_byte_identical_redelivery_is_kept_once(
    gateway: Service, config: Config, sink: Sink
) -> None:
    raw = mail()
    assert deliver(config, raw).startswith("250 2.0.0 Stored as 1")
    assert deliver(config, raw) == "250 2.0.0 Already have it (1)"
    sink.wait_for(1)
    assert len(wait_settled(gateway.engine, 1)) == 1
    time.sleep(0.3)
    assert len(sink.received) == 1


def test_the_smtp_copy_and_the_mailbox_copy_are_one_mail(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot
) -> None:
    """The IMAP copy of a mail the listener also got carries what the servers on the way
    added (trace headers, signatures, a Return-Path), in CRLF: still one mail, one ack."""
    from tests.test_intake_imap import imap_config, start

    config = imap_config(tmp_path, database_url, sink, dovecot)
    service = start(config)
    try:
        assert deliver(config, mail("both@customer.example")).startswith("250 2.0.0 Stored")
        trace = (
            "Return-Path: <kim@customer.example>\r\nDelivered-To: support@shop.example\r\n"
            "X-Original-To: support@shop.example\r\n"
            "Received: from mx.shop.example (mx.shop.example [192.0.2.7])\r\n"
            "\tby imap.shop.example with LMTP; Mon, 23 Nov 2026 10:00:02 +0100\r\n"
            "ARC-Seal: i=1; a=rsa-sha256; d=shop.example; s=arc; cv=none; b=AbCd\r\n"
            "Authentication-Results: mx.shop.example; spf=pass\r\n"
            "X-Spam-Score: 0.1\r\n"
        )
        dovecot.append("INBOX", mail("both@customer.example", trace=trace))
        dovecot.append("INBOX", mail("other@customer.example", "ole@customer.example",
                                     trace="Return-Path: <ole@customer.example>\r\n"))
        acks = sink.wait_for(2)
        assert sorted(a.rcpt_tos[0] for a in acks) == ["kim@customer.example", "ole@customer.example"]
        time.sleep(1.0)  # a third would come now
        assert len(sink.received) == 2
        assert len(messages(service.engine)) == 2
    finally:
        service.close()


# ------------------------------------------------------------------ a poison envelope


def _hold_writes(engine: sa.Engine) -> Any:
    """Keep every writer waiting (a real lock on the real database) until released: on
    SQLite a second connection's BEGIN IMMEDIATE holds the database's write lock (writers
    wait in its busy timeout), on PostgreSQL an exclusive lock on the messages table."""
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()
        conn.exec_driver_sql("LOCK TABLE messages IN EXCLUSIVE MODE")

    class Held:
        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("ROLLBACK")
            else:
                conn.rollback()
            conn.close()

    return Held()


def test_an_8bit_envelope_fails_neither_itself_nor_its_neighbours(
    gateway: Service, config: Config, sink: Sink
) -> None:
    """A MAIL FROM that is not UTF-8 arrives together with clean mail, so that all are
    stored in one group commit: every one is stored (250) and processed, and the poison
    envelope is kept exactly as it came."""
    assert gateway._controller is not None
    committer = gateway._controller.handler.committer  # type: ignore[attr-defined]
    replies: dict[str, str] = {}

    def send(name: str, raw: bytes, mail_from: bytes) -> None:
        replies[name] = deliver(config, raw, mail_from)

    senders = [
        threading.Thread(target=send, args=(f"c{n}", mail(f"c{n}@customer.example", f"c{n}@customer.example"),
                                            f"c{n}@customer.example".encode()))
        for n in range(6)
    ]  # fmt: skip
    poison = mail("p@customer.example", "p@customer.example")
    senders.insert(3, threading.Thread(target=send, args=("poison", poison, b"p\xe9\xff@customer.example")))
    with _hold_writes(gateway.engine):
        first = threading.Thread(target=send, args=("first", mail("first@customer.example"),
                                                    b"kim@customer.example"))  # fmt: skip
        first.start()  # the committer takes it and waits on the lock ...
        time.sleep(0.5)
        assert committer._queue.qsize() == 0
        deadline = time.monotonic() + 5
        for thread in senders:
            thread.start()  # ... while these queue up behind it: the next group commit
        while committer._queue.qsize() < len(senders) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert committer._queue.qsize() == len(senders)
    for thread in [first, *senders]:
        thread.join(timeout=30)
    assert all(r.startswith("250 2.0.0 Stored as") for r in replies.values()), replies
    assert len(replies) == 8
    acks = sink.wait_for(7)
    assert "p@customer.example" not in {a.rcpt_tos[0] for a in acks}
    stored = wait_settled(gateway.engine, 8)
    [bad] = [m for m in stored if m.message_id == "p@customer.example"]
    assert bad.envelope_from == b"p\xe9\xff@customer.example".decode("utf-8", "surrogateescape")
    assert (bad.status, bad.skip_rule, bad.acknowledged) == ("processed", "bad-return-path", False)
    assert bad.conversation_id is not None  # a customer's mail all the same: measured


# ------------------------------------------------------------------ every message ends


def test_binary_junk_is_set_aside_with_its_reason(gateway: Service, config: Config) -> None:
    junk = Path(__file__).parent.joinpath("data", "broken", "binary_junk.eml").read_bytes()[:78]
    junk = junk.replace(b"\r", b"\x00").replace(b"\n", b"\x00")  # one "line" of 78 bytes
    assert deliver(config, junk).startswith("250 2.0.0 Stored as")
    [stored] = wait_settled(gateway.engine, 1)
    assert stored.status == "shunted" and "not an e-mail message" in stored.error
    status = reports.status(gateway.engine, NOW)
    assert (status["messages_waiting"], status["messages_set_aside"]) == (0, 1)


def _refuse_conversations_about(engine: sa.Engine, subject: str) -> None:
    """Make the database itself fail, every time, to open a conversation with this
    subject, with an error that looks passing (SQLite: integer overflow; PostgreSQL:
    insufficient resources) — as a value too big for an index, say, would."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse BEFORE INSERT ON conversations WHEN NEW.subject = '{subject}' "
                "BEGIN SELECT abs(-9223372036854775807 - 1); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'no room' USING ERRCODE = '53000'; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON conversations FOR EACH ROW "
                f"WHEN (NEW.subject = '{subject}') EXECUTE FUNCTION refuse()"
            )


def test_a_message_that_keeps_failing_is_set_aside_and_the_rest_flows(
    gateway: Service, config: Config, sink: Sink
) -> None:
    _refuse_conversations_about(gateway.engine, "Cursed")
    cursed = mail("cursed@customer.example").replace(b"Where is my parcel?", b"Cursed")
    assert deliver(config, cursed).startswith("250")
    assert deliver(config, mail("next@customer.example", "ole@customer.example"),
                   b"ole@customer.example").startswith("250")  # fmt: skip
    [ack] = sink.wait_for(1, timeout=30)
    assert ack.rcpt_tos == ["ole@customer.example"]
    first, second = wait_settled(gateway.engine, 2)
    assert first.status == "shunted" and "failed 3 times in a row" in first.error
    assert second.status == "processed" and second.acknowledged
    status = reports.status(gateway.engine, NOW)
    assert (status["messages_waiting"], status["messages_set_aside"]) == (0, 1)


# ------------------------------------------------------------------ refused mail is told


def test_refused_mail_is_logged_recorded_and_counted_in_the_digest(
    tmp_path: Path, database_url: str, sink: Sink, run_cli: Any, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A customer's big photo mail must not vanish without the owner knowing: each
    refusal is logged with sender, size and reason, recorded (a flood as one count), and
    the next digest says how many mails were refused and why."""
    import smtplib

    from gateway import smtp

    monkeypatch.setattr(smtp, "REFUSALS_PER_HOUR", 4)  # a flood, in small
    config = gateway_config(tmp_path, database_url, sink_port=sink.port,
                            extra={'max_message_size = "25MB"': "max_message_size = 2000"})  # fmt: skip
    assert config.listen is not None
    service = Service(config, clock=lambda: NOW)
    service.start()
    try:
        photo = mail(body="x" * 70 + ("\r\n" + "x" * 70) * 40)  # 2,900 bytes
        with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as declared:  # SIZE= says it at MAIL
                client.sendmail("kim@customer.example", ["support@shop.example"], photo)
            assert declared.value.smtp_code == 552
        with socket.create_connection(("127.0.0.1", config.listen.port), timeout=10) as sock:
            sock.sendall(b"EHLO client.example\r\nMAIL FROM:<ole@customer.example>\r\n"
                         b"RCPT TO:<support@shop.example>\r\nDATA\r\n" + photo + b"\r\n.\r\nQUIT\r\n")  # fmt: skip
            answers = sock.makefile("rb").read().decode()
        assert "552 Error: Too much mail data" in answers  # found out in DATA
        assert deliver(config, mail(body="y" * 1200)).startswith("500 Line too long")
        with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
            client.ehlo()
            client.mail("probe@elsewhere.example")
            for n in range(3):
                assert client.rcpt(f"victim{n}@elsewhere.example")[0] == 550
        assert deliver(config, mail()).startswith("250")  # and the rest is stored as ever
    finally:
        service.close()
    lines = [r.getMessage() for r in caplog.records if "event=refused" in r.getMessage()]
    assert "event=refused reason=too-large peer=127.0.0.1 sender=kim@customer.example size=" in lines[0]
    assert "sender=ole@customer.example size=>2000 rcpt=support@shop.example" in lines[1]
    assert "reason=line-too-long" in lines[2] and "sender=kim@customer.example" in lines[2]
    assert "reason=unknown-recipient" in lines[3] and "rcpt=victim0@elsewhere.example" in lines[3]
    assert len(lines) == 6
    with service.engine.connect() as conn:
        details = [json.loads(d) for d in conn.execute(
            sa.select(store.events.c.detail).where(store.events.c.kind == "refused")).scalars()]  # fmt: skip
    assert [(d["reason"], d["count"]) for d in details] == [
        ("too-large", 1), ("too-large", 1), ("line-too-long", 1), ("unknown-recipient", 1),
        ("unknown-recipient", 2),  # beyond the hour's rows: one count, written at the stop
    ]
    assert details[0]["size"] == len(photo) and details[0]["sender"] == "kim@customer.example"
    assert details[1]["rcpt"] == "support@shop.example" and details[1]["limit"] == 2000
    text = run_cli("--config", str(config.path), "digest", "--text", "--date", "2026-11-23").output
    assert ("3 mails refused: not one of our addresses; 2 mails refused: too large; "
            "1 mail refused: a line too long (the sender’s server was told)") in text  # fmt: skip


def test_the_digest_says_it_in_the_inbox_language(
    tmp_path: Path, database_url: str, run_cli: Any
) -> None:
    config = gateway_config(tmp_path, database_url, extra={'language = "en"': 'language = "de"'})
    engine = store.make_engine(database_url)
    store.upgrade(engine)
    with engine.begin() as conn:
        for reason in ("too-large", "too-large", "too-large"):
            store.add_event(conn, NOW, "refused", {"reason": reason, "count": 1})
    engine.dispose()
    text = run_cli("--config", str(config.path), "digest", "--text", "--date", "2026-11-23").output
    assert "3 Mails abgewiesen: zu groß (der Server des Absenders wurde benachrichtigt)" in text


# ------------------------------------------------------------------ one gateway per database


def test_a_second_gateway_on_the_same_database_refuses_to_start(
    tmp_path: Path, sink: Sink
) -> None:
    """Two shop processes on one SQLite database would each acknowledge the same mail:
    the second `sla-gateway run` says so in one line and exits 75, starting nothing."""
    import subprocess
    import sys

    database = tmp_path / "gateway.db"
    config = gateway_config(tmp_path, f"sqlite:///{database}", sink_port=sink.port)
    running = Service(config, clock=lambda: NOW)
    running.start()
    try:
        second = subprocess.run(
            [sys.executable, "-c", "from gateway.cli import main; main()",
             "--config", str(config.path), "run"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 75, second.stderr
        assert second.stderr.strip().splitlines()[-1] == (
            f"error: another sla-gateway is already running on {database} "
            f"(pid {os.getpid()}); stop it first"
        )
        assert "listening" not in second.stderr
        assert deliver(config, mail()).startswith("250")  # the first one is unharmed
        sink.wait_for(1)
    finally:
        running.close()
    again = Service(config, clock=lambda: NOW)  # once stopped, another may start
    again.start()
    again.close()
