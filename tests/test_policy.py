"""Deadlines: the window per priority, season stretch, next-reply windows."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.config import Config, parse
from gateway.policy import deadline
from tests.conftest import example_text

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def test_normal_friday_afternoon_runs_into_saturday(example_config: Config) -> None:
    d = deadline(
        example_config.calendar, example_config.priority("normal"), at(2026, 11, 20, 16, 0)
    )
    assert d.due_at == at(2026, 11, 21, 13, 0)
    assert (d.window, d.stretch, d.season) == (timedelta(hours=4), 1.0, None)


def test_season_stretches_the_window(example_config: Config) -> None:
    # Black Friday week: 4h x 2 = 8 business hours: Fri 1h, Sat 4h, Mon 3h.
    d = deadline(
        example_config.calendar, example_config.priority("normal"), at(2026, 11, 27, 16, 0)
    )
    assert d.due_at == at(2026, 11, 30, 12, 0)
    assert (d.stretch, d.season, d.effective_window) == (
        2.0,
        "Black Friday week",
        timedelta(hours=8),
    )


def test_season_applies_by_receipt_date_only(example_config: Config) -> None:
    # Received the day after the season ends: no stretch, even if earlier mail was stretched.
    d = deadline(example_config.calendar, example_config.priority("urgent"), at(2026, 12, 2, 9, 0))
    assert d.due_at == at(2026, 12, 2, 9, 30)
    assert d.season is None


def test_christmas_closures(example_config: Config) -> None:
    # Wed 23 Dec 16:00 + 24h: 1h Wed; 24th closed, 25th/26th holidays, Sunday; Mon 8h, Tue 8h, Wed 7h.
    d = deadline(example_config.calendar, example_config.priority("low"), at(2026, 12, 23, 16, 0))
    assert d.due_at == at(2026, 12, 30, 16, 0)


def test_next_reply_window() -> None:
    text = example_text().replace('first_reply = "4h"', 'first_reply = "4h"\nnext_reply = "8h"')
    config = parse(text)
    d = deadline(
        config.calendar, config.priority("normal"), at(2026, 11, 23, 9, 0), next_reply=True
    )
    assert d.window == timedelta(hours=8)
    assert d.due_at == at(2026, 11, 23, 17, 0)
