"""Durations as people write them in the config."""

from datetime import timedelta

import pytest

from gateway.durations import business_hours_phrase, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1h 30m", timedelta(minutes=90)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("60s", timedelta(seconds=60)),
        ("1.5h", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30", "no unit"),
        ("", "empty"),
        ("1x", "not a duration"),
        ("1h1h", "twice"),
        ("h", "not a duration"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def test_format_round_trips_and_never_uses_days() -> None:
    for text in ("30m", "1h", "1h30m", "24h", "36h", "45s"):
        assert format_duration(parse_duration(text)) == text


def test_phrase() -> None:
    assert business_hours_phrase(timedelta(minutes=30)) == "30 minutes"
    assert business_hours_phrase(timedelta(hours=1)) == "1 hour"
    assert business_hours_phrase(timedelta(minutes=90)) == "1.5 hours"
    assert business_hours_phrase(timedelta(hours=24)) == "24 hours"
