"""Resolution end to end over the real listener: a team reply copied to support+pending@
pauses the resolution clock, one copied to support+resolved@ resolves the conversation
with its business time; `sla-gateway set` does the same from the shell; a customer's own
mail to support+resolved@ is only customer mail; close_after resolves at the team's last
reply; a 24/7 priority counts every hour; a resolution warning and breach arrive once,
in the reply alerts' mail. The clock is the only thing faked."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from gateway import store
from gateway.config import Config
from gateway.service import Service
from tests.mailtools import Clock, Sink, gateway_config
from tests.test_tracking import AGENTS, at, customer_mail, stored, team_mail

RESOLVE = {'first_reply = "4h"\n': 'first_reply = "4h"\nresolve = "8h"\n'}


@pytest.fixture
def gateway(tmp_path: Path, database_url: str, sink: Sink) -> Iterator[tuple[Service, Config, Clock]]:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port, extra={**AGENTS, **RESOLVE})
    clock = Clock(at(2026, 11, 23, 9, 0))  # Monday
    service = Service(config, clock=clock)
    service.start(workers=False)
    yield service, config, clock
    service.close()


def send(service: Service, config: Config, raw: bytes, mail_from: str,
         rcpt: tuple[str, ...] = ("support@shop.example",)) -> None:  # fmt: skip
    assert config.listen is not None
    with service.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(store.messages)).scalar_one()
    with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
        client.sendmail(mail_from, list(rcpt), raw)
    stored(service.engine, before + 1)
    service.run_once()


def conversation(service: Service) -> Any:
    with service.engine.connect() as conn:
        return conn.execute(sa.select(store.conversations)).one()


def events(service: Service, kind: str) -> list[Any]:
    with service.engine.connect() as conn:
        e = store.events.c
        return list(conn.execute(sa.select(store.events).where(e.kind == kind).order_by(e.id)))


def reply_copied_to(n: int, command: str, body: str = "It is on its way.") -> bytes:
    raw = team_mail(n, "c1@customer.example", sender="anna@shop.example", body=body)
    return raw.replace(b"To: kim@customer.example\r\n",
                       f"To: kim@customer.example\r\nCc: support+{command}@shop.example\r\n".encode())  # fmt: skip


def test_pending_pauses_and_resolved_measures_the_resolution(
    gateway: tuple[Service, Config, Clock], sink: Sink
) -> None:
    service, config, clock = gateway
    send(service, config, customer_mail(), "kim@customer.example")  # Mon 09:00
    assert conversation(service).resolve_due_at == at(2026, 11, 23, 17, 0)  # 8 business hours
    clock.now = at(2026, 11, 23, 10, 0)
    send(service, config, reply_copied_to(1, "pending", "Which size did you order"), "anna@shop.example")
    c = conversation(service)
    assert (c.state, c.first_reply_business_seconds) == ("pending", 3600)
    assert (c.resolution_business_seconds, c.waiting_since, c.resolve_due_at) == (3600, at(2026, 11, 23, 10), None)
    clock.now = at(2026, 11, 24, 11, 0)  # the customer answers a day later: the clock runs again
    follow = customer_mail(2, subject="Re: Where is my parcel?", body="Size M.",
                           extra="In-Reply-To: <t1@shop-mail.example>\r\n")  # fmt: skip
    send(service, config, follow, "kim@customer.example")
    c = conversation(service)
    assert c.state == "awaiting_team"
    assert c.customer_wait_business_seconds == 9 * 3600  # Mon 10-17 and Tue 9-11
    assert c.resolve_due_at == at(2026, 11, 25, 10, 0)  # 7 h left: Tue 11-17, Wed 9-10
    clock.now = at(2026, 11, 24, 12, 30)
    send(service, config, reply_copied_to(3, "resolved", "Sent again today."), "anna@shop.example")
    c = conversation(service)
    assert c.state == "resolved" and c.resolved_at == at(2026, 11, 24, 12, 30)
    assert c.resolved_by == "anna@shop.example"
    assert c.resolution_business_seconds == 3600 + 90 * 60  # 1 h Monday, 1.5 h Tuesday
    assert not c.resolution_breached
    [command] = [e for e in events(service, "command") if '"resolved"' in e.detail]
    assert '"via": "address"' in command.detail
    # The acknowledgment went to the customer once; nothing was sent about the commands.
    assert [d.rcpt_tos for d in sink.received] == [["kim@customer.example"]]


def test_a_note_to_the_plus_address_alone_is_a_command_not_a_reply(
    gateway: tuple[Service, Config, Clock],
) -> None:
    service, config, clock = gateway
    send(service, config, customer_mail(), "kim@customer.example")
    clock.now = at(2026, 11, 23, 10, 0)
    note = (b"From: Anna <anna@shop.example>\r\nTo: support+resolved@shop.example\r\n"
            b"Subject: done [SHOP-1001]\r\nMessage-ID: <note1@shop-mail.example>\r\n\r\nok\r\n")  # fmt: skip
    send(service, config, note, "anna@shop.example", rcpt=("support@shop.example",))
    c = conversation(service)
    # No reply was measured from the note, but resolving ends the reply clock (settled
    # without a mail, an hour after receipt: within the 4 h).
    assert (c.state, c.first_reply_at, c.first_reply_business_seconds) == ("resolved", at(2026, 11, 23, 10), 3600)
    assert [e.kind for e in events(service, "team-command")] == ["team-command"]
    [command] = events(service, "command")
    assert '"settled_cycle": {"cycle": "first", "business_seconds": 3600, "met": true}' in command.detail


def test_a_customer_writing_to_the_plus_address_is_only_a_customer(
    gateway: tuple[Service, Config, Clock], sink: Sink
) -> None:
    service, config, _ = gateway
    raw = customer_mail().replace(b"To: support@shop.example", b"To: support+resolved@shop.example")
    send(service, config, raw, "kim@customer.example")
    c = conversation(service)
    assert c.state == "awaiting_team"
    [ack] = events(service, "acknowledged")
    assert '"ignored_commands": ["resolved"]' in ack.detail
    assert len(sink.wait_for(1)) == 1


def test_set_from_the_shell(gateway: tuple[Service, Config, Clock], run_cli: Callable[..., Result]) -> None:
    service, config, _ = gateway
    send(service, config, customer_mail(), "kim@customer.example")  # normal: due 13:00
    cli = ("--config", str(config.path), "set")
    result = run_cli(*cli, "shop-1001", "--priority", "urgent", "--note", "a payment problem",
                     now=at(2026, 11, 23, 9, 10))  # fmt: skip
    assert result.exit_code == 0, result.output
    c = conversation(service)
    assert (c.priority, c.priority_set_by, c.due_at) == ("urgent", "agent", at(2026, 11, 23, 9, 30))
    result = run_cli(*cli, "SHOP-1001", "--resolved", now=at(2026, 11, 23, 11, 0))
    assert result.exit_code == 0 and "resolved" in result.output, result.output
    assert conversation(service).state == "resolved"
    again = run_cli(*cli, "SHOP-1001", "--resolved", now=at(2026, 11, 23, 11, 5))
    assert again.exit_code == 0 and "no change" in again.output
    reopened = run_cli(*cli, "SHOP-1001", "--open", now=at(2026, 11, 23, 11, 10))
    assert reopened.exit_code == 0
    assert conversation(service).state == "answered"  # the resolution ended the reply clock
    unknown = run_cli(*cli, "SHOP-9", "--resolved")
    assert unknown.exit_code == 2
    assert unknown.output.strip() == "error: no conversation SHOP-9; `sla-gateway tickets` lists them"
    assert "Traceback" not in unknown.output
    nothing = run_cli(*cli, "SHOP-1001")
    assert nothing.exit_code == 2 and "nothing to set" in nothing.output
    bad = run_cli(*cli, "SHOP-1001", "--priority", "critical")
    assert bad.exit_code == 2 and "critical" in bad.output
    both = run_cli(*cli, "SHOP-1001", "--resolved", "--open")
    assert both.exit_code == 2 and "give only one of --resolved, --pending and --open" in both.output
    assert "SHOP-1001: answered → resolved" in run_cli(*cli, "SHOP-1001", "--resolved",
                                                       now=at(2026, 11, 23, 11, 20)).output


def test_close_after_resolves_at_the_last_team_reply(gateway: tuple[Service, Config, Clock]) -> None:
    service, config, clock = gateway
    send(service, config, customer_mail(), "kim@customer.example")
    clock.now = at(2026, 11, 23, 10, 0)
    send(service, config, team_mail(1, "c1@customer.example", sender="anna@shop.example"), "anna@shop.example")
    clock.now = at(2026, 12, 1, 10, 0)  # more than close_after (7 days) of silence
    service.run_once()
    c = conversation(service)
    assert (c.state, c.resolved_at, c.resolved_by) == ("resolved", at(2026, 11, 23, 10), "close_after")
    assert c.resolution_business_seconds == 3600


def test_a_round_the_clock_priority_counts_every_hour(tmp_path: Path, database_url: str, sink: Sink) -> None:
    extra = {**AGENTS, 'first_reply = "30m"\n': 'first_reply = "30m"\nclock = "24/7"\n'}
    config = gateway_config(tmp_path, database_url, sink_port=sink.port, extra=extra)
    clock = Clock(at(2026, 11, 21, 22, 0))  # Saturday night: the shop is closed
    service = Service(config, clock=clock)
    service.start(workers=False)
    try:
        urgent = customer_mail(subject="I was charged twice")
        send(service, config, urgent, "kim@customer.example")
        normal = customer_mail(2, subject="A question").replace(b"kim@", b"lee@")
        send(service, config, normal, "lee@customer.example")
        with service.engine.connect() as conn:
            rows = conn.execute(sa.select(store.conversations).order_by(store.conversations.c.id)).all()
        assert [(r.priority, r.due_at) for r in rows] == [
            ("urgent", at(2026, 11, 21, 22, 30)),  # 24/7: half an hour from now
            ("normal", at(2026, 11, 23, 13, 0)),  # business hours: Monday 09:00 + 4 h
        ]
        acks = sink.wait_for(2)
        assert "30 minutes" in acks[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    finally:
        service.close()


def test_the_resolution_warning_and_breach_arrive_once(
    gateway: tuple[Service, Config, Clock], sink: Sink
) -> None:
    service, config, clock = gateway
    send(service, config, customer_mail(), "kim@customer.example")  # resolve by 17:00
    clock.now = at(2026, 11, 23, 10, 0)
    send(service, config, team_mail(1, "c1@customer.example", sender="anna@shop.example"), "anna@shop.example")
    sink.wait_for(1)
    clock.now = at(2026, 11, 23, 15, 1)  # 75 % of 8 business hours: 15:00
    service.run_once()
    service.run_once()
    alerts = [d for d in sink.wait_for(2) if d.message["Subject"].startswith("[sla-gateway]")]
    assert len(alerts) == 1 and "due soon" in alerts[0].message["Subject"]
    assert "To be resolved soon" in alerts[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    clock.now = at(2026, 11, 23, 17, 1)  # missed, but the shop has closed: the alert waits
    service.run_once()
    assert conversation(service).resolution_breached
    assert len(sink.received) == 2
    clock.now = at(2026, 11, 24, 9, 1)
    service.run_once()
    service.run_once()
    alerts = [d for d in sink.wait_for(3) if d.message["Subject"].startswith("[sla-gateway]")]
    assert len(alerts) == 2 and "missed" in alerts[1].message["Subject"]
    assert "Not resolved in time" in alerts[1].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    clock.now = at(2026, 11, 24, 9, 30)
    service.run_once()
    assert len(sink.received) == 3  # nothing more


def test_pending_without_a_reply_ends_the_reply_clock(
    gateway: tuple[Service, Config, Clock], sink: Sink, run_cli: Callable[..., Result]
) -> None:
    """The team phoned the customer and now waits for them (`set --pending`): no reply is
    owed any more, so the scheduler raises no breach and the customer gets no breach
    notice later; the first reply is measured at that moment."""
    service, config, clock = gateway
    send(service, config, customer_mail(), "kim@customer.example")  # normal: reply due 13:00
    sink.wait_for(1)
    result = run_cli("--config", str(config.path), "set", "SHOP-1001", "--pending",
                     "--note", "phoned: waiting for the photos", now=at(2026, 11, 23, 10, 0))  # fmt: skip
    assert result.exit_code == 0, result.output
    c = conversation(service)
    assert (c.state, c.first_reply_at, c.first_reply_business_seconds) == ("pending", at(2026, 11, 23, 10), 3600)
    clock.now = at(2026, 11, 23, 14, 0)  # past the old deadline
    service.run_once()
    assert not events(service, "breached") and not conversation(service).breached
    assert len(sink.received) == 1  # the acknowledgment only: no alert, no notice


def test_a_resolution_missed_at_night_and_resolved_before_opening_raises_no_alert(
    gateway: tuple[Service, Config, Clock], sink: Sink, run_cli: Callable[..., Result]
) -> None:
    """The breach alert waits for opening hours; when the team resolves the case before
    then, there is nothing to alert about, and the scheduler goes on working."""
    service, config, clock = gateway
    send(service, config, customer_mail(), "kim@customer.example")  # resolve by 17:00
    clock.now = at(2026, 11, 23, 10, 0)
    send(service, config, team_mail(1, "c1@customer.example", sender="anna@shop.example"), "anna@shop.example")
    clock.now = at(2026, 11, 23, 17, 1)  # missed; the shop has closed: the alert waits
    service.run_once()
    assert conversation(service).resolution_breached
    result = run_cli("--config", str(config.path), "set", "SHOP-1001", "--resolved", now=at(2026, 11, 24, 8, 30))
    assert result.exit_code == 0, result.output
    clock.now = at(2026, 11, 24, 9, 1)
    service.run_once()
    assert [d.message["Subject"] for d in sink.received if "[sla-gateway]" in d.message["Subject"]] == []


def test_a_clock_stopped_past_its_target_is_missed_before_the_scheduler_looks(
    gateway: tuple[Service, Config, Clock], sink: Sink, run_cli: Callable[..., Result]
) -> None:
    """Set pending the next morning, before the scheduler ran since 17:00: the resolution
    was missed all the same (tickets and reports say so), and no alert follows."""
    service, config, clock = gateway
    send(service, config, customer_mail(), "kim@customer.example")  # resolve by 17:00
    clock.now = at(2026, 11, 23, 10, 0)
    send(service, config, team_mail(1, "c1@customer.example", sender="anna@shop.example"), "anna@shop.example")
    result = run_cli("--config", str(config.path), "set", "SHOP-1001", "--pending", now=at(2026, 11, 24, 9, 30))
    assert result.exit_code == 0, result.output
    c = conversation(service)
    assert (c.state, c.resolve_due_at, c.resolution_business_seconds) == ("pending", None, 8 * 3600 + 30 * 60)
    assert c.resolution_breached
    view = run_cli("--config", str(config.path), "tickets", "--json", now=at(2026, 11, 24, 9, 31))
    assert '"resolution_breached": true' in view.output
    clock.now = at(2026, 11, 24, 9, 32)
    service.run_once()
    assert [d.message["Subject"] for d in sink.received if "[sla-gateway]" in d.message["Subject"]] == []
