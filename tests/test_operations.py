"""Operating the gateway: `status` and `retry`, through the CLI, against a real database
and a real SMTP peer."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result

from gateway import store
from gateway.pipeline import Received
from gateway.service import Service
from tests.mailtools import Sink, gateway_config, init_credentials

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_status_and_retry(
    tmp_path: Path, database_url: str, sink: Sink, run_cli: Callable[..., Result]
) -> None:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port)
    cli = ("--config", str(config.path))
    before = run_cli(*cli, "status", now=NOW)
    assert before.exit_code == 0, before.output
    assert "service: NOT running" in before.output

    sink.reply = "550 5.1.1 No such user"  # the first acknowledgment fails permanently
    service = Service(config, clock=lambda: NOW)
    service.start(workers=False)
    try:
        pipeline = service.pipeline
        ok, _ = pipeline.accept(Received(b"From: kim@customer.example\r\nSubject: Hi\r\nMessage-ID: <s1@c.example>\r\n"
                                         b"\r\nHello\r\n", "smtp", NOW, "kim@customer.example",
                                         ("support@shop.example",)))  # fmt: skip
        junk, _ = pipeline.accept(
            Received(b"\x00\x01 not mail", "smtp", NOW, "x@y.example", ("support@shop.example",))
        )
        assert ok and junk
        service.run_once()
        info = json.loads(run_cli(*cli, "status", "--json", now=NOW).output)
        assert info["running"] is True
        # Failed: the acknowledgment and the owner's alert about the junk set aside.
        assert (info["outbox_failed"], info["messages_set_aside"]) == (2, 1)
        text = run_cli(*cli, "status", now=NOW).output
        assert "service: running (pid" in text
        assert "outbox: 0 pending, 2 failed — fix the cause, then run `sla-gateway retry`" in text
    finally:
        service.close()
    assert "service: NOT running" in run_cli(*cli, "status", now=NOW).output

    sink.reply = "250 2.0.0 OK"  # the operator fixed the cause
    result = run_cli(*cli, "retry", now=NOW)
    assert (
        "1 set-aside messages processed again (1 set aside again); 2 failed outbox messages requeued; 2 sent now"
        in result.output
    )
    assert result.exit_code == 1  # the junk is still junk: said, not hidden
    assert sorted(d.rcpt_tos[0] for d in sink.received) == ["kim@customer.example", "owner@shop.example"]
    engine = store.make_engine(config.database)
    with engine.connect() as conn:
        assert [r.status for r in conn.execute(store.outbox.select())] == ["sent", "sent"]
    engine.dispose()


@pytest.mark.parametrize("fmt", ["markdown", "html", "text"])
def test_policy_publishes_what_is_measured(
    run_cli: Callable[..., Result], tmp_path: Path, fmt: str
) -> None:
    from tests.conftest import EXAMPLE

    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    out = tmp_path / f"policy.{fmt}"
    result = run_cli(
        "--config", str(EXAMPLE), "policy", "--format", fmt, "--out", str(out), now=now
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "Urgent, e.g. fraud, charged twice, chargeback, hacked" in text
    assert (
        "30 business minutes" in text
        and "4 business hours" in text
        and "24 business hours" in text
    )
    assert "Monday–Friday: 9:00\u202fAM–5:00\u202fPM" in text and "Europe/Berlin" in text
    assert "Friday, December 25, 2026: Christmas Day" in text
    assert "Black Friday week" in text and "It is our busiest week of the year" in text
    assert "Reply times are twice as long." in text and "2 times" not in text
    # Highest first, the default ("Everything else", which no keyword picks) last.
    order = [text.index(label) for label in ("Urgent, e.g.", "High, e.g.", "Low, e.g.", "Everything else")]
    assert order == sorted(order)
    if fmt == "html":  # a complete page, its promise in a <section> to paste elsewhere
        assert text.startswith("<!doctype html>\n<html lang=\"en\">")
        assert '<meta charset="utf-8">' in text and 'name="viewport"' in text
        assert "<title>Our customer service promise</title>" in text
        assert '<section class="service-promise" lang="en">' in text and text.rstrip().endswith("</html>")


@pytest.mark.parametrize("fmt", ["markdown", "html", "text"])
def test_the_policy_states_resolution_targets_and_which_priority_counts_every_hour(
    run_cli: Callable[..., Result], tmp_path: Path, fmt: str
) -> None:
    """The resolution targets (issue 15) are published beside the reply windows, and a
    `clock = "24/7"` priority says so, in plain hours, while the others keep business time."""
    from tests.conftest import example_text

    text = example_text().replace('first_reply = "30m"\n', 'first_reply = "30m"\nclock = "24/7"\n', 1)
    config = tmp_path / "gateway.toml"
    config.write_text(text, encoding="utf-8")
    out = tmp_path / f"policy.{fmt}"
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    result = run_cli("--config", str(config), "policy", "--format", fmt, "--out", str(out), now=now)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "30 minutes, around the clock" in page and "1 business hour" in page
    assert "counted in our opening hours" in page  # the others still are
    settled = page.index("How long until your case is settled")
    assert "8 hours" in page[settled:] and "16 business hours" in page[settled:]  # urgent 8h (24/7), high 16h
    assert "Everything else" not in page[settled:page.index("Opening hours", settled)]  # no target: not listed


def test_a_shop_open_around_the_clock(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    """24/7: "open around the clock", never "midnight–midnight", in the policy, the
    acknowledgment's hours and `check`."""
    from tests.conftest import example_text

    text = example_text().replace('sun = "closed" ', 'sun = "00:00-24:00" ', 1)
    for day, hours in (("mon", "09:00-17:00"), ("tue", "09:00-17:00"), ("wed", "09:00-17:00"),
                       ("thu", "09:00-17:00"), ("fri", "09:00-17:00"), ("sat", "10:00-14:00")):  # fmt: skip
        text = text.replace(f'{day} = "{hours}"', f'{day} = "00:00-24:00"', 1)
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    policy = run_cli("--config", str(config), "policy", "--format", "text", now=now).output
    assert "Every day: open around the clock" in policy and "midnight" not in policy
    check = run_cli("--config", str(config), "check", now=now).output
    assert "around the clock" in check and "00:00–24:00" not in check
    german = config.read_text().replace('language = "en"', 'language = "de"', 1)
    config.write_text(german)
    policy = run_cli("--config", str(config), "policy", "--format", "text", now=now).output
    assert "Täglich: rund um die Uhr geöffnet" in policy and "24:00" not in policy


