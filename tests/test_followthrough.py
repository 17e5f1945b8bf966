"""Follow-through with the customer end to end over the real listener and a real SMTP sink:
reminders while the team waits for the customer, the closing notice, a breach notice per
missed reply clock with the exception notice and the remedy for its lateness (coupon
codes never given twice, the owner alerted once when they run out), and `sla-gateway
notice`. Each message arrives exactly once at its business instant — across a weekend,
Christmas (holidays and the shop's own closed days) and the end of summer time — made
like the acknowledgment (threaded, auto-replied, ours). The clock is the only thing faked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from gateway import store
from gateway.config import Config, ConfigError, parse
from gateway.reports import status
from gateway.rules import LOOP_HEADER, is_our_message_id
from gateway.service import Service
from tests.conftest import example_text
from tests.mailtools import Clock, Delivered, Sink, gateway_config
from tests.test_resolution import conversation, events, reply_copied_to, send
from tests.test_tracking import AGENTS, at, customer_mail, team_mail

REMIND = {"remind_after = []": 'remind_after = ["8h", "16h"]', "close_notice = false": "close_notice = true",
          "# null_sender = false ": "null_sender = true "}
NOTIFY = {"notify_customer = false": "notify_customer = true"}


def start(tmp_path: Path, database_url: str, sink: Sink, now: Any, extra: dict[str, str],
          append: str = "") -> tuple[Service, Config, Clock]:  # fmt: skip
    config = gateway_config(tmp_path, database_url, sink_port=sink.port, extra={**AGENTS, **extra},
                            append=append)  # fmt: skip
    clock = Clock(now)
    service = Service(config, clock=clock)
    service.start(workers=False)
    return service, config, clock


@pytest.fixture
def reminding(tmp_path: Path, database_url: str, sink: Sink) -> Iterator[tuple[Service, Config, Clock]]:
    service, config, clock = start(tmp_path, database_url, sink, at(2026, 12, 23, 9, 0), REMIND)
    yield service, config, clock
    service.close()


def to_customer(sink: Sink) -> list[Delivered]:
    return [d for d in sink.received if not d.message["Subject"].startswith("[sla-gateway]")]


def text_of(delivered: Delivered) -> str:
    body = delivered.message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())  # type: ignore[attr-defined]


def run_at(service: Service, clock: Clock, moment: Any) -> None:
    clock.now = moment
    service.run_once()
    service.run_once()  # a second run at the same instant changes nothing


def outbox(service: Service, kind: str) -> list[Any]:
    with service.engine.connect() as conn:
        o = store.outbox.c
        return list(conn.execute(sa.select(store.outbox).where(o.kind == kind).order_by(o.id)))


def assert_made_like_the_acknowledgment(delivered: Delivered, kind: str) -> None:
    m = delivered.message
    assert delivered.rcpt_tos == ["kim@customer.example"] and m["To"] == "kim@customer.example"
    assert m["Auto-Submitted"] == "auto-replied" and m[LOOP_HEADER] == "support@shop.example"
    assert m["In-Reply-To"] == "<c1@customer.example>" and "<c1@customer.example>" in m["References"]
    assert f".{kind}@shop.example>" in m["Message-ID"]
    assert "[SHOP-1001]" in m["Subject"]


def test_reminders_then_the_closing_notice_each_once_across_christmas_and_a_weekend(
    reminding: tuple[Service, Config, Clock], sink: Sink
) -> None:
    service, config, clock = reminding
    send(service, config, customer_mail(), "kim@customer.example")  # Wed 23 Dec 09:00
    clock.now = at(2026, 12, 23, 10, 0)
    send(service, config, reply_copied_to(1, "pending", "Which size did you order"), "anna@shop.example")
    assert conversation(service).state == "pending"
    # 8 business hours after Wed 10:00: 7 h on Wednesday; Thursday 24th is a closing day,
    # Friday and Saturday Christmas holidays, Sunday closed; the last hour on Monday.
    first = at(2026, 12, 28, 10, 0)
    assert service.scheduler.next_due() == first
    run_at(service, clock, first - timedelta(minutes=1))
    assert len(to_customer(sink)) == 1  # the acknowledgment only
    run_at(service, clock, first)
    [ack, reminder] = to_customer(sink)
    assert_made_like_the_acknowledgment(reminder, "reminder")
    assert ack.mail_from == reminder.mail_from == "<>"  # [send] null_sender: like the ack
    assert "still waiting for your answer about SHOP-1001" in text_of(reminder)
    assert "Wednesday, December 23, 2026" in text_of(reminder)  # when the team wrote
    second = at(2026, 12, 29, 10, 0)  # 16 h: the rest of Monday and one hour on Tuesday
    assert service.scheduler.next_due() == second
    run_at(service, clock, second - timedelta(minutes=1))
    assert len(to_customer(sink)) == 2
    run_at(service, clock, second)
    assert len(to_customer(sink)) == 3
    assert service.scheduler.next_due() is None  # both steps done; nothing else is due
    run_at(service, clock, at(2026, 12, 30, 9, 59))
    assert len(to_customer(sink)) == 3
    # close_after (7 days, real time) after the team's message: resolved, and told once.
    run_at(service, clock, at(2026, 12, 30, 10, 0))
    c = conversation(service)
    assert (c.state, c.resolved_by) == ("resolved", "close_after")
    [*_, closed] = to_customer(sink)
    assert len(to_customer(sink)) == 4
    assert_made_like_the_acknowledgment(closed, "closed")
    assert "we have closed SHOP-1001" in text_of(closed) and "just reply" in text_of(closed)
    run_at(service, clock, at(2027, 1, 8, 10, 0))
    assert len(to_customer(sink)) == 4
    assert [e.kind for e in events(service, "reminder")] == ["reminder", "reminder"]
    assert len(events(service, "closed")) == 1
    last_hour = status(service.engine, clock.now)["last_hour"]
    assert (last_hour["reminders"], last_hour["closing_notices"]) == (0, 0)  # sent days ago
    assert status(service.engine, at(2026, 12, 30, 10, 30))["last_hour"]["closing_notices"] == 1
    # Ours in loop detection; and "just reply and it reopens": an answer to the closing
    # notice (naming only its Message-ID) joins the conversation and reopens it.
    closed_id = closed.message["Message-ID"].strip("<>")
    assert is_our_message_id(closed_id, config.message_id_domain)
    answer = customer_mail(9, subject=closed.message["Subject"], body="It came back damaged.",
                           extra=f"In-Reply-To: <{closed_id}>\r\n")  # fmt: skip
    send(service, config, answer, "kim@customer.example")
    c = conversation(service)  # still the one conversation
    assert (c.state, c.resolved_at) == ("awaiting_team", None)


def test_a_customer_who_writes_stops_the_reminders_and_a_new_pause_starts_again(
    reminding: tuple[Service, Config, Clock], sink: Sink
) -> None:
    service, config, clock = reminding
    send(service, config, customer_mail(), "kim@customer.example")
    clock.now = at(2026, 12, 23, 10, 0)
    send(service, config, reply_copied_to(1, "pending", "Which size did you order"), "anna@shop.example")
    clock.now = at(2026, 12, 28, 10, 0)
    service.scheduler.run_due()  # the first reminder is queued, not yet sent ...
    [queued] = outbox(service, "reminder")
    assert queued.status == "pending"
    follow = customer_mail(2, subject="Re: Where is my parcel?", body="Size M.",
                           extra="In-Reply-To: <t1@shop-mail.example>\r\n")  # fmt: skip
    send(service, config, follow, "kim@customer.example")  # ... when the customer answers
    [cancelled] = outbox(service, "reminder")
    assert cancelled.status == "cancelled"
    assert len(events(service, "reminder-cancelled")) == 1
    assert conversation(service).state == "awaiting_team"
    run_at(service, clock, at(2026, 12, 30, 12, 0))  # past both steps: nothing goes out
    assert len(to_customer(sink)) == 1
    # The team asks again: a new pause, its reminders count from its own start.
    send(service, config, reply_copied_to(3, "pending", "And the colour"), "anna@shop.example")
    assert conversation(service).waiting_since == at(2026, 12, 30, 12, 0)
    # Wed 12-17 (5 h); Thursday 31st a closing day, Friday New Year, then Saturday 10-13.
    assert service.scheduler.next_due() == at(2027, 1, 2, 13, 0)
    run_at(service, clock, at(2027, 1, 2, 13, 0))
    assert len(to_customer(sink)) == 2


def test_a_reminder_on_a_round_the_clock_priority_counts_through_the_end_of_summer_time(
    tmp_path: Path, database_url: str, sink: Sink
) -> None:
    extra = {**REMIND, 'remind_after = ["8h", "16h"]': 'remind_after = ["24h"]',
             'first_reply = "30m"\n': 'first_reply = "30m"\nclock = "24/7"\n'}  # fmt: skip
    service, config, clock = start(tmp_path, database_url, sink, at(2026, 10, 24, 11, 0), extra)
    try:
        send(service, config, customer_mail(subject="I was charged twice"), "kim@customer.example")
        clock.now = at(2026, 10, 24, 12, 0)  # Saturday, summer time (UTC+2)
        send(service, config, reply_copied_to(1, "pending", "Which card did you use"), "anna@shop.example")
        # 24 real hours later the clocks have gone back an hour: Sunday 11:00 winter time.
        due = at(2026, 10, 25, 11, 0)
        assert due.astimezone(UTC) - at(2026, 10, 24, 12, 0).astimezone(UTC) == timedelta(hours=24)
        assert service.scheduler.next_due() == due
        run_at(service, clock, due - timedelta(minutes=1))
        assert len(to_customer(sink)) == 1
        run_at(service, clock, due)
        assert len(to_customer(sink)) == 2
        run_at(service, clock, at(2026, 10, 27, 11, 0))
        assert len(to_customer(sink)) == 2
    finally:
        service.close()


REMEDIES = """
[[breach.remedy]]
late_by = "2h"
text = "We refund your shipping costs."

