"""Commands by address (issue 15): which addresses a mail was delivered or copied to, and
the commands among them, for real mail as Gmail, Google Workspace, Fastmail, Microsoft 365
and Postfix deliver it (tests/data/commands/, expectations in tests/data/cases.toml)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from gateway.commands import COMMANDS, addressed_to, commands_in
from gateway.config import Config, ConfigError, parse
from gateway.configkeys import PRIORITIES
from gateway.parse import parse as parse_mail
from tests.conftest import DATA, example_text

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
    assert files == {c["file"] for c in CASES} and len(files) >= 7


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
