"""Reply tracking: the conversation state machine and SLA measurement, as pure functions.

Owns: the table of conversation states and the events that move between them; who wrote
a message (customer, team, or our own machine mail); matching subjects; and measuring a
reply cycle in business time against its (season-stretched) window. A cycle starts when
the customer writes and the team owes an answer — the first reply, then a "next reply"
each time the customer writes again after the team answered — and ends at the team's
reply. Time spent waiting for the customer is never counted against the team.
Pure: values in, values out; the store persists what it decides.

States and events (the whole machine; anything not listed leaves the state unchanged):

    state               event             next state
    awaiting_team       team_reply        answered
    awaiting_team       team_question     pending   (with question_means_pending)
    awaiting_team       deadline_passed   breached
    breached            team_reply        answered
    breached            team_question     pending
    answered            customer_message  awaiting_team      (a next-reply clock starts)
    pending             customer_message  awaiting_team      (a next-reply clock starts)
    resolved            customer_message  awaiting_team      (reopened; next-reply clock)
    answered | pending  idle_timeout      resolved           (after close_after)
    any but resolved    resolve           resolved           (+resolved, set, archive)
    any but resolved    pend              pending            (+pending: the team waits)
    pending | resolved  reopen            answered | awaiting_team (+open: by the reply clock)

Two clocks run per conversation. The reply clock (a cycle: first reply, then each next
reply) runs while the team owes an answer. The resolution clock runs from receipt to
resolution, paused while the conversation is pending or resolved (`Resolution`): its
business seconds, the customer's waiting time and the due time are exact sums of the
intervals it ran or paused, each on the priority's clock (opening hours or 24/7).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .calendar import BusinessCalendar
from .model import Parsed
from .rules import is_our_message_id


class State(StrEnum):
    AWAITING_TEAM = "awaiting_team"
    BREACHED = "breached"
    ANSWERED = "answered"
    PENDING = "pending"  # waiting for the customer
    RESOLVED = "resolved"


class Event(StrEnum):
    TEAM_REPLY = "team_reply"
    TEAM_QUESTION = "team_question"  # a team reply that asks the customer something
    DEADLINE_PASSED = "deadline_passed"
    CUSTOMER_MESSAGE = "customer_message"
    IDLE_TIMEOUT = "idle_timeout"
    RESOLVE = "resolve"
    PEND = "pend"
    REOPEN = "reopen"  # to `answered`; `awaiting_team` when a reply clock is open


# (state, event) -> (next state, does a new reply clock start?)
TRANSITIONS: dict[tuple[State, Event], tuple[State, bool]] = {
    (State.AWAITING_TEAM, Event.TEAM_REPLY): (State.ANSWERED, False),
    (State.AWAITING_TEAM, Event.TEAM_QUESTION): (State.PENDING, False),
    (State.AWAITING_TEAM, Event.DEADLINE_PASSED): (State.BREACHED, False),
    (State.BREACHED, Event.TEAM_REPLY): (State.ANSWERED, False),
    (State.BREACHED, Event.TEAM_QUESTION): (State.PENDING, False),
    (State.ANSWERED, Event.CUSTOMER_MESSAGE): (State.AWAITING_TEAM, True),
    (State.PENDING, Event.CUSTOMER_MESSAGE): (State.AWAITING_TEAM, True),
    (State.RESOLVED, Event.CUSTOMER_MESSAGE): (State.AWAITING_TEAM, True),
    (State.ANSWERED, Event.IDLE_TIMEOUT): (State.RESOLVED, False),
    (State.PENDING, Event.IDLE_TIMEOUT): (State.RESOLVED, False),
    **{(s, Event.RESOLVE): (State.RESOLVED, False) for s in State if s != State.RESOLVED},
    **{(s, Event.PEND): (State.PENDING, False) for s in State if s != State.PENDING},
    (State.PENDING, Event.REOPEN): (State.ANSWERED, False),
    (State.RESOLVED, Event.REOPEN): (State.ANSWERED, False),
}

OPEN_CLOCK = frozenset({State.AWAITING_TEAM, State.BREACHED})  # the team owes a reply
QUIET = frozenset({State.ANSWERED, State.PENDING})  # resolved by close_after when quiet
PAUSED = frozenset({State.PENDING, State.RESOLVED})  # the resolution clock stands still


def transition(state: State | str, event: Event) -> tuple[State, bool]:
    """The next state and whether a new reply clock starts; unknown pairs change nothing."""
    current = State(state)
    return TRANSITIONS.get((current, event), (current, False))


def reply_event(parsed: Parsed, *, question_means_pending: bool = True) -> Event:
    """A team reply whose own new text asks a question leaves the ball with the customer
    (with `question_means_pending`; `+pending` says so explicitly either way)."""
    if question_means_pending and "?" in parsed.new_text:
        return Event.TEAM_QUESTION
    return Event.TEAM_REPLY


# ---------------------------------------------------------------------------- who wrote it


class Author(StrEnum):
    CUSTOMER = "customer"
    TEAM = "team"
    OURS = "ours"  # our own acknowledgments, alerts and digests: never a reply


def author(
    parsed: Parsed,
    *,
    own_addresses: frozenset[str],
    agents: frozenset[str],
    message_id_domain: str,
    loop_header: str,
    from_sent_folder: bool = False,
) -> Author:
    """Our own machine mail first (loop header, our Message-ID domain); then the team
    (the Sent folder, our addresses, configured agents); everyone else is a customer."""
    if parsed.header(loop_header) is not None:
        return Author.OURS
    if is_our_message_id(parsed.message_id, message_id_domain):
        return Author.OURS
    if from_sent_folder:
        return Author.TEAM
    sender = parsed.sender.key if parsed.sender else ""
    if sender in own_addresses or sender in agents:
        return Author.TEAM
    return Author.CUSTOMER


_PREFIX = re.compile(
    r"^\s*((re|fw|fwd|aw|wg|tr|sv|vs|antw|rv|r)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE
)
_TAGS = re.compile(r"\[[^\]]*\]")


def without_prefixes(subject: str) -> str:
    """The subject without its reply and forward prefixes, in any language and however
    stacked: "Re: RE: AW: Your order" -> "Your order" (our "Re: " goes in front once)."""
    return _PREFIX.sub("", subject).strip()


def normalize_subject(subject: str) -> str:
    """ "Re: AW: Where is my parcel? [SHOP-1001]" -> "where is my parcel?" """
    text = _TAGS.sub(" ", subject)
    text = _PREFIX.sub("", text)
    return re.sub(r"\s+", " ", text).strip().casefold()


# ---------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Clock:
    """One reply cycle's promise: when it started, its window, and when it is due."""

    started_at: datetime
    window: timedelta  # the published window for this cycle (first or next reply)
    stretch: float
    due_at: datetime
    warn_at: datetime | None

    @property
    def target(self) -> timedelta:
        return self.window * self.stretch


