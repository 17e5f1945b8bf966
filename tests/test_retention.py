"""Retention deletes what no figure needs, so the tables a year of mail fills stop
growing: old acknowledgments' outbox rows and the reply keys of team replies that never
matched go, and so do the UIDs of IMAP messages long gone from their folder; every figure of
`report` stays the same, and nothing the rate limits or the
sender still need is touched."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result

from gateway import store
from gateway.config import Config
from gateway.model import Received
from gateway.service import Service
from tests.mailtools import Clock, gateway_config

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)  # a Monday, open


def customer(n: int, at: datetime = T0) -> Received:
    raw = (
        f"From: Customer {n} <c{n}@customer.example>\r\nTo: support@shop.example\r\n"
        f"Subject: Parcel {n}\r\nDate: Mon, 05 Oct 2026 10:00:00 +0200\r\n"
        f"Message-ID: <p{n}@customer.example>\r\n\r\nWhere is parcel {n}?\r\n"
    ).encode()
    return Received(raw, "smtp", at, f"c{n}@customer.example", ("support@shop.example",))


def unmatched_team_reply(n: int, at: datetime) -> Received:
    raw = (
        f"From: team@shop.example\r\nTo: someone{n}@customer.example\r\nSubject: Re: Hello {n}\r\n"
        f"Date: Mon, 05 Oct 2026 10:00:00 +0200\r\nMessage-ID: <t{n}@shop.example>\r\n"
        f"In-Reply-To: <never{n}@customer.example>\r\n\r\nThanks.\r\n"
    ).encode()
    return Received(raw, "imap", at, inbox="support", from_sent_folder=True)


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    return gateway_config(tmp_path, database_url,
                          extra={"retention_days = 365": "retention_days = 30"})  # fmt: skip


@pytest.fixture
def service(config: Config) -> Iterator[tuple[Service, Clock]]:
    clock = Clock(T0)
    service = Service(config, clock=clock)
    service.start(workers=False)
    yield service, clock
    service.close()


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            "acks": conn.execute(sa.select(sa.func.count()).select_from(store.outbox)
                                 .where(store.outbox.c.kind == "ack")).scalar_one(),
            "reply_keys": conn.execute(sa.select(sa.func.count()).select_from(store.reply_keys)).scalar_one(),
            "messages": conn.execute(sa.select(sa.func.count()).select_from(store.messages)).scalar_one(),
            "conversations": conn.execute(sa.select(sa.func.count()).select_from(store.conversations)).scalar_one(),
        }  # fmt: skip


def test_old_acknowledgments_and_dead_reply_keys_go_and_the_figures_stay(
    service: tuple[Service, Clock], config: Config, run_cli: Callable[..., Result]
) -> None:
    gateway, clock = service
    for n in range(4):
        gateway.pipeline.accept(customer(n))
    gateway.pipeline.accept(unmatched_team_reply(1, T0))
    gateway.run_once()
    clock.advance(timedelta(days=29, hours=1))  # recent mail, kept whatever happens
    gateway.pipeline.accept(customer(9, clock()))
    gateway.pipeline.accept(unmatched_team_reply(2, clock()))
    gateway.run_once()

    def report() -> dict[str, object]:
        result = run_cli("--config", str(config.path), "report", "--since", "2026-10-01",
                         "--until", "2026-11-30", "--json", now=clock())  # fmt: skip
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.output))

    clock.advance(timedelta(days=2))  # T0 + 31 days: the first mail is past retention
    before, figures = counts(gateway.engine), report()
    assert (before["acks"], before["reply_keys"], figures["acknowledged"]) == (5, 4, 5)
    assert gateway.scheduler.purge(clock(), force=True) > 0
    after = counts(gateway.engine)
    assert after["acks"] == 1  # the recent one
    assert after["reply_keys"] == 2  # the recent unmatched reply's (its recipient, its id)
    assert (after["messages"], after["conversations"]) == (before["messages"], before["conversations"])
    assert report() == figures  # every figure, counted from what stays
    with gateway.engine.connect() as conn:
        event = conn.execute(sa.select(store.events.c.detail).where(store.events.c.kind == "purged")).scalar_one()
    assert json.loads(event)["acks_deleted"] == 4
    assert gateway.scheduler.purge(clock(), force=True) == 0  # nothing left to do
    # The timeline still says the first customer was acknowledged, and why no more is known.
    view = run_cli("--config", str(config.path), "tickets", "SHOP-1001", "--json", now=clock())
    assert view.exit_code == 0, view.output
    [ack] = [e for e in json.loads(view.output)["timeline"] if e["kind"] == "acknowledgment"]
    assert ack["status"] == "purged" and "past retention_days" in ack["text"]
    recent = run_cli("--config", str(config.path), "tickets", "SHOP-1005", "--json", now=clock())
    [ack] = [e for e in json.loads(recent.output)["timeline"] if e["kind"] == "acknowledgment"]
    assert ack["status"] == "sent" and ack["recipient"] == "c9@customer.example"


def test_what_the_sender_and_the_rate_limits_need_stays(tmp_path: Path, database_url: str) -> None:
    config = gateway_config(tmp_path, database_url, extra={
        "retention_days = 365": "retention_days = 1", 'once_per_sender = "24h"': 'once_per_sender = "72h"',
    })  # fmt: skip
    clock = Clock(T0)
    gateway = Service(config, clock=clock)
    gateway.start(workers=False)
    try:
        gateway.pipeline.accept(customer(1))
        gateway.pipeline.accept(customer(2))
        gateway.pipeline.process_pending()
        with store.begin(gateway.engine) as conn:  # one still waiting, one given up
            rows = conn.execute(sa.select(store.outbox.c.id).order_by(store.outbox.c.id)).scalars().all()
            conn.execute(store.outbox.update().where(store.outbox.c.id == rows[1]).values(status="failed"))
        clock.advance(timedelta(days=3, hours=-1))  # past retention, within once_per_sender
        gateway.scheduler.purge(clock(), force=True)
        assert counts(gateway.engine)["acks"] == 2
        gateway.sender.send_due()  # the pending one goes out now ...
        clock.advance(timedelta(days=2))  # ... and is deleted once the rate limits are past it
        gateway.scheduler.purge(clock(), force=True)
        with gateway.engine.connect() as conn:
            left = conn.execute(sa.select(store.outbox.c.status, store.outbox.c.raw)).all()
        [(status, raw)] = left
        assert status == "failed" and raw.startswith(b"Content-Type")  # `retry` can still send it
    finally:
        gateway.close()


def test_uids_of_messages_long_gone_from_their_folder_go(service: tuple[Service, Clock]) -> None:
    """The IMAP poller reads what is still present in a folder at every sync: a message
    archived before the cutoff leaves no row behind; present ones and recent departures stay."""
    gateway, clock = service
    for n in range(3):
        gateway.pipeline.accept(customer(n))
    gateway.run_once()
    with store.begin(gateway.engine) as conn:
        rows = conn.execute(sa.select(store.messages.c.id).order_by(store.messages.c.id)).scalars().all()
        for uid, row in enumerate(rows, start=1):
            store.remember_uid(conn, row, inbox="shop", folder="INBOX", uidvalidity=7, uid=uid, at=T0)
        store.mark_left(conn, "shop", "INBOX", 7, [1], T0 + timedelta(days=1))  # archived long ago
        store.mark_left(conn, "shop", "INBOX", 7, [2], T0 + timedelta(days=25))  # recently
    clock.advance(timedelta(days=32))  # the cutoff is T0 + 2 days
    gateway.scheduler.purge(clock(), force=True)
    with gateway.engine.connect() as conn:
        left = conn.execute(sa.select(store.folder_uids.c.uid).order_by(store.folder_uids.c.uid)).scalars().all()
        event = conn.execute(sa.select(store.events.c.detail).where(store.events.c.kind == "purged")).scalar_one()
        assert store.present_uids(conn, "shop", "INBOX", 7) == {3}
    assert left == [2, 3]
    assert json.loads(event)["folder_uids_deleted"] == 1
