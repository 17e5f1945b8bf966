"""The value types of configuration keys: what one key may hold and how it is read.

Owns: one checker per kind of value (string, whole number, duration, opening hours, date
spans, addresses, ...). Each takes what TOML gave and returns the value the gateway uses,
or raises `Bad(message, hint)` with our one-line wording, and carries its JSON Schema and
the name the README's type column shows. `Check` wraps a checker into annotation metadata
that pydantic validates; `configkeys` declares every key with these. No I/O beyond
checking that a named directory exists; no knowledge of which key is which.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic_core import PydanticCustomError, core_schema

from .calendar import Range
from .durations import parse_duration

KEY = "{key}"  # in a hint: replaced by the key's own name when the problem is reported
DEFAULT = "{default}"  # in a hint: replaced by the key's declared default
_ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


class Bad(ValueError):
    """One value is wrong: what is wrong, and what would be right."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


@dataclass(frozen=True)
class Doc:
    """A key's documentation: its meaning (the README's), the fix when it is missing."""

    help: str
    missing: str = ""  # hint when a required key is absent
    type: str = ""  # the README's type column, when the value type's name is not enough


def suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"?' if close else ""


def kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class Check:
    """Annotation metadata: pydantic validates the key with `fn` (raising our wording),
    and its JSON Schema is `schema`; `kind` is the README's name for the type."""

    def __init__(self, fn: Callable[[Any], Any], schema: dict[str, Any], kind: str) -> None:
        self.fn, self.schema, self.kind = fn, schema, kind

    def validate(self, value: Any) -> Any:
        if value is None:  # a default meaning "not set" (TOML itself has no null)
            return None
        if isinstance(value, tuple):  # a default written as a tuple: read it like a TOML list
            value = list(value)
        try:
            return self.fn(value)
        except Bad as bad:
            raise PydanticCustomError(
                "problem", "{message}", {"message": bad.message, "hint": bad.hint}
            ) from None

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self.validate)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return dict(self.schema)


# ------------------------------------------------------------------------- checkers


def string(value: object) -> str:
    if not isinstance(value, str):
        raise Bad(f"must be a string, got {kind_of(value)}", f'write {KEY} = "..."')
    return value


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise Bad(f"must be true or false, got {kind_of(value)}", f"write {KEY} = true or false")
    return value


