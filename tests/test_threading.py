"""Which conversation a message belongs to, and what arrives out of order.

The participant rule: a reference tag, a subject or thread headers attach a message to a
conversation only when its sender is the team or takes part in that conversation (its
customer, or an address its messages came from or went to); anyone else opens a
conversation of their own and is acknowledged. Team replies processed before the
customer mail they answer (a catch-up after a downtime) count when that mail comes, at
their own time. An acknowledgment still queued when the team replies is cancelled.
Real databases (SQLite, and PostgreSQL when configured), the real listener and Dovecot;
only the clock is faked."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from click.testing import Result

from gateway import conversations, store
from gateway.config import Config
from gateway.imap import FolderSync, connect
from gateway.outbox import MaildirTransport, OutboxSender
from gateway.pipeline import Outcome, Pipeline, Received
from gateway.reports import status
from gateway.service import Service
from tests.imapserver import Dovecot
from tests.mailtools import Clock, Sink, free_port, gateway_config

BERLIN = ZoneInfo("Europe/Berlin")
AGENTS = {"agents = [] ": 'agents = ["anna@shop.example"] '}


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]




def mail(sender: str = "kim@customer.example", subject: str = "Where is my parcel?",
         msgid: str = "c1@customer.example", extra: str = "", body: str = "It has not arrived yet.",
         to: str = "support@shop.example") -> bytes:  # fmt: skip
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 23 Nov 2026 09:00:00 +0100\r\nMessage-ID: <{msgid}>\r\n{extra}\r\n{body}\r\n"
    ).encode()


def team_mail(msgid: str, in_reply_to: str | None = "c1@customer.example",
              subject: str = "Re: Where is my parcel?", sender: str = "support@shop.example",
              to: str = "kim@customer.example", body: str = "It is on its way.") -> bytes:  # fmt: skip
    threading = f"In-Reply-To: <{in_reply_to}>\r\nReferences: <{in_reply_to}>\r\n" if in_reply_to else ""
    return (
        f"From: Shop <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{msgid}>\r\n{threading}\r\n{body}\r\n"
    ).encode()


def rows(engine: sa.Engine, table: sa.Table, *where: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table).where(*where).order_by(*table.primary_key.columns)))


def events(engine: sa.Engine, kind: str) -> list[dict[str, Any]]:
    return [json.loads(e.detail) for e in rows(engine, store.events, store.events.c.kind == kind)]


# ------------------------------------------------------------------ on the store


@pytest.fixture
def pipe(tmp_path: Path, database_url: str) -> Iterator[tuple[Pipeline, Clock]]:
    config = gateway_config(tmp_path, database_url, extra=AGENTS)
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    clock = Clock(at(2026, 11, 23, 9, 0))
    yield Pipeline(config, engine, clock), clock
    engine.dispose()


def feed(pipeline: Pipeline, raw: bytes, received_at: datetime, *, sent: bool = False) -> Outcome:
    """Store one message (the team's Sent folder, or the listener) and process it."""
    sender = raw.split(b"From: ", 1)[1].split(b"\r\n", 1)[0].decode()
    envelope = sender.rpartition("<")[2].rstrip(">")
    received = Received(raw, "imap" if sent else "smtp", received_at, inbox="shop",
                        envelope_from=None if sent else envelope, from_sent_folder=sent)  # fmt: skip
    row_id, is_new = pipeline.accept(received)
    assert is_new
    [outcome] = [o for o in pipeline.process_pending() if o.message_row == row_id]
    return outcome


def conversation(pipeline: Pipeline, conv_id: int) -> Any:
    [row] = rows(pipeline.engine, store.conversations, store.conversations.c.id == conv_id)
    return row


def acks(pipeline: Pipeline) -> list[tuple[str, int, str]]:
    o = store.outbox.c
    return [(r.recipient, r.conversation_id, r.status) for r in rows(pipeline.engine, store.outbox, o.kind == "ack")]


def test_a_strangers_tag_opens_a_conversation_of_their_own(pipe: tuple[Pipeline, Clock]) -> None:
    pipeline, clock = pipe
    first = feed(pipeline, mail(), clock.now)
    assert first.reference == "SHOP-1001"
    before = conversation(pipeline, 1)
    clock.now = at(2026, 11, 23, 9, 5)
    stranger = feed(pipeline, mail("eve@elsewhere.example", "[SHOP-1001] my invoice", "e1@elsewhere.example"),
                    clock.now)  # fmt: skip
    assert (stranger.conversation_id, stranger.reference, stranger.acknowledged) == (2, "SHOP-1002", True)
    assert conversation(pipeline, 1) == before  # no "customer replied", no priority change
    assert acks(pipeline) == [("kim@customer.example", 1, "pending"), ("eve@elsewhere.example", 2, "pending")]
    [_, detail] = events(pipeline.engine, "acknowledged")
    assert detail["not_joined"] == ["SHOP-1001"]
    # The customer's own tagged mail still continues her conversation.
    own = feed(pipeline, mail(subject="Again about [SHOP-1001]", msgid="c2@customer.example"), clock.now)
    assert (own.conversation_id, own.acknowledged, own.skip.rule if own.skip else None) == (1, False, "follow-up")


def test_thread_headers_count_only_for_participants(pipe: tuple[Pipeline, Clock]) -> None:
    """Guessing a customer's Message-ID or answering one of ours joins nothing. Guessing
    opens a conversation of one's own; answering our acknowledgment from an address that
    takes no part is what a system answering every mail does (test_loops), so it opens
    none and gets no acknowledgment, or that system's next answer would loop."""
    pipeline, clock = pipe
    feed(pipeline, mail(), clock.now)
    [ack] = rows(pipeline.engine, store.outbox)
    expected = {"c1@customer.example": (2, True, None), ack.message_id: (None, False, "quotes-our-ack")}
    for n, (ref, outcome) in enumerate(expected.items()):
        out = feed(pipeline, mail(f"eve{n}@elsewhere.example", "Re: Where is my parcel?", f"e{n}@elsewhere.example",
                                  extra=f"In-Reply-To: <{ref}>\r\nReferences: <{ref}>\r\n"), clock.now)  # fmt: skip
        assert (out.conversation_id, out.acknowledged, out.skip.rule if out.skip else None) == outcome, ref
    reply = feed(pipeline, mail(subject="Re: Where is my parcel?", msgid="c2@customer.example",
                                extra=f"In-Reply-To: <{ack.message_id}>\r\n"), clock.now)  # fmt: skip
    assert reply.conversation_id == 1


def test_whoever_was_copied_takes_part(pipe: tuple[Pipeline, Clock]) -> None:
    pipeline, clock = pipe
    feed(pipeline, mail(extra="Cc: Lea <lea@customer.example>, support@shop.example\r\n"), clock.now)
    p = store.participants.c
    assert [r.address for r in rows(pipeline.engine, store.participants, p.conversation_id == 1)] == [
        "kim@customer.example",
        "lea@customer.example",
    ]  # never our own address
    lea = feed(pipeline, mail("lea@customer.example", "Re: [SHOP-1001] Where is my parcel?", "l1@customer.example"),
               clock.now)  # fmt: skip
    assert (lea.conversation_id, lea.acknowledged) == (1, False)
    # The team answers Lea, copying Max: Max takes part now too.
    clock.now = at(2026, 11, 23, 10, 0)
    team = feed(pipeline, team_mail("t1@shop-mail.example", "l1@customer.example", to="lea@customer.example")
                .replace(b"To: lea", b"Cc: max@customer.example\r\nTo: lea"), clock.now, sent=True)  # fmt: skip
    assert team.conversation_id == 1
    with pipeline.engine.connect() as conn:
        assert conversations.is_participant(conn, 1, "MAX@customer.example")


def test_the_team_matches_by_tag_and_by_a_participants_subject(pipe: tuple[Pipeline, Clock]) -> None:
    pipeline, clock = pipe
    feed(pipeline, mail(extra="Cc: lea@customer.example\r\n"), clock.now)
    clock.now = at(2026, 11, 23, 9, 30)
    tagged = feed(pipeline, team_mail("t1@shop-mail.example", None, subject="Your order [SHOP-1001]",
                                      sender="anna@shop.example", to="someone@else.example"), clock.now)  # fmt: skip
    assert tagged.conversation_id == 1
    clock.now = at(2026, 11, 23, 9, 40)
    loose = feed(pipeline, team_mail("t2@shop-mail.example", None, subject="AW: Where is my parcel?",
                                     to="lea@customer.example"), clock.now, sent=True)  # fmt: skip
    [message] = rows(pipeline.engine, store.messages, store.messages.c.id == loose.message_row)
    assert (message.conversation_id, message.match) == (1, "subject")


def test_find_by_thread_without_an_author_trusts_nobody(pipe: tuple[Pipeline, Clock]) -> None:
    pipeline, clock = pipe
    feed(pipeline, mail(), clock.now)
    from gateway.parse import parse

    parsed = parse(mail("x@y.example", "[SHOP-1001]", "x1@y.example", extra="In-Reply-To: <c1@customer.example>\r\n"))
    with pipeline.engine.connect() as conn:
        assert conversations.find_by_thread(conn, parsed, author=None).refused == ("SHOP-1001",)
        assert conversations.find_by_thread(conn, parsed, author="x@y.example").conversation is None
        assert conversations.find_by_thread(conn, parsed, author="KIM@customer.example").how == "references"
        assert conversations.find_by_thread(conn, parsed, author=None, team=True).conversation.id == 1


# ------------------------------------------------------------------ replies read before their mail


def test_a_reply_processed_first_counts_at_its_time_and_cancels_the_ack(pipe: tuple[Pipeline, Clock]) -> None:
    """Sent is read before INBOX: the reply waits, unmatched, then closes the first
    clock at 10:00 when the customer's 09:00 mail is processed at 10:05; the
    acknowledgment queued with it is cancelled, never sent."""
    pipeline, clock = pipe
    clock.now = at(2026, 11, 23, 10, 5)
    team = feed(pipeline, team_mail("t1@shop-mail.example"), at(2026, 11, 23, 10, 0), sent=True)
    assert team.conversation_id is None
    assert {r.key for r in rows(pipeline.engine, store.reply_keys)} == {"<c1@customer.example", "@kim@customer.example"}
    customer = feed(pipeline, mail(), at(2026, 11, 23, 9, 0))
    assert customer.conversation_id == 1 and not customer.acknowledged
    conv = conversation(pipeline, 1)
    assert (conv.state, conv.first_reply_at, conv.first_reply_business_seconds, conv.breached) == (
        "answered", at(2026, 11, 23, 10, 0), 3600, False)  # fmt: skip
    assert acks(pipeline) == [("kim@customer.example", 1, "cancelled")]
    [message] = rows(pipeline.engine, store.messages, store.messages.c.id == team.message_row)
    assert (message.conversation_id, message.match) == (1, "references")
    assert rows(pipeline.engine, store.reply_keys) == []
    assert [e["late"] for e in events(pipeline.engine, "team-reply")] == [True]
    assert len(events(pipeline.engine, "ack-cancelled")) == 1


def test_replies_by_subject_are_matched_late_in_time_order(pipe: tuple[Pipeline, Clock]) -> None:
    """Two replies without thread headers, to the customer with her subject, read
    before her mail: the earlier one answers; one written before her mail does not."""
    pipeline, clock = pipe
    clock.now = at(2026, 11, 23, 12, 0)
    feed(pipeline, team_mail("t0@shop-mail.example", None), at(2026, 11, 23, 8, 0), sent=True)  # before her mail
    feed(pipeline, team_mail("t2@shop-mail.example", None, body="Any news?"), at(2026, 11, 23, 11, 0), sent=True)
    feed(pipeline, team_mail("t1@shop-mail.example", None), at(2026, 11, 23, 10, 30), sent=True)
    feed(pipeline, mail(), at(2026, 11, 23, 9, 0))
    conv = conversation(pipeline, 1)
    assert (conv.first_reply_at, conv.breached) == (at(2026, 11, 23, 10, 30), False)
    m = store.messages.c
    assert [(r.message_id, r.conversation_id) for r in rows(pipeline.engine, store.messages, m.direction == "team")] == [
        ("t0@shop-mail.example", None), ("t2@shop-mail.example", 1), ("t1@shop-mail.example", 1)]  # fmt: skip


def test_a_follow_up_read_after_the_reply_to_it_is_answered(pipe: tuple[Pipeline, Clock]) -> None:
    """The customer wrote again at 11:00 and the team answered at 11:30 (threaded to the
    whole conversation); INBOX is read after Sent: the next-reply clock the 11:00 mail
    opens is closed by the 11:30 reply already in the conversation."""
    pipeline, clock = pipe
    feed(pipeline, mail(), clock.now)
    clock.now = at(2026, 11, 23, 10, 0)
    feed(pipeline, team_mail("t1@shop-mail.example"), clock.now, sent=True)
    clock.now = at(2026, 11, 23, 12, 0)
    feed(pipeline, team_mail("t2@shop-mail.example", body="Sent again today."), at(2026, 11, 23, 11, 30), sent=True)
    feed(pipeline, mail(subject="Re: Where is my parcel?", msgid="c2@customer.example",
                        extra="In-Reply-To: <t1@shop-mail.example>\r\n"), at(2026, 11, 23, 11, 0))  # fmt: skip
    assert conversation(pipeline, 1).state == "answered"
    cycles = rows(pipeline.engine, store.cycles)
    assert [(c.kind, c.replied_at, c.business_seconds) for c in cycles] == [
        ("first", at(2026, 11, 23, 10, 0), 3600), ("next", at(2026, 11, 23, 11, 30), 1800)]  # fmt: skip


def test_a_reply_with_no_conversation_stays_unmatched_and_harmless(pipe: tuple[Pipeline, Clock]) -> None:
    pipeline, clock = pipe
    team = feed(pipeline, team_mail("t1@shop-mail.example", "supplier@wholesale.example", subject="Re: Prices",
                                    to="supplier@wholesale.example"), clock.now, sent=True)  # fmt: skip
    assert team.conversation_id is None
    # Unrelated customers, even one with the same subject, adopt nothing.
    feed(pipeline, mail(subject="Prices"), clock.now)
    feed(pipeline, mail("ole@customer.example", "Re: Prices", "o1@customer.example"), clock.now)
    [message] = rows(pipeline.engine, store.messages, store.messages.c.direction == "team")
    assert (message.conversation_id, message.match) == (None, None)
    assert [c.state for c in rows(pipeline.engine, store.conversations)] == ["awaiting_team"] * 2
    assert [a[2] for a in acks(pipeline)] == ["pending", "pending"]
    assert events(pipeline.engine, "team-reply") == []


def test_a_stranger_cannot_adopt_a_reply_meant_for_someone_else(pipe: tuple[Pipeline, Clock]) -> None:
    """A reply to Kim waits for Kim's mail; Eve, naming Kim's Message-ID, gets her own
    conversation and does not take the reply."""
    pipeline, clock = pipe
    clock.now = at(2026, 11, 23, 10, 5)
    feed(pipeline, team_mail("t1@shop-mail.example"), at(2026, 11, 23, 10, 0), sent=True)
    eve = feed(pipeline, mail("eve@elsewhere.example", "Re: Where is my parcel?", "e1@elsewhere.example",
                              extra="In-Reply-To: <c1@customer.example>\r\n"), clock.now)  # fmt: skip
    assert (eve.conversation_id, eve.acknowledged) == (1, True)
    assert conversation(pipeline, 1).first_reply_at is None
    kim = feed(pipeline, mail(), at(2026, 11, 23, 9, 0))
    assert conversation(pipeline, kim.conversation_id or 0).first_reply_at == at(2026, 11, 23, 10, 0)


# ------------------------------------------------------------------ the migration


def test_the_migration_finds_the_participants_of_existing_conversations(database_url: str) -> None:
    engine = store.make_engine(database_url)
    try:
        store.upgrade(engine, "0005")
        now = at(2026, 11, 23, 9, 0)
        # The tables as they were then, with only the columns this test fills.
        when = store.UTCDateTime
        old_conversations = sa.table("conversations", *(sa.column(n) for n in (
            "id", "reference", "inbox", "customer", "subject", "priority", "priority_reason", "state",
            "window_seconds", "stretch", "breached")), *(sa.column(n, when) for n in ("received_at", "due_at", "created_at")))  # fmt: skip
        old_messages = sa.table("messages", *(sa.column(n) for n in (
            "dedup_key", "conversation_id", "source", "status", "from_addr", "direction", "sha256", "size",
            "acknowledged")), sa.column("received_at", when), sa.column("raw", sa.LargeBinary))  # fmt: skip
        with store.begin(engine) as conn:
            conn.execute(old_conversations.insert(), dict(
                id=1, reference="SHOP-1001", inbox="shop", customer="kim@customer.example", subject="x",
                priority="normal", priority_reason="", state="awaiting_team", received_at=now,
                window_seconds=3600, stretch=1.0, due_at=now, breached=False, created_at=now))  # fmt: skip
            for n, (sender, raw) in enumerate((
                ("kim@customer.example", b"From: kim@customer.example\r\nCc: Lea <LEA@customer.example>\r\n\r\nx"),
                ("ole@customer.example", None),  # raw purged: the sender is all that is left
                # Before participants, anyone could join with the tag: that makes nobody one.
                ("eve@evil.example", b"From: eve@evil.example\r\nCc: mallory@evil.example\r\n\r\n[SHOP-1001]"),
                ("support@shop.example", b"From: support@shop.example\r\nTo: max@customer.example\r\n\r\nx"),
            )):  # fmt: skip
                conn.execute(old_messages.insert(), dict(
                    dedup_key=f"k{n}", conversation_id=1, source="smtp", status="processed", received_at=now,
                    from_addr=sender, direction="team" if "shop" in sender else "customer", sha256="0", size=1,
                    raw=raw, acknowledged=False))  # fmt: skip
        store.upgrade(engine)
        p = store.participants.c
        assert [r.address for r in rows(engine, store.participants, p.conversation_id == 1)] == [
            "kim@customer.example", "lea@customer.example", "max@customer.example"]  # fmt: skip
    finally:
        engine.dispose()


# ------------------------------------------------------------------ end to end: the listener


@pytest.fixture
def gateway(tmp_path: Path, database_url: str, sink: Sink) -> Iterator[tuple[Service, Config, Clock]]:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port, extra=AGENTS)
    clock = Clock(at(2026, 11, 23, 9, 0))
    service = Service(config, clock=clock)
    service.start(workers=False)
    yield service, config, clock
    service.close()


