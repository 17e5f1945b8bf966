"""Durations written by people in the config ("30m", "1h30m", "7d", "60s") <-> timedelta.

Pure: parsing and formatting only. A number without a unit is an error, because "4"
could mean minutes, hours or days and a wrong guess would misstate every deadline.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
MAX_SECONDS = 3660 * 86400  # ten years: anything longer is a typo
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_WHOLE = re.compile(r"\s*(?:\d+(?:\.\d+)?\s*[dhms]\s*)+")


def parse_duration(text: str) -> timedelta:
    """Parse "1h30m"-style text; raise ValueError with a sentence saying what is wrong."""
    cleaned = text.strip().lower()
    if not cleaned:
        raise ValueError("is empty")
    if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        raise ValueError(f'"{text}" has no unit')
    if not _WHOLE.fullmatch(cleaned):
        raise ValueError(f'"{text}" is not a duration')
    units_seen: list[str] = []
    seconds = 0.0
    for number, unit in _PART.findall(cleaned):
        if unit in units_seen:
            raise ValueError(f'"{text}" names the unit "{unit}" twice')
        units_seen.append(unit)
        seconds += float(number) * _UNITS[unit]
    if seconds > MAX_SECONDS:
        raise ValueError(f'"{text}" is longer than ten years')
    return timedelta(seconds=round(seconds))


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration for whole seconds: 5400 s -> "1h30m".

    Hours are never folded into days: 24 business hours are not a day."""
    total = int(value.total_seconds())
    if total == 0:
        return "0m"
    sign = "-" if total < 0 else ""
    total = abs(total)
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def business_hours_phrase(value: timedelta) -> str:
    """A plain-words rendering for people: "30 minutes", "1 hour", "1.5 hours", "24 hours"."""
    minutes = round(value.total_seconds() / 60)
    if minutes < 60:
        return f"{minutes} minute" + ("" if minutes == 1 else "s")
    hours = minutes / 60
    text = f"{hours:g}"
    return f"{text} hour" + ("" if hours == 1 else "s")
