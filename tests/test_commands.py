"""Commands by address (issue 15): which addresses a mail was delivered or copied to, and
the commands among them, for real mail as Gmail, Google Workspace, Fastmail, Microsoft 365
and Postfix deliver it (tests/data/commands/, expectations in tests/data/cases.toml)."""

from __future__ import annotations

import json
import smtplib
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import store
from gateway.commands import COMMANDS, addressed_to, commands_in
from gateway.config import Config, ConfigError, parse
from gateway.configkeys import PRIORITIES
from gateway.parse import parse as parse_mail
from gateway.service import Service
from tests.conftest import DATA, example_text
from tests.imapserver import Dovecot
from tests.mailtools import Clock, Sink, gateway_config
from tests.test_intake_imap import imap_config, wait_until
from tests.test_intake_smtp import wait_processed

CASES = [
    c
    for c in tomllib.loads((DATA / "cases.toml").read_text(encoding="utf-8"))["case"]
    if c["file"].startswith("commands/")
]


DELIMITER = 'command_delimiter = "+" '


def _config(append: str = "", delimiter: str = "+") -> Config:
    text = example_text()
    assert DELIMITER in text
    text = text.replace(DELIMITER, f'command_delimiter = "{delimiter}" ', 1)
    return parse(text + append, "gw.toml")


def test_every_commands_fixture_has_a_case() -> None:
    files = {p.relative_to(DATA).as_posix() for p in (DATA / "commands").glob("*.eml")}
    assert files == {c["file"] for c in CASES} and len(files) >= 8


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["file"])
def test_each_providers_mail_gives_its_commands(case: dict[str, Any]) -> None:
    config = _config(delimiter=case.get("delimiter", "+"))
    parsed = parse_mail((DATA / case["file"]).read_bytes())
    found = addressed_to(parsed, case.get("envelope", []))
    assert found == case["addressed_to"]
    assert commands_in(found, config) == tuple(case["commands"])


def test_the_commands_are_the_states_and_the_priorities() -> None:
    assert COMMANDS[:3] == ("resolved", "pending", "open")
    assert COMMANDS[3:] == PRIORITIES


def test_every_command_on_every_address_and_alias() -> None:
    config = _config()
    for own in ("support@shop.example", "help@shop.example", "SUPPORT@Shop.Example"):
        local, _, domain = own.partition("@")
        for command in COMMANDS:
            assert commands_in([f"{local}+{command.upper()}@{domain}"], config) == (command,)


@pytest.mark.parametrize(
    "address",
    [
        "support@shop.example",  # no command
        "support+@shop.example",  # an empty one
        "support+banana@shop.example",  # an unknown one
        "support+resolved+x@shop.example",  # something after it
        "support+resolved@evil.example",  # not our domain
        "support+resolved@mail.shop.example",  # nor a subdomain of it
        "supportx+resolved@shop.example",  # not our local part
        "xsupport+resolved@shop.example",
        "support-resolved@shop.example",  # not this inbox's delimiter
        "kim+resolved@customer.example",
        "support+resolved",  # no domain at all
        "",
    ],
)
def test_what_is_not_a_command(address: str) -> None:
    assert commands_in([address], _config()) == ()


def test_commands_come_once_each_in_the_order_given() -> None:
    found = ["support+pending@shop.example", "help+urgent@shop.example",
             "Support+Pending@shop.example", "kim@customer.example"]  # fmt: skip
    assert commands_in(found, _config()) == ("pending", "urgent")


def test_each_inbox_has_its_own_delimiter() -> None:
    config = _config(
        delimiter="-",
        append='\n[[inbox]]\nname = "b2b"\naddress = "sales@b2b.example"\n',
    )
    assert commands_in(["support-resolved@shop.example"], config) == ("resolved",)
    assert commands_in(["support+resolved@shop.example"], config) == ()
    assert commands_in(["sales+pending@b2b.example"], config) == ("pending",)
    assert commands_in(["sales-pending@b2b.example"], config) == ()