def deliver(service: Service, config: Config, raw: bytes, mail_from: str) -> None:
    with service.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(store.messages)).scalar_one()
    assert config.listen is not None
    with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
        client.sendmail(mail_from, ["support@shop.example"], raw)
    deadline = time.monotonic() + 20
    while True:
        with service.engine.connect() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(store.messages)).scalar_one() > before:
                break
        assert time.monotonic() < deadline, "not stored in time"
        time.sleep(0.05)
    service.run_once()


def test_a_stranger_writing_with_a_reference_is_a_new_customer_end_to_end(
    gateway: tuple[Service, Config, Clock], sink: Sink
) -> None:
    service, config, clock = gateway
    deliver(service, config, mail(extra="Cc: lea@customer.example\r\n"), "kim@customer.example")
    [ack] = sink.wait_for(1)
    assert "[SHOP-1001]" in ack.message["Subject"]
    engine = service.engine
    [before] = rows(engine, store.conversations)
    clock.now = at(2026, 11, 23, 9, 10)
    deliver(service, config, mail("eve@elsewhere.example", "[SHOP-1001] Refund to my account please",
                                  "e1@elsewhere.example"), "eve@elsewhere.example")  # fmt: skip
    acks_sent = sink.wait_for(2)
    assert acks_sent[1].rcpt_tos == ["eve@elsewhere.example"]
    assert "[SHOP-1002]" in acks_sent[1].message["Subject"]
    assert rows(engine, store.conversations)[0] == before  # Kim's conversation is untouched
    m = store.messages.c
    assert [r.conversation_id for r in rows(engine, store.messages, m.from_addr == "eve@elsewhere.example")] == [2]
    # Kim's own reply with the tag, and Lea's (copied), join; so does an agent's reply.
    clock.now = at(2026, 11, 23, 9, 20)
    deliver(service, config, mail(subject="Re: Where is my parcel? [SHOP-1001]", msgid="c2@customer.example"),
            "kim@customer.example")  # fmt: skip
    deliver(service, config, mail("lea@customer.example", "Re: Where is my parcel? [SHOP-1001]", "l1@customer.example"),
            "lea@customer.example")  # fmt: skip
    clock.now = at(2026, 11, 23, 9, 30)
    deliver(service, config, team_mail("t1@shop-mail.example", None, subject="Re: [SHOP-1001] your parcel",
                                       sender="anna@shop.example"), "anna@shop.example")  # fmt: skip
    by_sender = {r.from_addr: (r.conversation_id, r.direction) for r in rows(engine, store.messages)}
    assert by_sender == {
        "kim@customer.example": (1, "customer"), "eve@elsewhere.example": (2, "customer"),
        "lea@customer.example": (1, "customer"), "anna@shop.example": (1, "team"),
    }  # fmt: skip
    assert len(sink.received) == 2  # no acknowledgment for the follow-ups
    [kim, eve] = rows(engine, store.conversations)
    assert (kim.state, kim.first_reply_at, eve.state) == ("answered", at(2026, 11, 23, 9, 30), "awaiting_team")


