"""End to end with a real IMAP server (Dovecot): mail appended to the mailbox is picked
up (IDLE or polling), stored, acknowledged once, and the mailbox is never changed;
restarts, dropped connections and a UIDVALIDITY change lose nothing and repeat nothing."""

from __future__ import annotations

import json
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import imap, store
from gateway.config import Config
from gateway.errors import TemporaryError
from gateway.pipeline import Received
from gateway.service import Service
from tests.imapserver import Dovecot
from tests.mailtools import Delivered, Sink, gateway_config

RECEIVED = datetime(2026, 11, 2, 8, 59, tzinfo=UTC)  # a Monday, 09:59 in Berlin
NOW = RECEIVED + timedelta(minutes=1)
OWNER = "owner@shop.example"  # [alerts] to in the example configuration


def imap_config(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot, *, idle: bool = True,
    poll_interval: str = "1s", extra: dict[str, str] | None = None,
) -> Config:  # fmt: skip
    """The example configuration reading the test server's INBOX; `poll_interval` is also
    how often IDLE is renewed (at least 5 s)."""
    secret = tmp_path / "imap-password"
    secret.write_text(dovecot.password + "\n")
    section = (
        "[inbox.imap]\n"
        f'host = "{dovecot.host}"\nport = {dovecot.port}\nsecurity = "none"\n'
        f'username = "{dovecot.user}"\npassword_file = "{secret}"\n'
        f'idle = {"true" if idle else "false"}\npoll_interval = "{poll_interval}"\ntimeout = "10s"\n'
    )
    return gateway_config(
        tmp_path, database_url, sink_port=sink.port,
        extra={"# [inbox.imap]\n": section, **(extra or {})},
    )  # fmt: skip


def mail(n: int, sender: str = "kim@customer.example") -> bytes:
    return (
        f"Return-Path: <{sender}>\r\nFrom: Kim <{sender}>\r\nTo: support@shop.example\r\n"
        f"Subject: Question {n}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
        f"Message-ID: <q{n}@customer.example>\r\n\r\nHello, question number {n}.\r\n"
    ).encode()


def big_mail(n: int, size: int, sender: str = "pia@customer.example") -> bytes:
    """mail(n) with a different subject and at least `size` more bytes of body."""
    head = mail(n, sender).replace(b"Subject: Question", b"Subject: Photos of the damage, part")
    return head + b"".join(b"x" * 76 + b"\r\n" for _ in range(size // 78 + 1))


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def sync_states(engine: sa.Engine) -> list[sa.Row[Any]]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.select(store.sync_state).where(store.sync_state.c.folder == "INBOX"))
        )


def synced(engine: sa.Engine, folder: str = "INBOX") -> bool:
    """Whether `folder` had its first sync. The INBOX's own row, not just any: the Sent
    folder, watched too, may finish first, and mail appended before the INBOX's first sync
    is history (never acknowledged)."""
    with engine.connect() as conn:
        found = sa.select(sa.func.count()).select_from(store.sync_state)
        return conn.execute(found.where(store.sync_state.c.folder == folder)).scalar_one() > 0


@pytest.fixture
def config(tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot) -> Config:
    return imap_config(tmp_path, database_url, sink, dovecot)


def start(config: Config) -> Service:
    service = Service(config, clock=lambda: NOW)
    service.start()
    wait_until(lambda: synced(service.engine))  # the first sync marks where history ends
    return service


def test_new_mail_is_acknowledged_and_the_mailbox_left_alone(
    config: Config, dovecot: Dovecot, sink: Sink
) -> None:
    history = dovecot.append("INBOX", mail(0))  # already there before the gateway ran
    service = start(config)
    try:
        # INTERNALDATE must lie in the past for Dovecot: let the fixed clock match it.
        uid = dovecot.append("INBOX", mail(1), internaldate=RECEIVED)
        [ack] = sink.wait_for(1)
        assert ack.rcpt_tos == ["kim@customer.example"]
        assert ack.message["In-Reply-To"] == "<q1@customer.example>"
        assert "\\Seen" not in dovecot.flags("INBOX", uid)  # never marked read
        assert "\\Seen" not in dovecot.flags("INBOX", history)
        assert dovecot.uids("INBOX") == [history, uid]  # nothing moved or deleted
        service.stop()
        with service.engine.connect() as conn:
            [message] = conn.execute(sa.select(store.messages)).all()
        assert message.source == "imap"
        assert message.received_at == RECEIVED  # INTERNALDATE, not the time we saw it
    finally:
        service.close()


