"""No statement the gateway runs per message or per wake-up reads a whole growing table.

A database gets a few months of history (thousands of rows in every table that grows
with the mail), then one message of each kind goes through the real code paths — intake
(`Pipeline.accept`), the runner, the scheduler's wake-up (retention purge included), the
outbox sender, the outage watch, the IMAP poller's bookkeeping — while every statement
the store executes is recorded (SQLAlchemy's `before_cursor_execute`). Each recorded
statement is then explained with its own parameters: SQLite's `EXPLAIN QUERY PLAN` must
not say `SCAN <growing table>` (a full pass over the table or one of its indexes), and
PostgreSQL's `EXPLAIN`, with sequential scans priced out (`enable_seqscan = off`, so that
one appears only where no index can serve), must not say `Seq Scan on <growing table>`
nor read an index of one without an `Index Cond` (from end to end).
The list of statements is what the code runs, never a copy of its SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import store
from gateway.config import Config
from gateway.imap import FolderSync, TooLarge
from gateway.model import Received
from gateway.service import Service
from tests.mailtools import Clock, gateway_config

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin, open
CONVERSATIONS = 2500  # of history, over the 120 days before NOW
GROWING = ("conversations", "messages", "outbox", "events", "cycles", "participants",
           "reply_keys", "digests", "folder_uids")  # fmt: skip


def history(now: datetime, count: int = CONVERSATIONS) -> dict[str, list[dict[str, Any]]]:
    """A shop's past: each conversation with its customer message, our acknowledgment
    (sent), the team's reply, a reply cycle, participants and events; some machine mail
    and unmatched team replies with their reply keys."""
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in GROWING}
    message_id = event_id = 0
    for n in range(count):
        at = now - timedelta(days=120) + timedelta(minutes=69 * n)
        conv = n + 1
        customer = f"c{n}@customer.example"
        rows["conversations"].append(dict(
            id=conv, reference=f"SHOP-{1000 + n}", inbox="support", customer=customer,
            subject=f"Parcel {n}", priority="normal", priority_reason="", state="answered",
            received_at=at, window_seconds=28800, stretch=1.0, due_at=at + timedelta(hours=8),
            first_reply_at=at + timedelta(hours=2), first_reply_business_seconds=7200,
            breached=False, last_customer_at=at, last_team_at=at + timedelta(hours=2),
            created_at=at,
        ))  # fmt: skip
        for direction, offset in (("customer", 0), ("team", 2)):
            message_id += 1
            rows["messages"].append(dict(
                id=message_id, dedup_key=f"k{message_id}", message_id=f"m{message_id}@x.example",
                conversation_id=conv, inbox="support", direction=direction, source="smtp",
                status="processed", received_at=at + timedelta(hours=offset),
                envelope_from=customer, from_addr=customer, subject=f"Parcel {n}",
                acknowledged=direction == "customer", sha256="0" * 64, size=2400, raw=b"x" * 2400,
            ))  # fmt: skip
        outbox_id = conv
        rows["outbox"].append(dict(
            id=outbox_id, kind="ack", conversation_id=conv, source_message_id=message_id - 1,
            sender="support@shop.example", recipient=customer,
            message_id=f"ack{n}.{outbox_id}@shop.example", raw=b"y" * 3000, status="sent",
            attempts=1, next_attempt_at=at, created_at=at, sent_at=at,
        ))  # fmt: skip
        rows["cycles"].append(dict(
            id=conv, conversation_id=conv, kind="first", priority="normal", started_at=at,
            window_seconds=28800, stretch=1.0, due_at=at + timedelta(hours=8),
            warn_at=at + timedelta(hours=6), replied_at=at + timedelta(hours=2),
            business_seconds=7200, breached=False,
        ))  # fmt: skip
        rows["participants"].append(dict(conversation_id=conv, address=customer))
        for kind, row in (("acknowledged", message_id - 1), ("team-reply", message_id)):
            event_id += 1
            rows["events"].append(dict(id=event_id, at=at, kind=kind, conversation_id=conv,
                                       message_row=row, detail="{}"))  # fmt: skip
        # The customer message's UID in INBOX: archived three days later, but the last 50.
        left = None if n >= count - 50 else at + timedelta(days=3)
        rows["folder_uids"].append(dict(
            inbox="support", folder="INBOX", uidvalidity=7, uid=message_id - 1,
            message_row=message_id - 1, seen_at=at, left_at=left,
        ))  # fmt: skip
        if n % 5 == 0:  # machine mail, in no conversation
            message_id += 1
            rows["messages"].append(dict(
                id=message_id, dedup_key=f"k{message_id}", message_id=f"m{message_id}@x.example",
                inbox="support", direction="machine", source="smtp", status="processed",
                received_at=at, envelope_from="", from_addr="mailer-daemon@x.example",
                subject="Undelivered", skip_rule="bounce", skip_reason="a bounce",
                acknowledged=False, sha256="0" * 64, size=900, raw=b"z" * 900,
            ))  # fmt: skip
        if n % 7 == 0:  # a team reply that matched nothing (yet)
            message_id += 1
            rows["messages"].append(dict(
                id=message_id, dedup_key=f"k{message_id}", message_id=f"m{message_id}@x.example",
                inbox="support", direction="team", source="imap", status="processed",
                received_at=at, from_addr="team@shop.example", subject=f"Re: Lost {n}",
                acknowledged=False, sha256="0" * 64, size=900, raw=b"t" * 900,
            ))  # fmt: skip
            rows["reply_keys"] += [dict(message_row=message_id, key=f"<lost{n}@customer.example"),
                                   dict(message_row=message_id, key=f"@lost{n}@customer.example")]  # fmt: skip
        if n % 20 == 0:
            rows["digests"].append(dict(day=now.date() - timedelta(days=2 + n // 20), created_at=at))
    return rows


def mail(headers: str, body: str = "Where is my parcel? It has not arrived.") -> bytes:
    return (
        f"{headers}To: support@shop.example\r\nDate: Mon, 23 Nov 2026 09:55:00 +0100\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def todays_mail() -> list[Received]:
    """One message of each kind the runner treats differently."""
    smtp = dict(source="smtp", received_at=NOW, envelope_to=("support@shop.example",))
    return [
        # a new conversation
        Received(mail("From: Ann <ann@customer.example>\r\nSubject: Broken lid\r\n"
                      "Message-ID: <new1@customer.example>\r\n"),
                 envelope_from="ann@customer.example", **smtp),  # type: ignore[arg-type]
        # the same customer again, on another matter: the rate limits look at her recent mail
        Received(mail("From: Ann <ann@customer.example>\r\nSubject: And the invoice\r\n"
                      "Message-ID: <new2@customer.example>\r\n"),
                 envelope_from="ann@customer.example", **smtp),  # type: ignore[arg-type]
        # a customer's reply to one of our acknowledgments (found in the outbox)
        Received(mail("From: c10@customer.example\r\nSubject: Re: Parcel 10\r\n"
                      "Message-ID: <re10@customer.example>\r\nIn-Reply-To: <ack10.11@shop.example>\r\n"
                      "References: <m21@x.example> <ack10.11@shop.example>\r\n"),
                 envelope_from="c10@customer.example", **smtp),  # type: ignore[arg-type]
        # a follow-up by our reference tag
        Received(mail("From: c20@customer.example\r\nSubject: Still waiting [SHOP-1020]\r\n"
                      "Message-ID: <tag20@customer.example>\r\n"),
                 envelope_from="c20@customer.example", **smtp),  # type: ignore[arg-type]
        # the mail an unmatched team reply of the history answers
        Received(mail("From: lost7@customer.example\r\nSubject: Lost 7\r\n"
                      "Message-ID: <lost7@customer.example>\r\n"),
                 envelope_from="lost7@customer.example", **smtp),  # type: ignore[arg-type]
        # quoting our acknowledgment, from someone who takes no part in it
        Received(mail("From: desk@tickets.example\r\nSubject: Re: Parcel 30 [SHOP-1030]\r\n"
                      "Message-ID: <desk1@tickets.example>\r\nIn-Reply-To: <ack30.31@shop.example>\r\n",
                      "Your ticket was received.\r\n\r\n> We received your message [SHOP-1030]"),
                 envelope_from="desk@tickets.example", **smtp),  # type: ignore[arg-type]
        # a bounce
        Received(mail("From: Mail Delivery System <mailer-daemon@mx.example>\r\n"
                      "Subject: Undelivered Mail Returned to Sender\r\n"
                      "Message-ID: <bounce1@mx.example>\r\nAuto-Submitted: auto-replied\r\n"),
                 envelope_from="", **smtp),  # type: ignore[arg-type]
        # team replies from the Sent folder: one to a stored message, one to nothing known
        Received(mail("From: team@shop.example\r\nTo: c40@customer.example\r\nSubject: Re: Parcel 40\r\n"
                      "Message-ID: <team40@shop.example>\r\nIn-Reply-To: <m81@x.example>\r\n",
                      "It is on its way."),
                 "imap", NOW, inbox="support", from_sent_folder=True),
        Received(mail("From: team@shop.example\r\nTo: nobody@customer.example\r\nSubject: Re: Hello\r\n"
                      "Message-ID: <team99@shop.example>\r\nIn-Reply-To: <unknown@customer.example>\r\n",
                      "Thanks."),
                 "imap", NOW, inbox="support", from_sent_folder=True),
    ]  # fmt: skip


IMAP = (
    '[inbox.imap]\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\nusername = "u"\n'
    'password_file = "{secret}"\n'
)


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    secret = tmp_path / "imap-password"
    secret.write_text("x\n")
    return gateway_config(tmp_path, database_url, extra={
        "# [inbox.imap]\n": IMAP.format(secret=secret),
        "notify_customer = false ": "notify_customer = true ",
    })  # fmt: skip


class Recorder:
    """The statements an engine executes (with the parameters of their first use)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.seen: dict[str, tuple[Any, str]] = {}
        self.where = "setup"
        self.engine = engine
        sa.event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:  # fmt: skip
        if executemany:
            parameters = parameters[0] if parameters else ()
        self.seen.setdefault(statement, (parameters, self.where))

    def stop(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._record)


