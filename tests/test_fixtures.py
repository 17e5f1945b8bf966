"""Every real-format .eml under tests/data/ behaves as tests/data/cases.toml says:
genuine customer mail is classified and acknowledged to the right address; each kind of
machine mail is stopped by the first rule that should stop it; broken mail never crashes.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.classify import Classifier
from gateway.config import Config
from gateway.errors import InputError
from gateway.parse import parse
from gateway.policy import decide
from tests.conftest import DATA

CASES: list[dict[str, Any]] = tomllib.loads((DATA / "cases.toml").read_text(encoding="utf-8"))[
    "case"
]
RECEIVED = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _decide(config: Config, raw: bytes):
    parsed = parse(raw)
    inbox = config.inboxes[0]
    decision = decide(
        parsed, config=config, inbox=inbox, classifier=Classifier.from_config(config),
        received_at=RECEIVED, return_path=parsed.return_path,
    )  # fmt: skip
    return parsed, decision


def test_every_fixture_has_a_case() -> None:
    files = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*.eml")}
    assert files == {c["file"] for c in CASES}


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["file"].startswith(("customer/", "greeting/"))], ids=lambda c: c["file"]
)
def test_customer_mail_is_classified_and_acknowledged(
    example_config: Config, case: dict[str, Any]
) -> None:
    _, decision = _decide(example_config, (DATA / case["file"]).read_bytes())
    assert decision.skip is None, decision.skip
    assert decision.acknowledge
    assert decision.classification.priority == case["priority"]
    assert case["matched"] in decision.classification.reason
    assert decision.ack_to == case["ack_to"]


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["file"].startswith("machine/")], ids=lambda c: c["file"]
)
def test_machine_mail_is_never_acknowledged(example_config: Config, case: dict[str, Any]) -> None:
    _, decision = _decide(example_config, (DATA / case["file"]).read_bytes())
    assert not decision.acknowledge
    assert decision.skip is not None
    assert decision.skip.rule == case["skip_rule"], decision.skip


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["file"].startswith("broken/")], ids=lambda c: c["file"]
)
def test_broken_mail_gives_a_clear_answer(example_config: Config, case: dict[str, Any]) -> None:
    raw = (DATA / case["file"]).read_bytes()
    if case["expect"] == "error":
        with pytest.raises(InputError):
            parse(raw)
        return
    parsed, decision = _decide(example_config, raw)
    assert parsed.defects, "a malformed message should record what was wrong"
    if "skip_rule" in case:
        assert decision.skip is not None and decision.skip.rule == case["skip_rule"]
