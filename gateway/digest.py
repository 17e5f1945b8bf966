"""The daily digest's content, built from aggregate figures: pure, no I/O.

Owns: which day a digest covers (the previous business day), compliance and percentiles
per priority for that day and the last 7 and 30 days, the day's breaches with how late,
what is at risk now, the oldest unanswered conversation, resolution compliance (cases
settled within their target), opened against resolved conversations and the oldest
unresolved case, the mails refused at the door
(too large, a line too long, not our address), volume by hour and weekday next
to the opening hours, the 30-day trend, and honest target suggestions: from 90 days of
first replies, the 80th percentile with a margin ("start conservative"), a 10–15 %
tightening after three months at ≥ 95 %, and a plain "too little data" otherwise. The
store supplies the figures (`reports.digest_inputs`); templates render the result. A
suggestion's note is an English msgid (marked with `N_` for extraction) whose named
placeholders are the suggestion's fields; render.py translates and fills it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from .calendar import BusinessCalendar


def N_(message: str) -> str:
    """Marks a msgid for the catalogs (`make catalogs`); translated when rendered."""
    return message


MIN_ANSWERED = 20  # fewer first replies in 90 days than this: no suggestion
MARGIN = 1.25  # suggested window = p80 x margin, rounded up to a publishable value
TIGHTEN = 0.87  # after three months at >= 95 %: about 13 % tighter
TIGHTEN_AFTER = 0.95  # the monthly share on time that earns a tighter suggestion
NICE_MINUTES = (
    15,
    30,
    45,
    60,
    90,
    120,
    180,
    240,
    300,
    360,
    480,
    600,
    720,
    960,
    1440,
    2160,
    2880,
    4320,
)


def previous_business_day(calendar: BusinessCalendar, today: date) -> date:
    """The latest day before `today` on which the shop was open."""
    day = today - timedelta(days=1)
    for _ in range(366):
        if calendar.week[day.weekday()] and calendar.closure(day) is None:
            return day
        day -= timedelta(days=1)
    return today - timedelta(days=1)


def nice_ceiling(seconds: float) -> int:
    """The smallest publishable window (in seconds) that is at least `seconds`."""
    minutes = seconds / 60
    for nice in NICE_MINUTES:
        if nice >= minutes:
            return nice * 60
    return int(-(-minutes // 1440) * 1440 * 60)


def nice_floor(seconds: float) -> int:
    minutes = seconds / 60
    best = NICE_MINUTES[0]
    for nice in NICE_MINUTES:
        if nice <= minutes:
            best = nice
    return best * 60


@dataclass(frozen=True)
class Figures:
    count: int = 0
    met: int = 0
    breached: int = 0
    compliance: float | None = None
    p50: int | None = None
    p80: int | None = None
    p90: int | None = None

    @classmethod
    def of(cls, entry: dict[str, Any] | None) -> Figures:
        if not entry:
            return cls()
        return cls(entry.get("count", 0), entry.get("met", 0), entry.get("breached", 0), entry.get("compliance"),
                   entry.get("p50"), entry.get("p80"), entry.get("p90"))  # fmt: skip


@dataclass(frozen=True)
class Period:
    label: str
    start: datetime
    end: datetime
    overall: Figures
    priorities: tuple[tuple[str, Figures], ...]
    next_reply: Figures
    acknowledged: int
    not_acknowledged: tuple[tuple[str, int], ...]
    resolution: Figures = Figures()  # resolved within the target (priorities with one)
    opened: int = 0  # conversations received in the period
    resolved: int = 0  # conversations resolved in the period


@dataclass(frozen=True)
class Suggestion:
    priority: str
    window: int  # published first-reply window, seconds
    answered: int  # first replies in the last 90 days
    p80: int | None
    suggested: int | None  # what the data supports, with a margin
    tighten_to: int | None  # after three months at >= 95 %
    note: str  # a msgid; placeholders %(answered)s, %(needed)s (MIN_ANSWERED), %(share)s (95 %)


@dataclass(frozen=True)
class Item:
    reference: str
    customer: str
    subject: str
    priority: str
    due_at: datetime
    seconds: int  # late by (breaches), left (at risk), waiting (oldest) - business seconds


@dataclass(frozen=True)
class Unresolved:
    """The open case received longest ago."""

    reference: str
    customer: str
    subject: str
    priority: str
    received_at: datetime  # shop time
    seconds: int  # business seconds on its resolution clock so far (pauses excluded)
    pending: bool  # waiting for the customer


@dataclass(frozen=True)
class DigestData:
    shop: str
    day: date
    timezone: str
    periods: tuple[Period, ...]  # the day, 7 days, 30 days
    breaches: tuple[Item, ...]
    at_risk: tuple[Item, ...]
    oldest: Item | None
    by_hour: tuple[int, ...]  # 24 counts, shop time, last 30 days
    by_weekday: tuple[int, ...]  # 7 counts, Monday first
    open_hours: tuple[bool, ...]  # 24: is the shop open in that hour on a typical weekday
    open_days: tuple[bool, ...]  # 7
    trend: tuple[tuple[date, float | None, int | None], ...]  # day, compliance, median seconds
    suggestions: tuple[Suggestion, ...]
    refused: tuple[tuple[str, int], ...] = ()  # mails the listener refused that day, by reason
    at_risk_more: int = 0  # at risk beyond those listed in `at_risk`
    open_on_time: int = 0  # replies owed that are neither at risk nor past due
    oldest_unresolved: Unresolved | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        day = self.periods[0]
        return day.overall.count == 0 and not day.not_acknowledged and not self.refused


def suggest(
    priority: str, window: int, answered: int, p80: int | None, monthly: list[float | None]
) -> Suggestion:
    if answered < MIN_ANSWERED or p80 is None:
        return Suggestion(priority, window, answered, p80, None, None,
                          N_("too little data: %(answered)s of the %(needed)s first replies a suggestion needs (last 90 days)"))  # fmt: skip
    suggested = nice_ceiling(p80 * MARGIN)
    tighten = None
    if len(monthly) >= 3 and all(m is not None and m >= TIGHTEN_AFTER for m in monthly[-3:]):
        candidate = nice_floor(window * TIGHTEN)
        if candidate < window:
            tighten = candidate
    if suggested > window:
        note = N_("your replies take longer than you promise: publish the suggested window, or answer faster")
    elif tighten is not None:
        note = N_("three months at %(share)s or better: you could promise a shorter window")
    else:
        note = N_("your published window holds")
    return Suggestion(priority, window, answered, p80, suggested, tighten, note)


def local_volume(
    calendar: BusinessCalendar, hourly: list[tuple[datetime, int]]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    by_hour = [0] * 24
    by_weekday = [0] * 7
    for moment, count in hourly:
        local = calendar.local(moment)
        by_hour[local.hour] += count
        by_weekday[local.weekday()] += count
    return tuple(by_hour), tuple(by_weekday)


def opening_grid(calendar: BusinessCalendar) -> tuple[tuple[bool, ...], tuple[bool, ...]]:
    hours = [False] * 24
    for ranges in calendar.week:
        for r in ranges:
            for minute in range(r.start, min(r.end, 24 * 60), 60):
                hours[minute // 60] = True
    days = tuple(bool(ranges) for ranges in calendar.week)
    return tuple(hours), days