@pytest.fixture
def recorded(config: Config) -> Iterator[tuple[sa.Engine, dict[str, tuple[Any, str]]]]:
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    with store.begin(engine) as conn:
        store.load_history(conn, history(NOW))
    clock = Clock(NOW)
    service = Service(config, clock=clock, engine=engine)
    recorder = Recorder(engine)
    try:
        recorder.where = "intake"
        for received in todays_mail():
            service.pipeline.accept(received)
        recorder.where = "runner, scheduler, sender, outage watch"
        service.run_once()
        clock.advance(timedelta(days=2))  # warnings and breaches fall due
        recorder.where = "scheduler and sender, two days later"
        service.scheduler.purge(clock(), force=True)
        service.run_once()
        recorder.where = "IMAP poller"
        assert config.inboxes[0].imap is not None
        sync = FolderSync(config, config.inboxes[0], "INBOX", service.pipeline, clock, lambda: None)
        sync.state()
        with store.begin(engine) as conn:
            sync.save(conn, 7, 42, NOW)
            sync._record_too_large(conn, [TooLarge(
                inbox="support", folder="INBOX", uidvalidity=7, uid=43, size=9 * 10**7,
                limit=25 * 10**6, received_at=NOW, sender="big@customer.example", sender_name="",
                subject="Photos", message_id="big@customer.example",
            )])  # fmt: skip
        sync.state()
        with store.begin(engine) as conn:  # what the poller asks of the folder's UIDs
            present = store.present_uids(conn, "support", "INBOX", 7)
            store.stale_uids(conn, "support", "INBOX", 8)
            affected = store.mark_left(conn, "support", "INBOX", 7, sorted(present)[:2], NOW)
            store.emptied_conversations(conn, affected, "support", ["INBOX"])
    finally:
        recorder.stop()
    yield engine, recorder.seen
    engine.dispose()


