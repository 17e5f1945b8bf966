"""Archive = resolved (issue 15, `[inbox.imap] resolve_on_archive`): each message read from
a watched folder is stored with its UID there; when the poller finds it gone (archived,
moved, deleted) it is marked so, and a conversation none of whose customer messages is
left is resolved then. With a real Dovecot; the store's part on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from imapclient import IMAPClient

from gateway import store
from gateway.service import Service
from tests.imapserver import Dovecot
from tests.mailtools import Sink
from tests.test_intake_imap import NOW, RECEIVED, imap_config, mail, synced, wait_until

ARCHIVE = {"# resolve_on_archive = false ": "resolve_on_archive = true "}


def followup(n: int, sender: str = "kim@customer.example") -> bytes:
    """The customer writing again in the conversation of mail(n)."""
    return (
        f"Return-Path: <{sender}>\r\nFrom: Kim <{sender}>\r\nTo: support@shop.example\r\n"
        f"Subject: Re: Question {n} [SHOP-1001]\r\nDate: Mon, 23 Nov 2026 10:05:00 +0100\r\n"
        f"Message-ID: <q{n}-again@customer.example>\r\nIn-Reply-To: <q{n}@customer.example>\r\n\r\n"
        "Any news?\r\n"
    ).encode()


def move(dovecot: Dovecot, uids: list[int], to: str | None = "Archive") -> None:
    """What a mail client does: MOVE to another folder, or (`to=None`) delete and expunge."""
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
        client.login(dovecot.user, dovecot.password)
        client.select_folder("INBOX")
        if to is None:
            client.delete_messages(uids)
            client.expunge()
        else:
            client.move(uids, to)


def tracked(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        f = store.folder_uids.c
        return list(conn.execute(sa.select(store.folder_uids).order_by(f.uidvalidity, f.uid)))


def conversation(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        [row] = conn.execute(sa.select(store.conversations)).all()
    return row


def archive_events(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        e = store.events.c
        return [r for r in conn.execute(sa.select(store.events).where(e.kind == "command"))
                if '"archive"' in r.detail]  # fmt: skip


@pytest.fixture
def service(tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot,
            request: pytest.FixtureRequest) -> Iterator[Service]:  # fmt: skip
    dovecot.create_folder("Archive")
    extra = ARCHIVE if getattr(request, "param", True) else {}
    config = imap_config(tmp_path, database_url, sink, dovecot, extra=extra)
    running = Service(config, clock=lambda: NOW)
    running.start()
    wait_until(lambda: bool(store.table_names(running.engine)) and synced(running.engine))
    yield running
    running.close()


@pytest.mark.parametrize("service", [False], indirect=True)
def test_each_message_has_its_uid_and_leaving_is_recorded(service: Service, dovecot: Dovecot,
                                                          sink: Sink) -> None:  # fmt: skip
    """Without resolve_on_archive: the places are kept and departures marked, nothing
    more (switched on later, only departures from then on count)."""
    uid = dovecot.append("INBOX", mail(1), internaldate=RECEIVED)
    sink.wait_for(1)
    [row] = tracked(service.engine)
    assert (row.inbox, row.folder, row.uidvalidity, row.uid) == (
        "shop", "INBOX", dovecot.uidvalidity("INBOX"), uid)  # fmt: skip
    assert row.left_at is None
    move(dovecot, [uid])
    wait_until(lambda: tracked(service.engine)[0].left_at is not None)
    assert tracked(service.engine)[0].left_at == NOW
    assert conversation(service.engine).state == "awaiting_team"  # nothing resolved


def test_archiving_the_customer_mail_resolves_the_conversation(service: Service, dovecot: Dovecot,
                                                               sink: Sink) -> None:  # fmt: skip
    uid = dovecot.append("INBOX", mail(1), internaldate=RECEIVED)
    sink.wait_for(1)  # acknowledged
    move(dovecot, [uid])
    wait_until(lambda: conversation(service.engine).state == "resolved")
    row = conversation(service.engine)
    assert (row.resolved_at, row.resolved_by) == (NOW, "archive")
    [event] = archive_events(service.engine)
    assert event.conversation_id == row.id


def test_a_conversation_stays_open_while_one_customer_message_is_left(
    service: Service, dovecot: Dovecot, sink: Sink
) -> None:
    first = dovecot.append("INBOX", mail(1), internaldate=RECEIVED)
    sink.wait_for(1)
    second = dovecot.append("INBOX", followup(1), internaldate=RECEIVED + timedelta(minutes=5))
    wait_until(lambda: len(tracked(service.engine)) == 2 and _processed(service.engine) == 2)
    move(dovecot, [first])
    wait_until(lambda: tracked(service.engine)[0].left_at is not None)
    assert conversation(service.engine).state != "resolved"
    assert not archive_events(service.engine)
    move(dovecot, [second], to=None)  # deleted: gone as well
    wait_until(lambda: conversation(service.engine).state == "resolved")
    assert len(archive_events(service.engine)) == 1


def test_a_renumbered_folder_resolves_nothing_by_itself(service: Service, dovecot: Dovecot,
                                                        sink: Sink) -> None:  # fmt: skip
    uid = dovecot.append("INBOX", mail(1), internaldate=RECEIVED)
    sink.wait_for(1)
    before = dovecot.uidvalidity("INBOX")
    dovecot.reset_uidvalidity("INBOX")  # every message gets a new UID
    after = dovecot.uidvalidity("INBOX")
    assert after != before
    wait_until(lambda: any(r.uidvalidity == after for r in tracked(service.engine)), timeout=30)
    old, new = tracked(service.engine)
    assert (old.uidvalidity, old.uid, old.left_at is not None) == (before, uid, True)
    assert (new.uidvalidity, new.uid, new.left_at) == (after, dovecot.uids("INBOX")[0], None)
    assert conversation(service.engine).state != "resolved"
    assert not archive_events(service.engine)
    move(dovecot, dovecot.uids("INBOX"))  # archived under its new number: that counts
    wait_until(lambda: conversation(service.engine).state == "resolved")


def _processed(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        m = store.messages.c
        return int(conn.execute(sa.select(sa.func.count()).where(m.status == "processed")).scalar_one())


# ------------------------------------------------------------------ the store's part


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = store.make_engine(database_url)
    store.upgrade(engine)
    yield engine
    engine.dispose()


def _message(conn: Any, n: int, conversation_id: int | None, direction: str = "customer") -> int:
    return int(conn.execute(store.messages.insert().returning(store.messages.c.id), dict(
        dedup_key=f"k{n}", message_id=f"m{n}@x", source="imap", received_at=NOW, sha256="0" * 64,
        size=1, direction=direction, conversation_id=conversation_id)).scalar_one())  # fmt: skip


def _conversation(conn: Any, n: int) -> int:
    return int(conn.execute(store.conversations.insert().returning(store.conversations.c.id), dict(
        reference=f"SHOP-{1000 + n}", inbox="shop", customer="kim@customer.example", subject="s",
        priority="normal", received_at=NOW, due_at=NOW, state="awaiting_team", window_seconds=3600,
        created_at=NOW)).scalar_one())  # fmt: skip


def test_departures_name_the_conversations_left_without_customer_mail(engine: sa.Engine) -> None:
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    with store.begin(engine) as conn:
        one, two = _conversation(conn, 1), _conversation(conn, 2)
        rows = [_message(conn, 1, one), _message(conn, 2, two), _message(conn, 3, two),
                _message(conn, 4, one, "team"), _message(conn, 5, None)]  # fmt: skip
        for uid, row in enumerate(rows, start=10):
            store.remember_uid(conn, row, inbox="shop", folder="INBOX", uidvalidity=7, uid=uid, at=NOW)
        store.remember_uid(conn, rows[0], inbox="shop", folder="INBOX", uidvalidity=7, uid=10, at=at)  # again
        store.remember_uid(conn, rows[2], inbox="shop", folder="Orders", uidvalidity=3, uid=1, at=NOW)
    with store.begin(engine) as conn:
        assert store.present_uids(conn, "shop", "INBOX", 7) == {10, 11, 12, 13, 14}
        # The team's message (13) and one not in a conversation yet (14) affect nothing.
        assert store.mark_left(conn, "shop", "INBOX", 7, [10, 11, 12, 13, 14, 99], at) == [one, two]
        assert store.present_uids(conn, "shop", "INBOX", 7) == set()
        assert store.mark_left(conn, "shop", "INBOX", 7, [10], at) == []  # gone once
        # Conversation two's third message is still in the watched folder Orders.
        assert store.emptied_conversations(conn, [one, two], "shop", ["INBOX", "Orders"]) == [one]
        assert store.emptied_conversations(conn, [one, two], "shop", ["INBOX"]) == [one, two]
    [left] = [r for r in tracked(engine) if r.uid == 10]
    assert (left.seen_at, left.left_at) == (NOW, at)


def test_a_renumbering_carries_the_known_messages_over(engine: sa.Engine) -> None:
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    with store.begin(engine) as conn:
        c = _conversation(conn, 1)
        a, b = _message(conn, 1, c), _message(conn, 2, c)
        store.remember_uid(conn, a, inbox="shop", folder="INBOX", uidvalidity=7, uid=1, at=NOW)
        store.remember_uid(conn, b, inbox="shop", folder="INBOX", uidvalidity=7, uid=2, at=NOW)
    with store.begin(engine) as conn:
        assert store.stale_uids(conn, "shop", "INBOX", 8) == {a: "m1@x", b: "m2@x"}
        assert store.stale_uids(conn, "shop", "INBOX", 7) == {}
        store.renumber_uids(conn, "shop", "INBOX", 8, {a: 40}, at)  # b was not found again
        assert store.stale_uids(conn, "shop", "INBOX", 8) == {}
        assert store.present_uids(conn, "shop", "INBOX", 8) == {40}
        assert store.present_uids(conn, "shop", "INBOX", 7) == set()
        assert store.emptied_conversations(conn, [c], "shop", ["INBOX"]) == []


def test_idle_wakes_for_an_archived_message(tmp_path: Path, database_url: str, sink: Sink,
                                            dovecot: Dovecot) -> None:  # fmt: skip
    """IDLE renewed only every minute: the expunge wakes the poller (Dovecot reports
    RECENT with it as well; a server that reports only the EXPUNGE, or a VANISHED, wakes it
    too, see below)."""
    dovecot.create_folder("Archive")
    config = imap_config(tmp_path, database_url, sink, dovecot, poll_interval="60s", extra=ARCHIVE)
    service = Service(config, clock=lambda: NOW)
    service.start()
    try:
        wait_until(lambda: synced(service.engine))
        uid = dovecot.append("INBOX", mail(1), internaldate=RECEIVED)  # EXISTS wakes it too
        sink.wait_for(1)
        time.sleep(1)  # back in IDLE
        started = time.monotonic()
        move(dovecot, [uid])
        wait_until(lambda: conversation(service.engine).state == "resolved", timeout=30)
        assert time.monotonic() - started < 30  # well before the renewal at 60 s
    finally:
        service.close()


def test_mail_archived_while_the_gateway_was_stopped_resolves_at_the_next_start(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot
) -> None:
    dovecot.create_folder("Archive")
    config = imap_config(tmp_path, database_url, sink, dovecot, extra=ARCHIVE)
    service = Service(config, clock=lambda: NOW)
    service.start()
    try:
        wait_until(lambda: synced(service.engine))
        uid = dovecot.append("INBOX", mail(1), internaldate=RECEIVED)
        sink.wait_for(1)
    finally:
        service.close()
    move(dovecot, [uid])
    later = NOW + timedelta(hours=2)
    service = Service(config, clock=lambda: later)
    service.start()
    try:
        wait_until(lambda: conversation(service.engine).state == "resolved")
        assert conversation(service.engine).resolved_at == later  # when it was seen gone
    finally:
        service.close()


def test_an_expunge_is_news_to_idle_only_when_archiving_resolves() -> None:
    from gateway.imap import _is_news

    for response in ((3, b"EXPUNGE"), (b"VANISHED", [3])):
        assert _is_news(response, departures=True)
        assert not _is_news(response, departures=False)
    assert _is_news((4, b"EXISTS")) and _is_news((4, b"EXISTS"), departures=True)
    assert not _is_news((4, b"FETCH"), departures=True)
