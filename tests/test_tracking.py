"""Reply tracking end to end: a customer mail arrives and is acknowledged; the team's reply
is seen in the Sent folder (Dovecot) or as a BCC to the listener; `tickets --json` shows
the first reply in business time, met or breached, across a weekend, a holiday and a DST
change; warnings and breach alerts go out exactly once at the right instants. The clock
is the only thing faked; the service's workers are stepped with `run_once()`."""

from __future__ import annotations

import json
import mailbox
import smtplib
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import Result

from gateway import store
from gateway.config import Config
from gateway.service import Service
from tests.imapserver import Dovecot
from tests.mailtools import Clock, Sink, gateway_config

BERLIN = ZoneInfo("Europe/Berlin")
AGENTS = {"agents = [] ": 'agents = ["anna@shop.example"] '}


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]




def customer_mail(n: int = 1, subject: str = "Where is my parcel?", body: str = "It has not arrived yet.",
                  extra: str = "") -> bytes:  # fmt: skip
    return (
        f"Return-Path: <kim@customer.example>\r\nFrom: Kim <kim@customer.example>\r\n"
        f"To: support@shop.example\r\nSubject: {subject}\r\nDate: Fri, 13 Nov 2026 16:30:00 +0100\r\n"
        f"Message-ID: <c{n}@customer.example>\r\n{extra}\r\n{body}\r\n"
    ).encode()


def team_mail(n: int, in_reply_to: str, sender: str = "support@shop.example", body: str = "It is on its way.",
              subject: str = "Re: Where is my parcel?") -> bytes:  # fmt: skip
    return (
        f"From: Shop <{sender}>\r\nTo: kim@customer.example\r\nSubject: {subject}\r\n"
        f"Date: Mon, 16 Nov 2026 09:30:00 +0100\r\nMessage-ID: <t{n}@shop-mail.example>\r\n"
        f"In-Reply-To: <{in_reply_to}>\r\nReferences: <{in_reply_to}>\r\n\r\n{body}\r\n"
    ).encode()


def smtp_send(config: Config, raw: bytes, mail_from: str) -> None:
    assert config.listen is not None
    with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
        client.sendmail(mail_from, ["support@shop.example"], raw)


def stored(engine: sa.Engine, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if (
                conn.execute(sa.select(sa.func.count()).select_from(store.messages)).scalar_one()
                >= count
            ):
                return
        time.sleep(0.05)
    raise AssertionError(f"{count} messages not stored in time")


def tickets(
    run_cli: Callable[..., Result], config: Config, now: datetime, *args: str
) -> list[dict[str, Any]]:
    result = run_cli("--config", str(config.path), "tickets", "--json", *args, now=now)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def kinds(sink: Sink) -> list[str]:
    """What arrived at the sink, by kind: ack / alert / breach."""
    out = []
    for d in sink.received:
        m = d.message
        if m["Subject"].startswith("[sla-gateway]"):
            out.append("alert")
        elif (m["Message-ID"].startswith("<") and ".breach@" in m["Message-ID"]) or "breach" in m[
            "Message-ID"
        ]:
            out.append("breach")
        else:
            out.append("ack")
    return out


# ------------------------------------------------------------------ the Sent folder (Dovecot)


def test_reply_in_the_sent_folder_is_measured_over_a_weekend(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot, run_cli: Callable[..., Result]
) -> None:
    secret = tmp_path / "imap-password"
    secret.write_text(dovecot.password)
    section = (f'[inbox.imap]\nhost = "{dovecot.host}"\nport = {dovecot.port}\nsecurity = "none"\n'
               f'username = "{dovecot.user}"\npassword_file = "{secret}"\npoll_interval = "1s"\n')  # fmt: skip
    config = gateway_config(
        tmp_path, database_url, sink_port=sink.port, extra={"# [inbox.imap]\n": section}
    )
    clock = Clock(at(2026, 11, 13, 16, 31))
    service = Service(config, clock=clock)
    service.start(workers=False)
    try:
        deadline = time.monotonic() + 20
        while True:  # the first sync of INBOX and Sent marks where history ends
            with service.engine.connect() as conn:
                if (
                    conn.execute(
                        sa.select(sa.func.count()).select_from(store.sync_state)
                    ).scalar_one()
                    >= 2
                ):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        dovecot.append("INBOX", customer_mail(), internaldate=at(2026, 11, 13, 16, 30))
        stored(service.engine, 1)
        service.run_once()
        assert kinds(sink) == ["ack"]
        clock.now = at(2026, 11, 16, 9, 31)
        dovecot.append("Sent", team_mail(1, "c1@customer.example"), flags=("\\Seen",),
                       internaldate=at(2026, 11, 16, 9, 30))  # fmt: skip
        stored(service.engine, 2)
        service.run_once()
    finally:
        service.close()
    [ticket] = tickets(run_cli, config, clock.now)
    assert ticket["reference"] == "SHOP-1001"
    assert ticket["received_at"] == "2026-11-13T16:30:00+01:00"
    assert ticket["due_at"] == "2026-11-14T13:30:00+01:00"  # Fri 30 min + Sat 10:00-13:30
    assert ticket["first_reply_at"] == "2026-11-16T09:30:00+01:00"
    assert ticket["first_reply_business_seconds"] == 5 * 3600  # Fri 0.5 h + Sat 4 h + Mon 0.5 h
    assert ticket["breached"] is True
    assert ticket["state"] == "answered"
    assert kinds(sink) == ["ack"]  # the breach was over before anyone could be warned


# ------------------------------------------------------------------ BCC to the listener


@pytest.fixture
def gateway(
    tmp_path: Path, database_url: str, sink: Sink
) -> Iterator[tuple[Service, Config, Clock]]:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port, extra=AGENTS)
    clock = Clock(at(2026, 11, 23, 9, 0))
    service = Service(config, clock=clock)
    service.start(workers=False)
    yield service, config, clock
    service.close()