def test_plus_addresses_reach_their_inbox() -> None:
    config = _config(append='\n[[inbox]]\nname = "b2b"\naddress = "sales@b2b.example"\n')
    shop, b2b = config.inboxes
    assert config.inbox_for("Support+Resolved@Shop.Example") is shop
    assert config.inbox_for("help+anything-at-all@shop.example") is shop
    assert config.inbox_for("sales+resolved@b2b.example") is b2b
    assert config.inbox_among(["kim@customer.example", "sales+low@b2b.example"]) is b2b
    for other in ("support+resolved@evil.example", "supportx@shop.example", "sales@shop.example"):
        assert config.inbox_for(other) is None, other


def test_an_address_that_looks_like_another_inboxs_plus_address_is_that_inbox() -> None:
    config = _config(append='\n[[inbox]]\nname = "vip"\naddress = "support+vip@shop.example"\n')
    shop, vip = config.inboxes
    assert config.inbox_for("support+vip@shop.example") is vip  # its own address first
    assert config.inbox_for("support+resolved@shop.example") is shop
    assert config.inbox_for("Support+VIP+pending@shop.example") is vip  # the closer fit
    assert commands_in(["support+vip+pending@shop.example"], config) == ("pending",)
    assert commands_in(["support+vip@shop.example"], config) == ()


def test_addressed_to_keeps_the_envelope_first_and_each_address_once() -> None:
    raw = (b"From: anna@shop.example\r\nTo: Kim <kim@customer.example>\r\n"
           b"Cc: support+pending@shop.example, KIM@customer.example\r\n"
           b"Delivered-To: support+resolved@shop.example\r\nSubject: x\r\n\r\nhi\r\n")  # fmt: skip
    found = addressed_to(parse_mail(raw), [" support+urgent@shop.example ", "Support+Resolved@shop.example"])
    assert found == ["support+urgent@shop.example", "Support+Resolved@shop.example",
                     "kim@customer.example", "support+pending@shop.example"]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"@"', '"@" is not one character'),
        ('""', "empty is not one character"),
        ('"++"', '"++" is not one character'),
        ('" "', '" " is not one character'),
        ('"."', '"." is not one character'),
        ("1", "must be a string"),
    ],
)
def test_a_bad_delimiter_is_one_clear_line(value: str, expected: str) -> None:
    text = example_text().replace(DELIMITER, f"command_delimiter = {value} ", 1)
    with pytest.raises(ConfigError) as info:
        parse(text, "gw.toml")
    problems = str(info.value).splitlines()
    line = next(p for p in problems if "command_delimiter" in p)
    assert line.startswith("gw.toml: inbox[0].command_delimiter: ") and expected in line, problems
    assert "never \"@\"" in line or "must be a string" in line


# ------------------------------------------------------------------ the listener


@pytest.fixture
def listener(tmp_path: Path, database_url: str, sink: Sink) -> Iterator[tuple[Config, Service]]:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port, append=B2B)
    service = Service(config, clock=Clock())
    service.start()
    yield config, service
    service.close()


B2B = '\n[[inbox]]\nname = "b2b"\naddress = "sales@b2b.example"\ncommand_delimiter = "-"\n'


def _send(config: Config, to: list[str], message_id: str) -> dict[str, tuple[int, bytes]]:
    assert config.listen is not None
    raw = (f"From: Kim <kim@customer.example>\r\nTo: {to[0]}\r\nSubject: Where is my parcel?\r\n"
           f"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{message_id}>\r\n\r\nHello\r\n")  # fmt: skip
    with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
        return client.sendmail("kim@customer.example", to, raw.encode())  # type: ignore[no-any-return]


def test_the_listener_accepts_plus_addresses_of_every_inbox(listener: tuple[Config, Service]) -> None:
    config, service = listener
    refused = _send(config, ["Support+Resolved@shop.example", "help+anything@shop.example",
                             "support+resolved@evil.example", "supportx+resolved@shop.example",
                             "support-resolved@shop.example"], "p1@customer.example")  # fmt: skip
    assert sorted(refused) == ["support+resolved@evil.example", "support-resolved@shop.example",
                               "supportx+resolved@shop.example"]  # fmt: skip
    assert all(code == 550 for code, _ in refused.values())
    assert _send(config, ["sales-pending@b2b.example"], "p2@customer.example") == {}
    with pytest.raises(smtplib.SMTPRecipientsRefused):  # b2b's delimiter is "-", not "+"
        _send(config, ["sales+pending@b2b.example"], "p3@customer.example")
    wait_processed(service.engine, 2)
    with service.engine.connect() as conn:
        stored = list(conn.execute(sa.select(store.messages).order_by(store.messages.c.id)))
        opened = [tuple(r) for r in conn.execute(
            sa.select(store.conversations.c.inbox, store.conversations.c.reference)
            .order_by(store.conversations.c.id))]  # fmt: skip
    # The envelope is stored as the client sent it: the runner reads the commands from it.
    assert [m.envelope_to for m in stored] == ["Support+Resolved@shop.example, help+anything@shop.example",
                                               "sales-pending@b2b.example"]  # fmt: skip
    assert [inbox for inbox, _ in opened] == ["shop", "b2b"]  # each routed to its inbox
    assert opened[1][1].startswith("B2B-")


