"""Configuration: the example is valid; every kind of mistake gets one clear line.

A problem line names the file, the key, what is wrong and what would be right, and the
command exits with status 2 without a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import Result

from gateway.calendar import Range
from gateway.config import ConfigError, load, locate, parse, parse_day_hours
from tests.conftest import EXAMPLE, example_text


def test_example_config_is_valid_and_complete(example_config) -> None:
    c = example_config
    assert c.database == "sqlite:///var/sla-gateway.db"
    assert [i.name for i in c.inboxes] == ["shop"]
    assert c.inboxes[0].addresses == ("support@shop.example", "help@shop.example")
    assert [p.name for p in c.priorities] == ["urgent", "high", "normal", "low"]
    assert c.priority("urgent").first_reply == timedelta(minutes=30)
    assert c.priority("low").first_reply == timedelta(hours=24)
    assert c.priority("high").next_reply == timedelta(hours=1)  # defaults to first_reply
    assert c.hours.week[0] == (Range(540, 1020),)
    assert c.hours.week[6] == ()
    assert c.vip.min_priority == "high"
    assert c.calendar.closure(date(2026, 12, 24)) == "closed"
    assert c.calendar.closure(date(2026, 12, 25)) == "Christmas Day"
    assert c.calendar.closure(date(2026, 3, 8)) == "Women's Day"  # Berlin only
    assert c.inbox_for("HELP@shop.example") is c.inboxes[0]


def test_one_holiday_table_answers_the_calendar_and_the_messages(example_config) -> None:
    """Whether a day is closed and why (in the reader's language) come from one table."""
    closed = example_config.hours.closed_days
    assert closed.reason(date(2026, 12, 25), "de") == "Erster Weihnachtstag"
    assert closed.reason(date(2026, 12, 25), "en") == "Christmas Day"
    assert closed.reason(date(2026, 12, 24), "de") == ""  # listed by the shop: no name
    assert closed.reason(date(2026, 12, 23), "de") is None  # open
    for day in (date(2026, 3, 8), date(2026, 12, 24), date(2026, 12, 27), date(2027, 1, 1)):
        assert (example_config.calendar.closure(day) is None) == (closed.reason(day, "fr") is None)


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, "gw.toml")
    return [str(p) for p in info.value.problems]


def _replace(old: str, new: str) -> str:
    text = example_text()
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'timezone = "Europe/Berlin"',
            'timezone = "Europe/Berln"',
            'gw.toml: business_hours.timezone: "Europe/Berln" is not a known time zone; did you mean "Europe/Berlin"?',
        ),
        (
            'holidays = "DE-BE"',
            'holidays = "XX"',
            'gw.toml: business_hours.holidays: "XX" is not a known country code',
        ),
        (
            'holidays = "DE-BE"',
            'holidays = "DE-BX"',
            'gw.toml: business_hours.holidays: "BX" is not a subdivision of DE',
        ),
        (
            'mon = "09:00-17:00"',
            'mon = "9-17"',
            'gw.toml: business_hours.mon: "9" is not a time of day like "09:00"',
        ),
        (
            'mon = "09:00-17:00"',
            'mon = "09:00-12:00, 11:00-17:00"',
            "gw.toml: business_hours.mon: ranges 09:00-12:00 and 11:00-17:00 overlap",
        ),
        (
            'mon = "09:00-17:00"',
            'mon = "09:00-09:00"',
            "is empty (starts and ends at the same time)",
        ),
        ('mon = "09:00-17:00"', 'mon = "25:00-26:00"', '"25:00" is not a valid time of day'),
        (
            'mon = "09:00-17:00"',
            'mon = "22:00-10:00"',
            "business_hours.mon: range 22:00-10:00 runs into tue's range",
        ),
        (
            'first_reply = "30m"',
            'first_reply = "30"',
            'gw.toml: priority.urgent.first_reply: "30" has no unit; use h and m units, e.g. "30m", "4h" or "1h30m"',
        ),
        (
            'first_reply = "30m"',
            "first_reply = 30",
            "priority.urgent.first_reply: must be a duration string, got the number 30",
        ),
        (
            'first_reply = "30m"',
            'first_reply = "0m"',
            "priority.urgent.first_reply: must be longer than zero",
        ),
        (
            'keywords = ["fraud", "charged twice", "chargeback", "hacked"]',
            'keywords = "fraud"',
            'gw.toml: priority.urgent.keywords: must be a list of strings, got a single string; write keywords = ["fraud"]',
        ),
        (
            "[priority.low]",
            "[priority.lowest]",
            'gw.toml: priority.lowest: unknown key; did you mean "low"?',
        ),
        (
            'first_reply = "30m"',
            'frist_reply = "30m"',
            'priority.urgent.frist_reply: unknown key; did you mean "first_reply"?',
        ),
        (
            'database = "sqlite:///var/sla-gateway.db"',
            'databse = "x"',
            'gw.toml: databse: unknown key; did you mean "database"?',
        ),
        (
            'min_priority = "high"',
            'min_priority = "hihg"',
            'vip.min_priority: "hihg" is not a priority; did you mean "high"?',
        ),
        (
            'closed = ["2026-12-24", "2026-12-31"]',
            'closed = ["2026-12-32"]',
            'business_hours.closed: "2026-12-32" is not a date',
        ),
        (
            'closed = ["2026-12-24", "2026-12-31"]',
            'closed = ["2026-12-31..2026-12-24"]',
            "ends before it starts",
        ),
        (
            "stretch = 2.0",
            "stretch = -1",
            "business_hours.season[0].stretch: must be a positive number",
        ),
        ('to = "2026-12-01"', 'to = "2026-11-01"', "business_hours.season[0].to: is before from"),
        (
            'address = "support@shop.example"',
            'address = "support"',
            'inbox[0].address: "support" is not an e-mail address',
        ),
        (
            'language = "en"',
            'language = "enn"',
            'inbox[0].language: "enn" is not a supported language; did you mean "en"?',
        ),
        (
            'keywords = ["wholesale", "partnership", "feature request"]',
            'patterns = ["(unclosed"]',
            'priority.low.patterns: "(unclosed" is not a valid regular expression',
        ),
    ],
)
def test_each_mistake_is_named(old: str, new: str, expected: str) -> None:
    problems = _problems(_replace(old, new))
    assert any(expected in p for p in problems), problems


