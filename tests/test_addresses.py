"""Who a message is from is read from the raw header, never from decoded text: an RFC 2047
encoded word (Q or B, folded, in a quoted string, a group name, a Return-Path) can only
ever become display-name text — one line of it — and never an address, a second
mailbox or a header line in what we send."""

from __future__ import annotations

import tomllib
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.message import Message
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.addresses import clean_name, mailboxes
from gateway.classify import Classifier
from gateway.config import Config
from gateway.model import Address, Parsed
from gateway.parse import parse
from gateway.policy import Decision, decide
from gateway.render import Renderer, to_wire
from gateway.rules import LOOP_HEADER
from gateway.tracker import Author, author
from tests.conftest import DATA

RECEIVED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def message(*headers: str) -> Parsed:
    head = "\r\n".join(headers)
    return parse(
        (
            f"{head}\r\nTo: support@shop.example\r\nSubject: Where is my parcel?\r\n"
            "Message-ID: <m1@customer.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nHello, where is my parcel?\r\n"
        ).encode()
    )


def one_line(name: str) -> bool:
    """No character that starts a new line anywhere and no other control character."""
    return not any(ch in LINE_BREAKS or unicodedata.category(ch) == "Cc" for ch in name)


def decided(config: Config, parsed: Parsed, *, ack_to: str = "return-path") -> Decision:
    inbox = replace(config.inboxes[0], ack_to=ack_to)
    return decide(
        parsed, config=config, inbox=inbox, classifier=Classifier.from_config(config),
        received_at=RECEIVED, return_path=parsed.return_path,
    )  # fmt: skip


def who(config: Config, parsed: Parsed) -> Author:
    return author(
        parsed, own_addresses=config.own_addresses, agents=config.agent_addresses,
        message_id_domain=config.message_id_domain, loop_header=LOOP_HEADER,
    )  # fmt: skip


# ---------------------------------------------------------------------------- From