def whole(low: int, high: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Bad(f"must be a whole number, got {kind_of(value)}", f"write {KEY} = {DEFAULT}")
        if not low <= value <= high:
            raise Bad(f"{value} is out of range", f"use {low}..{high}")
        return value

    return check


def string_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        raise Bad("must be a list of strings, got a single string", f'write {KEY} = ["{value}"]')
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Bad(f"must be a list of strings, got {kind_of(value)}", f'write {KEY} = ["...", "..."]')
    return tuple(value)


def address(value: object) -> str:
    text = string(value)
    if not _ADDRESS.match(text):
        raise Bad(f'"{text}" is not an e-mail address', 'write e.g. "support@shop.example"')
    return text


def addresses(value: object) -> tuple[str, ...]:
    return tuple(address(v) for v in string_list(value))


def lower_addresses(value: object) -> tuple[str, ...]:
    return tuple(a.lower() for a in addresses(value))


def choice(choices: Sequence[str], noun: str = "") -> Callable[[object], str]:
    def check(value: object) -> str:
        text = string(value)
        if text in choices:
            return text
        if noun:
            raise Bad(f'"{text}" is not a {noun}', suggest(text, choices) or "use one of " + ", ".join(choices))
        raise Bad(f'"{text}" is not one of {", ".join(choices)}',
                  suggest(text, choices) or f'write {KEY} = "{choices[0]}"')  # fmt: skip

    return check


def known_language(code: str) -> bool:
    """A language Babel can format dates and numbers in (`check` also wants a catalog)."""
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(code)
    except (UnknownLocaleError, ValueError, TypeError):
        return False
    return True


def language(built_in: Sequence[str]) -> Callable[[object], str]:
    """A language with a built-in catalog, or any other Babel knows (the owner adds its
    catalog; `check` says when it is missing)."""

    def check(value: object) -> str:
        text = string(value)
        if text in built_in or known_language(text):
            return text
        raise Bad(f'"{text}" is not a supported language',
                  suggest(text, built_in) or "use one of " + ", ".join(built_in))  # fmt: skip

    return check


def pattern(regex: str, what: str, hint: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        text = string(value)
        if text and not re.fullmatch(regex, text):
            raise Bad(f'"{text}" is not {what}', hint)
        return text

    return check


# Characters that cannot separate a command from an address's local part: "@" ends the
# local part, the others need quoting in an address.
_NOT_DELIMITERS = '@"(),.:;<>[]\\'


def delimiter(value: object) -> str:
    """One character between an address's local part and a suffix (`support+resolved`)."""
    text = string(value)
    if len(text) != 1 or text in _NOT_DELIMITERS or not text.isprintable() or text.isspace():
        shown = f'"{text}"' if text else "empty"
        raise Bad(f"{shown} is not one character that can separate a command from the local part",
                  f'write {KEY} = "+" (Gmail, Google Workspace, Fastmail, Microsoft 365) or the '
                  "character of Postfix's recipient_delimiter, e.g. \"-\"; never \"@\"")  # fmt: skip
    return text


def duration(value: object) -> timedelta:
    if not isinstance(value, str):
        raise Bad(f"must be a duration string, got {kind_of(value)}",
                  f'write {KEY} = "{value}m" or "{value}h" (business time)')  # fmt: skip
    try:
        result = parse_duration(value)
    except ValueError as exc:
        raise Bad(str(exc), 'use h and m units, e.g. "30m", "4h" or "1h30m"') from None
    if result <= timedelta(0):
        raise Bad("must be longer than zero", 'e.g. "30m"')
    return result


def durations(value: object) -> tuple[timedelta, ...]:
    """A list of durations, each longer than the one before (`remind_after`)."""
    if not isinstance(value, list):
        raise Bad(f"must be a list of durations, got {kind_of(value)}", 'write ["1d", "2d"]')
    found = tuple(duration(v) for v in value)
    if any(b <= a for a, b in pairwise(found)):
        raise Bad("each duration must be longer than the one before", 'write them in order, e.g. ["1d", "2d"]')
    return found


def readable_file(value: object) -> str:
    """A file that exists and can be read now (a relative name: from the working directory)."""
    text = string(value)
    path = Path(text)
    where = f" (relative to {Path.cwd()})" if not path.is_absolute() else ""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise Bad(f'file "{text}"{where} cannot be read: {exc.strerror or exc}',
                  "export the file there (one code per line) or correct the path") from None  # fmt: skip
    return text


def url(value: object) -> str:
    text = string(value)
    local = re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/", text)
    if not text.startswith("https://") and not local:
        raise Bad(f'"{text}" is not an https:// URL',
                  "tokens travel over it: use https (http only to 127.0.0.1 for testing)")  # fmt: skip
    return text


def database_url(value: object) -> str:
    text = string(value)
    if "://" not in text:
        raise Bad(f'"{text}" is not a database URL',
                  'write e.g. "sqlite:///var/sla-gateway.db" or "postgresql+psycopg://user@host/db"')  # fmt: skip
    return text


def directory(value: object) -> str:
    text = string(value)
    if not Path(text).is_dir():
        where = f" (relative to {Path.cwd()})" if not Path(text).is_absolute() else ""
        raise Bad(f'directory "{text}" does not exist{where}',
                  "create it (`sla-gateway init` writes one with copies of the built-in templates) "
                  "or remove the key to use the built-in ones")  # fmt: skip
    return text


def timezone(value: object) -> str:
    name = string(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Bad(f'"{name}" is not a known time zone', suggest(name, sorted(available_timezones()))
                  or 'use an IANA name such as "Europe/Berlin"') from None  # fmt: skip
    return name


def holiday_code(value: object) -> str:
    import holidays as holidays_lib  # imported here: loading it is slow and optional

    code = string(value)
    country, _, subdivision = code.strip().upper().partition("-")
    supported = holidays_lib.list_supported_countries()
    if country not in supported:
        raise Bad(f'"{code}" is not a known country code', suggest(country, sorted(supported))
                  or 'use an ISO 3166 code such as "DE", optionally with a subdivision: "DE-BE"')  # fmt: skip
    if subdivision and subdivision not in supported[country]:
        choices = sorted(supported[country])
        raise Bad(f'"{subdivision}" is not a subdivision of {country}',
                  suggest(subdivision, choices) or "known: " + ", ".join(choices))  # fmt: skip
    return code


def parse_minutes(text: str, *, allow_24: bool) -> int:
    """ "09:30" -> 570; "24:00" -> 1440 when allowed."""
    m = _HHMM.match(text.strip())
    if not m:
        raise ValueError(f'"{text.strip()}" is not a time of day like "09:00"')
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise ValueError(f'"{text.strip()}" is not a valid time of day')
    return hours * 60 + minutes


def time_of_day(value: object) -> int:
    try:
        return parse_minutes(string(value), allow_24=False)
    except ValueError as exc:
        raise Bad(str(exc), f'write {KEY} = "08:00" (shop time)') from None


def parse_day_hours(text: str) -> tuple[Range, ...]:
    """ "09:00-12:00, 13:00-17:00" -> ranges; "closed" -> (); raise ValueError on bad text."""
    cleaned = text.strip().lower()
    if cleaned in ("closed", ""):
        return ()
    ranges: list[Range] = []
    for part in cleaned.split(","):
        if "-" not in part:
            raise ValueError(f'"{part.strip()}" is not a range like "09:00-17:00"')
        left, right = part.split("-", 1)
        start = parse_minutes(left, allow_24=False)
        end = parse_minutes(right, allow_24=True)
        if end == start:
            raise ValueError(f'"{part.strip()}" is empty (starts and ends at the same time)')
        if end < start:  # runs past midnight into the next day
            end += 24 * 60
        ranges.append(Range(start, end))
    ranges.sort()
    for a, b in pairwise(ranges):
        if b.start < a.end:
            raise ValueError(f"ranges {a} and {b} overlap")
    return tuple(ranges)


def day_hours(value: object) -> tuple[Range, ...]:
    try:
        return parse_day_hours(string(value))
    except ValueError as exc:
        raise Bad(str(exc), 'write e.g. "09:00-17:00", "09:00-12:00, 13:00-17:00", '
                  '"00:00-24:00" or "closed"') from None  # fmt: skip


def parse_date_span(value: object) -> tuple[date, date]:
    """ "2026-12-24" or "2026-12-24..2026-12-31" (or a TOML date) -> inclusive span."""
    if isinstance(value, datetime):
        raise ValueError(
            f"{value.isoformat()} is a date and time; write just the date, e.g. {value.date()}"
        )
    if isinstance(value, date):
        return value, value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date")
    left, sep, right = value.partition("..")
    try:
        first = date.fromisoformat(left.strip())
        last = date.fromisoformat(right.strip()) if sep else first
    except ValueError:
        raise ValueError(
            f'"{value}" is not a date like "2026-12-24" or a span like "2026-12-24..2026-12-31"'
        ) from None
    if last < first:
        raise ValueError(f'"{value}" ends before it starts')
    if (last - first).days > 366:
        raise ValueError(f'"{value}" is longer than a year')
    if not 1970 <= first.year <= 2200 or not 1970 <= last.year <= 2200:
        raise ValueError(f'"{value}" is outside the years 1970-2200')
    return first, last


def one_date(value: object) -> date:
    try:
        return parse_date_span(value)[0]
    except ValueError as exc:
        raise Bad(str(exc)) from None


def date_spans(value: object) -> tuple[tuple[date, date], ...]:
    items = [value] if isinstance(value, (str, date)) else value
    if not isinstance(items, list):
        raise Bad("must be a list of dates", 'write closed = ["2026-12-24", "2026-12-27..2026-12-31"]')
    spans = []
    for item in items:
        try:
            spans.append(parse_date_span(item))
        except ValueError as exc:
            raise Bad(str(exc)) from None
    return tuple(spans)


def stretch(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
        raise Bad(f"must be a positive number, got {value!r}",
                  "e.g. stretch = 2.0 doubles every response window")  # fmt: skip
    return float(value)


def fraction_or_false(value: object) -> float | None:
    if value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise Bad(f"must be a fraction between 0 and 1, got {value!r}",
                  f"e.g. {KEY} = 0.75 warns when three quarters of the window have passed; false for none")  # fmt: skip
    return float(value)


_SIZE_UNITS = {None: 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
               "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}  # fmt: skip


def size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g|kib|mib|gib)?\s*", value.lower())
        if m:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    raise Bad(f"{value!r} is not a size", 'write a number of bytes or e.g. "25MB"')


def one_or_more_strings(value: object) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else string_list(value)


def keywords(value: object) -> tuple[str, ...]:
    words = string_list(value)
    if any(not w.strip() for w in words):
        raise Bad("contains an empty keyword", "remove it")
    return words


def patterns(value: object) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for text in string_list(value):
        try:
            one = re.compile(text, re.IGNORECASE)
        except re.error as exc:
            raise Bad(f'"{text}" is not a valid regular expression: {exc}',
                      "escape special characters with a backslash") from None  # fmt: skip
        if one.search("") is not None:
            raise Bad(f'"{text}" matches every message (it matches empty text)',
                      "make it require at least one character")  # fmt: skip
        compiled.append(one)
    return tuple(compiled)


def sender_patterns(value: object) -> tuple[str, ...]:
    senders = string_list(value)
    for sender in senders:
        if "@" not in sender:
            raise Bad(f'"{sender}" is not an address or pattern',
                      'write "ceo@partner.example" or "*@bigcustomer.example"')  # fmt: skip
    return tuple(s.lower() for s in senders)


def notice(languages: Sequence[str]) -> Callable[[object], tuple[str, tuple[tuple[str, str], ...]]]:
    """One string, or a table of language -> string ({ en = ..., de = ... })."""

    def check(value: object) -> tuple[str, tuple[tuple[str, str], ...]]:
        if isinstance(value, str):
            return value, ()
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            for lang in value:
                if lang not in languages and not known_language(lang):
                    raise Bad(f'"{lang}" is not a supported language',
                              suggest(lang, languages) or "use " + ", ".join(languages))  # fmt: skip
            return value.get("en") or next(iter(value.values()), ""), tuple(sorted(value.items()))
        raise Bad(f"must be a string or a table of languages, got {kind_of(value)}",
                  'write notice = "..." or notice = { en = "...", de = "..." }')  # fmt: skip

    return check
