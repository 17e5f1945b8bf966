"""The wire form of what we send: `render.to_wire` writes exactly what the stdlib's
compat32 generator writes (CRLF), only faster for short ASCII headers."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.policy import compat32

import pytest

from gateway.render import build_message, to_wire

STDLIB = compat32.clone(linesep="\r\n")
LONG_REFS = " ".join(f"<id{i}.a-long-message-id@mail.customer.example>" for i in range(11))


@pytest.mark.parametrize(
    ("subject", "name", "refs", "html"),
    [
        ("Where is my parcel?", "Shop Support", "<a@b.example>", "<p>Hello</p>"),
        ("Grüße über Ümlaute " * 6, "Shöp Süpport", LONG_REFS, None),
        ("x" * 300, "", None, "<b>é</b>"),
        ("Re: [SHOP-1042] Ünïcode and a very long subject line that has to be folded somewhere", "Ann", LONG_REFS, "<i>x</i>"),
    ],
)
def test_to_wire_is_the_stdlib_generator(subject: str, name: str, refs: str | None, html: str | None) -> None:
    message = build_message(
        from_name=name, from_addr="support@shop.example", to="kim@customer.example",
        subject=subject, date=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        message_id="<ack.1@shop.example>",
        headers=[("References", refs), ("In-Reply-To", "<a@b.example>"), ("Auto-Submitted", "auto-replied")],
        text="Hello,\nthank you.\n" * 20, html=html,
    )  # fmt: skip
    ours = to_wire(message)
    assert ours == message.as_bytes(policy=STDLIB)
    assert all(len(line) <= 998 for line in ours.split(b"\r\n"))
    assert re.search(rb"(?<!\r)\n", ours) is None  # CRLF only


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Your order #5520 has shipped", "Re: Your order #5520 has shipped [SHOP-1001]"),
        ("Re: Re: Your order is on its way", "Re: Your order is on its way [SHOP-1001]"),
        ("Re: RE: Your order has shipped", "Re: Your order has shipped [SHOP-1001]"),
        ("AW: Re: Stornierung Bestellung 1234", "Re: Stornierung Bestellung 1234 [SHOP-1001]"),
        ("Fwd: WG: Rechnung", "Re: Rechnung [SHOP-1001]"),
        ("Re:", "Re: Your message [SHOP-1001]"),
    ],
)
def test_the_acknowledgment_subject_never_stacks_prefixes(subject: str, expected: str) -> None:
    from gateway.config import load
    from gateway.parse import parse
    from gateway.policy import deadline
    from gateway.render import Renderer
    from tests.conftest import EXAMPLE

    config = load(EXAMPLE)
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    mail = parse(f"From: kim@customer.example\r\nSubject: {subject}\r\n\r\nHello\r\n".encode())
    ack = Renderer(config).acknowledgment(
        parsed=mail, inbox=config.inboxes[0], deadline=deadline(config.calendar, config.default_priority, now),
        reference="SHOP-1001", ack_to="kim@customer.example", customer_name="", now=now,
    )  # fmt: skip
    assert str(ack["Subject"]) == expected


def test_the_multipart_boundary_is_random_and_in_no_part() -> None:
    from email import message_from_bytes

    def wire() -> bytes:
        return to_wire(build_message(
            from_name="Shop", from_addr="support@shop.example", to="kim@customer.example",
            subject="Hi", date=datetime(2026, 11, 23, 9, 0, tzinfo=UTC), message_id="<a@shop.example>",
            headers=[], text="--=_ looks like a boundary\n=_ and this", html="<p>--=_</p>",
        ))  # fmt: skip

    first, second = message_from_bytes(wire()), message_from_bytes(wire())
    boundary = first.get_boundary()
    assert boundary and boundary.startswith("=_") and boundary != second.get_boundary()
    parts = [p.get_payload() for p in first.walk() if not p.is_multipart()]
    assert len(parts) == 2 and not any(boundary in str(p) for p in parts)
    assert [p.get_content_type() for p in first.walk()] == ["multipart/alternative", "text/plain", "text/html"]
