"""Every loop ends, over real sockets: a system that answers each acknowledgment from a new
address, quoting it, gets no acknowledgment and the owner hears once; the hourly circuit
breaker stops a loop that stays under the per-minute rate, also across restarts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import store
from gateway.config import Config
from gateway.pipeline import Received
from gateway.service import Service
from tests.mailtools import Clock, Delivered, Sink, gateway_config
from tests.test_intake_smtp import mail, rows, send, wait_processed

OWNER = "owner@shop.example"


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


def crm_answer(ack: Delivered, n: int) -> bytes:
    """What a ticket desk sends back: a new ticket, from a new address, our text quoted;
    no auto-reply header, no In-Reply-To/References, no tag in the subject."""
    quoted = "\n".join("> " + line for line in ack.message.get_body(("plain",)).get_content().splitlines())
    return mail(
        subject=f"Your request has been received (ticket {n})",
        sender=f"ticket-{n}@desk.crm.example",
        message_id=f"t{n}@desk.crm.example",
        body=f"Thank you for contacting us. Your ticket number is {n}.\n\n"
        f"--- original message ---\n{quoted}\n",
    )  # fmt: skip


def outbox(engine: sa.Engine, kind: str) -> list[str]:
    return [o.recipient for o in rows(engine, store.outbox) if o.kind == kind]


def test_a_system_answering_every_ack_from_a_new_address_gets_one_ack_per_address(
    gateway: Service, config: Config, sink: Sink
) -> None:
    seeds = [f"orders-{n}@shop-partner.example" for n in range(3)]
    for n, sender in enumerate(seeds):  # three tickets the other system forwards to us
        send(config, mail(sender=sender, message_id=f"s{n}@shop-partner.example",
                          subject=f"Order {n} question"), mail_from=sender)  # fmt: skip
    answered: set[str] = set()
    tickets = 0
    for _round in range(6):  # the other system answers every acknowledgment it gets
        wait_processed(gateway.engine, len(seeds) + tickets)
        acks = [d for d in sink.received if d.rcpt_tos != [OWNER]]
        if len(acks) < len(seeds):  # the seeds' acks are still on their way
            acks = [d for d in sink.wait_for(len(seeds)) if d.rcpt_tos != [OWNER]]
        new = [a for a in acks if a.rcpt_tos[0] not in answered]
        if not new:
            break
        for ack in new:
            answered.add(ack.rcpt_tos[0])
            tickets += 1
            reply = crm_answer(ack, tickets)
            send(config, reply, mail_from=f"ticket-{tickets}@desk.crm.example")
    wait_processed(gateway.engine, len(seeds) + tickets)
    acked = outbox(gateway.engine, "ack")
    assert sorted(acked) == seeds  # one each; the desk's tickets got none
    assert tickets == 3  # the loop ended at its first turn
    deadline = time.monotonic() + 15
    while not [d for d in sink.received if d.rcpt_tos == [OWNER]]:
        assert time.monotonic() < deadline, "the owner was not told"
        time.sleep(0.02)
    assert outbox(gateway.engine, "alert") == [OWNER]  # told once, not per ticket
    alert = next(d for d in sink.received if d.rcpt_tos == [OWNER]).message
    assert alert["Subject"] == "[sla-gateway] Someone answers our acknowledgments"
    assert "ticket-1@desk.crm.example" in alert.get_content()
    messages = rows(gateway.engine, store.messages)
    desk = [m for m in messages if (m.from_addr or "").endswith("@desk.crm.example")]
    assert [m.skip_rule for m in desk] == ["quotes-our-ack"] * 3
    assert all(m.conversation_id is None and not m.acknowledged for m in desk)
    assert "SHOP-100" in desk[0].skip_reason
    assert len(rows(gateway.engine, store.conversations)) == 3


def test_the_customer_quoting_their_ack_in_a_new_mail_continues_their_conversation(
    config: Config, clock: Clock, sink: Sink
) -> None:
    """No threading headers, a new subject, but the acknowledgment quoted: from its own
    customer that is a follow-up of that conversation, not a new one and not a loop."""
    service = Service(config, clock=clock)
    service.start()
    try:
        send(config, mail(message_id="q1@customer.example"))
        [ack] = sink.wait_for(1)
        clock.advance(timedelta(minutes=10))
        quoted = "\n".join("> " + line for line in ack.message.get_body(("plain",)).get_content().splitlines())
        send(config, mail(message_id="q2@customer.example", subject="One more thing",
                          body=f"I forgot: it is a gift.\n\n{quoted}\n"))  # fmt: skip
        wait_processed(service.engine, 2)
    finally:
        service.close()
    first, second = rows(service.engine, store.messages)
    assert (second.skip_rule, second.conversation_id) == ("follow-up", first.conversation_id)
    assert outbox(service.engine, "ack") == ["kim@customer.example"]
    assert outbox(service.engine, "alert") == []


def test_the_hourly_breaker_stops_a_slow_loop_and_alerts_once_across_restarts(
    tmp_path: Path, database_url: str, sink: Sink, clock: Clock
) -> None:
    """max_per_hour: a flood that stays under max_per_minute still trips the breaker; the
    count comes back from the outbox after a restart, and one alert covers the trip."""
    config = gateway_config(tmp_path, database_url, sink_port=sink.port,
                            extra={"max_per_hour = 200 ": "max_per_hour = 3 "})  # fmt: skip
    assert config.acknowledge.max_per_hour == 3

    def one(n: int) -> str | None:
        service = Service(config, clock=clock)  # a restart before each message
        service.start(workers=False)
        try:
            sender = f"h{n}@customer.example"
            service.pipeline.accept(Received(mail(sender=sender, message_id=f"h{n}@customer.example"),
                                             "smtp", clock(), sender, ("support@shop.example",)))  # fmt: skip
            service.run_once()
            skip: str | None = rows(service.engine, store.messages)[-1].skip_rule
            return skip
        finally:
            service.close()

    skips = []
    for n in range(6):  # one every five minutes: 12 an hour, far under 60 a minute
        skips.append(one(n))
        clock.advance(timedelta(minutes=5))
    assert skips == [None, None, None, "circuit-breaker", "circuit-breaker", "circuit-breaker"]
    clock.advance(timedelta(minutes=50))  # the first three are more than an hour old
    assert one(6) is None
    engine = store.make_engine(config.database)
    try:
        assert outbox(engine, "alert") == [OWNER]
        [reason] = {m.skip_reason for m in rows(engine, store.messages) if m.skip_rule}
        assert reason == "3 acknowledgments in the last hour"
    finally:
        engine.dispose()


# ------------------------------------------------------------------ people are not loops


def test_a_customers_second_unrelated_mail_is_acknowledged(
    gateway: Service, config: Config, sink: Sink, clock: Clock
) -> None:
    """once_per_sender must not silence a person: a new subject, no reply to us, two hours
    later, gets its own acknowledgment and reference; the daily limit still applies."""
    send(config, mail(message_id="u1@customer.example", subject="Where is my parcel?"))
    sink.wait_for(1)
    clock.advance(timedelta(hours=2))
    send(config, mail(message_id="u2@customer.example", subject="Can I pay by invoice?",
                      body="Hello, do you accept invoices for orders above 500 EUR?"))  # fmt: skip
    first, second = sink.wait_for(2)
    assert first.rcpt_tos == second.rcpt_tos == ["kim@customer.example"]
    assert second.message["In-Reply-To"] == "<u2@customer.example>"
    assert second.message["Subject"] == "Re: Can I pay by invoice? [SHOP-1002]"
    wait_processed(gateway.engine, 2)
    assert [m.skip_rule for m in rows(gateway.engine, store.messages)] == [None, None]


def _without(raw: bytes, header: bytes) -> bytes:
    return b"".join(line for line in raw.splitlines(keepends=True) if not line.startswith(header))


@pytest.mark.parametrize(
    ("case", "after", "expected"),
    [
        ("a person", timedelta(minutes=10), None),
        ("no Date header", timedelta(minutes=10), "no Date header"),
        ("no Message-ID", timedelta(minutes=10), "no Message-ID"),
        ("back within seconds", timedelta(seconds=30), "30 s after our acknowledgment"),
        ("machine mail before", timedelta(minutes=10), "machine mail (auto-submitted)"),
        ("the same subject", timedelta(minutes=10), "the subject repeats"),
    ],
)
def test_senders_that_look_automated_keep_once_per_sender(
    config: Config, clock: Clock, case: str, after: timedelta, expected: str | None
) -> None:
    service = Service(config, clock=clock)
    service.start(workers=False)

    def deliver(raw: bytes) -> None:
        service.pipeline.accept(Received(raw, "smtp", clock(), "kim@customer.example",
                                         ("support@shop.example",)))  # fmt: skip
        service.run_once()

    try:
        deliver(mail(message_id="a1@customer.example", subject="Where is my parcel?"))
        if case == "machine mail before":
            clock.advance(timedelta(minutes=1))
            deliver(mail(message_id="a2@customer.example", subject="Out of office",
                         extra="Auto-Submitted: auto-replied\r\n"))  # fmt: skip
        clock.advance(after)
        raw = mail(message_id="a3@customer.example", subject="Can I pay by invoice?")
        if case == "no Date header":
            raw = _without(raw, b"Date:")
        elif case == "no Message-ID":
            raw = _without(raw, b"Message-ID:")
        elif case == "the same subject":
            raw = mail(message_id="a3@customer.example", subject="Fwd: Where is my parcel?")
        deliver(raw)
        last = rows(service.engine, store.messages)[-1]
    finally:
        service.close()
    if expected is None:
        assert (last.skip_rule, last.acknowledged) == (None, True)
    else:
        assert last.skip_rule == "once-per-sender" and expected in last.skip_reason
        assert last.conversation_id is not None  # still a conversation the team must answer