def _children(table: str) -> set[str]:
    """The tables with a foreign key to `table`."""
    return {t.name for t in store.metadata.sorted_tables
            if any(fk.column.table.name == table for fk in t.foreign_keys)}  # fmt: skip


def _sqlite_scans(conn: Any, statement: str, parameters: Any) -> list[str]:
    plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    # An INSERT's plan lists a scan of each table referring to the new row (to settle a
    # deferred foreign-key violation); SQLite skips it when none is outstanding, always
    # here (the gateway's keys are immediate). Those are not passes over the table.
    inserted = re.match(r"\s*INSERT INTO (\w+) \(", statement)
    skipped = _children(inserted.group(1)) if inserted else set()
    return [
        line for line in plan
        if (m := re.match(r"SCAN (\w+)", line)) and m.group(1) in GROWING and m.group(1) not in skipped
    ]  # fmt: skip


def _postgresql_scans(conn: Any, statement: str, parameters: Any) -> list[str]:
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plan = [row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters)]
    found = []
    for n, line in enumerate(plan):
        seq = re.search(r"Seq Scan on (\w+)", line)
        if seq and seq.group(1) in GROWING:
            found.append(line.strip())
        # An index read from end to end (no condition on it) is a full scan too.
        index = re.search(r"Index (Only )?Scan (Backward )?using \w+ on (\w+)", line)
        if index and index.group(3) in GROWING:
            details = []
            for after in plan[n + 1 :]:
                if "->" in after:
                    break
                details.append(after)
            if not any("Index Cond:" in d for d in details):
                found.append(line.strip())
    return found


def test_no_statement_on_the_per_message_path_scans_a_growing_table(
    recorded: tuple[sa.Engine, dict[str, tuple[Any, str]]],
) -> None:
    engine, seen = recorded
    explain = _postgresql_scans if engine.dialect.name == "postgresql" else _sqlite_scans
    statements = {s: p for s, p in seen.items()
                  if re.match(r"\s*(SELECT|UPDATE|DELETE|INSERT|WITH)\b", s, re.I)}  # fmt: skip
    # The paths ran: what they read is among the statements checked.
    text = "\n".join(statements)
    for table in ("outbox", "reply_keys", "participants", "cycles", "events", "sync_state", "folder_uids"):
        assert re.search(rf"\b{table}\b", text), table
    scans = {}
    with engine.connect() as conn:
        for statement, (parameters, where) in statements.items():
            found = explain(conn, statement, parameters)
            conn.rollback()
            if found:
                scans[f"[{where}] {' '.join(statement.split())}"] = found
    assert scans == {}, "full scans of growing tables:\n" + "\n".join(
        f"{s}\n    -> {f}" for s, f in scans.items()
    )