@pytest.mark.parametrize(
    ("header", "addr", "name"),
    [
        pytest.param(  # properly encoded CR LF + Bcc
            "From: =?utf-8?q?Eve=0D=0ABcc=3A_victim=40example=2Eorg?= <eve@evil.example>",
            "eve@evil.example",
            "Eve Bcc: victim@example.org",
            id="q-crlf-bcc",
        ),
        pytest.param(  # the raw ':' and '@' an attacker puts inside the word
            "From: =?UTF-8?Q?Eve=0D=0ABcc:_victim@example.org?= <eve@evil.example>",
            "eve@evil.example",
            "Eve Bcc: victim@example.org",
            id="q-raw-specials",
        ),
        pytest.param(
            "From: =?utf-8?b?RXZlDQpCY2M6IHZpY3RpbUBleGFtcGxlLm9yZw==?= <eve@evil.example>",
            "eve@evil.example",
            "Eve Bcc: victim@example.org",
            id="b-crlf-bcc",
        ),
        pytest.param(
            "From: =?utf-8?B?IngiIDx2aWN0aW1AZXhhbXBsZS5vcmc+?= <eve@evil.example>",
            "eve@evil.example",
            '"x" <victim@example.org>',
            id="b-angle",
        ),
        pytest.param(
            "From: =?iso-8859-1?q?=22x=22_=3Cvictim=40example=2Eorg=3E?= <eve@evil.example>",
            "eve@evil.example",
            '"x" <victim@example.org>',
            id="q-angle",
        ),
        pytest.param(
            "From: =?utf-8?q?Eve=0DBcc=3A_victim=40example=2Eorg?= <eve@evil.example>",
            "eve@evil.example",
            "Eve Bcc: victim@example.org",
            id="bare-cr",
        ),
        pytest.param(
            "From: =?utf-8?q?Eve=0ABcc=3A_victim=40example=2Eorg?= <eve@evil.example>",
            "eve@evil.example",
            "Eve Bcc: victim@example.org",
            id="bare-lf",
        ),
        pytest.param(
            "From: =?utf-8?q?Eve=E2=80=A8Bcc=3A_victim=40example=2Eorg=2C?= <eve@evil.example>",
            "eve@evil.example",
            "Eve Bcc: victim@example.org,",
            id="u2028",
        ),
        pytest.param(
            "From: =?utf-8?q?Eve=E2=80=A9To=3A_victim=40example=2Eorg=2C?= <eve@evil.example>",
            "eve@evil.example",
            "Eve To: victim@example.org,",
            id="u2029",
        ),
        pytest.param(
            "From: =?utf-8?q?Eve=C2=85Bcc=3A_victim=40example=2Eorg=2C?= <eve@evil.example>",
            "eve@evil.example",
            "Eve Bcc: victim@example.org,",
            id="nel",
        ),
        pytest.param(  # folded between the words and before the address
            "From: =?utf-8?q?Eve=0D=0A?=\r\n =?utf-8?q?Bcc=3A_victim=40example=2Eorg=2C?=\r\n\t"
            "<eve@evil.example>",
            "eve@evil.example",
            "Eve Bcc: victim@example.org,",
            id="folded",
        ),
        pytest.param(
            'From: "Eve =?utf-8?q?=22_=3Cvictim=40example=2Eorg=3E?= Smith" <eve@evil.example>',
            "eve@evil.example",
            'Eve " <victim@example.org> Smith',
            id="quoted-middle",
        ),
        pytest.param(  # an encoded word as a group name (decodes to "victim@example.org:")
            "From: =?utf-8?q?victim=40example=2Eorg=3A?= <eve@evil.example>",
            "eve@evil.example",
            "victim@example.org:",
            id="group-name",
        ),
        pytest.param(
            "From: eve@evil.example (=?utf-8?q?=3Cvictim=40example=2Eorg=3E?=)",
            "eve@evil.example",
            "<victim@example.org>",
            id="comment",
        ),
    ],
)
def test_an_encoded_word_never_becomes_an_address(header: str, addr: str, name: str) -> None:
    parsed = message(header)
    assert parsed.sender == Address(addr, name)
    assert one_line(parsed.sender.name)


@pytest.mark.parametrize(
    "header",
    [
        "From: =?utf-8?q?victim=40example=2Eorg?=",
        "From: =?utf-8?q?=3Cvictim=40example=2Eorg=3E?=",
        "From: <=?utf-8?q?victim?=@example.org>",
        "From: victim=?utf-8?q?=40?=example.org",
        "From: victim@=?utf-8?q?example=2Eorg?=",
    ],
)
def test_an_address_made_of_encoded_words_is_no_address(header: str) -> None:
    parsed = message(header)
    assert parsed.sender is None
    assert "UnparsableFrom" in parsed.defects


def test_a_raw_header_with_several_addresses() -> None:
    parsed = message(
        "From: kim@customer.example",
        "Cc: Anna <anna@customer.example>,\r\n =?utf-8?q?=22x=22_=3Cvictim=40example=2Eorg=3E=2C?="
        ' <ben@customer.example>, "Meyer, C." <c@customer.example>,\r\n'
        " =?iso-8859-1?q?J=FCrgen?= =?iso-8859-1?q?_M=FCller?= <jm@customer.example>",
    )
    assert parsed.cc == (
        Address("anna@customer.example", "Anna"),
        Address("ben@customer.example", '"x" <victim@example.org>,'),
        Address("c@customer.example", "Meyer, C."),
        Address("jm@customer.example", "Jürgen Müller"),  # adjacent words join without space
    )


def test_group_syntax() -> None:
    parsed = message(
        "From: kim@customer.example",
        "Cc: =?utf-8?q?victim=40example=2Eorg?=: anna@customer.example, Ben <ben@customer.example>;,"
        " help@shop.example, undisclosed-recipients:;",
    )
    assert [a.addr for a in parsed.cc] == [
        "anna@customer.example", "ben@customer.example", "help@shop.example",
    ]  # fmt: skip


