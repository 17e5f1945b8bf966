"""Independent test specification for ``gateway.calendar.BusinessCalendar``.

This file owns:

* hypothesis property tests (``add``/``elapsed`` round trip, monotonicity,
  composition, additivity, "results sit right after open time", ``next_open`` /
  ``is_open`` consistency, 24/7 == absolute time, seasons), run against random
  weekly hours (including past-midnight and DST-hostile boundaries), random closed
  dates and several awkward time zones;
* agreement with the minute-stepping model in ``tests/calendar_reference.py``:
  ``add``/``elapsed``/``is_open``/``next_open`` near random instants, and the whole
  open set, minute by minute, across two days around DST transitions (the only way
  to catch a self-consistent but wrong reading of DST gaps and overlaps);
* hand-computed example tests for the tricky cases (weekends, holidays, DST gaps
  and overlaps, past-midnight ranges, 24/7, seasons, input validation).

All instant comparisons are done in UTC on purpose: Python compares and subtracts
datetimes that share a tzinfo by wall time, ignoring ``fold`` and DST.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st

from gateway.calendar import BusinessCalendar, Range, Season

try:
    from tests.calendar_reference import (
        EPOCH,
        ReferenceCalendar,
        ReferenceHorizonError,
        offset_changes,
    )
except ImportError:  # tests/ on sys.path but not importable as a package
    from calendar_reference import (  # type: ignore[no-redef]
        EPOCH,
        ReferenceCalendar,
        ReferenceHorizonError,
        offset_changes,
    )

US = timedelta(microseconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

BERLIN = ZoneInfo("Europe/Berlin")

TZ_KEYS = (
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST
    "Asia/Kolkata",  # +05:30, no DST
    "UTC",
    "Pacific/Chatham",  # +12:45 / +13:45, transitions at 02:45 / 03:45 local
    "America/St_Johns",  # -03:30 / -02:30
    "Europe/Dublin",  # "negative DST" in tzdata
)
DST_TZ_KEYS = tuple(key for key in TZ_KEYS if key not in ("UTC", "Asia/Kolkata"))
# Wall-clock minutes at or next to common DST transitions, and around midnight.
INTERESTING_MINUTES = (
    0, 1, 30, 59, 60, 61, 90, 105, 119, 120, 121, 135, 149, 150, 151,
    165, 179, 180, 181, 210, 225, 226, 240, 1380, 1410, 1439,
)  # fmt: skip
END_POINTS = (*INTERESTING_MINUTES, 1440, *(1440 + m for m in INTERESTING_MINUTES), 2880)
FIRST_INSTANT = datetime(2020, 1, 1, tzinfo=UTC)
LAST_INSTANT = datetime(2030, 12, 31, tzinfo=UTC)
OTHER_ZONE = ZoneInfo("America/Los_Angeles")

WeekTuples = tuple[tuple[tuple[int, int], ...], ...]
ALWAYS: WeekTuples = (((0, 1440),),) * 7

# CALENDAR_EXAMPLES_SCALE=10 pytest ... runs ten times as many examples (e.g. nightly).
EXAMPLES_SCALE = float(os.environ.get("CALENDAR_EXAMPLES_SCALE", "1"))


def examples(n: int) -> settings:
    """Hypothesis settings for a property test that should try ``n`` examples."""
    return settings(
        max_examples=max(1, round(n * EXAMPLES_SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


PROPERTY_SETTINGS = examples(100)


# --------------------------------------------------------------------------- helpers


def utc(at: datetime) -> datetime:
    """The same instant in UTC, so that comparisons and arithmetic are absolute."""
    return at.astimezone(UTC)


def later(at: datetime, delta: timedelta) -> datetime:
    """``at`` moved by ``delta`` of *absolute* time (result in UTC)."""
    return utc(at) + delta


def assert_real_reading(at: datetime, tz: tzinfo) -> None:
    """``at`` is expressed in ``tz`` and is a wall-clock reading that actually occurs
    (right fold in an overlap, never a time inside a DST gap)."""
    assert at.tzinfo is tz or getattr(at.tzinfo, "key", 1) == getattr(tz, "key", 2), (
        f"{at!r} is not in {tz!r}"
    )
    canonical = utc(at).astimezone(tz)
    assert (at.replace(tzinfo=None), at.utcoffset()) == (
        canonical.replace(tzinfo=None),
        canonical.utcoffset(),
    ), f"{at!r} is not a real wall-clock reading (expected {canonical!r})"


def to_ranges(week: WeekTuples) -> list[list[Range]]:
    return [[Range(start, end) for start, end in day] for day in week]


def weekly_minutes(week: WeekTuples) -> int:
    return sum(end - start for day in week for start, end in day)


@dataclass(frozen=True)
class Scenario:
    """One randomly generated calendar plus a start instant near which to probe it."""

    tz: ZoneInfo
    week: WeekTuples
    closed_dates: frozenset[date]
    start: datetime

    def closed(self, day: date) -> str | None:
        return "closed" if day in self.closed_dates else None

    def calendar(self, seasons: Sequence[Season] = ()) -> BusinessCalendar:
        return BusinessCalendar(self.tz, to_ranges(self.week), self.closed, seasons)

    def reference(self) -> ReferenceCalendar:
        return ReferenceCalendar(self.tz, self.week, self.closed)


# ------------------------------------------------------------------------ strategies


@cache
def transition_minutes(tz_key: str) -> tuple[int, ...]:
    """Wall-clock minutes of day at, between and next to ``tz_key``'s own offset changes
    (Berlin: 01:59, 02:00, 02:01, 02:30, 02:59, 03:00, 03:01), as range boundaries."""
    tz = ZoneInfo(tz_key)
    found: set[int] = set()
    for change in offset_changes(tz_key, 2020, 2030):
        before = (change - MINUTE).astimezone(tz).replace(tzinfo=None) + MINUTE
        after = change.astimezone(tz).replace(tzinfo=None)
        a, b = sorted(wall.hour * 60 + wall.minute for wall in (before, after))
        found.update({a - 1, a, a + 1, (a + b) // 2, b - 1, b, b + 1})
    return tuple(sorted(m % 1440 for m in found))


@st.composite
def time_ranges(draw: st.DrawFn, tz_key: str) -> tuple[int, int]:
    special = transition_minutes(tz_key) or INTERESTING_MINUTES
    start = draw(
        st.one_of(
            st.sampled_from(special),
            st.sampled_from(INTERESTING_MINUTES),
            st.integers(0, 1439),
        )
    )
    special_ends = sorted({*END_POINTS, *special, *(1440 + m for m in special)})
    end = draw(
        st.one_of(
            st.sampled_from([m for m in special_ends if m > start]),
            st.integers(start + 1, min(start + 180, 2880)),  # short
            st.integers(start + 1, 2880),  # anything, often past midnight
        )
    )
    return start, end


def weeks(tz_key: str) -> st.SearchStrategy[WeekTuples]:
    day_hours = st.lists(time_ranges(tz_key), max_size=3).map(tuple)
    return st.one_of(
        st.lists(day_hours, min_size=7, max_size=7).map(tuple),
        day_hours.map(lambda hours: (hours,) * 7),  # same hours every day
        st.just((((540, 1020),),) * 5 + ((), ())),  # office hours
        st.just(ALWAYS),
    ).filter(lambda week: weekly_minutes(week) >= 240)  # keep searches short


def whole_minutes(lo: datetime, hi: datetime) -> int:
    return (hi - lo) // MINUTE


@st.composite
def instants(
    draw: st.DrawFn, tz_key: str, week: WeekTuples, micro: bool, near_change: bool = False
) -> datetime:
    """An instant (UTC) in 2020-2030, often (``near_change``: always, when the zone has
    any) close to an offset change of ``tz_key``, often exactly on a wall-clock boundary
    of ``week``."""
    tz = ZoneInfo(tz_key)
    changes = offset_changes(tz_key, 2020, 2030)
    if changes and (near_change or draw(st.booleans())):
        near = draw(st.sampled_from(changes))
        at = near + draw(st.integers(-2 * 1440, 2 * 1440)) * MINUTE
    else:
        at = (
            FIRST_INSTANT
            + draw(st.integers(0, whole_minutes(FIRST_INSTANT, LAST_INSTANT))) * MINUTE
        )
    boundaries = sorted({m % 1440 for day in week for r in day for m in r})
    if draw(st.booleans()) and boundaries:
        local_day = at.astimezone(tz).date() + draw(st.integers(-1, 1)) * DAY
        wall = datetime.combine(local_day, time()) + draw(st.sampled_from(boundaries)) * MINUTE
        at = utc(wall.replace(tzinfo=tz, fold=draw(st.integers(0, 1))))
    if micro and draw(st.booleans()):
        at += draw(st.integers(0, 60 * 10**6 - 1)) * US
    return at


closed_offsets = st.tuples(
    st.frozensets(st.integers(-3, 40), max_size=8),
    st.one_of(st.none(), st.tuples(st.integers(-3, 20), st.integers(1, 21))),
)


@st.composite
def scenarios(
    draw: st.DrawFn,
    micro: bool = True,
    week: WeekTuples | None = None,
    near_change: bool = False,
) -> Scenario:
    tz_key = draw(st.sampled_from(DST_TZ_KEYS if near_change else TZ_KEYS))
    tz = ZoneInfo(tz_key)
    if week is None:
        week = draw(weeks(tz_key))
    start = draw(instants(tz_key, week, micro, near_change))
    singles, block = draw(closed_offsets)
    offsets = set(singles)
    if block is not None:
        first, length = block
        offsets.update(range(first, first + length))
    local_day = start.astimezone(tz).date()
    closed_dates = frozenset(local_day + n * DAY for n in offsets)
    shown_in = draw(st.sampled_from((tz, UTC, OTHER_ZONE)))
    return Scenario(tz, week, closed_dates, start.astimezone(shown_in))


def durations(max_hours: int = 200, micro: bool = True) -> st.SearchStrategy[timedelta]:
    options = [
        st.sampled_from([timedelta(0), MINUTE, HOUR, 8 * HOUR, DAY]),
        st.integers(0, max_hours * 60).map(lambda m: m * MINUTE),
    ]
    if micro:
        options += [
            st.just(US),
            st.integers(0, max_hours * 3600 * 10**6).map(lambda u: u * US),
        ]
    return st.one_of(options)


offsets_us = st.integers(-3 * 86400 * 10**6, 5 * 86400 * 10**6).map(lambda u: u * US)


# ------------------------------------------------------------------ property tests


@examples(150)
@given(sc=scenarios(), duration=durations())
def test_elapsed_inverts_add(sc: Scenario, duration: timedelta) -> None:
    cal = sc.calendar()
    result = cal.add(sc.start, duration)
    assert_real_reading(result, cal.tz)
    assert utc(result) >= utc(sc.start)
    assert cal.elapsed(sc.start, result) == duration


@PROPERTY_SETTINGS
@given(sc=scenarios(), d1=durations(), d2=durations())
def test_add_is_monotone_in_duration(sc: Scenario, d1: timedelta, d2: timedelta) -> None:
    d1, d2 = sorted((d1, d2))
    cal = sc.calendar()
    assert utc(cal.add(sc.start, d1)) <= utc(cal.add(sc.start, d2))


@PROPERTY_SETTINGS
@given(sc=scenarios(), shift=offsets_us, duration=durations())
def test_add_is_monotone_in_start(sc: Scenario, shift: timedelta, duration: timedelta) -> None:
    cal = sc.calendar()
    s1, s2 = sorted((utc(sc.start), later(sc.start, shift)))
    assert utc(cal.add(s1, duration)) <= utc(cal.add(s2, duration))


@PROPERTY_SETTINGS
@given(sc=scenarios(), a=durations(100), b=durations(100))
def test_add_composes(sc: Scenario, a: timedelta, b: timedelta) -> None:
    # Holds for a == 0 too: add(s, 0) == s even when s is closed, and then both sides
    # are add(s, b).
    cal = sc.calendar()
    assert utc(cal.add(cal.add(sc.start, a), b)) == utc(cal.add(sc.start, a + b))


@examples(120)
@given(
    sc=scenarios(micro=False),
    duration=durations(60, micro=False),
    span_minutes=st.integers(-3 * 1440, 3 * 1440),
    probe_us=st.integers(0, 60 * 10**6 - 1),
)
def test_agrees_with_reference(
    sc: Scenario, duration: timedelta, span_minutes: int, probe_us: int
) -> None:
    cal, ref = sc.calendar(), sc.reference()
    try:
        expected = ref.add(sc.start, duration)
    except ReferenceHorizonError:
        reject()  # answer too far away for the reference to find in reasonable time
    assert utc(cal.add(sc.start, duration)) == utc(expected)

    end = later(sc.start, span_minutes * MINUTE)
    assert cal.elapsed(sc.start, end) == ref.elapsed(sc.start, end)

    for probe in (sc.start, later(sc.start, probe_us * US)):
        assert cal.is_open(probe) == ref.is_open(probe), probe
        assert utc(cal.next_open(probe)) == utc(ref.next_open(probe)), probe


@examples(100)
@given(sc=scenarios(micro=False, near_change=True))
def test_open_set_matches_reference_minute_by_minute(sc: Scenario) -> None:
    """Around an offset change, compare the whole open set: both are unions of
    whole-minute intervals, so agreeing at every minute means agreeing everywhere."""
    cal, ref = sc.calendar(), sc.reference()
    window_start = utc(sc.start) - DAY
    minutes = 2 * 1440
    line = ref.timeline(
        (window_start - EPOCH) // MINUTE, (window_start - EPOCH) // MINUTE + minutes
    )
    mismatches = [
        probe
        for probe in (window_start + k * MINUTE for k in range(minutes))
        if cal.is_open(probe) != line.is_open((probe - EPOCH) // MINUTE)
    ]
    assert not mismatches, (
        f"{len(mismatches)} minutes differ, first: {mismatches[0].astimezone(sc.tz)!r} "
        f"(reference says open={ref.is_open(mismatches[0])})"
    )
    window_end = window_start + minutes * MINUTE
    assert cal.elapsed(window_start, window_end) == ref.elapsed(window_start, window_end)


@PROPERTY_SETTINGS
@given(sc=scenarios(), shifts=st.lists(offsets_us, min_size=2, max_size=2))
def test_elapsed_is_additive_and_antisymmetric(sc: Scenario, shifts: list[timedelta]) -> None:
    cal = sc.calendar()
    a = sc.start
    b, c = (later(a, shift) for shift in shifts)
    assert cal.elapsed(a, a) == timedelta(0)
    assert cal.elapsed(a, b) + cal.elapsed(b, c) == cal.elapsed(a, c)
    assert cal.elapsed(b, a) == -cal.elapsed(a, b)
    lo, hi = sorted((utc(a), utc(b)))
    assert timedelta(0) <= cal.elapsed(lo, hi) <= hi - lo


@PROPERTY_SETTINGS
@given(sc=scenarios(), duration=durations())
def test_add_ends_right_after_open_time(sc: Scenario, duration: timedelta) -> None:
    assume(duration > timedelta(0))
    cal = sc.calendar()
    result = cal.add(sc.start, duration)
    just_before = later(result, -US)
    assert cal.is_open(just_before)
    assert cal.elapsed(just_before, result) == US


@examples(120)
@given(sc=scenarios())
def test_is_open_and_next_open(sc: Scenario) -> None:
    cal = sc.calendar()
    # Open periods last at least a minute, so the next microsecond counts iff open now.
    counted = cal.elapsed(sc.start, later(sc.start, US))
    assert counted == (US if cal.is_open(sc.start) else timedelta(0))

    opening = cal.next_open(sc.start)
    assert_real_reading(opening, cal.tz)
    assert utc(opening) >= utc(sc.start)
    assert cal.is_open(opening)
    assert cal.elapsed(sc.start, opening) == timedelta(0)
    assert utc(cal.add(sc.start, US)) == later(opening, US)
    if cal.is_open(sc.start):
        assert utc(opening) == utc(sc.start)
    else:
        assert not cal.is_open(later(opening, -US))


always_representations = st.one_of(
    st.just(ALWAYS),
    st.just((((0, 2880),),) * 7),  # overlapping 48-hour ranges
    st.sampled_from(INTERESTING_MINUTES[1:]).map(lambda m: (((0, m), (m, 1440)),) * 7),
    st.sampled_from(INTERESTING_MINUTES).map(lambda m: (((m, 1440 + m),),) * 7),
)


@PROPERTY_SETTINGS
@given(data=st.data(), week=always_representations, duration=durations(), shift=offsets_us)
def test_always_open_is_absolute_time(
    data: st.DataObject, week: WeekTuples, duration: timedelta, shift: timedelta
) -> None:
    sc = data.draw(scenarios(week=week))
    cal = BusinessCalendar(sc.tz, to_ranges(week))
    assert cal.is_open(sc.start)
    result = cal.add(sc.start, duration)
    assert_real_reading(result, cal.tz)
    assert utc(result) == later(sc.start, duration)
    other = later(sc.start, shift)
    assert cal.elapsed(sc.start, other) == other - utc(sc.start)


@examples(50)
@given(
    sc=scenarios(),
    seasons=st.lists(st.tuples(st.integers(-40, 40), st.integers(0, 30)), max_size=4),
    duration=durations(),
)
def test_season_at_and_seasons_do_not_change_business_time(
    sc: Scenario, seasons: list[tuple[int, int]], duration: timedelta
) -> None:
    anchor = sc.start.astimezone(sc.tz).date()
    chosen: list[Season] = []
    taken: set[date] = set()
    for i, (offset, length) in enumerate(seasons):
        days = {anchor + (offset + k) * DAY for k in range(length + 1)}
        if days & taken:
            continue  # the reference expects non-overlapping seasons
        taken |= days
        first, last = anchor + offset * DAY, anchor + (offset + length) * DAY
        chosen.append(Season(f"s{i}", first, last, 1.0 + i / 2, f"notice {i}"))
    ref = ReferenceCalendar(sc.tz, ALWAYS, seasons=[(s.name, s.start, s.end) for s in chosen])
    cal = sc.calendar(chosen)
    for probe in (sc.start, later(sc.start, duration), later(sc.start, -duration)):
        expected = ref.season_at(probe)
        got = cal.season_at(probe)
        assert (got.name if got else None) == (expected[0] if expected else None), probe
        if got is not None:
            assert got in chosen
    assert utc(cal.add(sc.start, duration)) == utc(sc.calendar().add(sc.start, duration))


# ------------------------------------------------------------------ example tests


def hhmm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def rng(start: str, end: str) -> Range:
    """``rng("22:00", "26:00")`` is 22:00 until 02:00 the next morning."""
    return Range(hhmm(start), hhmm(end))


def berlin(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
    microsecond: int = 0, *, fold: int = 0,
) -> datetime:  # fmt: skip
    """A Berlin wall-clock reading; ``fold=1`` picks the second of a repeated time."""
    return datetime(year, month, day, hour, minute, second, microsecond, BERLIN, fold=fold)


def at_utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
    microsecond: int = 0,
) -> datetime:  # fmt: skip
    return datetime(year, month, day, hour, minute, second, microsecond, UTC)


OFFICE = [rng("09:00", "17:00")]
SHOP_WEEK = [OFFICE] * 5 + [[rng("10:00", "14:00")], []]  # Mon-Fri 9-17, Sat 10-14
OFFICE_WEEK = [OFFICE] * 5 + [[], []]  # Mon-Fri 9-17, weekend closed
DAILY_9_17 = [OFFICE] * 7
ALWAYS_OPEN = [[rng("00:00", "24:00")]] * 7


def same_instant(got: datetime, expected: datetime) -> bool:
    return utc(got) == utc(expected)


def test_friday_evening_rolls_into_saturday_hours() -> None:
    cal = BusinessCalendar(BERLIN, SHOP_WEEK)
    result = cal.add(berlin(2026, 3, 6, 16, 30), HOUR)  # Friday
    assert result == berlin(2026, 3, 7, 10, 30)
    assert_real_reading(result, BERLIN)
    # The same instant given in UTC gives the same answer, in Berlin time.
    from_utc = cal.add(at_utc(2026, 3, 6, 15, 30), HOUR)
    assert same_instant(from_utc, berlin(2026, 3, 7, 10, 30))
    assert_real_reading(from_utc, BERLIN)


def test_closed_weekend() -> None:
    cal = BusinessCalendar(BERLIN, OFFICE_WEEK)
    friday_4pm = berlin(2026, 3, 6, 16)
    monday_10am = berlin(2026, 3, 9, 10)
    assert same_instant(cal.add(friday_4pm, 2 * HOUR), monday_10am)
    assert cal.elapsed(friday_4pm, monday_10am) == 2 * HOUR
    assert cal.elapsed(monday_10am, friday_4pm) == -2 * HOUR
    saturday_noon = berlin(2026, 3, 7, 12)
    assert not cal.is_open(saturday_noon)
    assert same_instant(cal.next_open(saturday_noon), berlin(2026, 3, 9, 9))
    # Zero duration from a closed instant is that instant, not the next opening.
    assert same_instant(cal.add(saturday_noon, timedelta(0)), saturday_noon)
    # Landing exactly on closing time returns closing time, not Monday's opening.
    assert same_instant(cal.add(friday_4pm, HOUR), berlin(2026, 3, 6, 17))
    assert not cal.is_open(berlin(2026, 3, 6, 17))
    assert cal.is_open(berlin(2026, 3, 6, 16, 59, 59, 999999))
    assert cal.is_open(berlin(2026, 3, 6, 9))
    assert not cal.is_open(berlin(2026, 3, 6, 8, 59, 59, 999999))
    assert same_instant(cal.next_open(berlin(2026, 3, 6, 12)), berlin(2026, 3, 6, 12))


def test_german_christmas_holidays_are_closed() -> None:
    german = holidays.country_holidays("DE", years=2026)
    assert german.get(date(2026, 12, 24)) is None
    cal = BusinessCalendar(BERLIN, SHOP_WEEK, closed=german.get)
    christmas_eve_4pm = berlin(2026, 12, 24, 16)  # Thursday
    # 1 h on the 24th; Fri 25th and Sat 26th are holidays, Sunday is closed.
    assert same_instant(cal.add(christmas_eve_4pm, 2 * HOUR), berlin(2026, 12, 28, 10))
    assert not cal.is_open(berlin(2026, 12, 25, 12))
    assert not cal.is_open(berlin(2026, 12, 26, 12))
    assert same_instant(cal.next_open(berlin(2026, 12, 25, 12)), berlin(2026, 12, 28, 9))
    # Without the holidays the 25th is an ordinary Friday.
    plain = BusinessCalendar(BERLIN, SHOP_WEEK)
    assert same_instant(plain.add(christmas_eve_4pm, 2 * HOUR), berlin(2026, 12, 25, 10))


def test_dst_with_round_the_clock_hours() -> None:
    cal = BusinessCalendar(BERLIN, ALWAYS_OPEN)
    # Spring forward (Sunday 2026-03-29): the local day has 23 hours.
    assert cal.elapsed(berlin(2026, 3, 29), berlin(2026, 3, 30)) == 23 * HOUR
    assert cal.add(berlin(2026, 3, 29), 23 * HOUR) == berlin(2026, 3, 30)
    # Fall back (Sunday 2026-10-25): the local day has 25 hours.
    assert cal.elapsed(berlin(2026, 10, 25), berlin(2026, 10, 26)) == 25 * HOUR
    result = cal.add(berlin(2026, 10, 25), 24 * HOUR)
    assert result == berlin(2026, 10, 25, 23)
    assert result.utcoffset() == HOUR


def test_dst_with_office_hours() -> None:
    cal = BusinessCalendar(BERLIN, DAILY_9_17)
    assert cal.elapsed(berlin(2026, 3, 28, 9), berlin(2026, 3, 30, 9)) == 16 * HOUR
    spring = cal.add(berlin(2026, 3, 28, 16), 2 * HOUR)
    assert spring == berlin(2026, 3, 29, 10)
    assert same_instant(spring, at_utc(2026, 3, 29, 8))
    autumn = cal.add(berlin(2026, 10, 24, 16), 2 * HOUR)
    assert same_instant(autumn, at_utc(2026, 10, 25, 9))
    assert cal.elapsed(berlin(2026, 10, 25), berlin(2026, 10, 26)) == 8 * HOUR


def test_ranges_across_the_transitions() -> None:
    cal = BusinessCalendar(BERLIN, [[rng("01:00", "04:00")]] * 7)
    assert cal.elapsed(berlin(2026, 3, 29), berlin(2026, 3, 30)) == 2 * HOUR
    assert cal.elapsed(berlin(2026, 10, 25), berlin(2026, 10, 26)) == 4 * HOUR
    assert cal.elapsed(berlin(2026, 6, 7), berlin(2026, 6, 8)) == 3 * HOUR


def test_range_inside_the_repeated_hour() -> None:
    # 02:15-02:45 on the fall-back date runs from the first 02:15 (CEST) to the
    # second 02:45 (CET): 00:15-01:45 UTC.
    cal = BusinessCalendar(BERLIN, [[rng("02:15", "02:45")]] * 7)
    day = (berlin(2026, 10, 25), berlin(2026, 10, 26))
    assert cal.elapsed(*day) == 90 * MINUTE
    assert not cal.is_open(berlin(2026, 10, 25, 2, 10))  # 00:10 UTC
    assert cal.is_open(berlin(2026, 10, 25, 2, 15))  # 00:15 UTC
    assert cal.is_open(berlin(2026, 10, 25, 2, 50))  # 00:50 UTC
    assert cal.is_open(berlin(2026, 10, 25, 2, 10, fold=1))  # 01:10 UTC
    assert not cal.is_open(berlin(2026, 10, 25, 2, 50, fold=1))  # 01:50 UTC
    closing = cal.add(berlin(2026, 10, 25), 90 * MINUTE)
    assert same_instant(closing, at_utc(2026, 10, 25, 1, 45))
    assert_real_reading(closing, BERLIN)
    assert closing.fold == 1
    # On the spring-forward date both ends are in the gap: nothing is open.
    assert cal.elapsed(berlin(2026, 3, 29), berlin(2026, 3, 30)) == timedelta(0)


def test_range_starting_in_the_spring_forward_gap() -> None:
    # 02:30 does not exist on 2026-03-29 in Berlin; the range opens at 03:00 CEST.
    cal = BusinessCalendar(BERLIN, [[rng("02:30", "05:00")]] * 7)
    opening = cal.next_open(berlin(2026, 3, 29, 0, 30))
    assert same_instant(opening, at_utc(2026, 3, 29, 1))
    assert opening == berlin(2026, 3, 29, 3)
    assert_real_reading(opening, BERLIN)
    assert cal.is_open(at_utc(2026, 3, 29, 1))
    assert not cal.is_open(at_utc(2026, 3, 29, 0, 59, 59, 999999))
    assert cal.elapsed(berlin(2026, 3, 29), berlin(2026, 3, 30)) == 2 * HOUR
    assert same_instant(cal.add(berlin(2026, 3, 29), 30 * MINUTE), at_utc(2026, 3, 29, 1, 30))
    # A range ending in the gap ends at the transition.
    early = BusinessCalendar(BERLIN, [[rng("00:00", "02:30")]] * 7)
    assert early.elapsed(berlin(2026, 3, 29), berlin(2026, 3, 30)) == 2 * HOUR
    assert same_instant(early.add(berlin(2026, 3, 29), 2 * HOUR), at_utc(2026, 3, 29, 1))


def test_past_midnight_range() -> None:
    nights = [[rng("22:00", "26:00")]] * 5 + [[], []]  # Mon-Fri nights
    cal = BusinessCalendar(BERLIN, nights)
    # 2026-06-01 is a Monday.
    assert cal.is_open(berlin(2026, 6, 6, 1))  # Saturday 01:00, from Friday's night
    assert not cal.is_open(berlin(2026, 6, 7, 1))  # Sunday 01:00
    assert not cal.is_open(berlin(2026, 6, 8, 1))  # Monday 01:00
    assert cal.is_open(berlin(2026, 6, 9, 1))  # Tuesday 01:00, from Monday's night
    assert not cal.is_open(berlin(2026, 6, 6, 2))  # closes at 02:00 sharp
    assert cal.add(berlin(2026, 6, 5, 23), 3 * HOUR) == berlin(2026, 6, 6, 2)
    assert cal.add(berlin(2026, 6, 5, 23), 4 * HOUR) == berlin(2026, 6, 8, 23)
    assert cal.elapsed(berlin(2026, 6, 1), berlin(2026, 6, 8)) == 20 * HOUR

    # Closing Friday removes Friday's night (including its Saturday part) but not
    # the end of Thursday's night on Friday morning.
    friday = date(2026, 6, 5)
    holiday = BusinessCalendar(BERLIN, nights, closed=lambda d: "x" if d == friday else None)
    assert holiday.is_open(berlin(2026, 6, 5, 1))
    assert not holiday.is_open(berlin(2026, 6, 5, 23))
    assert not holiday.is_open(berlin(2026, 6, 6, 1))
    assert holiday.add(berlin(2026, 6, 4, 23), 4 * HOUR) == berlin(2026, 6, 8, 23)


def test_past_midnight_range_into_dst_change() -> None:
    saturday_nights = [[], [], [], [], [], [rng("22:00", "28:00")], []]
    cal = BusinessCalendar(BERLIN, saturday_nights)
    spring = (berlin(2026, 3, 28), berlin(2026, 3, 30))
    autumn = (berlin(2026, 10, 24), berlin(2026, 10, 26))
    assert cal.elapsed(*spring) == 5 * HOUR
    assert cal.elapsed(*autumn) == 7 * HOUR
    assert cal.elapsed(berlin(2026, 6, 6), berlin(2026, 6, 8)) == 6 * HOUR


def test_two_day_range() -> None:
    cal = BusinessCalendar(BERLIN, [[Range(0, 2880)], [], [], [], [], [], []])
    assert cal.is_open(berlin(2026, 6, 2, 23, 59, 59, 999999))  # Tuesday
    assert not cal.is_open(berlin(2026, 6, 3))  # Wednesday 00:00
    assert cal.elapsed(berlin(2026, 6, 1), berlin(2026, 6, 8)) == 48 * HOUR


def test_round_the_clock_across_midnight_and_dst() -> None:
    cal = BusinessCalendar(BERLIN, ALWAYS_OPEN)
    assert cal.add(berlin(2026, 6, 1, 23, 30), HOUR) == berlin(2026, 6, 2, 0, 30)
    assert cal.elapsed(berlin(2026, 6, 1, 23, 30), berlin(2026, 6, 2, 0, 30)) == HOUR
    tick = cal.add(berlin(2026, 6, 1, 23, 59, 59, 999999), 2 * US)
    assert tick == berlin(2026, 6, 2, 0, 0, 0, 1)
    assert cal.add(berlin(2026, 6, 1), 7 * DAY) == berlin(2026, 6, 8)
    assert cal.add(berlin(2026, 3, 29, 1, 30), HOUR) == berlin(2026, 3, 29, 3, 30)
    assert cal.add(berlin(2026, 3, 28, 12), DAY) == berlin(2026, 3, 29, 13)
    second_230 = cal.add(berlin(2026, 10, 25, 2, 30), HOUR)
    assert same_instant(second_230, berlin(2026, 10, 25, 2, 30, fold=1))
    assert_real_reading(second_230, BERLIN)
    assert second_230.utcoffset() == HOUR

    # Lord Howe moves its clocks by 30 minutes (02:00 -> 02:30 on 2026-10-04).
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    lhi = BusinessCalendar(lord_howe, ALWAYS_OPEN)
    day = (datetime(2026, 10, 4, tzinfo=lord_howe), datetime(2026, 10, 5, tzinfo=lord_howe))
    assert lhi.elapsed(*day) == 23 * HOUR + 30 * MINUTE


def test_season_at() -> None:
    peak = Season("peak", date(2026, 12, 1), date(2026, 12, 31), 1.5, "Holiday rush")
    quiet = Season("quiet", date(2027, 1, 2), date(2027, 1, 2), 1.0, "One quiet day")
    cal = BusinessCalendar(BERLIN, SHOP_WEEK, seasons=[peak, quiet])
    assert cal.season_at(berlin(2026, 11, 30, 23, 59, 59, 999999)) is None
    assert cal.season_at(berlin(2026, 12, 1)) == peak
    assert cal.season_at(berlin(2026, 12, 15, 12)) == peak
    assert cal.season_at(berlin(2026, 12, 31, 23, 59, 59, 999999)) == peak
    assert cal.season_at(berlin(2027, 1, 1)) is None
    assert cal.season_at(berlin(2027, 1, 2, 12)) == quiet
    assert cal.season_at(berlin(2027, 1, 3)) is None
    # The *local* date decides.
    assert cal.season_at(at_utc(2026, 11, 30, 23, 30)) == peak  # 00:30 on 1 Dec in Berlin
    assert cal.season_at(at_utc(2026, 12, 31, 23, 30)) is None  # 00:30 on 1 Jan in Berlin
    assert BusinessCalendar(BERLIN, SHOP_WEEK).season_at(berlin(2026, 12, 15)) is None


def test_tz_attribute() -> None:
    assert BusinessCalendar(BERLIN, SHOP_WEEK).tz is BERLIN


def test_add_rejects_naive_and_negative() -> None:
    cal = BusinessCalendar(BERLIN, SHOP_WEEK)
    with pytest.raises(ValueError):
        cal.add(datetime(2026, 3, 6, 12), HOUR)
    with pytest.raises(ValueError):
        cal.add(berlin(2026, 3, 6, 12), -US)
    with pytest.raises(ValueError):
        cal.elapsed(datetime(2026, 3, 6, 12), berlin(2026, 3, 6, 13))
    with pytest.raises(ValueError):
        cal.elapsed(berlin(2026, 3, 6, 12), datetime(2026, 3, 6, 13))


@pytest.mark.parametrize("method", ["is_open", "next_open", "season_at"])
def test_other_queries_reject_naive(method: str) -> None:
    cal = BusinessCalendar(BERLIN, SHOP_WEEK)
    with pytest.raises(ValueError):
        getattr(cal, method)(datetime(2026, 3, 6, 12))


def test_threads_growing_one_calendar_agree_with_a_calendar_of_their_own() -> None:
    """The runner, the scheduler and a CLI thread share one calendar; queries that reach
    years it has not built yet grow its table while others read it. Every answer must be
    the one a fresh calendar gives alone."""
    import threading

    german = holidays.country_holidays("DE")
    shared = BusinessCalendar(BERLIN, SHOP_WEEK, closed=german.get)
    starts = [berlin(year, 3, 1 + year % 27, 10) for year in range(1960, 2090, 3)]
    results: dict[tuple[int, int], tuple[datetime, timedelta]] = {}
    errors: list[BaseException] = []

    def ask(worker: int) -> None:
        try:
            for index, start in enumerate(starts[worker::4] if worker % 2 else starts[::-1]):
                due = shared.add(start, 30 * HOUR)
                results[(worker, index)] = (due, shared.elapsed(start, due + 400 * DAY))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # let the threads interleave as often as they can
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switching)
    assert not errors
    for (worker, index), (due, elapsed) in results.items():
        start = (starts[worker::4] if worker % 2 else starts[::-1])[index]
        alone = BusinessCalendar(BERLIN, SHOP_WEEK, closed=german.get)
        assert same_instant(due, alone.add(start, 30 * HOUR))
        assert elapsed == alone.elapsed(start, due + 400 * DAY)
