"""Closed days: the shop's own closures and the public holidays of its region.

Owns: the one holiday table of a configuration. The calendar asks it whether a date is
closed; messages ask it why, in the reader's language ("Tag der Deutschen Einheit",
"Christmas Day"). Both questions are answered from the same `holidays` package object,
loaded once when the configuration is read, so a day can never be closed for the
calendar and open for a message or the other way round. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

CLOSED = "closed"  # the reason of a closure the shop listed itself


def holiday_table(code: str | None) -> Mapping[date, str]:
    """The public holidays of `code` ("DE-BE"), names in the package's default language.

    Years fill in as they are asked for. An empty mapping for no code."""
    if not code:
        return {}
    import holidays as holidays_lib  # imported here: loading it is slow and optional

    country, _, subdivision = code.strip().upper().partition("-")
    return holidays_lib.country_holidays(country, subdiv=subdivision or None)


@dataclass(frozen=True)
class ClosedDays:
    """Why a date is closed: a listed span ("closed"), else the public holiday's name."""

    listed: frozenset[date] = frozenset()
    holidays: Mapping[date, str] = field(default_factory=dict)
    _translations: dict[str, Mapping[date, str]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, spans: Sequence[tuple[date, date]], code: str | None) -> ClosedDays:
        days = {first + timedelta(days=n) for first, last in spans for n in range((last - first).days + 1)}
        return cls(frozenset(days), holiday_table(code))

    def __call__(self, day: date) -> str | None:
        """The calendar's question: the reason this date is closed, or None when open."""
        if day in self.listed:
            return CLOSED
        name = self.holidays.get(day)
        return str(name) if name else None

    def reason(self, day: date, language: str) -> str | None:
        """The customer's question: why this date is closed, in `language`.

        The holiday's name where the package knows it in that language, else its default
        name (a holiday is never left unnamed); "" for a closure the shop listed (the
        message then says only that the shop is closed); None when the day is open."""
        if day in self.listed:
            return ""
        name = self.holidays.get(day)
        if not name:
            return None
        translated = self._in(language).get(day)
        return str(translated) if translated else str(name)

    def _in(self, language: str) -> Mapping[date, str]:
        """This table with names in `language` where the package has them (it translates
        a whole country at a time), kept beside it; the table itself where it has not."""
        found = self._translations.get(language)
        if found is None:
            found = self._translations[language] = _translated(self.holidays, language)
        return found


def _translated(table: Mapping[date, str], language: str) -> Mapping[date, str]:
    languages: Sequence[str] = getattr(table, "supported_languages", ()) or ()
    wanted = [lang for lang in languages if lang == language or lang.split("_")[0] == language]
    if not wanted:
        return table
    import holidays as holidays_lib

    choice = "en_US" if language == "en" and "en_US" in wanted else wanted[0]
    country, subdivision = table.country, table.subdiv  # type: ignore[attr-defined]
    translated: Mapping[date, str] = holidays_lib.country_holidays(country, subdiv=subdivision, language=choice)
    return translated
