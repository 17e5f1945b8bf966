"""The reply-tracking core: every state transition, who wrote a message, subject
matching, and measuring reply cycles in business time (weekend, holiday, DST, season)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.config import Config
from gateway.parse import parse
from gateway.rules import LOOP_HEADER
from gateway.tracker import (
    OPEN_CLOCK,
    PAUSED,
    TRANSITIONS,
    Author,
    Event,
    State,
    author,
    measure,
    normalize_subject,
    reply_event,
    start_clock,
    transition,
)

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


# ------------------------------------------------------------------ the state table

EXPECTED = {
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
    # The team's commands (+resolved, +pending, +open).
    (State.AWAITING_TEAM, Event.RESOLVE): (State.RESOLVED, False),
    (State.BREACHED, Event.RESOLVE): (State.RESOLVED, False),
    (State.ANSWERED, Event.RESOLVE): (State.RESOLVED, False),
    (State.PENDING, Event.RESOLVE): (State.RESOLVED, False),
    (State.AWAITING_TEAM, Event.PEND): (State.PENDING, False),
    (State.BREACHED, Event.PEND): (State.PENDING, False),
    (State.ANSWERED, Event.PEND): (State.PENDING, False),
    (State.RESOLVED, Event.PEND): (State.PENDING, False),
    (State.PENDING, Event.REOPEN): (State.ANSWERED, False),
    (State.RESOLVED, Event.REOPEN): (State.ANSWERED, False),
}


@pytest.mark.parametrize(("pair", "result"), list(EXPECTED.items()), ids=lambda x: str(x))
def test_every_transition(pair: tuple[State, Event], result: tuple[State, bool]) -> None:
    assert transition(*pair) == result


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(Event))
def test_pairs_not_in_the_table_change_nothing(state: State, event: Event) -> None:
    if (state, event) in EXPECTED:
        return
    assert transition(state, event) == (state, False)


def test_table_is_exactly_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED
    assert transition("awaiting_team", Event.TEAM_REPLY) == (
        State.ANSWERED,
        False,
    )  # from the database
    assert State.AWAITING_TEAM in OPEN_CLOCK and State.PENDING in PAUSED and State.ANSWERED not in PAUSED


def mail(
    sender: str, body: str = "Thanks, done.", extra: str = "", subject: str = "Re: Parcel"
) -> bytes:
    return (
        f"From: {sender}\r\nTo: kim@customer.example\r\nSubject: {subject}\r\n"
        f"Message-ID: <x1@mail.example>\r\n{extra}\r\n{body}\r\n"
    ).encode()


def test_a_question_leaves_the_ball_with_the_customer() -> None:
    assert reply_event(parse(mail("a@b.example", "Could you send a photo?"))) == Event.TEAM_QUESTION
    assert reply_event(parse(mail("a@b.example", "Done.\n> did you?\n"))) == Event.TEAM_REPLY


@pytest.mark.parametrize(
    ("raw", "sent", "expected"),
    [
        (mail("support@shop.example"), False, Author.TEAM),
        (mail("Anna <ANNA@shop.example>"), False, Author.TEAM),
        (mail("kim@customer.example"), True, Author.TEAM),  # anything in the Sent folder
        (mail("kim@customer.example"), False, Author.CUSTOMER),
        (
            mail("support@shop.example", extra=f"{LOOP_HEADER}: support@shop.example\r\n"),
            True,
            Author.OURS,
        ),
    ],
)
def test_author(example_config: Config, raw: bytes, sent: bool, expected: Author) -> None:
    parsed = parse(raw)
    got = author(parsed, own_addresses=example_config.own_addresses, agents=frozenset({"anna@shop.example"}),
                 message_id_domain="shop.example", loop_header=LOOP_HEADER, from_sent_folder=sent)  # fmt: skip
    assert got == expected


def test_our_message_ids_are_ours_but_the_domain_alone_is_not(example_config: Config) -> None:
    def who(message_id: str) -> Author:
        parsed = parse(
            f"From: support@shop.example\r\nMessage-ID: <{message_id}>\r\n\r\nx".encode()
        )
        return author(parsed, own_addresses=example_config.own_addresses, agents=frozenset(),
                      message_id_domain="shop.example", loop_header=LOOP_HEADER)  # fmt: skip

    assert who("179533443440.12828.8122011252847576304.ack@shop.example") == Author.OURS
    assert who("1.2.3.digest@shop.example") == Author.OURS
    # Thunderbird, Apple Mail, Roundcube: Message-IDs on the sender's own domain.
    assert who("5f1c-22@shop.example") == Author.TEAM


def test_normalize_subject() -> None:
    assert normalize_subject("Re: AW: Where is my parcel? [SHOP-1001]") == "where is my parcel?"
    assert normalize_subject("FWD: re[2]:  Hello   World") == "hello world"


# ------------------------------------------------------------------ measuring


def test_first_reply_over_a_weekend(example_config: Config) -> None:
    cal = example_config.calendar
    clock = start_clock(cal, at(2026, 11, 13, 16, 30), timedelta(hours=4), 0.75)
    assert clock.due_at == at(2026, 11, 14, 13, 30)  # Fri 30 min + Sat 10:00-13:30
    assert clock.warn_at == at(2026, 11, 14, 12, 30)
    late = measure(cal, clock, at(2026, 11, 16, 9, 30))  # Mon: 30 + 240 + 30 minutes
    assert (late.business_time, late.met, late.late_by) == (
        timedelta(hours=5),
        False,
        timedelta(hours=1),
    )
    ok = measure(cal, clock, at(2026, 11, 14, 11, 0))
    assert (ok.business_time, ok.met) == (timedelta(hours=1, minutes=30), True)


def test_first_reply_over_christmas(example_config: Config) -> None:
    cal = example_config.calendar
    clock = start_clock(cal, at(2026, 12, 23, 16, 0), timedelta(hours=4), None)
    assert clock.due_at == at(2026, 12, 28, 12, 0)  # 24th closed, 25th/26th holidays, Sunday
    assert measure(cal, clock, at(2026, 12, 28, 11, 0)).business_time == timedelta(hours=3)


def test_first_reply_across_dst(example_config: Config) -> None:
    cal = example_config.calendar
    # Sat 24 Oct 13:00 CEST; the clocks go back that night; due Mon 26 Oct 12:00 CET.
    clock = start_clock(cal, at(2026, 10, 24, 13, 0), timedelta(hours=4), None)
    assert clock.due_at == at(2026, 10, 26, 12, 0)
    assert measure(cal, clock, at(2026, 10, 26, 12, 0)).met
    assert not measure(cal, clock, at(2026, 10, 26, 12, 1)).met


def test_season_stretches_the_clock(example_config: Config) -> None:
    clock = start_clock(example_config.calendar, at(2026, 11, 27, 9, 0), timedelta(hours=1), None)
    assert (clock.stretch, clock.target, clock.due_at) == (
        2.0,
        timedelta(hours=2),
        at(2026, 11, 27, 11, 0),
    )