def test_rfc6532_utf8_addresses_and_8bit_names() -> None:
    raw = (
        "From: Jürgen Müller <jürgen@bücher.example>\r\n"
        "Reply-To: =?utf-8?q?=3Cvictim=40example=2Eorg=3E?= <zoë@bücher.example>\r\n"
        "To: support@shop.example\r\nSubject: Bestellung\r\n\r\nHallo\r\n"
    ).encode()
    parsed = parse(raw)
    assert parsed.sender == Address("jürgen@bücher.example", "Jürgen Müller")
    assert parsed.reply_to == (Address("zoë@bücher.example", "<victim@example.org>"),)
    latin1 = parse(
        b"From: J\xfcrgen <j@b.example>\r\nCc: =?utf-8?q?=3Cv=40x=2Eorg=3E?= <c@b.example>\r\n\r\nx"
    )
    assert latin1.sender == Address("j@b.example", "Jürgen")
    assert latin1.cc == (Address("c@b.example", "<v@x.org>"),)


def test_deeply_nested_comments_in_from_do_not_raise() -> None:
    parsed = message("From: " + "(" * 5000 + "x" + ")" * 5000 + " kim@customer.example")
    assert parsed.sender is not None and parsed.sender.addr == "kim@customer.example"


# ---------------------------------------------------------------------------- Return-Path


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "=?utf-8?q?=3Cvictim=40example=2Eorg=3E?= <rita@customer.example>",
            "rita@customer.example",
        ),
        ("=?utf-8?q?=3Cvictim=40example=2Eorg=3E?=", None),  # no address is readable
        ("=?utf-8?q?=3C=3E?=", None),  # decodes to the null path, but is none
        ("=?utf-8?q?victim=40example=2Eorg?=", None),
        ("<>", ""),
        ("< >", ""),
        ("<rita@customer.example>", "rita@customer.example"),
        ("rita@customer.example", "rita@customer.example"),
        ("<@relay.example:rita@customer.example>", "rita@customer.example"),
    ],
)
def test_return_path_header_is_read_raw(header: str, expected: str | None) -> None:
    parsed = message(f"Return-Path: {header}", "From: Rita <rita@customer.example>")
    assert parsed.return_path == expected


# ---------------------------------------------------------------------------- consumers


def test_a_display_name_of_our_own_address_is_still_a_customer(example_config: Config) -> None:
    parsed = message(
        "Return-Path: <paula@customer.example>",
        "From: =?utf-8?q?support=40shop=2Eexample?= <paula@customer.example>",
    )
    assert who(example_config, parsed) == Author.CUSTOMER
    decision = decided(example_config, parsed, ack_to="from")
    assert decision.skip is None
    assert (decision.customer, decision.ack_to) == ("paula@customer.example",) * 2


def test_web_form_reply_to_name_cannot_pick_the_recipient(example_config: Config) -> None:
    parsed = message(
        "Return-Path: <bounces+1-support=shop.example@email.shopify.example>",
        'From: "Shopify" <mailer@shopify.example>',
        "Reply-To: =?utf-8?b?IngiIDx2aWN0aW1AZXhhbXBsZS5vcmc+?= <jane@customer.example>",
    )
    decision = decided(example_config, parsed)
    assert decision.skip is None
    assert (decision.customer, decision.ack_to) == ("jane@customer.example",) * 2


HOSTILE = [
    c
    for c in tomllib.loads((DATA / "cases.toml").read_text(encoding="utf-8"))["case"]
    if c["file"].startswith("hostile/") and "sender" in c
]


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c["file"])
def test_hostile_fixtures_steer_nothing(example_config: Config, case: dict[str, Any]) -> None:
    parsed = parse((DATA / case["file"]).read_bytes())
    assert parsed.sender is not None and parsed.sender.addr == case["sender"]
    assert who(example_config, parsed) == Author.CUSTOMER
    for mode, key in (("return-path", "ack_to"), ("from", "ack_to_from")):
        decision = decided(example_config, parsed, ack_to=mode)
        assert decision.skip is None, (mode, decision.skip)
        assert (decision.customer, decision.ack_to) == (case["customer"], case[key]), mode
    for found in (parsed.sender, *parsed.reply_to, *parsed.to, *parsed.cc):
        assert "victim" not in found.addr
        assert one_line(found.name)


