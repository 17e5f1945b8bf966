"""Slow, obviously-correct reference model of ``gateway.calendar.BusinessCalendar``.

This module owns the *definition* that the property tests in
``tests/test_calendar_properties.py`` hold the real implementation to.  It is
deliberately independent of ``gateway``: weekly hours are plain
``(start_minute, end_minute)`` tuples and seasons are plain
``(name, first_date, last_date)`` tuples.

Semantics (restated from the specification):

* For every local date ``D`` with ``closed(D) is None`` and every range
  ``(start, end)`` in ``week[D.weekday()]`` the shop is open on the half-open
  instant interval ``[S, E)``, where ``S`` is the *first* instant the local wall
  clock shows ``D + start`` minutes and ``E`` is the *last* instant it shows
  ``D + end`` minutes.  A wall time inside a DST gap is never shown; both ``S``
  and ``E`` then resolve to the first instant after the gap.
* The open set is the union of all those intervals.
* ``add(s, d)`` is the smallest ``t >= s`` with ``d`` of open time in ``[s, t)``;
  ``elapsed(s, e)`` is the open time in ``[s, e)`` (negated when ``e < s``).

How it is computed, without any cleverness:

* Every instant is an integer number of UTC minutes since the Unix epoch.  All
  supported zones (2020-2030) change offset only on whole UTC minutes and every
  range boundary is a whole local minute, so every ``S``/``E`` is a whole UTC
  minute and "is minute ``u`` open" is a yes/no question.
* For a window of UTC minutes we tabulate the local wall-clock minute shown at
  each UTC minute (``wall[u]``).  A wall time ``W`` is then resolved by plain
  lookup: its occurrences are the UTC minutes ``u`` with ``wall[u] == W``
  (first one for ``S``, last one for ``E``); if there is none, ``W`` is in a
  gap and resolves to the first ``u`` whose wall clock has passed ``W``.
* ``add`` and ``elapsed`` step minute by minute through a byte-per-minute
  open/closed table.

Only whole-minute instants and durations are accepted by ``add``/``elapsed``;
``is_open``/``next_open``/``season_at`` accept any aware instant.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import accumulate
from operator import sub
from zoneinfo import ZoneInfo

Week = Sequence[Sequence[tuple[int, int]]]
ClosedFn = Callable[[date], str | None]
SeasonTuple = tuple[str, date, date]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
MINUTES_PER_DAY = 1440
# Margin (in minutes) of wall-clock table kept around the dates we resolve, so
# that no wall time we look up lies near the edge of the table.  Ranges reach at
# most two days past their date, we look at dates up to three days before the
# window, and offsets are within +-14 h, so 6 days leaves more than a day spare.
_PAD = 6 * MINUTES_PER_DAY


class ReferenceHorizonError(RuntimeError):
    """Raised when an answer lies further away than the reference is willing to look."""


def to_utc_minute(at: datetime) -> int:
    """Whole UTC minutes since the epoch; ``at`` must be aware and on a whole minute."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("naive datetime")
    delta = at.astimezone(UTC) - EPOCH
    minutes, rest = divmod(delta, MINUTE)
    if rest:
        raise ValueError(f"{at!r} is not on a whole minute")
    return minutes