# ------------------------------------------------------------------ end to end: a downtime (Dovecot)


def test_a_downtime_catch_up_reading_sent_first_measures_the_reply(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot, run_cli: Callable[..., Result]
) -> None:
    """The gateway is stopped; Kim writes at 09:00, the team answers from its mail client
    at 10:00. At 14:00 the gateway comes back and reads Sent before INBOX: the reply
    answers Kim's conversation at 10:00 (due 13:00: met), and no breach alert and no
    breach notice go out."""
    secret = tmp_path / "imap-password"
    secret.write_text(dovecot.password)
    section = (f'[inbox.imap]\nhost = "{dovecot.host}"\nport = {dovecot.port}\nsecurity = "none"\n'
               f'username = "{dovecot.user}"\npassword_file = "{secret}"\npoll_interval = "1s"\n')  # fmt: skip
    config = gateway_config(tmp_path, database_url, sink_port=sink.port, extra={
        "# [inbox.imap]\n": section, "notify_customer = false": "notify_customer = true"})  # fmt: skip
    clock = Clock(at(2026, 11, 23, 8, 0))
    service = Service(config, clock=clock)
    service.start(workers=False)
    try:
        deadline = time.monotonic() + 20
        while len(rows(service.engine, store.sync_state)) < 2:  # where INBOX's and Sent's history ends
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        service.close()
    delivered = b"Return-Path: <kim@customer.example>\r\n" + mail()  # as the server files it
    dovecot.append("INBOX", delivered, internaldate=at(2026, 11, 23, 9, 0))
    dovecot.append("Sent", team_mail("t1@shop-mail.example"), flags=("\\Seen",), internaldate=at(2026, 11, 23, 10, 0))
    clock.now = at(2026, 11, 23, 14, 0)
    service = Service(config, clock=clock)  # back, catching up: Sent is read first
    try:
        inbox = config.inboxes[0]
        assert inbox.imap is not None
        for folder, sent in ((inbox.imap.sent_folder, True), (inbox.imap.folders[0], False)):
            client = connect(inbox.imap)
            try:
                assert FolderSync(config, inbox, folder, service.pipeline, clock, lambda: None, sent=sent).sync(client) == 1
            finally:
                client.logout()
        m = store.messages.c
        assert [r.direction for r in rows(service.engine, store.messages)] == ["team", "customer"]
        service.run_once()
        for hour in (15, 17):
            clock.now = at(2026, 11, 23, hour, 0)
            service.run_once()
        assert rows(service.engine, store.messages, m.conversation_id.is_(None)) == []
    finally:
        service.close()
    result = run_cli("--config", str(config.path), "tickets", "--json", now=clock.now)
    [ticket] = [json.loads(line) for line in result.output.splitlines()]
    assert (ticket["first_reply_at"], ticket["breached"], ticket["state"]) == (
        "2026-11-23T10:00:00+01:00", False, "answered")  # fmt: skip
    assert ticket["first_reply_business_seconds"] == 3600
    assert sink.received == []  # the ack came too late to promise anything; nothing else is owed