# ---------------------------------------------------------------------------- what we send


def test_the_greeting_is_one_line(example_config: Config) -> None:
    parsed = parse((DATA / "hostile" / "from_folded_u2028.eml").read_bytes())
    decision = decided(example_config, parsed, ack_to="from")
    assert decision.ack_to == "oscar@evil.example"
    for name in (parsed.sender.name if parsed.sender else "", "Oscar\u2028To: v@x\u2029\x85"):
        ack = Renderer(example_config).acknowledgment(
            parsed=parsed, inbox=example_config.inboxes[0], deadline=decision.deadline,
            reference="SHOP-1001", ack_to=decision.ack_to, customer_name=name, now=RECEIVED,
        )  # fmt: skip
        sent = message_from_bytes(to_wire(ack))
        assert sent.get_all("To") == ["oscar@evil.example"]
        assert sent.get_all("Bcc") is None and sent.get_all("Cc") is None
        for part in sent.walk():
            if part.get_content_maintype() == "text":
                text = part.get_payload(decode=True).decode("utf-8")
                # A name carrying line breaks and an address is junk: no name at all
                # (senderinfo.greeting_name), so nothing of it reaches the text.
                greeting = next(line for line in text.splitlines() if "Hello" in line)
                assert greeting.strip() in ("Hello,", "<p>Hello,</p>")
                assert "Oscar" not in text and "victim" not in text and "v@x" not in text
                assert not any(ch in text for ch in "\u2028\u2029\x85")


@pytest.mark.parametrize(
    "value",
    ["Hi\r\nBcc: victim@example.org", "Hi\rBcc: victim@example.org", "Hi\nBcc: victim@example.org",
     "Hi \r\n \r\nBcc: victim@example.org", "x" * 90 + "\r\nBcc: victim@example.org",
     "Hi\r\n", "Grüße\r\nBcc: victim@example.org"],
)  # fmt: skip
def test_to_wire_never_writes_a_line_break_from_a_value(value: str) -> None:
    msg = Message()
    msg["To"] = "kim@customer.example"
    msg["Subject"] = value
    msg.set_payload("Hello\r\n")
    wire = to_wire(msg)
    head = wire.split(b"\r\n\r\n", 1)[0]
    names = [
        line.split(b":", 1)[0] for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")
    ]
    assert names == [b"To", b"Subject"]
    assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b"")
    assert message_from_bytes(wire).get_all("Bcc") is None


# ---------------------------------------------------------------------------- properties


def _encoded(text: str, encoding: int) -> str:
    charset = Charset("utf-8")
    charset.header_encoding = encoding
    return Header(text, charset).encode()


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=80), b=st.booleans())
def test_any_encoded_display_name_stays_a_name(name: str, b: bool) -> None:
    words = _encoded(name, BASE64 if b else QP)
    parsed = message(
        f"From: {words} <eve@evil.example>", f"Cc: {words} <ann@x.example>, bo@x.example"
    )
    assert parsed.sender is not None and parsed.sender.addr == "eve@evil.example"
    assert one_line(parsed.sender.name)
    assert [a.addr for a in parsed.cc] == ["ann@x.example", "bo@x.example"]


@given(st.text())
def test_clean_name_is_one_line(text: str) -> None:
    cleaned = clean_name(text)
    assert one_line(cleaned)
    assert len(cleaned.splitlines()) <= 1
    assert cleaned == cleaned.strip() and "  " not in cleaned


def test_mailboxes_reads_several_raw_values() -> None:
    assert mailboxes(["a@x.example", "=?utf-8?q?b=40y=2Eexample?= <c@z.example>"]) == (
        Address("a@x.example"), Address("c@z.example", "b@y.example"),
    )  # fmt: skip