def start_clock(
    calendar: BusinessCalendar, started_at: datetime, window: timedelta, warn_fraction: float | None
) -> Clock:
    """A cycle starting at `started_at`: season stretch by its date; due and warning times."""
    season = calendar.season_at(started_at)
    stretch = season.stretch if season else 1.0
    target = window * stretch
    due = calendar.add(started_at, target)
    warn = calendar.add(started_at, target * warn_fraction) if warn_fraction else None
    return Clock(started_at, window, stretch, due, warn)


@dataclass(frozen=True)
class Measured:
    """A cycle's result."""

    business_time: timedelta
    met: bool
    late_by: timedelta  # zero when met


def measure(calendar: BusinessCalendar, clock: Clock, replied_at: datetime) -> Measured:
    """Business time from the cycle's start to the reply, against the cycle's target."""
    spent = max(calendar.elapsed(clock.started_at, replied_at), timedelta(0))
    late = spent - clock.target
    return Measured(spent, late <= timedelta(0), max(late, timedelta(0)))


# ---------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Resolution:
    """A conversation's resolution clock, as stored on it.

    `spent` is the business time it ran up to `running_since` (None while paused), `wait`
    the business time of completed pauses, `waiting_since` the start of the current
    pause. `target` None: the priority promises no resolution time (it is measured all
    the same). `due_at`/`warn_at` are None while paused or without a target."""

    target: timedelta | None
    spent: timedelta = timedelta(0)
    running_since: datetime | None = None
    waiting_since: datetime | None = None
    wait: timedelta = timedelta(0)
    due_at: datetime | None = None
    warn_at: datetime | None = None

    def spent_at(self, calendar: BusinessCalendar, at: datetime) -> timedelta:
        """Business time counted up to `at` (at or after the last change)."""
        if self.running_since is None:
            return self.spent
        return self.spent + max(calendar.elapsed(self.running_since, at), timedelta(0))

    def wait_at(self, calendar: BusinessCalendar, at: datetime) -> timedelta:
        """Business time spent waiting for the customer up to `at`."""
        if self.waiting_since is None:
            return self.wait
        return self.wait + max(calendar.elapsed(self.waiting_since, at), timedelta(0))


