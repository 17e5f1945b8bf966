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