def deliver(service: Service, config: Config, raw: bytes, mail_from: str) -> None:
    with service.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(store.messages)).scalar_one()
    smtp_send(config, raw, mail_from)
    stored(service.engine, before + 1)
    service.run_once()


def test_bcc_reply_over_christmas_is_met(gateway: tuple[Service, Config, Clock], sink: Sink,
                                         run_cli: Callable[..., Result]) -> None:  # fmt: skip
    service, config, clock = gateway
    clock.now = at(2026, 12, 23, 16, 0)
    deliver(service, config, customer_mail(), "kim@customer.example")
    clock.now = at(2026, 12, 28, 11, 0)
    deliver(
        service,
        config,
        team_mail(1, "c1@customer.example", sender="anna@shop.example"),
        "anna@shop.example",
    )
    [ticket] = tickets(run_cli, config, clock.now)
    assert ticket["due_at"] == "2026-12-28T12:00:00+01:00"
    assert ticket["first_reply_business_seconds"] == 3 * 3600  # Wed 1 h, closed until Mon 9-11
    assert (ticket["breached"], ticket["state"]) == (False, "answered")


def test_reply_across_the_dst_change(
    gateway: tuple[Service, Config, Clock], run_cli: Callable[..., Result]
) -> None:
    service, config, clock = gateway
    clock.now = at(2026, 10, 24, 13, 0)  # Saturday, CEST; the clocks go back that night
    deliver(service, config, customer_mail(), "kim@customer.example")
    clock.now = at(2026, 10, 26, 12, 0)  # Monday, CET
    deliver(service, config, team_mail(1, "c1@customer.example"), "support@shop.example")
    [ticket] = tickets(run_cli, config, clock.now)
    assert ticket["received_at"] == "2026-10-24T13:00:00+02:00"
    assert ticket["due_at"] == "2026-10-26T12:00:00+01:00"
    assert ticket["first_reply_business_seconds"] == 4 * 3600
    assert ticket["breached"] is False


def test_warning_and_breach_alerts_exactly_once(
    gateway: tuple[Service, Config, Clock], sink: Sink, run_cli: Callable[..., Result]
) -> None:
    service, config, clock = gateway
    deliver(
        service, config, customer_mail(subject="I was charged twice"), "kim@customer.example"
    )  # urgent, 30 min
    assert kinds(sink) == ["ack"]
    for minute, expected in ((22, ["ack"]), (23, ["ack", "alert"]), (29, ["ack", "alert"]),
                             (30, ["ack", "alert", "alert"]), (59, ["ack", "alert", "alert"])):  # fmt: skip
        clock.now = at(2026, 11, 23, 9, minute)
        service.run_once()
        assert kinds(sink) == expected, minute
    warning, breach = sink.received[1].message, sink.received[2].message
    assert warning["To"] == "owner@shop.example"
    assert warning["Subject"] == "[sla-gateway] Reply promises: 1 due soon"
    assert "SHOP-1001" in warning.get_payload(decode=True).decode()
    assert breach["Subject"] == "[sla-gateway] Reply promises: 1 missed"
    assert [t["state"] for t in tickets(run_cli, config, clock.now, "--breached")] == ["breached"]
    service.close()
    restarted = Service(config, clock=clock)  # a restart neither loses nor repeats an alert
    restarted.start(workers=False)
    try:
        clock.now = at(2026, 11, 23, 10, 30)
        restarted.run_once()
    finally:
        restarted.close()
    assert len(sink.received) == 3