# ------------------------------------------------------------------ end to end

AGENT = {"agents = [] ": 'agents = ["anna@shop.example"] '}


def _customer_mail(to: str = "support@shop.example") -> bytes:
    return (f"Return-Path: <kim@customer.example>\r\nFrom: Kim <kim@customer.example>\r\nTo: {to}\r\n"
            "Subject: Where is my parcel?\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
            "Message-ID: <m1@customer.example>\r\n\r\nHello, my parcel has not arrived yet.\r\n").encode()  # fmt: skip


def _reply(extra: str = "", message_id: str = "r1@shop.example") -> bytes:
    """Anna's answer to Kim, as her mail program writes it."""
    return ("From: Anna Schmidt <anna@shop.example>\r\nTo: Kim <kim@customer.example>\r\n" + extra +
            "Subject: Re: Where is my parcel? [SHOP-1001]\r\nDate: Mon, 23 Nov 2026 10:20:00 +0100\r\n"
            f"Message-ID: <{message_id}>\r\nIn-Reply-To: <m1@customer.example>\r\n"
            "References: <m1@customer.example>\r\n\r\nYour parcel left this morning.\r\n").encode()  # fmt: skip


def _smtp(config: Config, raw: bytes, mail_from: str, to: list[str]) -> None:
    assert config.listen is not None
    with smtplib.SMTP("127.0.0.1", config.listen.port, timeout=10) as client:
        client.sendmail(mail_from, to, raw)


