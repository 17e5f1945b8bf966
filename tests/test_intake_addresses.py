"""End to end over real sockets: mail whose From or Reply-To display name, or Return-Path
header, is an encoded word decoding to a header line, an angle address or our own address
(the fixtures under tests/data/hostile/) is acknowledged to its real sender only — smtplib
-> the SMTP listener (and Dovecot -> the IMAP poller) -> database -> an aiosmtpd sink —,
its conversation's customer is the real sender, and the acknowledgment we write carries
no header the sender put in."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway import store
from gateway.parse import parse
from gateway.service import Service
from tests.conftest import DATA
from tests.imapserver import Dovecot
from tests.mailtools import Clock, Delivered, Sink, gateway_config
from tests.test_intake_imap import RECEIVED, imap_config
from tests.test_intake_imap import start as start_imap
from tests.test_intake_smtp import send

CASES = {
    c["file"]: c
    for c in tomllib.loads((DATA / "cases.toml").read_text(encoding="utf-8"))["case"]
    if c["file"].startswith("hostile/")
}
OVER_SMTP = [
    "from_q_crlf_bcc", "from_b_angle", "from_quoted_middle", "from_folded_u2028",
    "from_own_address", "webform_reply_to",
]  # fmt: skip


def _fixture(name: str) -> tuple[bytes, dict[str, Any]]:
    return (DATA / "hostile" / f"{name}.eml").read_bytes(), CASES[f"hostile/{name}.eml"]


def _header_block(ack: Delivered) -> bytes:
    return ack.raw.split(b"\r\n\r\n", 1)[0]


def _assert_clean_ack(ack: Delivered, recipient: str) -> None:
    assert ack.rcpt_tos == [recipient]
    msg = ack.message
    assert msg.get_all("To") == [recipient]
    for name in ("Cc", "Bcc", "Resent-To", "Resent-Bcc", "Reply-To"):
        assert msg.get_all(name) is None, name
    head = _header_block(ack)
    assert b"victim" not in head.lower()
    lines = head.split(b"\r\n")
    assert all(line[:1] in (b" ", b"\t") or b":" in line for line in lines)  # header lines only
    text = msg.get_body(("plain",)).get_content()
    assert not any(ch in text for ch in "\u2028\u2029\x85")


def _rows(service: Service, table: sa.Table) -> list[Any]:
    with service.engine.connect() as conn:
        return list(conn.execute(sa.select(table).order_by(table.c.id)))


def test_hostile_display_names_never_steer_the_ack_over_smtp(
    tmp_path: Path, database_url: str, sink: Sink
) -> None:
    # ack_to = "from": the setting under which a steered From would pick the recipient.
    config = gateway_config(
        tmp_path, database_url, sink_port=sink.port,
        extra={'ack_to = "return-path" ': 'ack_to = "from"        '},
    )  # fmt: skip
    service = Service(config, clock=Clock())
    service.start()
    try:
        expected: dict[str, str] = {}  # Message-ID -> the one recipient of its ack
        for name in OVER_SMTP:
            raw, case = _fixture(name)
            parsed = parse(raw)
            assert parsed.message_id is not None and parsed.return_path
            send(service.config, raw, mail_from=parsed.return_path)  # the real envelope
            expected[f"<{parsed.message_id}>"] = case["ack_to_from"]
        acks = sink.wait_for(len(OVER_SMTP))
        service.stop()  # let the worker record the sends
        assert len(sink.received) == len(OVER_SMTP)  # nothing more went anywhere
        for ack in acks:
            _assert_clean_ack(ack, expected[str(ack.message["In-Reply-To"]).strip()])
        assert sorted(a.rcpt_tos[0] for a in acks) == sorted(expected.values())
        messages = _rows(service, store.messages)
        assert [(m.status, m.direction, m.acknowledged) for m in messages] == [
            ("processed", "customer", True)
        ] * len(OVER_SMTP)  # the display name "support@shop.example" made no team reply
        customers = {c.customer for c in _rows(service, store.conversations)}
        assert customers == {CASES[f"hostile/{n}.eml"]["customer"] for n in OVER_SMTP}
        outbox = _rows(service, store.outbox)
        assert sorted(o.recipient for o in outbox) == sorted(expected.values())
    finally:
        service.close()


def test_a_hostile_return_path_header_never_steers_the_ack_over_imap(
    tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot
) -> None:
    raw, case = _fixture("return_path_header")
    service = start_imap(imap_config(tmp_path, database_url, sink, dovecot))
    try:
        dovecot.append("INBOX", raw, internaldate=RECEIVED)
        [ack] = sink.wait_for(1)
        service.stop()
        assert len(sink.received) == 1
        _assert_clean_ack(ack, case["ack_to"])
        [conversation] = _rows(service, store.conversations)
        assert conversation.customer == case["customer"]
        [out] = _rows(service, store.outbox)
        assert (out.kind, out.recipient) == ("ack", case["ack_to"])
    finally:
        service.close()