def test_alerts_wait_for_opening_hours(gateway: tuple[Service, Config, Clock], sink: Sink) -> None:
    service, config, clock = gateway
    clock.now = at(2026, 11, 20, 16, 30)  # Friday: urgent is due at 17:00, closing time
    deliver(service, config, customer_mail(subject="Fraud on my card"), "kim@customer.example")
    clock.now = at(2026, 11, 20, 17, 5)
    service.run_once()
    assert kinds(sink) == ["ack"]  # breached, but nobody is told at night
    clock.now = at(2026, 11, 21, 10, 0)  # Saturday opening
    service.run_once()
    assert kinds(sink) == ["ack", "alert"]
    assert "missed" in sink.received[1].message["Subject"]


def test_next_reply_pause_and_close(
    gateway: tuple[Service, Config, Clock], run_cli: Callable[..., Result]
) -> None:
    service, config, clock = gateway
    deliver(service, config, customer_mail(), "kim@customer.example")  # Mon 09:00, due 13:00
    clock.now = at(2026, 11, 23, 10, 0)
    deliver(service, config, team_mail(1, "c1@customer.example"), "support@shop.example")
    assert tickets(run_cli, config, clock.now)[0]["state"] == "answered"
    clock.now = at(2026, 11, 23, 15, 0)  # the customer writes again: a next-reply clock
    follow = customer_mail(2, subject="Re: Where is my parcel?", body="Still nothing.",
                           extra="In-Reply-To: <t1@shop-mail.example>\r\n")  # fmt: skip
    deliver(service, config, follow, "kim@customer.example")
    [ticket] = tickets(run_cli, config, clock.now)
    assert ticket["state"] == "awaiting_team"
    assert ticket["next_due_at"] == "2026-11-24T11:00:00+01:00"  # Mon 15-17 + Tue 9-11
    assert ticket["first_reply_business_seconds"] == 3600  # unchanged by the next cycle
    clock.now = at(2026, 11, 24, 10, 0)
    deliver(service, config, team_mail(2, "c2@customer.example", body="Could you check with your neighbours?"),
            "support@shop.example")  # fmt: skip
    assert tickets(run_cli, config, clock.now)[0]["state"] == "pending"
    with service.engine.connect() as conn:
        cycles = conn.execute(sa.select(store.cycles).order_by(store.cycles.c.id)).all()
    assert [(c.kind, c.business_seconds, c.breached) for c in cycles] == [
        ("first", 3600, False),
        ("next", 3 * 3600, False),
    ]
    clock.now = at(2026, 12, 2, 10, 0)  # 8 days of silence: closed
    service.run_once()
    assert tickets(run_cli, config, clock.now)[0]["state"] == "resolved"


def test_follow_up_raises_priority_from_original_receipt(
    gateway: tuple[Service, Config, Clock], run_cli: Callable[..., Result]
) -> None:
    service, config, clock = gateway
    deliver(service, config, customer_mail(), "kim@customer.example")  # normal: due 13:00
    clock.now = at(2026, 11, 23, 9, 10)
    follow = customer_mail(2, subject="Re: Where is my parcel?", body="Also I think this is fraud!",
                           extra="In-Reply-To: <c1@customer.example>\r\n")  # fmt: skip
    deliver(service, config, follow, "kim@customer.example")
    [ticket] = tickets(run_cli, config, clock.now)
    assert ticket["priority"] == "urgent"
    assert ticket["due_at"] == "2026-11-23T09:30:00+01:00"  # 30 min from the first message


