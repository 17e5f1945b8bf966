"""The rule chain is declared once (`rules.CHAIN`) and it is the order decisions follow:
when several reasons apply, the earliest fires; the README's rule table lists the chain
as it is."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.classify import Classifier
from gateway.config import Config
from gateway.parse import parse
from gateway.policy import decide
from gateway.rules import CHAIN, MACHINE_RULES, RULE_NAMES, AckHistory

README = Path(__file__).resolve().parent.parent / "README.md"
RECEIVED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin
RAW = (b"From: Kim <kim@gmail.example>\r\nTo: support@shop.example\r\nSubject: Parcel\r\n"
       b"Message-ID: <c1@gmail.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n\r\nHello.\r\n")  # fmt: skip
# Every acknowledgment limit exceeded at once.
FLOOD = AckHistory(RECEIVED - timedelta(minutes=1), 99, 999, 9999, ("parcel",), "bounce")


def test_the_readme_table_lists_the_chain_in_its_order() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### What is acknowledged, and what never is"):]
    section = section[: section.index("\n\n", section.index("| rule | fires on |"))]
    names = [n for row in re.findall(r"^\| (`[^|]+) \|", section, re.M) for n in re.findall(r"`([a-z-]+)`", row)]
    assert names == list(RULE_NAMES)
    assert len(set(RULE_NAMES)) == len(CHAIN)  # each name once


def test_machine_rules_are_the_ones_before_the_decision_rules() -> None:
    names = list(RULE_NAMES)
    assert set(names[: names.index("quotes-our-ack") + 1]) == MACHINE_RULES


def _skip(config: Config, **kwargs: object) -> str | None:
    options: dict[str, object] = dict(received_at=RECEIVED, return_path="kim@gmail.example")
    options.update(kwargs)
    d = decide(parse(RAW), config=config, inbox=config.inboxes[0], classifier=Classifier.from_config(config),
               **options)  # type: ignore[arg-type]  # fmt: skip
    return d.skip.rule if d.skip is not None else None


def test_when_every_later_rule_applies_the_earliest_fires(example_config: Config) -> None:
    """Peel the reasons off one by one: each time the next one in the chain fires."""
    off = replace(example_config, acknowledge=replace(example_config.acknowledge, enabled=False))
    late = RECEIVED + timedelta(days=30)
    everything = dict(follow_up=True, now=late, history=FLOOD)
    assert _skip(off, return_path="k\udce9@gmail.example", unwritable_return_path=True,
                 **everything) == "bad-return-path"  # fmt: skip
    assert _skip(off, **everything) == "follow-up"
    assert _skip(off, now=late, history=FLOOD) == "too-late"
    assert _skip(off, now=RECEIVED, history=FLOOD) == "disabled"
    assert _skip(example_config, now=RECEIVED, history=FLOOD) == "once-per-sender"
    assert _skip(example_config, now=RECEIVED, history=replace(FLOOD, last_to_sender=None)) == "daily-limit"
    quiet = replace(FLOOD, last_to_sender=None, to_sender_today=0)
    assert _skip(example_config, now=RECEIVED, history=quiet) == "circuit-breaker"
    assert _skip(example_config, now=RECEIVED, history=AckHistory(None, 0, 0, 0)) is None


def test_no_address_to_answer_is_one_rule_with_its_reasons(example_config: Config) -> None:
    assert _skip(example_config, return_path="") == "no-return-path"
    assert _skip(example_config, return_path=None) == "no-return-path"
