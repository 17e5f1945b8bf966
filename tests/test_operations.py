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
from tests.mailtools import Sink, gateway_config

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
        assert (info["outbox_failed"], info["messages_set_aside"]) == (1, 1)
        text = run_cli(*cli, "status", now=NOW).output
        assert "service: running (pid" in text
        assert "outbox: 0 pending, 1 failed — fix the cause, then run `sla-gateway retry`" in text
    finally:
        service.close()
    assert "service: NOT running" in run_cli(*cli, "status", now=NOW).output

    sink.reply = "250 2.0.0 OK"  # the operator fixed the cause
    result = run_cli(*cli, "retry", now=NOW)
    assert (
        "1 set-aside messages processed again (1 set aside again); 1 failed outbox messages requeued; 1 sent now"
        in result.output
    )
    assert result.exit_code == 1  # the junk is still junk: said, not hidden
    assert len(sink.received) == 1
    engine = store.make_engine(config.database)
    with engine.connect() as conn:
        assert conn.execute(store.outbox.select()).one().status == "sent"
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
        "30 minutes (business time)" in text
        and "4 business hours" in text
        and "24 business hours" in text
    )
    assert "Monday–Friday: 9:00\u202fAM–5:00\u202fPM" in text and "Europe/Berlin" in text
    assert "Friday, December 25, 2026: Christmas Day" in text
    assert "Black Friday week" in text and "It is our busiest week of the year" in text
    if fmt == "html":
        assert text.lstrip().startswith("<section")