def test_unmatched_team_reply_is_recorded(gateway: tuple[Service, Config, Clock]) -> None:
    service, config, _ = gateway
    deliver(service, config, team_mail(9, "unknown@elsewhere.example", subject="Re: Something else"),
            "support@shop.example")  # fmt: skip
    with service.engine.connect() as conn:
        [message] = conn.execute(sa.select(store.messages)).all()
        kinds_ = conn.execute(sa.select(store.events.c.kind)).scalars().all()
    assert (message.direction, message.conversation_id, message.acknowledged) == (
        "team",
        None,
        False,
    )
    assert "team-reply-unmatched" in kinds_


def test_reply_matched_by_recipient_and_subject(gateway: tuple[Service, Config, Clock]) -> None:
    service, config, clock = gateway
    deliver(service, config, customer_mail(), "kim@customer.example")
    clock.now = at(2026, 11, 23, 9, 45)
    reply = (b"From: support@shop.example\r\nTo: Kim <kim@customer.example>\r\n"
             b"Subject: AW: Where is my parcel?\r\nMessage-ID: <loose@shop-mail.example>\r\n\r\nSent today.\r\n")  # fmt: skip
    deliver(service, config, reply, "support@shop.example")
    with service.engine.connect() as conn:
        message = conn.execute(
            sa.select(store.messages).where(store.messages.c.direction == "team")
        ).one()
    assert (message.conversation_id, message.match) == (1, "subject")


def test_customer_is_told_once_when_we_miss(tmp_path: Path, database_url: str, sink: Sink) -> None:
    config = gateway_config(
        tmp_path,
        database_url,
        sink_port=sink.port,
        extra={"notify_customer = false": "notify_customer = true"},
    )
    clock = Clock(at(2026, 11, 23, 9, 0))
    service = Service(config, clock=clock)
    service.start(workers=False)
    try:
        deliver(service, config, customer_mail(subject="Hacked account"), "kim@customer.example")
        clock.now = at(2026, 11, 23, 9, 31)
        service.run_once()
        clock.now = at(2026, 11, 23, 11, 0)
        service.run_once()
    finally:
        service.close()
    to_customer = [d for d in sink.received if d.rcpt_tos == ["kim@customer.example"]]
    assert len(to_customer) == 2  # the acknowledgment and one breach notice
    notice = to_customer[1].message
    assert notice["Subject"] == "Re: Hacked account [SHOP-1001]"
    text = notice.get_payload(decode=True).decode() if not notice.is_multipart() else \
        notice.get_payload()[0].get_payload(decode=True).decode()  # fmt: skip
    assert "by Monday, November 23, 2026, 9:30" in text  # what we had promised
    assert "You will hear from us by Monday, November 23, 2026, 10:01" in text  # 30 min from now


# ------------------------------------------------------------------ replay


def test_replay_measures_past_mail_and_is_idempotent(
    tmp_path: Path, database_url: str, run_cli: Callable[..., Result]
) -> None:
    config = gateway_config(tmp_path, database_url)
    box = mailbox.mbox(tmp_path / "export.mbox")
    box.add(customer_mail())  # Fri 13 Nov 16:30
    box.add(team_mail(1, "c1@customer.example"))  # Mon 16 Nov 09:30
    box.add((Path(__file__).parent / "data" / "machine" / "bounce_postfix.eml").read_bytes())
    box.add(b"From: lea@customer.example\r\nTo: support@shop.example\r\nSubject: Open question\r\n"
            b"Date: Tue, 17 Nov 2026 10:00:00 +0100\r\nMessage-ID: <open@customer.example>\r\n\r\nHello?\r\n")  # fmt: skip
    box.flush()
    now = at(2026, 11, 20, 12, 0)
    first = run_cli("--config", str(config.path), "replay", str(tmp_path / "export.mbox"), now=now)
    assert first.exit_code == 0, first.output
    assert "4 messages read, 4 new" in first.output
    assert "2 conversations, 1 team replies (0 matched to no conversation)" in first.output
    again = run_cli("--config", str(config.path), "replay", str(tmp_path / "export.mbox"), now=now)
    assert "4 messages read, 0 new" in again.output
    rows = tickets(run_cli, config, now)
    assert [(r["first_reply_business_seconds"], r["breached"], r["state"]) for r in rows] == [
        (5 * 3600, True, "answered"),
        (None, True, "breached"),  # Tue 10:00 + 4 h, unanswered by Friday
    ]
    engine = store.make_engine(config.database)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(store.outbox)).scalar_one() == 0
        )  # sent nothing
    engine.dispose()