def test_polling_without_idle(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot
) -> None:
    service = start(imap_config(tmp_path, database_url, sink, dovecot, idle=False))
    try:
        dovecot.append("INBOX", mail(1))
        assert len(sink.wait_for(1)) == 1
    finally:
        service.close()


def test_same_message_by_imap_and_smtp_is_acknowledged_once(
    config: Config, dovecot: Dovecot, sink: Sink
) -> None:
    service = start(config)
    try:
        assert config.listen is not None
        with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
            client.sendmail("kim@customer.example", ["support@shop.example"], mail(1))
        dovecot.append("INBOX", mail(1))  # the mailbox's own copy of the same mail
        dovecot.append("INBOX", mail(2, sender="ole@customer.example"))
        acks = sink.wait_for(2)
        assert sorted(a.rcpt_tos[0] for a in acks) == [
            "kim@customer.example",
            "ole@customer.example",
        ]
    finally:
        service.close()


def test_mail_arriving_while_stopped_is_picked_up_once(
    config: Config, dovecot: Dovecot, sink: Sink
) -> None:
    service = start(config)
    service.close()
    dovecot.append("INBOX", mail(1))
    dovecot.append("INBOX", mail(2, sender="ole@customer.example"))
    for _ in range(2):  # start twice: the second start must find nothing new
        service = start(config)
        sink.wait_for(2)
        service.close()
    assert len(sink.received) == 2


def test_dropped_connection_reconnects(config: Config, dovecot: Dovecot, sink: Sink) -> None:
    service = start(config)
    try:
        dovecot.drop_connections()
        dovecot.append("INBOX", mail(1))
        assert len(sink.wait_for(1, timeout=30)) == 1
        dovecot.restart()  # the whole server goes away and comes back
        dovecot.append("INBOX", mail(2, sender="ole@customer.example"))
        assert len(sink.wait_for(2, timeout=30)) == 2
    finally:
        service.close()


def test_uidvalidity_change_resyncs_without_acknowledging_twice(
    config: Config, dovecot: Dovecot, sink: Sink
) -> None:
    service = start(config)
    try:
        dovecot.append("INBOX", mail(1))
        sink.wait_for(1)
        before = dovecot.uidvalidity("INBOX")
        dovecot.reset_uidvalidity("INBOX")
        assert dovecot.uidvalidity("INBOX") != before
        dovecot.append("INBOX", mail(2, sender="ole@customer.example"))
        acks = sink.wait_for(2, timeout=30)
        assert [a.rcpt_tos[0] for a in acks] == ["kim@customer.example", "ole@customer.example"]
        service.stop()
        with service.engine.connect() as conn:
            [state] = conn.execute(
                sa.select(store.sync_state).where(store.sync_state.c.folder == "INBOX")
            ).all()
        assert state.uidvalidity == dovecot.uidvalidity("INBOX")
        assert len(sink.received) == 2
    finally:
        service.close()


def test_wrong_password_is_retried_not_fatal(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot
) -> None:
    config = imap_config(tmp_path, database_url, sink, dovecot)
    (tmp_path / "imap-password").write_text("wrong\n")
    service = Service(config, clock=lambda: NOW)
    service.start()
    try:
        poller = service._pollers[0]
        wait_until(lambda: poller.last_error is not None)  # type: ignore[attr-defined]
        assert "AUTHENTICATIONFAILED" in poller.last_error or "failed" in poller.last_error.lower()  # type: ignore[attr-defined]
        (tmp_path / "imap-password").write_text(dovecot.password)
        wait_until(lambda: synced(service.engine), timeout=30)
    finally:
        service.close()


def test_acknowledgments_are_copied_to_the_sent_folder(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot
) -> None:
    config = imap_config(tmp_path, database_url, sink, dovecot)
    config = replace(
        config,
        inboxes=(
            replace(config.inboxes[0], imap=replace(config.inboxes[0].imap, append_acks_to="Sent")),
        ),
    )  # type: ignore[arg-type]
    service = start(config)
    try:
        dovecot.append("INBOX", mail(1))
        sink.wait_for(1)
        wait_until(lambda: len(dovecot.uids("Sent")) == 1)
        [uid] = dovecot.uids("Sent")
        assert "\\Seen" in dovecot.flags("Sent", uid)
    finally:
        service.close()