# ------------------------------------------------------------------ a queued acknowledgment


class FixedSink(Sink):
    def start_on(self, port: int) -> None:
        self.port = port
        self._controller = Controller(self, hostname="127.0.0.1", port=port)
        self._controller.start()


def test_an_ack_still_queued_when_the_team_replies_is_cancelled(
    tmp_path: Path, database_url: str, run_cli: Callable[..., Result]
) -> None:
    port = free_port()  # nobody listens: the sending server is down
    config = gateway_config(tmp_path, database_url, sink_port=port, extra=AGENTS)
    clock = Clock(at(2026, 11, 23, 9, 0))
    service = Service(config, clock=clock)
    service.start(workers=False)
    server = FixedSink()
    try:
        deliver(service, config, mail(), "kim@customer.example")
        [ack] = rows(service.engine, store.outbox)
        assert (ack.kind, ack.status, ack.attempts) == ("ack", "pending", 1)
        assert status(service.engine, clock.now)["last_hour"]["acknowledgments"] == 0  # not sent
        clock.now = at(2026, 11, 23, 9, 20)
        deliver(service, config, team_mail("t1@shop-mail.example", sender="anna@shop.example"), "anna@shop.example")
        server.start_on(port)  # the server is back
        clock.now = at(2026, 11, 23, 10, 0)
        deliver(service, config, mail("ole@customer.example", "Another question", "o1@customer.example"),
                "ole@customer.example")  # fmt: skip
        [delivered] = server.wait_for(1)
        assert delivered.rcpt_tos == ["ole@customer.example"]  # what is due goes out; Kim's ack does not
        assert [(r.recipient, r.status) for r in rows(service.engine, store.outbox)] == [
            ("kim@customer.example", "cancelled"), ("ole@customer.example", "sent")]  # fmt: skip
        [cancelled] = events(service.engine, "ack-cancelled")
        assert cancelled["outbox"] == ack.id
        [kim] = rows(service.engine, store.messages, store.messages.c.id == 1)
        assert not kim.acknowledged
        assert status(service.engine, clock.now)["last_hour"]["acknowledgments"] == 1  # Ole's only
        service.close()
        retried = run_cli("--config", str(config.path), "retry", now=clock.now)  # requeues failed rows only
        assert retried.exit_code == 0, retried.output
        assert [r.status for r in rows(service.engine, store.outbox)] == ["cancelled", "sent"]
        assert len(server.received) == 1
    finally:
        service.close()
        server.stop()