def _timers(calendar: BusinessCalendar, r: Resolution, warn_fraction: float | None) -> Resolution:
    """Due and warning times of a running clock: where `target` (and its warning
    fraction) will have been spent."""
    if r.running_since is None or r.target is None:
        return Resolution(r.target, r.spent, r.running_since, r.waiting_since, r.wait)
    left = max(r.target - r.spent, timedelta(0))
    due = calendar.add(r.running_since, left)
    warn = None
    if warn_fraction:
        warn = calendar.add(r.running_since, max(r.target * warn_fraction - r.spent, timedelta(0)))
    return Resolution(r.target, r.spent, r.running_since, r.waiting_since, r.wait, due, warn)


def start_resolution(
    calendar: BusinessCalendar, received_at: datetime, target: timedelta | None,
    warn_fraction: float | None,
) -> Resolution:  # fmt: skip
    """The clock of a conversation received at `received_at`, running."""
    return _timers(calendar, Resolution(target, running_since=received_at), warn_fraction)


def pause(calendar: BusinessCalendar, r: Resolution, at: datetime) -> Resolution:
    """Pending or resolved from `at`: what ran is banked; a pause begins."""
    if r.running_since is None:
        return r
    at = max(at, r.running_since)
    return Resolution(r.target, r.spent_at(calendar, at), None, at, r.wait)


def resume(
    calendar: BusinessCalendar, r: Resolution, at: datetime, warn_fraction: float | None
) -> Resolution:
    """Running again from `at` (the customer wrote, the team reopened)."""
    if r.running_since is not None:
        return r
    at = max(at, r.waiting_since) if r.waiting_since is not None else at
    running = Resolution(r.target, r.spent, at, None, r.wait_at(calendar, at))
    return _timers(calendar, running, warn_fraction)


def retarget(
    calendar: BusinessCalendar, r: Resolution, target: timedelta | None,
    warn_fraction: float | None,
) -> Resolution:  # fmt: skip
    """A new target (the priority changed): the time already spent keeps counting."""
    changed = Resolution(target, r.spent, r.running_since, r.waiting_since, r.wait)
    return _timers(calendar, changed, warn_fraction)


def follow(
    calendar: BusinessCalendar, r: Resolution, old: State | str, new: State | str, at: datetime,
    warn_fraction: float | None,
) -> Resolution:  # fmt: skip
    """The clock after the state went from `old` to `new` at `at`: it stands still while
    the conversation is pending or resolved, and runs otherwise."""
    was, now = State(old) in PAUSED, State(new) in PAUSED
    if now and not was:
        return pause(calendar, r, at)
    if was and not now:
        return resume(calendar, r, at, warn_fraction)
    return r
