"""`sla-gateway tickets REF`: one conversation's timeline, end to end over the real listener.

A customer writes, the team replies with a copy to support+pending@ (the resolution clock
pauses), the customer answers a day later (it runs again), the team replies with a copy
to support+resolved@; the timeline lists each step with its business-time figures, and
`--json` says the same as one object. A second conversation misses its promises: the
warning, the breach, the owner's alerts and the honest notice to the customer are on
its timeline. An unknown reference is one line and exit status 2. The clock is the only
thing faked."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from gateway.config import Config
from gateway.service import Service
from tests.mailtools import Clock, Sink, gateway_config
from tests.test_resolution import RESOLVE, reply_copied_to, send
from tests.test_tracking import AGENTS, at, customer_mail, team_mail

NOTIFY = {"notify_customer = false ": "notify_customer = true "}


@pytest.fixture
def gateway(tmp_path: Path, database_url: str, sink: Sink) -> Iterator[tuple[Service, Config, Clock]]:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port,
                            extra={**AGENTS, **RESOLVE, **NOTIFY})  # fmt: skip
    clock = Clock(at(2026, 11, 23, 9, 0))  # Monday
    service = Service(config, clock=clock)
    service.start(workers=False)
    yield service, config, clock
    service.close()


def view(run_cli: Callable[..., Result], config: Config, reference: str, now: Any) -> dict[str, Any]:
    result = run_cli("--config", str(config.path), "tickets", reference, "--json", now=now)
    assert result.exit_code == 0, result.output
    value = json.loads(result.output)
    assert isinstance(value, dict)
    return value


def entries(value: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in value["timeline"] if e["kind"] == kind]


def test_the_timeline_of_a_conversation_paused_and_resolved_by_address(
    gateway: tuple[Service, Config, Clock], sink: Sink, run_cli: Callable[..., Result]
) -> None:
    service, config, clock = gateway
    send(service, config, customer_mail(), "kim@customer.example")  # Mon 09:00
    sink.wait_for(1)
    service.run_once()
    clock.now = at(2026, 11, 23, 10, 0)
    send(service, config, reply_copied_to(1, "pending", "Which size did you order"), "anna@shop.example")
    clock.now = at(2026, 11, 24, 11, 0)
    follow = customer_mail(2, subject="Re: Where is my parcel?", body="Size M.",
                           extra="In-Reply-To: <t1@shop-mail.example>\r\n")  # fmt: skip
    send(service, config, follow, "kim@customer.example")
    clock.now = at(2026, 11, 24, 12, 30)
    send(service, config, reply_copied_to(3, "resolved", "Sent again today."), "anna@shop.example")

    value = view(run_cli, config, "shop-1001", at(2026, 11, 24, 13, 0))
    assert (value["reference"], value["state"], value["resolved_by"]) == ("SHOP-1001", "resolved", "anna@shop.example")
    assert value["resolution_business_seconds"] == 3600 + 90 * 60
    assert value["customer_wait_business_seconds"] == 9 * 3600
    kinds = [e["kind"] for e in value["timeline"]]
    assert kinds == [
        "received", "acknowledgment",  # Mon 09:00
        "reply", "command", "paused",  # Mon 10:00
        "customer-message", "not-acknowledged", "resumed",  # Tue 11:00
        "reply", "command", "resolved",  # Tue 12:30
    ], kinds
    received, ack, first, pend, paused, wrote, quiet, resumed, second, command, resolved = value["timeline"]
    assert quiet["rule"] == "follow-up" and "not acknowledged: rule follow-up" in quiet["text"]
    assert received["at"] == "2026-11-23T09:00:00+01:00" and received["from"] == "kim@customer.example"
    assert ack["status"] == "sent" and ack["recipient"] == "kim@customer.example"
    assert (first["cycle"], first["business_seconds"], first["target_seconds"], first["met"]) == ("first", 3600, 4 * 3600, True)
    assert "first reply in 1 hour of business time, on time (promised within 4 hours)" in first["text"]
    assert (pend["command"], pend["by"], pend["via"], pend["state"]) == ("pending", "anna@shop.example", "address", "pending")
    assert paused["at"] == "2026-11-23T10:00:00+01:00"
    assert resumed["waited_business_seconds"] == 9 * 3600 and "9 hours" in resumed["text"]
    assert wrote["from"] == "kim@customer.example"
    assert (second["cycle"], second["business_seconds"], second["met"]) == ("next", 90 * 60, True)
    assert command["command"] == "resolved"
    assert resolved["resolution_business_seconds"] == 3600 + 90 * 60
    assert resolved["customer_wait_business_seconds"] == 9 * 3600
    assert "2 hours 30 minutes of business time" in resolved["text"] and "9 hours waiting" in resolved["text"]
    assert resolved["text"].endswith("; target 8 hours, met")

    text = run_cli("--config", str(config.path), "tickets", "SHOP-1001", now=at(2026, 11, 24, 13, 0))
    assert text.exit_code == 0, text.output
    assert "resolved Tue 24 Nov 2026 12:30 by anna@shop.example: 2 hours 30 minutes of business time" in text.output
    assert "Mon 23 Nov 2026 10:00  reply from anna@shop.example: first reply in 1 hour" in text.output
    assert "+pending: set pending (waiting for the customer), by anna@shop.example by address" in text.output


def test_the_timeline_shows_warnings_breaches_alerts_and_the_notice(
    gateway: tuple[Service, Config, Clock], sink: Sink, run_cli: Callable[..., Result]
) -> None:
    service, config, clock = gateway
    send(service, config, customer_mail(), "kim@customer.example")  # reply due 13:00, resolve by 17:00
    sink.wait_for(1)
    clock.now = at(2026, 11, 23, 12, 1)  # past the warning (75 % of 4 h: 12:00)
    service.run_once()
    clock.now = at(2026, 11, 23, 13, 1)  # missed
    service.run_once()
    service.run_once()
    clock.now = at(2026, 11, 23, 14, 0)
    send(service, config, team_mail(1, "c1@customer.example", sender="anna@shop.example"), "anna@shop.example")
    clock.now = at(2026, 11, 23, 17, 1)  # the resolution promise passes too
    service.run_once()

    value = view(run_cli, config, "SHOP-1001", at(2026, 11, 23, 17, 30))
    kinds = [e["kind"] for e in value["timeline"]]
    assert kinds == [
        "received", "acknowledgment",
        "warning",  # 12:01, the owner is warned
        "breached", "alert", "notice",  # 13:01: missed; the owner and the customer are told
        "reply",  # 14:00, late
        "resolution-breached",  # 17:01 (the alert waits for opening hours)
    ], kinds
    reply = entries(value, "reply")[0]
    assert (reply["business_seconds"], reply["met"]) == (5 * 3600, False)
    assert "late by 1 hour" in reply["text"]
    [notice] = entries(value, "notice")
    assert (notice["notice"], notice["recipient"]) == ("breach", "kim@customer.example")
    assert value["resolution_breached"] is True and value["state"] == "answered"
    assert value["resolution_business_seconds"] == 8 * 3600  # counted to now: the shop closed at 17:00


def test_an_unknown_reference_is_one_line(gateway: tuple[Service, Config, Clock],
                                          run_cli: Callable[..., Result]) -> None:  # fmt: skip
    _, config, _ = gateway
    result = run_cli("--config", str(config.path), "tickets", "SHOP-9")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: no conversation SHOP-9; `sla-gateway tickets` lists them"]
    both = run_cli("--config", str(config.path), "tickets", "SHOP-9", "--open")
    assert both.exit_code == 2 and "Traceback" not in both.output


def test_commands_from_the_shell_and_a_reopening_are_on_the_timeline(
    gateway: tuple[Service, Config, Clock], sink: Sink, run_cli: Callable[..., Result]
) -> None:
    service, config, clock = gateway
    send(service, config, customer_mail(), "kim@customer.example")  # normal
    cli = ("--config", str(config.path), "set", "SHOP-1001")
    assert run_cli(*cli, "--priority", "urgent", "--note", "a payment problem", now=at(2026, 11, 23, 9, 10)).exit_code == 0
    assert run_cli(*cli, "--note", "called the bank", now=at(2026, 11, 23, 9, 20)).exit_code == 0
    assert run_cli(*cli, "--resolved", now=at(2026, 11, 23, 11, 0)).exit_code == 0
    clock.now = at(2026, 11, 24, 10, 0)  # the customer writes again: open again
    again = customer_mail(2, subject="Re: Where is my parcel?", body="Still nothing.",
                          extra="In-Reply-To: <c1@customer.example>\r\n")  # fmt: skip
    send(service, config, again, "kim@customer.example")
    value = view(run_cli, config, "SHOP-1001", at(2026, 11, 24, 10, 30))
    kinds = [e["kind"] for e in value["timeline"]]
    assert kinds[kinds.index("received") + 1:] == [
        "acknowledgment", "command", "note", "note", "command",
        # resolved without a mail: the first reply's clock ends there, late (urgent: 09:30)
        "settled", "resolved",
        "customer-message", "not-acknowledged", "resumed",
    ], kinds
    [settled] = entries(value, "settled")
    assert (settled["cycle"], settled["business_seconds"], settled["met"]) == ("first", 2 * 3600, False)
    assert "priority normal (nothing matched" in entries(value, "received")[0]["text"]  # as it was decided
    priority, note, later, resolve, resolved = (e for e in value["timeline"] if e["kind"] in ("command", "note", "resolved"))
    assert (priority["command"], priority["via"], priority["by"].startswith("cli:")) == ("urgent", "cli", True)
    assert "priority set to urgent (was normal)" in priority["text"] and "from the command line" in priority["text"]
    assert (note["note"], later["note"]) == ("a payment problem", "called the bank")
    assert resolve["command"] == "resolved"
    assert resolved["resolution_business_seconds"] == 2 * 3600  # Mon 09:00-11:00
    assert "; target 8 hours, met" in resolved["text"]  # urgent: resolve within 8h
    reopened = entries(value, "customer-message")[0]
    assert "open again" in reopened["text"]
    resumed = entries(value, "resumed")[0]
    assert resumed["waited_business_seconds"] == 7 * 3600  # Mon 11-17, Tue 9-10
    # The next reply (urgent: 30 minutes from Tuesday 10:00) is due as the view is taken.
    assert (value["state"], value["resolved_at"], value["priority_set_by"]) == ("breached", None, "agent")
    assert value["resolution_business_seconds"] == 2 * 3600 + 30 * 60  # running again since 10:00


def test_durations_in_words() -> None:
    from gateway.reports import in_words

    assert [in_words(s) for s in (None, 0, 1, 59, 60, 90, 3600, 5400, 26 * 3600 + 60)] == [
        "—", "0 seconds", "1 second", "59 seconds", "1 minute", "2 minutes", "1 hour",
        "1 hour 30 minutes", "26 hours 1 minute",
    ]  # fmt: skip
