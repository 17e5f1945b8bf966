"""What the acknowledgment takes from the customer's own headers (gateway/senderinfo.py):
junk display names are dropped from the greeting, and the deadline is given in the
sender's time only when their Date header plausibly shows their own clock. Driven by the
real .eml fixtures whose cases in tests/data/cases.toml say `greeting` and `your_time`,
rendered in English and German."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.config import Config
from gateway.parse import parse
from gateway.policy import deadline
from gateway.render import Renderer
from gateway.senderinfo import customer_date, greeting_name
from tests.conftest import DATA
from tests.test_fixtures import CASES

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin
GREETED = [c for c in CASES if "greeting" in c]


def acknowledgment_text(config: Config, raw: bytes, language: str = "en") -> str:
    parsed = parse(raw)
    inbox = replace(config.inboxes[0], language=language)
    assert parsed.sender is not None
    ack = Renderer(config).acknowledgment(
        parsed=parsed, inbox=inbox, deadline=deadline(config.calendar, config.default_priority, NOW),
        reference="SHOP-1001", ack_to=parsed.sender.addr, customer_name=parsed.sender.name, now=NOW,
    )  # fmt: skip
    [text_part, html_part] = ack.get_payload()
    return str(text_part.get_payload(decode=True).decode()) + str(html_part.get_payload(decode=True).decode())


@pytest.mark.parametrize("case", GREETED, ids=lambda c: c["file"])
def test_the_greeting_and_the_senders_time(example_config: Config, case: dict[str, Any]) -> None:
    text = acknowledgment_text(example_config, (DATA / case["file"]).read_bytes())
    first_line = text.splitlines()[0]
    assert first_line == case["greeting"]
    assert ("your time" in text) is case["your_time"], text


@pytest.mark.parametrize("case", GREETED, ids=lambda c: c["file"])
def test_the_same_in_german(example_config: Config, case: dict[str, Any]) -> None:
    text = acknowledgment_text(example_config, (DATA / case["file"]).read_bytes(), "de")
    name = case["greeting"].removeprefix("Hello").strip(" ,")
    assert text.splitlines()[0] == (f"Guten Tag {name}," if name else "Guten Tag,")
    assert ("bei Ihnen" in text) is case["your_time"], text


def test_the_fixtures_cover_every_sign() -> None:
    """Each junk kind and each sign against a Date has a fixture here (not a copied table:
    the files themselves)."""
    names = {c["file"].split("/")[1].removesuffix(".eml") for c in GREETED}
    assert {"name_mojibake", "name_replacement_char", "name_bom", "name_control_chars",
            "name_is_address", "name_only_quotes", "date_own_clock", "date_utc_server",
            "date_php_script", "date_phpmailer", "date_sender_differs"} <= names  # fmt: skip


@pytest.mark.parametrize(
    ("name", "greeted"),
    [
        ("Zoë Müller", "Zoë Müller"),
        ("François Ölçer", "François Ölçer"),
        ("Ольга Петрова", "Ольга Петрова"),
        ("李小龍", "李小龍"),
        ("O’Brien", "O’Brien"),
        ('"Jane Doe"', "Jane Doe"),
        ("Dâ€™Arcy", ""),
        ("Ã‰lodie", ""),
        ("", ""),
        ("-- ", ""),
    ],
)
def test_real_names_stay_and_junk_goes(name: str, greeted: str) -> None:
    assert greeting_name(name, f"{name} <x@customer.example>") == greeted


def test_a_configured_web_form_sender_never_gives_a_clock() -> None:
    raw = (DATA / "greeting" / "date_own_clock.eml").read_bytes()
    parsed = parse(raw)
    assert customer_date(parsed, form=False) is not None
    assert customer_date(parsed, form=True) is None
