"""The business calendar: when the shop is open, and business-time arithmetic over it.

Owns: turning weekly opening hours, closed days (holidays, closures) and a time zone into
the exact set of open instants, and the two operations every deadline and measurement
uses — `add(start, duration)` and `elapsed(start, end)`. Also answers `is_open`,
`next_open` and which season a moment falls in. Pure: no I/O, no clock, no config
parsing; it takes values and returns values. It must never step minute by minute.

Definition (the tests' reference implements the same words):
  For each local date D that is not closed and each range r of D's weekday, the shop is
  open on [S, E): S is the first instant the wall clock shows D + r.start, E the last
  instant it shows D + r.end. A wall time inside a DST gap maps to the transition
  instant; an ambiguous one (DST fall-back) maps to its first occurrence for S and its
  second for E. A range belongs to the date it starts on, even when it runs past
  midnight. Business time is real (absolute) time inside the open set.

How: the open set is kept as a sorted table of merged UTC intervals (integer
microseconds) with the cumulative open time before each one, so business time becomes a
monotone coordinate B(t); `elapsed(s, e) = B(e) - B(s)` and `add` inverts B with two
binary searches. The table covers the years around the day the configuration was read
(built then) and grows by whole years when a query reaches further (a replay of old mail,
a deadline across a long closure). Growing never changes an answer: the table is a memo
of the definition above. It is one immutable value, replaced in a single assignment under
a lock, so the runner, the scheduler and the CLI threads can share one calendar.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from threading import Lock

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = 1_000_000
_DAY_MINUTES = 24 * 60
_MAX_YEARS_AHEAD = 20  # give up looking for open time this far past a query
MIN_US = -2208988800 * _US  # 1900-01-01
MAX_US = 32503680000 * _US  # 3000-01-01


@dataclass(frozen=True, order=True)
class Range:
    """Opening hours on one weekday, in minutes after local midnight.

    `end` is 1440 for "24:00"; above 1440 the range runs into the next day ("22:00-02:00").
    """

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < _DAY_MINUTES:
            raise ValueError(f"range start {self.start} must be within 0..1439 minutes")
        if not self.start < self.end <= 2 * _DAY_MINUTES:
            raise ValueError(f"range end {self.end} must be after start and at most 2880")

    def __str__(self) -> str:
        def hhmm(minutes: int) -> str:
            minutes = minutes if minutes <= _DAY_MINUTES else minutes - _DAY_MINUTES
            return f"{minutes // 60:02d}:{minutes % 60:02d}"

        return f"{hhmm(self.start)}-{hhmm(self.end)}"


@dataclass(frozen=True)
class Season:
    """A period (local dates, inclusive) in which response windows are stretched."""

    name: str
    start: date
    end: date
    stretch: float
    notice: str = ""
    notices: tuple[tuple[str, str], ...] = ()  # (language, notice) translations

    def notice_for(self, language: str) -> str:
        """The notice in `language` when one was written for it, else the default one."""
        for lang, text in self.notices:
            if lang == language:
                return text
        return self.notice

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("a season must not end before it starts")
        if self.stretch <= 0:
            raise ValueError("a season's stretch must be positive")


@dataclass(frozen=True)
class _Table:
    """Merged open intervals of whole years `first`..`last` (UTC microseconds), with the
    open time before each one (`cum`) and up to its end (`cum_end`). Instants in
    [valid_lo, valid_hi) are described exactly."""

    starts: list[int]
    ends: list[int]
    cum: list[int]
    cum_end: list[int]
    first: int
    last: int
    valid_lo: int
    valid_hi: int

    def covers(self, t: int) -> bool:
        return self.valid_lo <= t < self.valid_hi

    def b(self, t: int) -> int:
        """Business microseconds from the table's origin to t (t must be covered)."""
        i = bisect_right(self.starts, t) - 1
        if i < 0:
            return 0
        return self.cum[i] + min(t, self.ends[i]) - self.starts[i]


_EMPTY = _Table([], [], [], [], 0, -1, 0, 0)


def _never_closed(day: date) -> str | None:
    return None