def test_uidvalidity_change_never_imports_old_history(tmp_path: Path, database_url: str, sink: Sink,
                                                      dovecot: Dovecot) -> None:  # fmt: skip
    for n in range(10, 15):  # weeks-old history in the mailbox
        dovecot.append("INBOX", mail(n), internaldate=datetime(2026, 10, 1, 9, 0, tzinfo=UTC))
    config = imap_config(tmp_path, database_url, sink, dovecot)
    service = start(config)
    try:
        dovecot.reset_uidvalidity("INBOX")  # nothing new since the last sync
        dovecot.append("INBOX", mail(1))
        sink.wait_for(1)
        service.stop()
        service.run_once()
        with service.engine.connect() as conn:
            stored = conn.execute(
                sa.select(sa.func.count()).select_from(store.messages)
            ).scalar_one()
        assert stored == 1  # only the new mail, none of the history
        assert len(sink.received) == 1
    finally:
        service.close()


def customers(acks: list[Delivered]) -> list[str]:
    return sorted(a.rcpt_tos[0] for a in acks if a.rcpt_tos[0] != OWNER)


def test_a_burst_arriving_during_a_fetch_does_not_wait_for_the_idle_renewal(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # IDLE is renewed only every 5 minutes: a mail left for the renewal times the test out.
    config = imap_config(tmp_path, database_url, sink, dovecot, poll_interval="300s")
    start(config).close()  # the first sync marks where new mail starts
    dovecot.append("INBOX", mail(1, sender="c1@customer.example"))
    dovecot.append("INBOX", mail(2, sender="c2@customer.example"))
    # One message per FETCH, and a burst arriving right after the first is stored: the
    # server announces it (EXISTS) inside the response to the second one's FETCH, and
    # nothing arrives after it that would end the IDLE.
    monkeypatch.setattr(imap, "BATCH", 1)
    service = Service(config, clock=lambda: NOW)
    accept = service.pipeline.accept
    burst = [f"c{n}@customer.example" for n in range(3, 8)]

    def accept_while_a_burst_arrives(received: Received) -> tuple[int | None, bool]:
        result = accept(received)
        while burst:
            n = 8 - len(burst)
            dovecot.append("INBOX", mail(n, sender=burst.pop(0)))
        return result

    monkeypatch.setattr(service.pipeline, "accept", accept_while_a_burst_arrives)
    service.start()
    try:
        acks = sink.wait_for(7, timeout=60)  # well under the 5-minute renewal it must not wait for
        assert customers(acks) == [f"c{n}@customer.example" for n in range(1, 8)]
    finally:
        service.close()


def append_all(dovecot: Dovecot, mails: list[bytes]) -> None:
    for raw in mails:
        dovecot.append("INBOX", raw)


def test_bursts_arriving_while_syncing_are_acknowledged_before_the_idle_renewal(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot
) -> None:
    config = imap_config(tmp_path, database_url, sink, dovecot, poll_interval="300s")
    service = start(config)
    try:
        expected: list[str] = []
        for burst in range(3):  # each: a large first mail keeps a FETCH busy while the rest arrive
            senders = [f"c{burst}-{n}@customer.example" for n in range(10)]
            mails = [big_mail(burst * 10 + n, 0 if n else 3_000_000, sender=s)
                     for n, s in enumerate(senders)]  # fmt: skip
            appender = threading.Thread(target=append_all, args=(dovecot, mails))
            appender.start()  # in quick succession, while the poller syncs the first ones
            appender.join()
            expected = sorted([*expected, *senders])
            acks = sink.wait_for(len(expected), timeout=60)  # well under the 5-minute renewal
            assert customers(acks) == expected
    finally:
        service.close()


def test_uidvalidity_change_acknowledges_only_mail_since_the_last_sync(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot
) -> None:
    # History from the hours before the first sync (within a day of it: SINCE has day
    # granularity, so only the exact INTERNALDATE tells it from new mail).
    for n in range(10, 15):
        dovecot.append("INBOX", mail(n, sender=f"old{n}@customer.example"),
                       internaldate=NOW - timedelta(hours=15 - n))  # fmt: skip
    config = imap_config(tmp_path, database_url, sink, dovecot)
    service = start(config)
    try:
        dovecot.append("INBOX", mail(1))
        assert customers(sink.wait_for(1)) == ["kim@customer.example"]
    finally:
        service.close()
    dovecot.append("INBOX", mail(2, sender="ole@customer.example"))  # after the last sync
    dovecot.reset_uidvalidity("INBOX")  # a restore renumbers everything, history included
    service = start(config)
    try:
        acks = sink.wait_for(2)
        service.stop()
        service.run_once()
        time.sleep(0.5)  # anything wrongly queued would have been sent by now
        assert customers(list(sink.received)) == ["kim@customer.example", "ole@customer.example"]
        with service.engine.connect() as conn:
            stored = conn.execute(sa.select(store.messages.c.message_id)).scalars().all()
        assert sorted(stored) == ["q1@customer.example", "q2@customer.example"]
        [state] = sync_states(service.engine)
        assert state.uidvalidity == dovecot.uidvalidity("INBOX")
        assert state.last_uid == max(dovecot.uids("INBOX"))
    finally:
        service.close()
    assert len(acks) == 2


def test_mail_over_the_size_limit_is_not_fetched_but_recorded_and_the_owner_told_once(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot
) -> None:
    config = imap_config(tmp_path, database_url, sink, dovecot, extra={
        'max_message_size = "25MB" ': 'max_message_size = "20KB" '})  # fmt: skip
    assert config.listen is not None and config.listen.max_message_size == 20_000
    service = start(config)
    try:
        uid = dovecot.append("INBOX", big_mail(7, 30_000))
        dovecot.append("INBOX", mail(8, sender="ole@customer.example"))  # the next, normal one
        delivered = sink.wait_for(2)
        [alert] = [d for d in delivered if d.rcpt_tos == [OWNER]]
        [ack] = [d for d in delivered if d.rcpt_tos != [OWNER]]
        assert ack.rcpt_tos == ["ole@customer.example"]
        text = alert.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "pia@customer.example" in text and "Photos of the damage, part 7" in text
        assert "INBOX" in text and "20,000 bytes" in text
        dovecot.drop_connections()  # a new session syncs again: nothing is said twice
        dovecot.append("INBOX", mail(9, sender="ida@customer.example"))
        sink.wait_for(3)
        dovecot.append("INBOX", big_mail(11, 30_000, sender="uwe@customer.example"))
        sink.wait_for(4)  # another one: its own alert
        dovecot.reset_uidvalidity("INBOX")  # nor after a renumbering, which looks at it again
        dovecot.append("INBOX", mail(10, sender="eva@customer.example"))
        sink.wait_for(5, timeout=30)
        service.stop()
        service.run_once()
        time.sleep(0.5)
        assert sorted(d.rcpt_tos[0] for d in sink.received) == [
            "eva@customer.example",
            "ida@customer.example",
            "ole@customer.example",
            OWNER,
            OWNER,
        ]
        with service.engine.connect() as conn:
            events = conn.execute(sa.select(store.events).where(
                store.events.c.kind == "imap-too-large").order_by(store.events.c.id)).all()  # fmt: skip
            stored = conn.execute(sa.select(store.messages.c.message_id)).scalars().all()
        event, _ = events
        detail = json.loads(event.detail)
        assert detail["folder"] == "INBOX" and detail["uid"] == uid
        assert detail["size"] > 30_000 and detail["limit"] == 20_000
        assert detail["from"] == "pia@customer.example"
        assert detail["subject"] == "Photos of the damage, part 7"
        assert "q7@customer.example" not in stored  # never downloaded
        assert "q11@customer.example" not in stored
        assert json.loads(events[1].detail)["from"] == "uwe@customer.example"
    finally:
        service.close()


def test_the_uid_state_advances_only_past_what_was_committed(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    config = imap_config(tmp_path, database_url, sink, dovecot)
    start(config).close()
    first = dovecot.append("INBOX", mail(1, sender="c1@customer.example"))
    second = dovecot.append("INBOX", mail(2, sender="c2@customer.example"))
    monkeypatch.setattr(imap, "BATCH", 1)  # a state saved after each message
    service = Service(config, clock=lambda: NOW)
    accept = service.pipeline.accept
    seen_at_failure: list[int] = []

    def accept_failing_once(received: Received) -> tuple[int | None, bool]:
        if b"<q2@" in received.raw and not seen_at_failure:
            [state] = sync_states(service.engine)
            seen_at_failure.append(state.last_uid)
            raise TemporaryError("cannot store the message: database is locked")
        return accept(received)

    monkeypatch.setattr(service.pipeline, "accept", accept_failing_once)
    service.start()
    try:
        acks = sink.wait_for(2, timeout=20)  # the poller reconnects and fetches it again
        assert customers(acks) == ["c1@customer.example", "c2@customer.example"]
        assert seen_at_failure == [first]  # past the first, committed; not past the second
        wait_until(lambda: sync_states(service.engine)[0].last_uid == second)
    finally:
        service.close()
