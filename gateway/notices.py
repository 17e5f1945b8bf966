"""The current exception: "Our courier is on strike; replies are slower this week".

Owns `sla-gateway notice`: checking what the owner typed (a text of one paragraph, an
`--until` that is a date or a moment still to come), and setting, clearing and reading
the one notice in force. The text goes as written into acknowledgments and breach
notices until it expires or is cleared (gateway/runner.py and gateway/scheduler.py read
it from the store). It sends nothing; the store keeps every notice ever set.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from . import store

MAX_LENGTH = 500  # characters: a sentence or two, not a letter


class NoticeError(ValueError):
    """What the owner typed cannot be used: what is wrong and what to do."""


def clean_text(text: str) -> str:
    """The notice as customers will read it: one paragraph, its white space tidied."""
    cleaned = " ".join(text.split())
    if not cleaned:
        raise NoticeError('the notice text is empty: write what customers should know, e.g. '
                          '"Our courier is on strike; replies are slower this week"')  # fmt: skip
    if len(cleaned) > MAX_LENGTH:
        raise NoticeError(f"the notice text has {len(cleaned)} characters; keep it under "
                          f"{MAX_LENGTH}: a sentence or two")  # fmt: skip
    return cleaned


def parse_until(text: str, tz: tzinfo, now: datetime) -> datetime:
    """`--until`: a shop-local date (the notice runs through that whole day) or an ISO 8601
    moment (shop-local without an offset); it must lie after `now`."""
    value = text.strip()
    moment: datetime
    try:
        day = date.fromisoformat(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value.replace(" ", "T", 1))
        except ValueError:
            raise NoticeError(f'--until "{value}" is not a date or time: write a date such as '
                              '2026-12-11 (the notice runs through that day) or 2026-12-11T18:00') from None  # fmt: skip
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
    else:
        moment = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    if moment <= now:
        raise NoticeError(f'--until "{value}" is already past: give a later date or time, or '
                          "run `sla-gateway notice clear` to end the notice now")  # fmt: skip
    return moment


def set_notice(engine: Any, text: str, until: datetime | None, now: datetime, by: str) -> None:
    with store.begin(engine) as conn:
        store.set_notice(conn, text, until, now, by)
        store.add_event(conn, now, "notice-set", {"text": text, "until": until, "by": by})


def clear_notice(engine: Any, now: datetime, by: str) -> bool:
    """End the notice in force; False when none was."""
    with store.begin(engine) as conn:
        in_force = store.current_notice(conn, now) is not None
        store.clear_notices(conn, now)
        if in_force:
            store.add_event(conn, now, "notice-cleared", {"by": by})
    return in_force


def current(engine: Any, now: datetime) -> Any:
    """The notice in force at `now` (text, until, set_at, set_by), or None."""
    with store.reading(engine) as conn:
        return store.current_notice(conn, now)
