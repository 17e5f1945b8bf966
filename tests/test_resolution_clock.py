"""The resolution clock, as a pure value: for random histories of receipt, team replies,
questions, `+pending`, `+resolved`, `+open` and customer mail, the business time it
counts, the customer's waiting time and its due time equal a minute-stepping reference
(tests/calendar_reference.py) over the intervals in which the conversation was not
pending or resolved — on the shop's hours and on a 24/7 clock, across DST."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.calendar import BusinessCalendar, Range
from gateway.tracker import (
    PAUSED,
    Event,
    State,
    follow,
    start_resolution,
    transition,
)
from tests.calendar_reference import ReferenceCalendar

BERLIN = ZoneInfo("Europe/Berlin")
SHOP = (((540, 1020),),) * 5 + ((), ())  # Mon-Fri 09-17
ALWAYS = (((0, 1440),),) * 7
MINUTE = timedelta(minutes=1)
EVENTS = (Event.TEAM_REPLY, Event.TEAM_QUESTION, Event.CUSTOMER_MESSAGE, Event.PEND,
          Event.RESOLVE, Event.REOPEN)  # fmt: skip
START = datetime(2026, 3, 20, 10, 0, tzinfo=BERLIN)  # a week before the spring DST change


def calendars(week: tuple[tuple[tuple[int, int], ...], ...]) -> tuple[BusinessCalendar, ReferenceCalendar]:
    ranges = [[Range(s, e) for s, e in day] for day in week]
    return BusinessCalendar(BERLIN, ranges), ReferenceCalendar(BERLIN, [list(d) for d in week])


histories = st.lists(
    st.tuples(st.integers(1, 3 * 24 * 60), st.sampled_from(EVENTS)), min_size=1, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(history=histories, round_the_clock=st.booleans(), target_hours=st.integers(1, 40))
def test_resolution_time_is_the_business_time_not_paused(
    history: list[tuple[int, Event]], round_the_clock: bool, target_hours: int
) -> None:
    cal, ref = calendars(ALWAYS if round_the_clock else SHOP)
    target = timedelta(hours=target_hours)
    clock = start_resolution(cal, START, target, 0.75)
    state, at = State.AWAITING_TEAM, START
    running: list[tuple[datetime, datetime]] = []  # the intervals the clock ran
    waiting: list[tuple[datetime, datetime]] = []
    since = START
    for minutes, event in history:
        at = at + minutes * MINUTE
        new, _ = transition(state, event)
        clock = follow(cal, clock, state, new, at, 0.75)
        if (state in PAUSED) != (new in PAUSED):
            (waiting if state in PAUSED else running).append((since, at))
            since = at
        state = new
    end = at + 60 * MINUTE
    (waiting if state in PAUSED else running).append((since, end))
    spent = sum((ref.elapsed(a, b) for a, b in running), timedelta(0))
    waited = sum((ref.elapsed(a, b) for a, b in waiting), timedelta(0))
    assert clock.spent_at(cal, end) == spent
    assert clock.wait_at(cal, end) == waited
    if state in PAUSED:
        assert clock.due_at is None and clock.running_since is None
    else:
        # Due where the target is used up: from the last resumption, what is left.
        left = max(target - clock.spent, timedelta(0))
        assert clock.running_since is not None and clock.due_at is not None
        assert clock.due_at == ref.add(clock.running_since, left)
        assert clock.spent_at(cal, clock.due_at) == max(target, clock.spent)