def floor_utc_minute(at: datetime) -> int:
    """The UTC minute containing ``at`` (any aware datetime)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("naive datetime")
    return (at.astimezone(UTC) - EPOCH) // MINUTE


def from_utc_minute(minute: int, tz: ZoneInfo) -> datetime:
    """The instant ``minute`` expressed as an aware datetime in ``tz``."""
    return (EPOCH + minute * MINUTE).astimezone(tz)


def offset_minutes(tz: ZoneInfo, utc_minute: int) -> int:
    """UTC offset of ``tz`` (in whole minutes) in force at the given UTC minute."""
    offset = from_utc_minute(utc_minute, tz).utcoffset()
    assert offset is not None
    whole, rest = divmod(offset, MINUTE)
    assert not rest, f"{tz.key} has a sub-minute offset at minute {utc_minute}"
    return whole


def wall_minutes(tz: ZoneInfo, lo: int, hi: int) -> list[int]:
    """``wall[i]`` = local wall-clock minute (minutes since 1970-01-01 00:00 *local*) at UTC
    minute ``lo + i``, for ``lo <= lo + i < hi``.

    Offsets are looked up once per UTC hour and minute by minute only inside
    hours whose two ends disagree (i.e. hours containing a transition); real
    zones never change offset twice within an hour.
    """
    wall: list[int] = []
    for hour_start in range(lo, hi, 60):
        hour_end = min(hour_start + 60, hi)
        first = offset_minutes(tz, hour_start)
        if offset_minutes(tz, hour_end) == first:
            wall.extend(range(hour_start + first, hour_end + first))
        else:
            wall.extend(u + offset_minutes(tz, u) for u in range(hour_start, hour_end))
    return wall


def local_date_minute(day: date) -> int:
    """Local wall-clock minute of ``day`` 00:00 (same scale as :func:`wall_minutes`)."""
    return (day - date(1970, 1, 1)).days * MINUTES_PER_DAY


@dataclass
class Timeline:
    """Open/closed table for the UTC minutes ``lo <= u < hi``."""

    lo: int
    hi: int
    open: bytearray  # open[u - lo] == 1 iff minute u is open

    def is_open(self, u: int) -> bool:
        if not self.lo <= u < self.hi:
            raise ReferenceHorizonError(f"minute {u} outside [{self.lo}, {self.hi})")
        return self.open[u - self.lo] == 1


def build_timeline(tz: ZoneInfo, week: Week, closed: ClosedFn, lo: int, hi: int) -> Timeline:
    """Compute which UTC minutes in ``[lo, hi)`` are open, straight from the definition."""
    table_lo = lo - _PAD
    table_hi = hi + _PAD
    wall = wall_minutes(tz, table_lo, table_hi)
    # Minute u shows wall time W iff u + offset(u) == W, so the only candidates for
    # an occurrence of W are W - o for the (two or three) offsets o in the table.
    offsets = set(map(sub, wall, range(table_lo, table_hi)))
    highest_so_far = list(accumulate(wall, max))

    def occurrences(w: int) -> list[int]:
        candidates = (w - o for o in offsets)
        return sorted(u for u in candidates if table_lo <= u < table_hi and wall[u - table_lo] == w)

    def passed(w: int) -> int:
        """First UTC minute at which the wall clock has gone past ``w`` (``w`` in a gap)."""
        return table_lo + bisect_right(highest_so_far, w)

    def first_instant(w: int) -> int:
        shown = occurrences(w)
        return shown[0] if shown else passed(w)

    def last_instant(w: int) -> int:
        shown = occurrences(w)
        return shown[-1] if shown else passed(w)

    open_ = bytearray(hi - lo)
    # Ranges that start on local date D can cover instants up to local D+2 00:00;
    # one extra day either side costs nothing and needs no argument about DST.
    first_day = from_utc_minute(lo, tz).date() - timedelta(days=3)
    last_day = from_utc_minute(hi, tz).date() + timedelta(days=1)
    day = first_day
    while day <= last_day:
        if closed(day) is None:
            midnight = local_date_minute(day)
            for start, end in week[day.weekday()]:
                s_wall, e_wall = midnight + start, midnight + end
                margin = MINUTES_PER_DAY
                assert wall[0] + margin < s_wall < e_wall < wall[-1] - margin, "table too small"
                s = max(first_instant(s_wall), lo)
                e = min(last_instant(e_wall), hi)
                if s < e:
                    open_[s - lo : e - lo] = b"\x01" * (e - s)
        day += timedelta(days=1)
    return Timeline(lo, hi, open_)


class ReferenceCalendar:
    """Minute-stepping model of BusinessCalendar (see module docstring)."""

    def __init__(
        self,
        tz: ZoneInfo,
        week: Week,
        closed: ClosedFn = lambda _day: None,
        seasons: Sequence[SeasonTuple] = (),
        max_days: int = 400,
    ) -> None:
        assert len(week) == 7
        for ranges in week:
            for start, end in ranges:
                assert 0 <= start < MINUTES_PER_DAY and start < end <= 2 * MINUTES_PER_DAY
        self.tz = tz
        self.week = [list(ranges) for ranges in week]
        self.closed = closed
        self.seasons = list(seasons)
        self.max_days = max_days
        self._cached: Timeline | None = None

    def timeline(self, lo: int, hi: int) -> Timeline:
        """A timeline covering at least ``[lo, hi)``.  The last one built is reused, and new
        ones get some slack (4 days back, 1 forward) so that follow-up questions about
        nearby instants, as the tests ask them, do not rebuild it."""
        cached = self._cached
        if cached is None or not (cached.lo <= lo and hi <= cached.hi):
            cached = build_timeline(
                self.tz, self.week, self.closed, lo - 4 * MINUTES_PER_DAY, hi + MINUTES_PER_DAY
            )
            self._cached = cached
        return cached

    def _forward(self, lo: int, days: int) -> Timeline:
        if days > self.max_days:
            raise ReferenceHorizonError(f"nothing found within {self.max_days} days")
        return self.timeline(lo, lo + days * MINUTES_PER_DAY)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        s = to_utc_minute(start)
        need, rest = divmod(duration, MINUTE)
        if rest or need < 0:
            raise ValueError("reference add takes a non-negative whole-minute duration")
        if need == 0:
            return start.astimezone(self.tz)
        days = 8
        while True:
            line = self._forward(s, days)
            remaining = need
            for u in range(s, line.hi):
                if line.is_open(u):
                    remaining -= 1
                    if remaining == 0:
                        return from_utc_minute(u + 1, self.tz)
            days *= 4

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        s, e = to_utc_minute(start), to_utc_minute(end)
        if e < s:
            return -self.elapsed(end, start)
        line = self.timeline(s, e)
        return sum(1 for u in range(s, e) if line.is_open(u)) * MINUTE

    def is_open(self, at: datetime) -> bool:
        u = floor_utc_minute(at)
        return self.timeline(u, u + 1).is_open(u)

    def next_open(self, at: datetime) -> datetime:
        u = floor_utc_minute(at)
        days = 8
        while True:
            line = self._forward(u, days)
            for v in range(u, line.hi):
                if line.is_open(v):
                    return at.astimezone(self.tz) if v == u else from_utc_minute(v, self.tz)
            days *= 4

    def season_at(self, at: datetime) -> SeasonTuple | None:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("naive datetime")
        day = at.astimezone(self.tz).date()
        matching = [season for season in self.seasons if season[1] <= day <= season[2]]
        assert len(matching) <= 1, "reference expects non-overlapping seasons"
        return matching[0] if matching else None


@cache
def offset_changes(tz_key: str, first_year: int, last_year: int) -> tuple[datetime, ...]:
    """All instants (UTC) in ``first_year..last_year`` at which ``tz_key`` changes its
    UTC offset.  Used by the tests to aim generated instants at DST transitions."""
    tz = ZoneInfo(tz_key)
    lo = to_utc_minute(datetime(first_year, 1, 1, tzinfo=UTC))
    hi = to_utc_minute(datetime(last_year + 1, 1, 1, tzinfo=UTC))
    changes: list[datetime] = []
    step = 6 * 60
    for a in range(lo, hi, step):
        if offset_minutes(tz, a) != offset_minutes(tz, a + step):
            for u in range(a + 1, a + step + 1):
                if offset_minutes(tz, u) != offset_minutes(tz, u - 1):
                    changes.append(EPOCH + u * MINUTE)
    return tuple(changes)