def test_the_sender_skips_a_row_cancelled_after_it_was_read(tmp_path: Path, database_url: str) -> None:
    config = gateway_config(tmp_path, database_url)
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    clock = Clock(at(2026, 11, 23, 9, 0))
    try:
        pipeline = Pipeline(config, engine, clock)
        feed(pipeline, mail(), clock.now)
        [row] = rows(engine, store.outbox)  # the sender has read it ...
        with store.begin(engine) as conn:  # ... when the team's reply cancels it
            assert conversations.cancel_moot(conn, 1, clock.now) == [row.id]
        sender = OutboxSender(engine, MaildirTransport(tmp_path / "out"), clock)
        assert sender._send_rows([row]) == 0
        assert not (tmp_path / "out" / "new").exists() or not list((tmp_path / "out" / "new").iterdir())
        assert [r.status for r in rows(engine, store.outbox)] == ["cancelled"]
        clock.now += timedelta(hours=1)
        assert sender.send_due() == 0
    finally:
        engine.dispose()


# ------------------------------------------------------------------ where the slices meet


def test_a_desk_answering_our_ack_by_its_thread_headers_gets_no_second_ack(
    pipe: tuple[Pipeline, Clock],
) -> None:
    """A ticket desk answers each acknowledgment from a new address with In-Reply-To our
    ack and no quote: it is no participant, so no follow-up, and no new conversation
    either — the loop ends at once."""
    pipeline, clock = pipe
    results = [feed(pipeline, mail(sender="orders@partner.example"), clock.now)]
    for n in range(1, 5):
        o = store.outbox.c
        [ack_id] = [r.message_id for r in rows(pipeline.engine, store.outbox, o.kind == "ack")][-1:]
        clock.now += timedelta(minutes=3)
        results.append(feed(pipeline, mail(
            sender=f"t{n}@desk.crm.example", subject=f"Ticket {n} created", msgid=f"t{n}@desk.crm.example",
            body=f"Your ticket {n} was created.", extra=f"In-Reply-To: <{ack_id}>\r\nReferences: <{ack_id}>\r\n",
        ), clock.now))  # fmt: skip
    assert [r.acknowledged for r in results] == [True, False, False, False, False]
    assert {r.skip.rule for r in results[1:] if r.skip} == {"quotes-our-ack"}