def test_a_round_the_clock_priority_is_promised_in_plain_time(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    """`clock = "24/7"`: "30 minutes", not "30 business minutes"; the others keep theirs."""
    from tests.conftest import example_text

    config = tmp_path / "gateway.toml"
    config.write_text(example_text().replace('first_reply = "30m"', 'first_reply = "30m"\nclock = "24/7"', 1))
    policy = run_cli("--config", str(config), "policy", "--format", "text",
                     now=datetime(2026, 11, 22, 12, 0, tzinfo=UTC)).output  # fmt: skip
    # Beside priorities counted in opening hours, it says that this one counts every hour.
    assert "chargeback, hacked: 30 minutes, around the clock\n" in policy
    assert "never arrived: 1 business hour\n" in policy and "Everything else: 4 business hours" in policy


@pytest.mark.parametrize(
    "provider", ["gmail", "fastmail", "microsoft365", "imap", "smtp-forwarding"]
)
def test_init_writes_a_config_that_passes_check(
    run_cli: Callable[..., Result], tmp_path: Path, provider: str
) -> None:
    target = tmp_path / "conf"
    result = run_cli("init", "--dir", str(target), "--non-interactive", "--shop", 'Beans & "Co"',
                     "--address", "help@beans.example", "--timezone", "America/New_York", "--country", "US",
                     "--provider", provider, *(["--imap-host", "mail.beans.example"] if provider == "imap" else []))  # fmt: skip
    assert result.exit_code == 0, result.output
    config_file = target / "gateway.toml"
    assert (target / "templates" / "ack.txt.j2").exists()
    if provider != "smtp-forwarding":  # the next step init names: the password files
        missing = run_cli("--config", str(config_file), "check", env={"CREDENTIALS_DIRECTORY": None})
        assert missing.exit_code == 2 and "$CREDENTIALS_DIRECTORY is not set" in missing.output
    check = run_cli("--config", str(config_file), "check", env=init_credentials(tmp_path))
    assert check.exit_code == 0, check.output
    assert (
        "inbox helpbeans: help@beans.example" in check.output
        or "help@beans.example" in check.output
    )
    text = config_file.read_text()
    if provider == "gmail":
        assert 'host = "imap.gmail.com"' in text and 'host = "smtp.gmail.com"' in text
    if provider == "smtp-forwarding":
        assert "[listen]" in text and "[inbox.imap]" not in text
    again = run_cli("init", "--dir", str(target), "--non-interactive")
    assert again.exit_code == 2 and "exists; use --force" in again.output


def test_init_asks_when_interactive(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    answers = "Tea Shop\nsupport@tea.example\nen\nEurope/Paris\nFR\n10:00-18:00\nfastmail\n"
    result = run_cli("init", "--dir", str(tmp_path / "c"), input=answers)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "c" / "gateway.toml").read_text()
    assert (
        'timezone = "Europe/Paris"' in text
        and 'holidays = "FR"' in text
        and 'mon = "10:00-18:00"' in text
    )
    check = run_cli("--config", str(tmp_path / "c" / "gateway.toml"), "check", env=init_credentials(tmp_path))
    assert check.exit_code == 0, check.output


def test_retention_purges_bodies_and_keeps_figures(tmp_path: Path, database_url: str) -> None:
    from datetime import timedelta

    from gateway.scheduler import Scheduler

    config = gateway_config(
        tmp_path, database_url, extra={"retention_days = 365": "retention_days = 30"}
    )
    clock = {"now": NOW}
    service = Service(config, clock=lambda: clock["now"])
    service.start(workers=False)
    try:
        raw = b"From: kim@customer.example\r\nSubject: Hi\r\nMessage-ID: <r1@c.example>\r\n\r\nHello\r\n"
        service.pipeline.accept(
            Received(raw, "smtp", NOW, "kim@customer.example", ("support@shop.example",))
        )
        service.run_once()
        scheduler = Scheduler(config, service.engine, lambda: clock["now"], service.pipeline)
        assert scheduler.purge(NOW + timedelta(days=29), force=True) == 0
        assert (
            scheduler.purge(NOW + timedelta(days=31), force=True) == 2
        )  # the mail and our acknowledgment
        with service.engine.connect() as conn:
            message = conn.execute(store.messages.select()).one()
            conversation = conn.execute(store.conversations.select()).one()
        assert message.raw is None and message.sha256 and message.subject == "Hi"
        assert conversation.reference == "SHOP-1001"
    finally:
        service.close()


def test_deliver_hands_saved_mail_to_the_listener(tmp_path: Path, database_url: str, sink: Sink,
                                                  run_cli: Callable[..., Result]) -> None:  # fmt: skip
    from tests.conftest import DATA

    config = gateway_config(tmp_path, database_url, sink_port=sink.port)
    service = Service(config, clock=lambda: NOW)
    service.start(workers=False)
    try:
        files = [
            str(DATA / "customer" / "gmail_plain_refund.eml"),
            str(DATA / "machine" / "bounce_postfix.eml"),
        ]
        result = run_cli("--config", str(config.path), "deliver", *files)
        assert result.exit_code == 0, result.output
        assert result.output.count(": delivered") == 2
        service.run_once()
        assert [d.rcpt_tos for d in sink.received] == [
            ["anna.schmidt@gmail.example"]
        ]  # the bounce got nothing
        bad = run_cli(
            "--config", str(config.path), "deliver", "--to", "stranger@elsewhere.example", files[0]
        )
        assert bad.exit_code == 1 and "refused" in bad.output
    finally:
        service.close()


def test_retry_leaves_the_sending_to_a_running_service(
    run_cli: Callable[..., Result], tmp_path: Path, database_url: str, sink: Sink
) -> None:
    """Never two senders on one outbox: with the service running, `retry` only requeues,
    and the service sends (once)."""
    config = gateway_config(tmp_path, database_url, sink_port=sink.port)
    sink.reply = "550 5.1.1 No such user"
    service = Service(config, clock=lambda: NOW)
    service.start(workers=False)
    try:
        service.pipeline.accept(Received(b"From: kim@customer.example\r\nSubject: Hi\r\nMessage-ID: <r1@c.example>\r\n"
                                         b"\r\nHello\r\n", "smtp", NOW, "kim@customer.example",
                                         ("support@shop.example",)))  # fmt: skip
        service.run_once()
        sink.reply = "250 2.0.0 OK"
        result = run_cli("--config", str(config.path), "retry", now=NOW)
        assert result.exit_code == 0, result.output
        assert "1 failed outbox messages requeued; the running service processes and sends them" in result.output
        assert sink.received == []
        service.run_once()
        assert len(sink.received) == 1
    finally:
        service.close()