[[breach.remedy]]
late_by = "4h"
text = {{ en = "Your next order ships free: use the code below.", de = "Ihre nächste Bestellung ist versandkostenfrei." }}
codes_file = "{codes}"
"""


def test_a_breach_notice_per_missed_reply_clock_with_its_remedy_and_codes_never_given_twice(
    tmp_path: Path, database_url: str, sink: Sink, run_cli: Callable[..., Result]
) -> None:
    codes = tmp_path / "coupons.txt"
    codes.write_text("SORRY-1\n\n", encoding="utf-8")
    service, config, clock = start(tmp_path, database_url, sink, at(2026, 11, 23, 9, 0), NOTIFY,
                                   append=REMEDIES.format(codes=codes))  # fmt: skip
    try:
        result = run_cli("--config", str(config.path), "notice", "set",
                         "Our courier is on strike; replies are slower this week", now=at(2026, 11, 23, 8, 0))  # fmt: skip
        assert result.exit_code == 0, result.output
        send(service, config, customer_mail(), "kim@customer.example")  # normal: due 13:00
        ack = to_customer(sink)[0]
        assert "Our courier is on strike" in text_of(ack)
        run_at(service, clock, at(2026, 11, 23, 13, 1))
        [_, first] = to_customer(sink)
        assert_made_like_the_acknowledgment(first, "breach")
        text = text_of(first)
        # Expected lateness: now + the 4 h window - the promise = 4 h 1 min: the 4 h remedy.
        assert "Our courier is on strike" in text and "ships free" in text and "SORRY-1" in text
        assert "refund" not in text
        # The team answers; the customer writes again; the next reply is missed too.
        clock.now = at(2026, 11, 23, 14, 0)
        send(service, config, team_mail(1, "c1@customer.example", sender="anna@shop.example"), "anna@shop.example")
        clock.now = at(2026, 11, 23, 14, 30)
        follow = customer_mail(2, subject="Re: Where is my parcel?", body="Still nothing.",
                               extra="In-Reply-To: <t1@shop-mail.example>\r\n")  # fmt: skip
        send(service, config, follow, "kim@customer.example")
        run_at(service, clock, at(2026, 11, 24, 10, 31))  # due Tue 10:30
        [_, _, second] = to_customer(sink)
        assert second.message["In-Reply-To"] == "<c2@customer.example>"
        assert "SORRY-1" in text_of(second)  # the conversation keeps its one code
        run_at(service, clock, at(2026, 11, 24, 16, 0))
        assert len(to_customer(sink)) == 3  # one notice per clock
        # Two more customers are let down: no code is left for them; the owner hears once.
        lee = customer_mail(3, subject="Broken lid").replace(b"kim@", b"lee@")
        send(service, config, lee, "lee@customer.example")  # Tue 16:00 + 4 h: due Wed 12:00
        joe = customer_mail(4, subject="Wrong colour").replace(b"kim@", b"joe@")
        send(service, config, joe, "joe@customer.example")
        run_at(service, clock, at(2026, 11, 25, 12, 1))
        late = [d for d in to_customer(sink)[3:] if d.message["X-SLA-Gateway-Reference"] != "SHOP-1001"
                and "promised" in text_of(d)]  # fmt: skip
        assert len(late) == 2
        assert all("ships free" in text_of(d) and "SORRY-1" not in text_of(d) for d in late)
        alerts = [d for d in sink.received if d.message["Subject"] == "[sla-gateway] Coupon codes used up"]
        assert len(alerts) == 1 and str(codes) in text_of(alerts[0])
        with service.engine.connect() as conn:
            given = conn.execute(sa.select(store.remedy_codes)).all()
        assert [g.code for g in given] == ["SORRY-1"]
        # The notice is cleared: the next acknowledgment carries none.
        cleared = run_cli("--config", str(config.path), "notice", "clear", now=at(2026, 11, 25, 12, 10))
        assert cleared.exit_code == 0 and "cleared" in cleared.output
        clock.now = at(2026, 11, 25, 12, 30)
        send(service, config, customer_mail(5, subject="Invoice").replace(b"kim@", b"ann@"), "ann@customer.example")
        assert "courier" not in text_of(to_customer(sink)[-1])
    finally:
        service.close()


def test_notices_off_mark_breaches_so_switching_them_on_sends_no_old_news(
    tmp_path: Path, database_url: str, sink: Sink
) -> None:
    service, config, clock = start(tmp_path, database_url, sink, at(2026, 11, 23, 9, 0), {})
    try:
        send(service, config, customer_mail(), "kim@customer.example")
        run_at(service, clock, at(2026, 11, 23, 13, 1))
    finally:
        service.close()
    service, config, clock = start(tmp_path, database_url, sink, at(2026, 11, 23, 13, 2), NOTIFY)
    try:
        run_at(service, clock, at(2026, 11, 23, 13, 5))
        assert len(to_customer(sink)) == 1  # the acknowledgment only
    finally:
        service.close()


def test_notice_from_the_shell(tmp_path: Path, database_url: str, run_cli: Callable[..., Result]) -> None:
    config = gateway_config(tmp_path, database_url)
    cli = ("--config", str(config.path), "notice")
    now = at(2026, 12, 7, 9, 0)
    assert "no notice" in run_cli(*cli, now=now).output
    done = run_cli(*cli, "set", "  Our courier is on strike;\n replies are slower this week ", "--until",
                   "2026-12-11", now=now)  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "Our courier is on strike; replies are slower this week" in done.output
    shown = run_cli(*cli, now=at(2026, 12, 11, 23, 59))
    assert "Our courier is on strike; replies are slower this week" in shown.output
    assert "until Sat 12 Dec 2026 00:00 CET" in shown.output
    assert "no notice" in run_cli(*cli, now=at(2026, 12, 12, 0, 0)).output  # expired
    for args, words in (
        (("set", "   "), "the notice text is empty"),
        (("set", "x" * 501), "keep it under 500"),
        (("set", "Closed for stocktaking", "--until", "next week"), '"next week" is not a date or time'),
        (("set", "Closed for stocktaking", "--until", "2026-12-06"), "is already past"),
    ):
        bad = run_cli(*cli, *args, now=now)
        assert bad.exit_code == 2, (args, bad.output)
        lines = bad.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], bad.output
    assert run_cli(*cli, now=now).output.startswith("Our courier")  # nothing bad replaced it
    later = run_cli(*cli, "set", "Closed for stocktaking", "--until", "2026-12-09T18:00", now=now)
    assert later.exit_code == 0 and "until Wed 09 Dec 2026 18:00 CET" in later.output
    assert run_cli(*cli, "clear", now=now).output.strip() == "notice cleared"
    assert run_cli(*cli, "clear", now=now).output.strip() == "no notice was set"


def test_a_reminder_queued_when_the_team_writes_is_cancelled_and_the_limits_hold_the_rest(
    reminding: tuple[Service, Config, Clock], sink: Sink
) -> None:
    service, config, clock = reminding
    send(service, config, customer_mail(), "kim@customer.example")
    clock.now = at(2026, 12, 23, 10, 0)
    send(service, config, reply_copied_to(1, "pending", "Which size did you order"), "anna@shop.example")
    clock.now = at(2026, 12, 28, 10, 0)
    service.scheduler.run_due()  # queued ...
    clock.now = at(2026, 12, 28, 10, 1)  # ... and the team writes again, still waiting
    send(service, config, reply_copied_to(2, "pending", "Or the colour, maybe"), "anna@shop.example")
    assert [r.status for r in outbox(service, "reminder")] == ["cancelled"]
    assert len(to_customer(sink)) == 1
    # While the circuit breaker is open nothing more goes to customers; what it holds is
    # recorded and never sent later.
    with store.begin(service.engine) as conn:
        store.add_event(conn, clock.now, "circuit-open", {"reason": "a test flood"})
    # The same pause goes on (a team message while pending does not restart it): step two.
    run_at(service, clock, at(2026, 12, 29, 10, 0))
    assert [e.kind for e in events(service, "reminder-held")] == ["reminder-held"]
    assert '"why": "circuit-breaker"' in events(service, "reminder-held")[0].detail
    with store.begin(service.engine) as conn:
        store.add_event(conn, clock.now, "circuit-closed", {})
    run_at(service, clock, at(2026, 12, 29, 10, 30))
    assert len(to_customer(sink)) == 1 and service.scheduler.next_due() is None


@pytest.mark.parametrize(
    ("append", "expected"),
    [
        ('[[breach.remedy]]\nlate_by = "4"\ntext = "Free shipping."\n',
         'gw.toml: breach.remedy[0].late_by: "4" has no unit'),
        ('[[breach.remedy]]\nlate_by = "4h"\ntext = "Free shipping."\ncodes_file = "/nonexistent/coupons.txt"\n',
         'gw.toml: breach.remedy[0].codes_file: file "/nonexistent/coupons.txt" cannot be read: No such file or directory; export the file there (one code per line) or correct the path'),
        ('[[breach.remedy]]\nlate_by = "4h"\n',
         "gw.toml: breach.remedy[0].text: is missing"),
        ('[[breach.remedy]]\nlate_by = "4h"\ntext = "A"\n[[breach.remedy]]\nlate_by = "240m"\ntext = "B"\n',
         "gw.toml: breach.remedy[1].late_by: is the same as breach.remedy[0]'s; give each remedy its own late_by, or merge the two"),
    ],
)  # fmt: skip
def test_remedy_keys_are_checked_in_one_line_each(append: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(example_text() + append, "gw.toml")
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_remind_after_must_grow() -> None:
    text = example_text().replace("remind_after = []", 'remind_after = ["2d", "1d"]')
    with pytest.raises(ConfigError) as info:
        parse(text, "gw.toml")
    assert [str(p) for p in info.value.problems] == [
        'gw.toml: tracking.remind_after: each duration must be longer than the one before; write them in order, e.g. ["1d", "2d"]'
    ]
    config = parse(example_text().replace("remind_after = []", 'remind_after = ["8h", "1d"]'), "gw.toml")
    assert config.tracking.remind_after == (timedelta(hours=8), timedelta(days=1))


def test_the_policy_page_says_what_the_shop_does_when_it_is_late(
    tmp_path: Path, database_url: str, run_cli: Callable[..., Result]
) -> None:
    codes = tmp_path / "coupons.txt"
    codes.write_text("SORRY-1\n", encoding="utf-8")
    config = gateway_config(tmp_path, database_url, append=REMEDIES.format(codes=codes))
    text = run_cli("--config", str(config.path), "policy", "--format", "text").output
    assert "When we are late:" in text
    assert "If our answer is 2 business hours late or more: We refund your shipping costs." in text
    assert "If our answer is 4 business hours late or more: Your next order ships free" in text
    german = gateway_config(tmp_path, database_url, append=REMEDIES.format(codes=codes),
                            extra={'language = "en"': 'language = "de"'})  # fmt: skip
    html = run_cli("--config", str(german.path), "policy", "--format", "html").output
    assert "Wenn wir zu spät sind:" in html and "Ihre nächste Bestellung ist versandkostenfrei." in html


def test_the_upgrade_counts_every_breach_already_there_as_notified(database_url: str) -> None:
    """Revision 0013 moves the one breach notice to the reply clock: clocks breached
    before it (notified or not) need none, so the upgrade sends no old news."""
    engine = store.make_engine(database_url)
    try:
        store.upgrade(engine, "0011")
        when = at(2026, 11, 23, 9, 0)
        with store.begin(engine) as conn:
            for n, notified in ((1, at(2026, 11, 23, 13, 1)), (2, None)):
                conn.execute(sa.text(
                    "INSERT INTO conversations (id, reference, inbox, customer, subject, priority,"
                    " priority_reason, state, received_at, window_seconds, stretch, due_at, breached,"
                    " created_at, customer_notified_at) VALUES (:id, :ref, 'shop', 'kim@customer.example',"
                    " '', 'normal', '', 'breached', :at, 14400, 1.0, :due, :yes, :at, :notified)"),
                    dict(id=n, ref=f"SHOP-100{n}", at=when, due=when + timedelta(hours=4), yes=True,
                         notified=notified))  # fmt: skip
                conn.execute(sa.text(
                    "INSERT INTO cycles (conversation_id, kind, priority, started_at, window_seconds,"
                    " stretch, due_at, breached) VALUES (:id, 'first', 'normal', :at, 14400, 1.0, :due, :yes)"),
                    dict(id=n, at=when, due=when + timedelta(hours=4), yes=True))  # fmt: skip
        store.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(sa.select(store.cycles)
                                .where(store.cycles.c.customer_notified_at.is_(None))).all() == []  # fmt: skip
            assert store.breached_unnotified(conn) == []
            assert {r.reminders_sent for r in conn.execute(sa.select(store.conversations))} == {0}
    finally:
        engine.dispose()


def test_the_daily_limit_holds_a_breach_notice_for_good(tmp_path: Path, database_url: str, sink: Sink) -> None:
    extra = {**NOTIFY, "max_per_sender_per_day = 5 ": "max_per_sender_per_day = 1 "}
    service, config, clock = start(tmp_path, database_url, sink, at(2026, 11, 23, 9, 0), extra)
    try:
        send(service, config, customer_mail(), "kim@customer.example")  # the day's one message
        run_at(service, clock, at(2026, 11, 23, 13, 1))
        [held] = events(service, "breach-held")
        assert '"why": "daily-limit"' in held.detail
        run_at(service, clock, at(2026, 11, 24, 9, 30))  # a new day: still nothing, never late
        assert len(to_customer(sink)) == 1 and outbox(service, "breach") == []
    finally:
        service.close()


def test_the_largest_late_by_reached_wins() -> None:
    codes_free = REMEDIES.split("codes_file")[0]
    config = parse(example_text() + codes_free.format(codes=""), "gw.toml")
    pick = config.tracking.remedy_for
    assert pick(timedelta(hours=1, minutes=59)) is None
    found = pick(timedelta(hours=2))
    assert found is not None and found.text == "We refund your shipping costs."
    found = pick(timedelta(hours=3, minutes=59))
    assert found is not None and found.late_by == timedelta(hours=2)
    found = pick(timedelta(days=3))
    assert found is not None and found.late_by == timedelta(hours=4)
    assert found.text_for("de") == "Ihre nächste Bestellung ist versandkostenfrei."
    assert found.text_for("fr") == found.text == "Your next order ships free: use the code below."