def test_a_customer_naming_a_reference_and_our_address_from_a_new_address_is_acknowledged(
    pipe: tuple[Pipeline, Clock],
) -> None:
    """Her own words name her old case and our address; nothing is quoted: a person."""
    pipeline, clock = pipe
    first = feed(pipeline, mail(), clock.now)
    clock.now = at(2026, 11, 23, 11, 0)
    second = feed(pipeline, mail(
        sender="kim.work@employer.example", subject="Return label please", msgid="w1@employer.example",
        body=f"Hi, this is Kim from my work address. About {first.reference}: I also need a return label.\r\n"
             "-- \r\nKim (please write to me here, not to support@shop.example)",
    ), clock.now)  # fmt: skip
    assert second.acknowledged and second.conversation_id not in (None, first.conversation_id)


def test_a_team_reply_naming_a_reused_message_id_joins_the_tagged_conversation(
    pipe: tuple[Pipeline, Clock],
) -> None:
    """Two mails share a Message-ID (both kept): the id says nothing, the tag decides."""
    pipeline, clock = pipe
    a = feed(pipeline, mail(subject="Invoice wrong", msgid="same@customer.example"), clock.now)
    clock.now = at(2026, 11, 23, 9, 30)
    b = feed(pipeline, mail(subject="Parcel damaged", msgid="same@customer.example", body="Broken."),
             clock.now)  # fmt: skip
    assert a.conversation_id != b.conversation_id
    clock.now = at(2026, 11, 23, 10, 5)
    reply = feed(pipeline, team_mail("t1@shop-mail.example", in_reply_to="same@customer.example",
                                     subject=f"Re: [{b.reference}] Parcel damaged"),
                 at(2026, 11, 23, 10, 0), sent=True)  # fmt: skip
    assert reply.conversation_id == b.conversation_id