def _events(engine: sa.Engine, kind: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        e = store.events.c
        return [json.loads(d) for d in conn.execute(sa.select(e.detail).where(e.kind == kind).order_by(e.id)).scalars()]


def _conversation(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        [row] = conn.execute(sa.select(store.conversations)).all()
    return row


@pytest.fixture
def agent_gateway(tmp_path: Path, database_url: str, sink: Sink) -> Iterator[tuple[Config, Service]]:
    config = gateway_config(tmp_path, database_url, sink_port=sink.port, extra=AGENT)
    service = Service(config, clock=Clock())
    service.start()
    yield config, service
    service.close()


def test_a_bcc_to_support_resolved_on_a_reply_resolves_once(agent_gateway: tuple[Config, Service],
                                                            sink: Sink) -> None:  # fmt: skip
    config, service = agent_gateway
    _smtp(config, _customer_mail(), "kim@customer.example", ["support@shop.example"])
    sink.wait_for(1)  # acknowledged
    reply = _reply()
    for _ in range(2):  # the same copy twice (a retry, a second route): one message
        _smtp(config, reply, "anna@shop.example", ["support+resolved@shop.example"])
    wait_processed(service.engine, 2)
    row = _conversation(service.engine)
    assert (row.state, row.resolved_by) == ("resolved", "anna@shop.example")
    assert row.first_reply_at is not None  # to Kim as well: a reply, not only a command
    [command] = _events(service.engine, "command")
    assert (command["command"], command["via"], command["state"]) == ("resolved", "address", "resolved")
    service.stop()
    assert len(sink.received) == 1  # command mail is never acknowledged


def test_a_customer_writing_to_support_resolved_is_acknowledged_as_usual(
    agent_gateway: tuple[Config, Service], sink: Sink
) -> None:
    config, service = agent_gateway
    _smtp(config, _customer_mail(to="support+resolved@shop.example"), "kim@customer.example",
          ["support+resolved@shop.example"])  # fmt: skip
    [ack] = sink.wait_for(1)
    assert ack.rcpt_tos == ["kim@customer.example"]
    wait_processed(service.engine, 1)
    row = _conversation(service.engine)
    assert row.state == "awaiting_team" and row.resolved_at is None
    assert _events(service.engine, "command") == []
    [acknowledged] = _events(service.engine, "acknowledged")
    assert acknowledged["ignored_commands"] == ["resolved"]


def test_a_cc_to_support_pending_seen_in_sent_and_inbox_changes_the_state_once(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot
) -> None:
    config = imap_config(tmp_path, database_url, sink, dovecot, extra=AGENT)
    service = Service(config, clock=lambda: IMAP_NOW)
    service.start()
    try:
        wait_until(lambda: _folders_synced(service.engine) == 2)  # INBOX and Sent
        dovecot.append("INBOX", _customer_mail(), internaldate=IMAP_RECEIVED)
        sink.wait_for(1)
        reply = _reply("Cc: Support <support+pending@shop.example>\r\n", message_id="r2@shop.example")
        sent_uid = dovecot.append("Sent", reply, internaldate=IMAP_RECEIVED, flags=("\\Seen",))
        # The copy delivered to the plus-address, as the mail server files it in INBOX.
        delivered = b"Delivered-To: support+pending@shop.example\r\nX-Original-To: support+pending@shop.example\r\n" + reply
        inbox_uid = dovecot.append("INBOX", delivered, internaldate=IMAP_RECEIVED)
        wait_until(lambda: _conversation(service.engine).state == "pending")
        wait_until(lambda: _synced_past(service.engine, {"Sent": sent_uid, "INBOX": inbox_uid}))
        wait_processed(service.engine, 2)
        assert _message_count(service.engine) == 2  # Kim's mail and one reply: the copies are one
        [command] = _events(service.engine, "command")
        assert (command["command"], command["by"], command["state"]) == ("pending", "anna@shop.example", "pending")
        service.stop()
        assert len(sink.received) == 1
    finally:
        service.close()


IMAP_RECEIVED = datetime(2026, 11, 2, 8, 59, tzinfo=UTC)  # as tests/test_intake_imap.py
IMAP_NOW = IMAP_RECEIVED + timedelta(minutes=1)


def _folders_synced(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(store.sync_state)).scalar_one())


@pytest.mark.parametrize("first", ["Sent", "INBOX"])
def test_a_bcc_to_support_resolved_over_imap_resolves_once_whichever_copy_comes_first(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot, first: str
) -> None:
    """Gmail's gesture read over IMAP: the Sent copy keeps the Bcc header, the copy
    delivered to the plus-address has it only in Delivered-To. The dedup keeps whichever
    is stored first; either carries the command."""
    config = imap_config(tmp_path, database_url, sink, dovecot, extra=AGENT)
    service = Service(config, clock=lambda: IMAP_NOW)
    service.start()
    try:
        wait_until(lambda: _folders_synced(service.engine) == 2)
        dovecot.append("INBOX", _customer_mail(), internaldate=IMAP_RECEIVED)
        sink.wait_for(1)
        sent = _reply("Bcc: support+resolved@shop.example\r\n", message_id="r3@shop.example")
        delivered = b"Delivered-To: support+resolved@shop.example\r\n" + sent.replace(
            b"Bcc: support+resolved@shop.example\r\n", b"")  # fmt: skip
        copies = {"Sent": sent, "INBOX": delivered}
        uids = {}
        for folder in (first, *(f for f in copies if f != first)):
            uids[folder] = dovecot.append(folder, copies[folder], internaldate=IMAP_RECEIVED)
            wait_until(lambda: _conversation(service.engine).state == "resolved")
        wait_until(lambda: _synced_past(service.engine, uids))  # the second copy too
        wait_processed(service.engine, 2)
        assert _message_count(service.engine) == 2  # the two copies are one message
        [command] = _events(service.engine, "command")
        assert (command["command"], command["by"]) == ("resolved", "anna@shop.example")
        assert _conversation(service.engine).first_reply_at is not None
    finally:
        service.close()


def _synced_past(engine: sa.Engine, uids: dict[str, int]) -> bool:
    """Whether each folder's sync has taken care of the message with that UID."""
    with engine.connect() as conn:
        last = dict(conn.execute(sa.select(store.sync_state.c.folder, store.sync_state.c.last_uid)).all())
    return all(last.get(folder, 0) >= uid for folder, uid in uids.items())


def _message_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(store.messages)).scalar_one())
