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
    awaiting_team       team_reply        answered | awaiting_customer (reply asks a question)
    awaiting_team       deadline_passed   breached
    breached            team_reply        answered | awaiting_customer
    answered            customer_message  awaiting_team      (a next-reply clock starts)
    awaiting_customer   customer_message  awaiting_team      (a next-reply clock starts)
    answered            idle_timeout      closed             (after close_after)
    awaiting_customer   idle_timeout      closed
    closed              customer_message  awaiting_team      (reopened; next-reply clock)
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
    AWAITING_CUSTOMER = "awaiting_customer"
    CLOSED = "closed"


class Event(StrEnum):
    TEAM_REPLY = "team_reply"
    TEAM_QUESTION = "team_question"  # a team reply that asks the customer something
    DEADLINE_PASSED = "deadline_passed"
    CUSTOMER_MESSAGE = "customer_message"
    IDLE_TIMEOUT = "idle_timeout"


# (state, event) -> (next state, does a new reply clock start?)
TRANSITIONS: dict[tuple[State, Event], tuple[State, bool]] = {
    (State.AWAITING_TEAM, Event.TEAM_REPLY): (State.ANSWERED, False),
    (State.AWAITING_TEAM, Event.TEAM_QUESTION): (State.AWAITING_CUSTOMER, False),
    (State.AWAITING_TEAM, Event.DEADLINE_PASSED): (State.BREACHED, False),
    (State.BREACHED, Event.TEAM_REPLY): (State.ANSWERED, False),
    (State.BREACHED, Event.TEAM_QUESTION): (State.AWAITING_CUSTOMER, False),
    (State.ANSWERED, Event.CUSTOMER_MESSAGE): (State.AWAITING_TEAM, True),
    (State.AWAITING_CUSTOMER, Event.CUSTOMER_MESSAGE): (State.AWAITING_TEAM, True),
    (State.ANSWERED, Event.IDLE_TIMEOUT): (State.CLOSED, False),
    (State.AWAITING_CUSTOMER, Event.IDLE_TIMEOUT): (State.CLOSED, False),
    (State.CLOSED, Event.CUSTOMER_MESSAGE): (State.AWAITING_TEAM, True),
}

OPEN_CLOCK = frozenset({State.AWAITING_TEAM, State.BREACHED})  # the team owes a reply
PAUSED = frozenset({State.ANSWERED, State.AWAITING_CUSTOMER})  # waiting for the customer


def transition(state: State | str, event: Event) -> tuple[State, bool]:
    """The next state and whether a new reply clock starts; unknown pairs change nothing."""
    current = State(state)
    return TRANSITIONS.get((current, event), (current, False))


def reply_event(parsed: Parsed) -> Event:
    """A team reply whose own new text asks a question leaves the ball with the customer."""
    return Event.TEAM_QUESTION if "?" in parsed.new_text else Event.TEAM_REPLY


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