def test_all_problems_are_reported_together() -> None:
    text = _replace('timezone = "Europe/Berlin"', 'timezone = "Mars/Base"')
    text = text.replace('first_reply = "4h"', 'first_reply = "4"')
    problems = _problems(text)
    assert len(problems) == 2
    assert problems[0].startswith("gw.toml: business_hours.timezone")
    assert problems[1].startswith("gw.toml: priority.normal.first_reply")


def test_missing_required_parts() -> None:
    problems = _problems('[business_hours]\ntimezone = "UTC"\n')
    joined = "\n".join(problems)
    assert "inbox: no inbox is configured" in joined
    assert "business_hours: the shop is never open" in joined
    assert "priority.normal: is missing" in joined


def test_toml_syntax_error_names_the_line() -> None:
    problems = _problems('database = "x\n')
    assert problems[0].startswith("gw.toml: is not valid TOML")
    assert "line 1" in problems[0]


def test_day_hours_forms() -> None:
    assert parse_day_hours("closed") == ()
    assert parse_day_hours("00:00-24:00") == (Range(0, 1440),)
    assert parse_day_hours("09:00-12:00, 13:00-17:00") == (Range(540, 720), Range(780, 1020))
    assert parse_day_hours("22:00-02:00") == (Range(1320, 1560),)


def test_native_toml_dates_are_accepted() -> None:
    text = _replace('closed = ["2026-12-24", "2026-12-31"]', "closed = [2026-12-24]")
    text = text.replace('from = "2026-11-27"', "from = 2026-11-27")
    config = parse(text)
    assert config.calendar.closure(date(2026, 12, 24)) == "closed"
    assert config.hours.seasons[0].start == date(2026, 11, 27)


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    explicit = tmp_path / "explicit.toml"
    explicit.write_text(example_text())
    from_env = tmp_path / "env.toml"
    from_env.write_text(example_text())
    (tmp_path / "config").mkdir()
    local = tmp_path / "config" / "gateway.toml"
    local.write_text(example_text())
    env = {"SLA_GATEWAY_CONFIG": str(from_env)}
    assert locate(str(explicit), env) == explicit
    assert locate(None, env) == from_env
    assert locate(None, {}) == Path("config/gateway.toml")
    local.unlink()
    with pytest.raises(ConfigError, match="none given and none found"):
        locate(None, {})
    with pytest.raises(ConfigError, match="no such file"):
        locate(str(tmp_path / "missing.toml"), {})


def test_load_reads_the_example() -> None:
    assert load(EXAMPLE).path == EXAMPLE


# ------------------------------------------------------------------ through the CLI


def test_check_prints_the_policy(run_cli: Callable[..., Result]) -> None:
    result = run_cli("--config", str(EXAMPLE), "check")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{EXAMPLE}: OK" in out
    assert "opening hours: Mon–Fri 09:00–17:00; Sat 10:00–14:00; Sun closed" in out
    assert "2026-12-25 Christmas Day" in out
    assert "urgent  first reply 30 minutes" in out
    assert "low     first reply 24 hours" in out
    assert "season Black Friday week: 2026-11-27..2026-12-01, windows ×2" in out


