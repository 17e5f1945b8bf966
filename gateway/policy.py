"""Response policy: from a priority and a receipt instant to the promised deadline.

Owns: which window applies (first or next reply), the season stretch for messages received
inside a season, and the deadline computed by the business calendar. This is the single
place deadlines are computed, so what an acknowledgment promises is what reports measure.
Pure: values in, values out.
"""

from __future__ import annotations

from datetime import datetime

from .calendar import BusinessCalendar
from .config import PriorityConfig
from .model import Deadline


def deadline(
    calendar: BusinessCalendar,
    priority: PriorityConfig,
    received_at: datetime,
    *,
    next_reply: bool = False,
) -> Deadline:
    """When a reply to a message received at `received_at` is due."""
    window = priority.next_reply if next_reply else priority.first_reply
    season = calendar.season_at(received_at)
    stretch = season.stretch if season else 1.0
    due = calendar.add(received_at, window * stretch)
    return Deadline(
        received_at=received_at,
        priority=priority.name,
        window=window,
        stretch=stretch,
        season=season.name if season else None,
        due_at=due,
    )