def _to_us(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _US + delta.microseconds


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")


class BusinessCalendar:
    """Opening hours in one time zone, with closed days and seasons."""

    def __init__(
        self,
        tz: tzinfo,
        week: Sequence[Sequence[Range]],
        closed: Callable[[date], str | None] = _never_closed,
        seasons: Sequence[Season] = (),
    ) -> None:
        if len(week) != 7:
            raise ValueError("week must have 7 entries, Monday first")
        self.tz = tz
        self.week: tuple[tuple[Range, ...], ...] = tuple(tuple(sorted(day)) for day in week)
        self.seasons: tuple[Season, ...] = tuple(sorted(seasons, key=lambda s: s.start))
        self._closed = closed
        self._has_hours = any(self.week)
        self._table = _EMPTY  # replaced whole, never changed in place
        self._growing = Lock()

    # ----------------------------------------------------------------- public API

    def closure(self, day: date) -> str | None:
        """Why this local date is closed (holiday name, "closed"), or None when it is not."""
        return self._closed(day)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which `duration` of business time has passed since `start`."""
        _require_aware(start, "start")
        if duration < timedelta(0):
            raise ValueError(f"duration must not be negative, got {duration}")
        s = _to_us(start)
        if duration == timedelta(0):
            return self._from_us(s)
        d = (duration.days * 86400 + duration.seconds) * _US + duration.microseconds
        tab = self._cover(s)
        while True:
            target = tab.b(s) + d
            if tab.cum_end and target <= tab.cum_end[-1]:
                i = bisect_left(tab.cum_end, target)
                t = tab.starts[i] + (target - tab.cum[i])
                if t <= tab.valid_hi:
                    return self._from_us(t)
            tab = self._extend_future(tab, s)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Business time between two instants (negative when `end` is before `start`)."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        s, e = _to_us(start), _to_us(end)
        self._cover(min(s, e))
        tab = self._cover(max(s, e))
        return timedelta(microseconds=tab.b(e) - tab.b(s))

    def is_open(self, at: datetime) -> bool:
        """Whether the shop is open at this instant."""
        _require_aware(at, "at")
        t = _to_us(at)
        tab = self._cover(t)
        i = bisect_right(tab.starts, t) - 1
        return i >= 0 and t < tab.ends[i]

    def next_open(self, at: datetime) -> datetime:
        """`at` itself when open, else the next opening instant (in the calendar's zone)."""
        _require_aware(at, "at")
        t = _to_us(at)
        tab = self._cover(t)
        while True:
            i = bisect_right(tab.starts, t) - 1
            if i >= 0 and t < tab.ends[i]:
                return self._from_us(t)
            if i + 1 < len(tab.starts) and tab.starts[i + 1] < tab.valid_hi:
                return self._from_us(tab.starts[i + 1])
            tab = self._extend_future(tab, t)

    def season_at(self, at: datetime) -> Season | None:
        """The season whose dates contain `at`'s local date, if any."""
        _require_aware(at, "at")
        day = at.astimezone(self.tz).date()
        for season in self.seasons:
            if season.start <= day <= season.end:
                return season
        return None

    def local(self, at: datetime) -> datetime:
        """`at` expressed in the calendar's time zone."""
        _require_aware(at, "at")
        return at.astimezone(self.tz)

    # ----------------------------------------------------------------- the table

    def _from_us(self, us: int) -> datetime:
        return (_EPOCH + timedelta(microseconds=us)).astimezone(self.tz)

    def _year_of(self, us: int) -> int:
        return self._from_us(us).year

    def _cover(self, t: int) -> _Table:
        """The table, grown if need be so that instant t lies in its exact window. Every
        query holds on to the table this returns (or a larger one), never `self._table`
        read twice, so a table grown by another thread meanwhile cannot mix in."""
        tab = self._table
        if tab.covers(t):
            return tab
        if not MIN_US <= t < MAX_US:
            raise ValueError("business-time arithmetic works between the years 1900 and 2999")
        year = self._year_of(t)
        if tab is _EMPTY:
            return self._grow(year - 1, year + 1)
        return self._grow(min(tab.first, year - 1), max(tab.last, year + 1))

    def _extend_future(self, tab: _Table, origin: int) -> _Table:
        if not self._has_hours or tab.last - self._year_of(origin) > _MAX_YEARS_AHEAD:
            raise ValueError(
                f"no business hours within {_MAX_YEARS_AHEAD} years after "
                f"{self._from_us(origin).isoformat()}"
            )
        return self._grow(tab.first, tab.last + 1)

    def _grow(self, first_year: int, last_year: int) -> _Table:
        """A table of at least these years, built under the lock and then published."""
        with self._growing:
            current = self._table
            if current is not _EMPTY:  # another thread may have grown it meanwhile
                first_year, last_year = min(first_year, current.first), max(last_year, current.last)
                if (first_year, last_year) == (current.first, current.last):
                    return current
            self._table = self._build(first_year, last_year)
            return self._table

    def _build(self, first_year: int, last_year: int) -> _Table:
        starts: list[int] = []
        ends: list[int] = []
        day = date(first_year, 1, 1)
        last = date(last_year, 12, 31)
        one = timedelta(days=1)
        while day <= last:
            ranges = self.week[day.weekday()]
            if ranges and self._closed(day) is None:
                for r in ranges:
                    s = self._wall_to_us(day, r.start, end=False)
                    e = self._wall_to_us(day, r.end, end=True)
                    if e <= s:
                        continue
                    if ends and s <= ends[-1]:
                        if e > ends[-1]:
                            ends[-1] = e
                    else:
                        starts.append(s)
                        ends.append(e)
            day += one
        cum: list[int] = []
        cum_end: list[int] = []
        total = 0
        for s, e in zip(starts, ends, strict=True):
            cum.append(total)
            total += e - s
            cum_end.append(total)
        # Ranges of the day before first_year may reach one day in; ranges of the day
        # after last_year start at its midnight at the earliest.
        valid_lo = self._wall_to_us(date(first_year, 1, 2), 0, end=False)
        valid_hi = self._wall_to_us(date(last_year + 1, 1, 1), 0, end=False)
        return _Table(starts, ends, cum, cum_end, first_year, last_year, valid_lo, valid_hi)

    def _wall_to_us(self, day: date, minutes: int, *, end: bool) -> int:
        """The instant a local wall time denotes, per the module's definition."""
        naive = datetime.combine(day, time()) + timedelta(minutes=minutes)
        first = _to_us(naive.replace(tzinfo=self.tz, fold=0))
        second = _to_us(naive.replace(tzinfo=self.tz, fold=1))
        if first == second:
            return first
        if first < second:  # ambiguous: the wall clock shows this time twice
            return second if end else first
        return self._transition(second, first)  # in a gap: the first instant after it

    def _transition(self, before: int, after: int) -> int:
        """The first instant in (before, after] carrying the offset in force at `after`."""
        target = self._from_us(after).utcoffset()
        lo, hi = before // _US, -(-after // _US)  # whole seconds; transitions are on seconds
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._from_us(mid * _US).utcoffset() == target:
                hi = mid
            else:
                lo = mid
        return hi * _US