def test_check_bad_config_exits_2_with_one_line_per_problem(
    run_cli: Callable[..., Result], write_config: Callable[[str], Path]
) -> None:
    path = write_config(
        _replace('timezone = "Europe/Berlin"', 'timezone = "Europe/Berln"').replace(
            'first_reply = "1h"', 'first_reply = "1"'
        )
    )
    result = run_cli("--config", str(path), "check")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        f'error: {path}: business_hours.timezone: "Europe/Berln" is not a known time zone; '
        'did you mean "Europe/Berlin"?'
    )
    assert lines[1].startswith(f'error: {path}: priority.high.first_reply: "1" has no unit')
    assert "Traceback" not in result.output


def test_missing_config_exits_2(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path / "nope.toml"), "check")
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_config_from_environment(run_cli: Callable[..., Result]) -> None:
    result = run_cli("check", env={"SLA_GATEWAY_CONFIG": str(EXAMPLE)})
    assert result.exit_code == 0
    assert f"{EXAMPLE}: OK" in result.output


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('first_reply = "30m"', 'first_reply = "99999999999h"', "is longer than ten years"),
        (
            'closed = ["2026-12-24", "2026-12-31"]',
            'closed = ["0001-01-01..9999-12-31"]',
            "is longer than a year",
        ),
        (
            'closed = ["2026-12-24", "2026-12-31"]',
            'closed = ["2020-01-01..2020-12-31", "1066-10-14"]',
            "outside the years",
        ),
        ('from = "2026-11-27"', "from = 2026-11-27T10:00:00", "is a date and time"),
        ("stretch = 2.0", "stretch = nan", "must be a positive number"),
        ("stretch = 2.0", "stretch = 1e308", "must be a positive number"),
        (
            'keywords = ["wholesale", "partnership", "feature request"]',
            "patterns = ['x*']",
            "matches every message",
        ),
    ],
)
def test_extreme_values_are_problems_not_tracebacks(old: str, new: str, expected: str) -> None:
    problems = _problems(_replace(old, new))
    assert any(expected in p for p in problems), problems


def test_due_refuses_years_out_of_range(run_cli: Callable[..., Result]) -> None:
    result = run_cli("--config", str(EXAMPLE), "due", "-p", "normal", "--at", "9999-12-31T10:00")
    assert result.exit_code == 2
    assert "outside the years 1970-2200" in result.output


# ------------------------------------------------------------------ one declaration


def test_readme_table_is_the_declaration() -> None:
    """The README's configuration table is generated from the key declaration
    (`sla-gateway check --readme-table`); editing one without the other fails here."""
    from gateway.configdoc import readme_section, readme_table

    readme = (EXAMPLE.parent.parent / "README.md").read_text(encoding="utf-8")
    assert readme_section(readme) == readme_table()


def test_every_declared_key_is_in_the_readme_table() -> None:
    from gateway.configdoc import readme_table

    table = readme_table()
    for key in ("`inbox.imap.poll_interval`", "`business_hours.season.from`", "`priority.*.first_reply`",
                "`send.alert_after`", "`oauth.token_key_file`", "`[[form]]`", "`breach.notify_customer`",
                "`business_hours.mon`", "`inbox.imap.client_id`"):  # fmt: skip
        assert key in table, key
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert all(len(row) == 3 and row[1] not in ("", "?") and row[2].strip(" |") for row in rows), rows


def test_unknown_key_in_a_nested_table_names_the_known_ones() -> None:
    problems = _problems(_replace('min_priority = "high"', 'min_prio = "high"'))
    assert 'gw.toml: vip.min_prio: unknown key; did you mean "min_priority"?' in problems
    problems = _problems(_replace('min_priority = "high"', 'zzz = "high"'))
    assert "gw.toml: vip.zzz: unknown key; known keys: senders, min_priority" in problems


def test_check_schema_prints_a_json_schema_the_example_validates_against(
    run_cli: Callable[..., Result],
) -> None:
    import json
    import tomllib

    result = run_cli("check", "--schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert {"inbox", "business_hours", "priority", "send"} <= set(schema["properties"])
    assert "description" in schema["properties"]["database"]
    example = json.loads(json.dumps(tomllib.loads(example_text()), default=str))
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(example, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "databse": "x"}, schema)


def test_never_open_is_checked_from_the_callers_today() -> None:
    """Closed days that cover every opening hour from today on: the probe starts at the
    caller's `today` (the injected clock), not at a fixed date."""
    years = ", ".join(f'"{y}-06-01..{y + 1}-05-31"' for y in range(2031, 2055))
    text = _replace('closed = ["2026-12-24", "2026-12-31"]', f"closed = [{years}]")
    assert parse(text, today=date(2026, 1, 1)).hours.closed  # open until 2031
    with pytest.raises(ConfigError, match="the shop is never open from 2031-06-01 on"):
        parse(text, "gw.toml", today=date(2031, 6, 1))


def test_a_wrong_type_suggests_the_declared_default() -> None:
    problems = _problems(_replace("max_per_minute = 60", 'max_per_minute = "60"'))
    assert "gw.toml: acknowledge.max_per_minute: must be a whole number, got str; write max_per_minute = 60" in problems
