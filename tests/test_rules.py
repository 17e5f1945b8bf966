"""Loop protection must never cost a human customer an answer: cases where a marker's
mere presence, a subject or an address pattern would wrongly stop an acknowledgment."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gateway.classify import Classifier
from gateway.config import Config
from gateway.parse import parse
from gateway.policy import decide


def decision(config: Config, headers: str, *, return_path: str | None = "kim@gmail.example", sender: str = "Kim <kim@gmail.example>",
             inbox_ack_to: str = "return-path", body: str = "Hello, please help.", follow_up: bool = False):  # fmt: skip
    raw = (f"From: {sender}\r\nTo: support@shop.example\r\nMessage-ID: <h1@gmail.example>\r\n"
           f"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n{headers}\r\n{body}\r\n").encode()  # fmt: skip
    inbox = replace(config.inboxes[0], ack_to=inbox_ack_to)
    return decide(parse(raw), config=config, inbox=inbox, classifier=Classifier.from_config(config),
                  received_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC), return_path=return_path,
                  follow_up=follow_up)  # fmt: skip


@pytest.mark.parametrize(
    "headers",
    [
        "Subject: Undelivered parcel, order 12345\r\n",
        "Subject: Delivery failed - order 12345\r\n",
        "Subject: Hi\r\nX-MS-Exchange-Inbox-Rules-Loop: support@shop.example\r\n",  # our own M365 forwarding rule
        "Subject: Hi\r\nList-Id: <support.shop.example>\r\nList-Post: <mailto:support@shop.example>\r\n",  # a Google Group
        "Subject: Hi\r\nAuto-Submitted: no\r\nX-Autoreply: no\r\n",
    ],
)
def test_human_mail_is_acknowledged(example_config: Config, headers: str) -> None:
    d = decision(example_config, headers)
    assert d.skip is None, d.skip
    assert d.acknowledge


@pytest.mark.parametrize(
    "sender",
    ["shop-owner@gmail.example", "store-owner@customer.example", "nobody.else@customer.example"],
)
def test_ordinary_addresses_are_not_role_senders(example_config: Config, sender: str) -> None:
    d = decision(example_config, "Subject: Hi\r\n", return_path=sender, sender=sender)
    assert d.skip is None, d.skip


def test_srs_return_path_of_a_forwarder_is_not_a_role_sender(example_config: Config) -> None:
    d = decision(
        example_config,
        "Subject: Hi\r\n",
        return_path="bounces+SRS=abcd=kim=gmail.example@forwarder.example",
    )
    assert d.skip is None, d.skip


def test_bounce_subject_with_a_null_return_path_is_a_bounce(example_config: Config) -> None:
    d = decision(example_config, "Subject: Undelivered Mail Returned to Sender\r\n", return_path="")
    assert d.skip is not None and d.skip.rule == "bounce"


def test_ack_to_from_does_not_need_a_return_path(example_config: Config) -> None:
    d = decision(example_config, "Subject: Hi\r\n", return_path=None, inbox_ack_to="from")
    assert (d.skip, d.ack_to) == (None, "kim@gmail.example")
    d = decision(example_config, "Subject: Hi\r\n", return_path="", inbox_ack_to="from")
    assert (
        d.skip is not None and d.skip.rule == "no-return-path"
    )  # a null path still means a machine


def test_a_customer_forwarding_a_mail_they_complain_about_is_acknowledged(
    example_config: Config,
) -> None:
    """The complaint rule needs an abuse desk's words, not just an attached message."""
    raw = (
        b"From: Kim <kim@gmail.example>\r\nTo: support@shop.example\r\n"
        b"Message-ID: <fw1@gmail.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
        b"Subject: Complaint about your courier\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nI want to complain about the message below from your courier.\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: courier@parcels.example\r\n"
        b"Subject: We missed you\r\n\r\nWe could not deliver your parcel.\r\n--b--\r\n"
    )
    d = decide(parse(raw), config=example_config, inbox=example_config.inboxes[0],
               classifier=Classifier.from_config(example_config),
               received_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC), return_path="kim@gmail.example")  # fmt: skip
    assert d.skip is None, d.skip


@pytest.mark.parametrize(
    "headers",
    [
        "Subject: Mail delivery failed: returning message to sender\r\n",  # a person's own address
        "Subject: Hi\r\nX-ML-Name-Suggestion: none\r\n",  # a header that merely starts alike
    ],
)
def test_bounce_and_list_lookalikes_from_people_are_acknowledged(
    example_config: Config, headers: str
) -> None:
    d = decision(example_config, headers)
    assert d.skip is None, d.skip


# ------------------------------------------------------------------ our acknowledgment quoted

ACK_TEXT = (
    "Hello Kim,\r\n\r\nthank you for your message. We have received it under the reference"
    " SHOP-1042.\r\n\r\nIf you write again about this, please keep [SHOP-1042] in the subject.\r\n"
)


@pytest.mark.parametrize(
    ("body", "subject", "evidence"),
    [
        # a ticket desk's answer quoting our acknowledgment's text, re-wrapped and '> '-quoted
        ("Ticket 81234 opened.\r\n\r\n> " + ACK_TEXT.replace("\r\n", "\r\n> "), "Ticket 81234",
         "reference tag [SHOP-1042]"),
        # only our quoted headers survived: our Message-ID
        ("Your mail was logged.\r\n> Message-ID: <179617266260.22024.19157.ack@shop.example>\r\n",
         "Logged", "Message-ID <179617266260.22024.19157.ack@shop.example>"),
        # the bare reference and the attribution line of a quote
        ("We got it.\r\n\r\nOn Monday, Example Shop <support@shop.example> wrote:\r\n"
         "> We have received it under the reference SHOP-1042.\r\n", "Received",
         "reference SHOP-1042 and our address support@shop.example"),
        # an answer to an answer to us: two of our tags in the subject
        ("Noted.", "Re: Re: Parcel [SHOP-1042] [SHOP-1043]", "two acknowledgments"),
    ],
)  # fmt: skip
def test_a_quote_of_our_acknowledgment_is_not_a_new_conversation(
    example_config: Config, body: str, subject: str, evidence: str
) -> None:
    d = decision(example_config, f"Subject: {subject}\r\n", body=body,
                 sender="Desk <t-81234@crm.example>", return_path="t-81234@crm.example")  # fmt: skip
    assert d.skip is not None and d.skip.rule == "quotes-our-ack", d.skip
    assert evidence in d.skip.reason


@pytest.mark.parametrize(
    ("body", "subject"),
    [
        ("About my order SHOP-1042, which I placed on Monday.", "Order question"),  # bare number
        ("Please help.", "Parcel [SHOP-1042]"),  # one tag in the subject: threading decides
        ("Write to support@shop.example, they said.", "Question"),  # our address alone
        ("My order is SHOPPING-1042 or XSHOP-1042.", "Question"),  # not our prefix
        ("See <20261109.3F2A1@shop.example> and <x.ack@shop.example.evil>", "Question"),
    ],
)
def test_mentioning_a_reference_or_our_address_is_not_a_quote(
    example_config: Config, body: str, subject: str
) -> None:
    d = decision(example_config, f"Subject: {subject}\r\n", body=body)
    assert d.skip is None, d.skip


def test_the_customer_quoting_their_own_acknowledgment_is_a_follow_up(
    example_config: Config,
) -> None:
    d = decision(example_config, "Subject: One more thing\r\n", body=ACK_TEXT, follow_up=True)
    assert d.skip is not None and d.skip.rule == "follow-up"