def test_alerts_due_together_are_merged(gateway: tuple[Service, Config, Clock], sink: Sink,
                                        run_cli: Callable[..., Result]) -> None:  # fmt: skip
    service, config, clock = gateway
    deliver(service, config, customer_mail(1, subject="Fraud!"), "kim@customer.example")
    other = customer_mail(2, subject="Chargeback").replace(
        b"kim@customer.example", b"ole@customer.example"
    )
    deliver(service, config, other, "ole@customer.example")
    clock.now = at(2026, 11, 23, 9, 25)
    assert [t["reference"] for t in tickets(run_cli, config, clock.now, "--at-risk")] == [
        "SHOP-1001",
        "SHOP-1002",
    ]
    assert len(tickets(run_cli, config, clock.now, "--open")) == 2
    service.run_once()
    alerts = [d for d in sink.received if d.rcpt_tos == ["owner@shop.example"]]
    assert len(alerts) == 1
    body = alerts[0].message.get_payload(decode=True).decode()
    assert "SHOP-1001" in body and "SHOP-1002" in body
    assert alerts[0].message["Subject"] == "[sla-gateway] Reply promises: 2 due soon"


def test_tickets_table_fits_80_columns(
    gateway: tuple[Service, Config, Clock], run_cli: Callable[..., Result]
) -> None:
    service, config, clock = gateway
    long_subject = "A very long subject line about an order that went missing somewhere " * 3
    deliver(service, config, customer_mail(subject=long_subject.strip()), "kim@customer.example")
    result = run_cli("--config", str(config.path), "tickets", now=clock.now, env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.output.rstrip("\n").splitlines()
    assert "SHOP-1001" in result.output
    assert max(len(line) for line in lines) <= 80, lines


@pytest.mark.parametrize("layout", ["eml-folder", "maildir"])
def test_replay_reads_folders_and_maildirs(tmp_path: Path, database_url: str, run_cli: Callable[..., Result],
                                           layout: str) -> None:  # fmt: skip
    config = gateway_config(tmp_path, database_url)
    source = tmp_path / "saved"
    if layout == "maildir":
        box = mailbox.Maildir(source, create=True)
        box.add(customer_mail())
        box.add(team_mail(1, "c1@customer.example"))
    else:
        source.mkdir()
        (source / "b-reply.eml").write_bytes(
            team_mail(1, "c1@customer.example")
        )  # order by Date, not name
        (source / "a-question.eml").write_bytes(customer_mail())
    result = run_cli(
        "--config", str(config.path), "replay", str(source), now=at(2026, 11, 20, 12, 0)
    )
    assert result.exit_code == 0, result.output
    [ticket] = tickets(run_cli, config, at(2026, 11, 20, 12, 0))
    assert ticket["first_reply_business_seconds"] == 5 * 3600


def test_replies_read_late_from_the_sent_folder_keep_the_customer_waiting_message(
    gateway: tuple[Service, Config, Clock], run_cli: Callable[..., Result]
) -> None:
    """The team replied at 10:30, the customer wrote again at 10:31 (SMTP), and the Sent
    folder is read only after that: the reply closes the first clock, and the customer's
    10:31 message starts the next one."""
    from gateway.pipeline import Received

    service, config, clock = gateway
    deliver(service, config, customer_mail(), "kim@customer.example")  # Mon 09:00
    clock.now = at(2026, 11, 23, 10, 31)
    follow = customer_mail(2, subject="Re: Where is my parcel?", body="Any news?",
                           extra="In-Reply-To: <c1@customer.example>\r\n")  # fmt: skip
    deliver(service, config, follow, "kim@customer.example")
    clock.now = at(2026, 11, 23, 10, 32)
    service.pipeline.accept(Received(team_mail(1, "c1@customer.example"), "imap", at(2026, 11, 23, 10, 30),
                                     inbox="shop", from_sent_folder=True))  # fmt: skip
    service.run_once()
    [ticket] = tickets(run_cli, config, clock.now)
    assert ticket["first_reply_business_seconds"] == 90 * 60
    assert ticket["state"] == "awaiting_team"
    assert ticket["next_due_at"] == "2026-11-23T14:31:00+01:00"
    # An even older colleague's reply arriving now changes nothing.
    service.pipeline.accept(Received(team_mail(2, "c1@customer.example"), "imap", at(2026, 11, 23, 10, 0),
                                     inbox="shop", from_sent_folder=True))  # fmt: skip
    service.run_once()
    assert tickets(run_cli, config, clock.now)[0]["state"] == "awaiting_team"