class _Racing:
    """A transport during whose send the team's reply cancels the acknowledgment."""

    def __init__(self, pipeline: Pipeline, conversation_id: int, *, fails: bool) -> None:
        self.pipeline, self.conversation_id, self.fails = pipeline, conversation_id, fails

    def send(self, sender: str, recipient: str, raw: bytes) -> None:
        from gateway.outbox import SendFailed

        with store.begin(self.pipeline.engine) as conn:
            conversations.cancel_moot(conn, self.conversation_id, self.pipeline.clock())
        if self.fails:
            raise SendFailed("421 try again later", permanent=False)

    def close(self) -> None:
        pass


def test_an_ack_cancelled_during_a_failed_attempt_stays_cancelled(
    pipe: tuple[Pipeline, Clock],
) -> None:
    pipeline, clock = pipe
    a = feed(pipeline, mail(), clock.now)
    OutboxSender(pipeline.engine, _Racing(pipeline, a.conversation_id, fails=True), clock).send_due()
    assert [status for _, _, status in acks(pipeline)] == ["cancelled"]  # never sent late


def test_an_ack_the_server_took_while_it_was_cancelled_counts_as_sent(
    pipe: tuple[Pipeline, Clock],
) -> None:
    """The mail went out: the record says so, and the customer counts as acknowledged."""
    pipeline, clock = pipe
    a = feed(pipeline, mail(), clock.now)
    OutboxSender(pipeline.engine, _Racing(pipeline, a.conversation_id, fails=False), clock).send_due()
    assert [status for _, _, status in acks(pipeline)] == ["sent"]
    [message] = rows(pipeline.engine, store.messages, store.messages.c.id == a.message_row)
    assert message.acknowledged
    assert len(events(pipeline.engine, "ack-sent-after-cancel")) == 1
