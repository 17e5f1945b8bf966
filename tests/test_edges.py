"""The edges a new shop owner touches in the first hour: readable errors, `init`, the
maildir outbox, the tables' width, `status` times, the listener's SIZE, `make run`.

Commands are driven through click's runner; the listener cases use real sockets."""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from gateway.outbox import MaildirTransport
from tests.mailtools import gateway_config

Cli = Callable[..., Result]

MAIL = b"From: shop@shop.example\r\nTo: kim@customer.example\r\nSubject: Hi\r\n\r\nHello\r\n"


# ---------------------------------------------------------------------------- maildir


def test_maildir_transport_makes_its_folders_in_an_existing_empty_directory(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()  # what `check --connect` leaves behind: a directory, not yet a maildir
    transport = MaildirTransport(outbox)
    transport.send("shop@shop.example", "kim@customer.example", MAIL)
    transport.close()
    assert {p.name for p in outbox.iterdir()} >= {"tmp", "new", "cur"}
    assert len(list((outbox / "new").iterdir())) == 1


def test_check_connect_then_sending_works_on_the_maildir(
    run_cli: Cli, tmp_path: Path, database_url: str
) -> None:
    config = gateway_config(tmp_path, database_url)
    result = run_cli("--config", str(config.path), "check", "--connect")
    assert "sending (maildir): writable" in result.output, result.output
    transport = MaildirTransport(config.send.path)
    transport.send("shop@shop.example", "kim@customer.example", MAIL)
    assert len(mailbox.Maildir(config.send.path, create=False)) == 1


# ---------------------------------------------------------------------------- status


def test_status_prints_every_time_in_the_shop_zone_in_whole_seconds(
    run_cli: Cli, tmp_path: Path, database_url: str
) -> None:
    import re
    from datetime import UTC, datetime

    from gateway import store
    from tests.conftest import FIXED_NOW

    config = gateway_config(tmp_path, database_url)
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    started = datetime(2026, 11, 23, 7, 58, 1, 123456, tzinfo=UTC)
    beat = datetime(2026, 11, 23, 8, 59, 30, 654321, tzinfo=UTC)
    with store.begin(engine) as conn:
        conn.execute(store.heartbeats.insert().values(name="service", pid=4242, host="shop-server",
                                                      started_at=started, beat_at=beat))  # fmt: skip
        conn.execute(store.sync_state.insert().values(inbox="shop", folder="INBOX", uidvalidity=1,
                                                      last_uid=7, updated_at=beat))  # fmt: skip
    engine.dispose()
    result = run_cli("--config", str(config.path), "status", now=FIXED_NOW)
    assert result.exit_code == 0, result.output
    assert "since 2026-11-23 08:58:01 CET)" in result.output
    assert "imap shop/INBOX: last sync 2026-11-23 09:59:30 CET (uid 7)" in result.output
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", result.output)  # no microseconds anywhere
    assert "+00:00" not in result.output
    later = run_cli("--config", str(config.path), "status", now=datetime(2026, 11, 23, 10, tzinfo=UTC))
    assert "service: NOT running (last seen 2026-11-23 09:59:30 CET)" in later.output


def test_oauth_sign_in_line_in_the_shop_zone() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from gateway.tokens import TokenState

    state = TokenState("support@shop.example", "shop", True, "active",
                       obtained_at=datetime(2026, 11, 23, 8, 0, 5, 250000, tzinfo=UTC),
                       access_expires_at=datetime(2026, 11, 23, 9, 0, 5, 250000, tzinfo=UTC))  # fmt: skip
    now = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
    assert state.describe(now, ZoneInfo("Europe/Berlin")) == (
        "signed in 2026-11-23 09:00:05 CET; access token valid until 2026-11-23 10:00:05 CET")
    assert state.describe(now).startswith("signed in 2026-11-23 08:00:05 UTC;")
