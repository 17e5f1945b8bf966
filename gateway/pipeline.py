"""The intake pipeline: store first, then decide, then queue — each step a transaction.

Owns: turning a received message into durable rows. `accept()` commits the raw bytes (and
nothing else) before any intake may say "got it" — deduplicated by `dedup.dedup_key` (the
Message-ID's bytes and a hash of the content), so the same mail seen by SMTP and IMAP, or
delivered twice, is kept once, and different mails sharing a Message-ID are all kept.
`process_pending()` then parses, threads each message into a conversation (only one its
sender takes part in: see conversations.py), classifies, applies the loop rules and rate
limits, and writes the conversation, the decision and the acknowledgment's outbox row in
ONE transaction (one per batch of messages that cannot depend on each other); a crash
before that commit means the message is processed again, a crash after it means it is
done, so nothing is lost and nothing is acknowledged twice. A message that cannot be
processed is set aside ("shunted") with its error, never dropped — also one that fails
again and again with what looks like a passing database error — so every stored message
ends processed or set aside. It never sends anything itself: the outbox sender does.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Engine, bindparam, func, or_, select, update

from . import conversations, dedup, store
from .classify import Classifier
from .config import Config, InboxConfig
from .errors import InputError, TemporaryError
from .model import Parsed
from .parse import parse
from .policy import Decision, decide, recipients
from .render import Renderer, template_line, to_wire
from .rules import LOOP_HEADER, RULES, AckHistory, LoopContext, Skip, quoted_ack
from .tracker import Author, author, normalize_subject, reply_event

log = logging.getLogger("sla_gateway.pipeline")

_MSGID = re.compile(r"<([^<>\s]+)>")
_MACHINE_RULES = frozenset(rule.name for rule in RULES)  # what they stop is not a conversation
BATCH = 25  # messages decided together and written in one transaction
LOOP_ALERT_EVERY = timedelta(hours=1)  # at most one "someone answers our acks" alert
MAX_TEMPORARY_FAILURES = 3  # then a message that keeps failing "temporarily" is set aside
# "stored" -> "processed", only if nobody else got there first; the values come as
# parameters (one compiled statement, not one per message).
_FLIP = update(store.messages).where(
    store.messages.c.id == bindparam("flip_id"), store.messages.c.status == "stored"
)


@dataclass(frozen=True)
class Received:
    """One message as an intake got it, before anything is understood."""

    raw: bytes
    source: str  # "smtp", "imap", "replay"
    received_at: datetime
    envelope_from: str | None = None  # SMTP MAIL FROM ("" is the null path); None: unknown
    envelope_to: tuple[str, ...] = ()
    inbox: str | None = None  # the inbox the intake belongs to, when it knows
    from_sent_folder: bool = False  # read from the team's Sent folder: a team reply


class _AlreadyDone(Exception):
    """The message left the "stored" state while we were deciding about it."""


@dataclass(frozen=True)
class _Plan:
    """What processing decided for one message, before anything is written."""

    row: Any
    now: datetime
    parsed: Parsed | None = None
    inbox: InboxConfig | None = None
    decision: Decision | None = None
    conversation: Any = None
    reference: str | None = None
    machine: bool = False
    ack: Message | None = None
    error: str | None = None
    team: bool = False
    match: str | None = None
    refused: tuple[str, ...] = ()  # conversations it named that its sender takes no part in


@dataclass(frozen=True)
class Outcome:
    """What processing one stored message did."""

    message_row: int
    status: str  # "processed" or "shunted"
    conversation_id: int | None = None
    reference: str | None = None
    acknowledged: bool = False
    skip: Skip | None = None
    error: str | None = None


def _depends_on(plan: _Plan, ignore: Callable[[str], bool]) -> set[str]:
    """What a message's decision reads that another message in its batch could change:
    its people (rate limits, reply matching) — except addresses `ignore` says are shared
    by unrelated mail (ours, our agents', web forms', whose customer is in Reply-To) —,
    its thread, the references in its subject and its conversation."""
    keys: set[str] = set()
    parsed = plan.parsed
    people: list[str] = []
    if parsed is not None:
        found = [parsed.sender, *parsed.to, *parsed.cc, *parsed.reply_to]
        people.extend(a.addr for a in found if a is not None)
        people.append(parsed.return_path or "")
        ids = [parsed.message_id, *parsed.in_reply_to, *parsed.references]
        keys.update("<" + i for i in ids if i)
        keys.update("ref:" + tag for tag in conversations.subject_tags(parsed.subject))
    people.append(plan.row.envelope_from or "")
    if plan.decision is not None:
        people.append(plan.decision.ack_to or "")
    keys.update("@" + a for a in (p.lower() for p in people) if a and not ignore(a))
    if plan.reference is not None:
        keys.add("ref:" + plan.reference)
    if plan.conversation is not None:
        keys.add(f"#{plan.conversation.id}")
    return keys


def _writable(address: str) -> bool:
    """Whether an address from an SMTP envelope is text one could send to: no bytes
    that were not UTF-8 (kept as surrogate escapes) and no control characters."""
    return not any(ord(c) < 32 or "\ud800" <= c <= "\udfff" for c in address)


def _storable(text: str) -> str:
    """Text any database takes: what no encoding can write (surrogates) and NULs are
    spelled out as escapes."""
    if "\0" not in text and not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\0", "\\x00")


def _readable(address: str) -> str:
    try:
        data = address.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = address.encode("utf-8", "replace")
    return "".join(c if ord(c) >= 32 else "\ufffd" for c in data.decode("utf-8", "replace"))


class Pipeline:
    """Accepts and processes messages for one configuration, against one database."""

    def __init__(
        self, config: Config, engine: Engine, clock: Callable[[], datetime], *, replay: bool = False
    ) -> None:
        self.replay = replay  # rebuilding history: no acknowledgments, no alerts
        self.config = config
        self.engine = engine
        self.clock = clock
        self.classifier = Classifier.from_config(config)
        self.renderer = Renderer(config)
        self._circuit: bool | None = None  # breaker state, cached; None: read from the events
        self._recent_acks: deque[datetime] | None = None  # acks queued in the last hour
        self._acks_by_recipient: dict[str, list[tuple[datetime, str]]] | None = None  # _ack_times
        self._acks_loaded_at = datetime.min.replace(tzinfo=UTC)
        self._failures: dict[int, int] = {}  # row id -> temporary failures in a row

    # ------------------------------------------------------------------ accept

    def accept(self, received: Received) -> tuple[int | None, bool]:
        """Durably store the raw message. Returns (row id, is_new); a duplicate gives
        (existing id, False). Raises TemporaryError when the database cannot commit.
        (The SMTP listener groups its sessions' messages into one commit itself, with
        `accept_many`; the pollers and replay store one message at a time.)"""
        return self.accept_many([received])[0]

    def accept_many(self, items: list[Received]) -> list[tuple[int | None, bool]]:
        """Store several raw messages in one transaction (see `accept`)."""
        results: list[tuple[int | None, bool]] = []
        try:
            with store.begin(self.engine) as conn:
                for received in items:
                    results.append(self._insert_raw(conn, received))
        except Exception as exc:
            if store.is_temporary(exc):
                raise TemporaryError(f"cannot store the message: {exc}") from exc
            raise
        return results

    def _insert_raw(self, conn: Any, received: Received) -> tuple[int | None, bool]:
        key, message_id = dedup.identify(received.raw)
        values = {
            "dedup_key": key,
            "message_id": message_id,
            "inbox": received.inbox,
            "source": received.source,
            "status": "stored",
            "received_at": received.received_at,
            "envelope_from": received.envelope_from,
            "envelope_to": ", ".join(received.envelope_to) or None,
            "sha256": hashlib.sha256(received.raw).hexdigest(),
            "size": len(received.raw),
            "raw": received.raw,
            "direction": "team" if received.from_sent_folder else "customer",
            "acknowledged": False,
        }
        inserted = conn.execute(
            store.insert_ignore(conn, store.messages).returning(store.messages.c.id), values
        ).scalar()
        if inserted is not None:
            return int(inserted), True
        existing = conn.execute(
            select(store.messages.c.id).where(store.messages.c.dedup_key == key)
        ).scalar_one_or_none()
        return (int(existing) if existing is not None else None), False

    # ------------------------------------------------------------------ process

    def process_pending(self, limit: int = 100) -> list[Outcome]:
        """Process up to `limit` stored messages, oldest first, in batches: each batch is
        decided with reads only, then written in one transaction (one commit for many
        messages). A batch ends before a message that could depend on one already in it
        (same sender or recipient, same thread, same conversation), so every decision
        sees everything decided before it; a batch that fails to commit is redone one
        message at a time, which sets a bad message aside on its own."""
        m = store.messages.c
        with self.engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(store.messages).where(m.status == "stored").order_by(m.id).limit(limit)
                )
            )
        outcomes: list[Outcome] = []
        at = 0
        while at < len(rows):
            plans = self._plan_batch(rows, at)
            if not plans:  # the first could not even be decided: alone, it is shunted
                done = [self._process_one(rows[at].id, rows[at])]
                at += 1
            else:
                done = self._apply_batch(plans)
                at += len(plans)
            outcomes.extend(o for o in done if o is not None)
        return outcomes

    def _plan_batch(self, rows: list[Any], at: int) -> list[_Plan]:
        """Plans for rows[at:], as many as may share one transaction (at most BATCH)."""
        plans: list[_Plan] = []
        taken: set[str] = set()
        ours = self.config.own_addresses | self.config.agent_addresses

        def ignore(address: str) -> bool:
            return address in ours or self.config.is_form_sender(address)

        acks = 0
        with self.engine.connect() as read:
            for row in rows[at : at + BATCH]:
                try:
                    plan = self._plan(read, row, batch_acks=acks)
                    keys = _depends_on(plan, ignore)
                except Exception:
                    break  # decided alone later, where its error is handled
                if plans and not keys.isdisjoint(taken):
                    break  # it may depend on one in this batch: next batch
                plans.append(plan)
                taken |= keys
                acks += plan.ack is not None
        return plans

    def _apply_batch(self, plans: list[_Plan]) -> list[Outcome | None]:
        try:
            with store.begin(self.engine) as conn:
                return [self._apply(conn, plan) for plan in plans]
        except Exception as exc:
            log.warning("event=batch-redone size=%s error=%r", len(plans), str(exc)[:300])
            self._forget()
            return [self._process_one(plan.row.id, None) for plan in plans]

    def process(self, row_id: int) -> Outcome | None:
        """Process one stored message; None when it was not (or no longer) pending."""
        return self._process_one(row_id, None)

    def _process_one(self, row_id: int, row: Any) -> Outcome | None:
        """Decide and render outside any write transaction (CPU work must not hold up
        intake's commits), then write the decision, conversation and outbox row in one
        short transaction that also flips the message from "stored" to "processed"."""
        m = store.messages.c
        try:
            with self.engine.connect() as read:
                if row is None:
                    row = read.execute(
                        select(store.messages).where(m.id == row_id, m.status == "stored")
                    ).first()
                    if row is None:
                        return None
                plan = self._plan(read, row)
            with store.begin(self.engine) as conn:
                outcome = self._apply(conn, plan)
            self._failures.pop(row_id, None)
            return outcome
        except _AlreadyDone:
            self._forget()
            return None
        except Exception as exc:
            self._forget()
            error = f"{type(exc).__name__}: {exc}"
            if store.is_temporary(exc):
                failures = self._failures[row_id] = self._failures.get(row_id, 0) + 1
                if failures < MAX_TEMPORARY_FAILURES:
                    raise TemporaryError(f"cannot process message {row_id}: {exc}") from exc
                # The same message, again and again: its own fault, if the database
                # still takes the note that sets it aside (else the database's: retried).
                error = f"failed {failures} times in a row: {error}"
            log.exception("event=shunt message=%s", row_id)
            where = template_line(exc)  # a custom template's fault: say which line
            return self._set_aside(row_id, error + (f" (template {where})" if where else ""), exc)

    def _set_aside(self, row_id: int, error: str, exc: BaseException) -> Outcome:
        """Shunt a message that could not be processed. The note itself cannot fail for
        what the error says (text that no database takes is made storable), and if it
        fails all the same, the message is set aside with the error's kind alone."""
        try:
            with store.begin(self.engine) as conn:
                outcome = self._shunt(conn, row_id, error)
        except Exception as again:
            if store.is_temporary(again):
                raise TemporaryError(f"cannot set message {row_id} aside: {again}") from exc
            log.exception("event=shunt-note-failed message=%s", row_id)
            with store.begin(self.engine) as conn:
                outcome = self._shunt(conn, row_id, f"{type(exc).__name__} (not recordable)")
        self._failures.pop(row_id, None)
        return outcome

    def _forget(self) -> None:
        """Drop what is kept in memory about queued acknowledgments and the breaker: it
        may include what a rollback just undid; it is read again from the database."""
        self._circuit = None
        self._recent_acks = None
        self._acks_by_recipient = None

    def _shunt(self, conn: Any, row_id: int, error: str) -> Outcome:
        now = self.clock()
        error = _storable(error)
        conn.execute(
            update(store.messages)
            .where(store.messages.c.id == row_id)
            .values(status="shunted", error=error[:2000])
        )
        store.add_event(conn, now, "shunted", {"error": error[:500]}, message_row=row_id)
        return Outcome(row_id, "shunted", error=error)

    def _plan(self, read: Any, row: Any, *, batch_acks: int = 0) -> _Plan:
        """Everything decided about a message, using reads only; `batch_acks` is how many
        acknowledgments the batch it joins has decided but not yet written."""
        now = self.clock()
        try:
            parsed = parse(row.raw)
        except InputError as exc:
            return _Plan(row=row, now=now, error=str(exc))
        inbox = self._inbox(row, parsed)
        who = author(
            parsed,
            own_addresses=self.config.own_addresses,
            agents=self.config.agent_addresses,
            message_id_domain=self.config.message_id_domain,
            loop_header=LOOP_HEADER,
            from_sent_folder=row.direction == "team",
        )
        if who == Author.TEAM:
            ours = self.config.own_addresses | self.config.agent_addresses
            match = conversations.find_for_reply(read, parsed, ours=ours)
            return _Plan(row, now, parsed, inbox, None, match.conversation, None, False, None, team=True,
                         match=match.how)  # fmt: skip
        return_path = row.envelope_from if row.source == "smtp" else parsed.return_path
        if row.source == "replay" and return_path is None and parsed.sender is not None:
            return_path = parsed.sender.addr  # exports often drop the envelope; nothing is sent
        unusable = return_path is not None and not _writable(return_path)
        if unusable:  # 8-bit, not UTF-8, or a NUL: readable for people, never written to
            assert return_path is not None
            return_path = _readable(return_path)
        form = parsed.sender is not None and self.config.is_form_sender(parsed.sender.addr)
        customer, _ = recipients(parsed, inbox=inbox, return_path=return_path, form=form)
        found = conversations.find_by_thread(read, parsed, author=customer)
        conversation = found.conversation
        if conversation is None:
            conversation = self._quoted_conversation(read, parsed, return_path, customer)
        decision = decide(
            parsed,
            config=self.config,
            inbox=inbox,
            classifier=self.classifier,
            received_at=row.received_at,
            return_path=return_path,
            history=lambda ack_to: self._history(read, ack_to, now, batch_acks),
            now=None if self.replay else now,
            follow_up=conversation is not None,
        )
        if unusable and decision.skip is None and decision.ack_to == return_path:
            decision = replace(decision, skip=Skip(
                "bad-return-path", f"the envelope sender {return_path!r} is no address one can write to",
            ))  # fmt: skip
        skip = decision.skip
        machine = skip is not None and skip.rule in _MACHINE_RULES
        reference = conversation.reference if conversation is not None else None
        if conversation is None and not machine:
            # Numbered after the message that opened the conversation: unique, known now.
            reference = f"{inbox.prefix}-{row.id + 1000}"
        ack = None
        if decision.acknowledge and reference is not None and not self.replay:
            ack = self._render_ack(parsed, inbox, decision, reference, now)
        return _Plan(row, now, parsed, inbox, decision, conversation, reference, machine, ack,
                     refused=found.refused)  # fmt: skip

    def _apply(self, conn: Any, plan: _Plan) -> Outcome | None:
        """Write what `_plan` decided, in the caller's transaction."""
        row, now = plan.row, plan.now
        row_id = row.id
        if plan.error is not None:
            return self._shunt(conn, row_id, plan.error)
        if plan.team:
            return self._apply_team(conn, plan)
        assert plan.parsed is not None and plan.inbox is not None and plan.decision is not None
        parsed, inbox, decision = plan.parsed, plan.inbox, plan.decision
        skip = decision.skip
        direction = "customer"
        if plan.machine:
            direction = "ours" if skip is not None and skip.rule == "own-mail" else "machine"
        conversation_id: int | None = (
            plan.conversation.id if plan.conversation is not None else None
        )
        reference = plan.reference
        detail: dict[str, Any] = {}
        if plan.conversation is None and not plan.machine and reference is not None:
            conversation_id = self._open_conversation(
                conn, parsed, inbox, decision, row, reference, now
            )
        elif plan.conversation is not None and not plan.machine:
            detail = conversations.customer_followup(
                conn, self.config, plan.conversation, decision.classification, row.received_at,
                replay=self.replay, now=now,
            )  # fmt: skip
        if plan.refused:
            detail["not_joined"] = list(plan.refused)  # the sender takes no part in them
        acknowledged = False
        ack_row: int | None = None
        if plan.ack is not None and decision.ack_to is not None and conversation_id is not None:
            ack_row = self.queue(conn, "ack", plan.ack, decision.ack_to, now, conversation_id, row_id)
            if self._recent_acks is not None:
                self._recent_acks.append(now)
            if self._acks_by_recipient is not None:
                self._acks_by_recipient.setdefault(decision.ack_to.lower(), []).append(
                    (now, normalize_subject(parsed.subject))
                )
            acknowledged = True
        if skip is not None and skip.rule == "quotes-our-ack" and not self.replay:
            self._loop_alert(conn, now, parsed, skip, row_id)
        if skip is not None and skip.rule == "circuit-breaker":
            self._circuit_open(conn, now, skip)
        elif acknowledged:
            self._circuit_closed(conn, now)
        if conversation_id is not None and not plan.machine:
            conversations.add_participants(
                conn, conversation_id,
                {decision.customer or "", *conversations.participant_addresses(parsed, self.config)},
            )  # fmt: skip
            # Team replies processed before this message that answer it count now, at
            # their own time; an acknowledgment they make moot is cancelled.
            late = conversations.adopt_replies(
                conn, self.config, conversation_id, parsed.message_id, row.received_at, now,
                opened=plan.conversation is None,
            )  # fmt: skip
            if late:
                detail["late_replies"] = late
                if ack_row is not None and any(ack_row in r.get("cancelled", ()) for r in late):
                    acknowledged = False
                    detail["ack_cancelled"] = "the team had replied before it was processed"
        flipped = conn.execute(
            _FLIP,
            dict(
                flip_id=row_id,
                status="processed",
                inbox=inbox.name,
                conversation_id=conversation_id,
                direction=direction,
                from_addr=(parsed.sender.addr if parsed.sender else None),
                subject=parsed.subject[:2000],
                skip_rule=skip.rule if skip else None,
                skip_reason=skip.reason[:500] if skip else None,
                acknowledged=acknowledged,
            ),
        ).rowcount
        if flipped != 1:  # someone else processed it meanwhile: undo everything
            raise _AlreadyDone()
        store.add_event(
            conn,
            now,
            "acknowledged" if acknowledged else "not-acknowledged",
            {
                "rule": skip.rule if skip else None,
                "reason": skip.reason if skip else None,
                "priority": decision.classification.priority,
                "matched": [str(x) for x in decision.classification.matches],
                **detail,
            },
            conversation_id=conversation_id,
            message_row=row_id,
        )
        log.info(
            "event=processed message=%s reference=%s priority=%s ack=%s rule=%s",
            row_id, reference, decision.classification.priority, acknowledged,
            skip.rule if skip else "-",
        )  # fmt: skip
        return Outcome(row_id, "processed", conversation_id, reference, acknowledged, skip)

    # ------------------------------------------------------------------ pieces

    def _inbox(self, row: Any, parsed: Parsed) -> InboxConfig:
        """The intake's own inbox, else the first configured address among the envelope
        recipients, To and Cc, else the first inbox."""
        if row.inbox:
            return self.config.inbox_named(row.inbox)
        envelope = [a.strip() for a in (row.envelope_to or "").split(",") if a.strip()]
        return self.config.inbox_among([*envelope, *(a.addr for a in (*parsed.to, *parsed.cc))])

    def _quoted_conversation(
        self, read: Any, parsed: Parsed, return_path: str | None, customer: str | None
    ) -> Any:
        """The conversation whose acknowledgment the message quotes, when its sender takes
        part in it (`conversations.is_participant`): then it is a follow-up, like a reply
        with threading headers. For anyone else it is None, and the quotes-our-ack rule
        stops it."""
        sender = parsed.sender.addr if parsed.sender else ""
        form = bool(sender) and self.config.is_form_sender(sender)
        quote = quoted_ack(parsed, LoopContext(
            own_addresses=self.config.own_addresses, message_id_domain=self.config.message_id_domain,
            return_path=return_path, customer=None, form=form,
            reference_prefixes=self.config.reference_prefixes,
        ))  # fmt: skip
        if quote is None or not customer:
            return None
        c, o = store.conversations.c, store.outbox.c
        ids = select(o.conversation_id).where(o.message_id.in_(quote.message_ids[:20]))
        found = read.execute(
            select(store.conversations)
            .where((c.reference.in_(quote.references[:20])) | c.id.in_(ids))
            .order_by(c.id)
        )
        return next(
            (row for row in found if conversations.is_participant(read, row.id, customer)), None
        )

    def _history(self, conn: Any, ack_to: str, now: datetime, batch_acks: int = 0) -> AckHistory:
        """What the rate limits need about one recipient: its acknowledgments within
        once_per_sender (when, for which subjects) and whether mail from it was machine
        mail in that time, today's count (shop time), and the last minute's and hour's
        for everyone."""
        recipient = ack_to.lower()
        local = self.config.calendar.local(now)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        since = now - self.config.acknowledge.once_per_sender
        acks = self._ack_times(conn, now).get(recipient, ())
        recent = [(t, subject) for t, subject in acks if t > since]
        today = sum(1 for t, _ in acks if t >= day_start)
        minute, hour = self._recent_ack_counts(conn, now)
        machine_rule = None
        if recent:  # only then can once-per-sender apply: ask what this sender sent lately
            m = store.messages.c
            machine_rule = conn.execute(
                select(m.skip_rule)
                .where(m.received_at > since, m.direction == "machine",
                       or_(func.lower(m.from_addr) == recipient,
                           func.lower(m.envelope_from) == recipient))
                .order_by(m.id.desc())
                .limit(1)
            ).scalar()  # fmt: skip
        return AckHistory(
            max((t for t, _ in recent), default=None), today, minute + batch_acks,
            hour + batch_acks, tuple(subject for _, subject in recent), machine_rule,
        )  # fmt: skip

    def _ack_times(self, conn: Any, now: datetime) -> dict[str, list[tuple[datetime, str]]]:
        """When each recipient was acknowledged lately, and for which subject (normalised),
        kept in memory: loaded once, then
        every hour, covering once_per_sender and a whole shop day; `_apply` adds what it
        queues, and anything rolled back empties it. One query per hour, not one per
        message. Sound because one processor queues all acknowledgments: the service's
        (`retry` leaves set-aside mail to a running service; see `_recent_ack_counts`)."""
        cache = self._acks_by_recipient
        if cache is not None and now - self._acks_loaded_at < timedelta(hours=1):
            return cache
        o, c = store.outbox.c, store.conversations.c
        horizon = max(self.config.acknowledge.once_per_sender, timedelta(hours=26))  # a day + DST
        cache = {}
        rows = conn.execute(
            select(o.recipient, o.created_at, c.subject)
            .select_from(store.outbox.outerjoin(store.conversations, c.id == o.conversation_id))
            .where(o.kind == "ack", o.created_at > now - horizon)
        )
        for recipient, created_at, subject in rows:
            if created_at.tzinfo is None:  # SQLite keeps UTC without an offset
                created_at = created_at.replace(tzinfo=UTC)
            cache.setdefault(recipient, []).append((created_at, normalize_subject(subject or "")))
        self._acks_by_recipient, self._acks_loaded_at = cache, now
        return cache

    def _recent_ack_counts(self, conn: Any, now: datetime) -> tuple[int, int]:
        """The circuit breaker's counts (acks in the last minute, in the last hour), kept in
        memory (one processor queues all acks): read from the outbox once, then what
        `_apply` queues is added; a rollback makes it read them again."""
        o = store.outbox.c
        hour_ago, minute_ago = now - timedelta(hours=1), now - timedelta(minutes=1)
        if self._recent_acks is None:
            times = conn.execute(
                select(o.created_at)
                .where(o.kind == "ack", o.created_at > hour_ago)
                .order_by(o.created_at)
            ).scalars()
            self._recent_acks = deque(times)
        recent = self._recent_acks
        while recent and recent[0] <= hour_ago:
            recent.popleft()
        minute = 0
        for at in reversed(recent):  # newest first; stops at the first older than a minute
            if at <= minute_ago:
                break
            minute += 1
        return minute, len(recent)

    def _open_conversation(
        self,
        conn: Any,
        parsed: Parsed,
        inbox: InboxConfig,
        decision: Decision,
        row: Any,
        reference: str,
        now: datetime,
    ) -> int:
        d = decision.deadline
        result = conn.execute(
            store.conversations.insert(), dict(
                reference=reference,
                inbox=inbox.name,
                customer=(decision.customer or "").lower()[:320],
                subject=parsed.subject[:2000],
                priority=decision.classification.priority,
                priority_reason=decision.classification.reason[:2000],
                state="awaiting_team",
                received_at=row.received_at,
                window_seconds=int(d.window.total_seconds()),
                stretch=d.stretch,
                season=d.season,
                due_at=d.due_at,
                breached=False,
                last_customer_at=row.received_at,
                created_at=now,
                source="replay" if self.replay else None,
            )
        )
        conv_id = int(result.inserted_primary_key[0])
        conversations.open_cycle(
            conn, self.config, conv_id, decision.classification.priority, row.received_at,
            kind="first", replay=self.replay, now=now,
        )  # fmt: skip
        return conv_id

    def _apply_team(self, conn: Any, plan: _Plan) -> Outcome | None:
        """A reply written by the team: measure it against its conversation's clock."""
        row, now, parsed = plan.row, plan.now, plan.parsed
        assert parsed is not None and plan.inbox is not None
        conversation = plan.conversation
        detail: dict[str, Any] = {"match": plan.match}
        if conversation is not None:
            detail.update(
                conversations.team_reply(
                    conn, self.config, conversation, reply_event(parsed), row.received_at, now
                )
            )
            conversations.add_participants(
                conn, conversation.id,
                conversations.participant_addresses(parsed, self.config, team=True),
            )  # fmt: skip
        else:  # the customer's mail may still come: keep what could match it then
            conversations.remember_unmatched(conn, self.config, row.id, parsed)
        flipped = conn.execute(_FLIP, dict(
            flip_id=row.id, status="processed", inbox=plan.inbox.name, direction="team",
            conversation_id=conversation.id if conversation is not None else None,
            from_addr=parsed.sender.addr if parsed.sender else None,
            subject=parsed.subject[:2000], match=plan.match, acknowledged=False,
        )).rowcount  # fmt: skip
        if flipped != 1:
            raise _AlreadyDone()
        kind = "team-reply" if conversation is not None else "team-reply-unmatched"
        store.add_event(conn, now, kind, detail,
                        conversation_id=conversation.id if conversation is not None else None,
                        message_row=row.id)  # fmt: skip
        log.info("event=%s message=%s reference=%s match=%s", kind, row.id,
                 conversation.reference if conversation is not None else "-", plan.match)  # fmt: skip
        return Outcome(row.id, "processed", conversation.id if conversation is not None else None,
                       conversation.reference if conversation is not None else None, False, None)  # fmt: skip

    def _render_ack(
        self, parsed: Parsed, inbox: InboxConfig, decision: Decision, reference: str, now: datetime
    ) -> Message:
        assert decision.ack_to is not None
        name = ""
        if parsed.sender and parsed.sender.addr.lower() == decision.ack_to.lower():
            name = parsed.sender.name
        return self.renderer.acknowledgment(
            parsed=parsed,
            inbox=inbox,
            deadline=decision.deadline,
            reference=reference,
            ack_to=decision.ack_to,
            customer_name=name,
            now=now,
        )

    def queue(
        self,
        conn: Any,
        kind: str,
        message: Any,
        recipient: str,
        now: datetime,
        conversation_id: int | None = None,
        source_row: int | None = None,
    ) -> int:
        """Write one outgoing message to the outbox (inside the caller's transaction);
        returns its row id."""
        sender = (
            ""
            if self.config.send.null_sender and kind == "ack"
            else parseaddr(str(message["From"]))[1]
        )
        result = conn.execute(
            store.outbox.insert(), dict(
                kind=kind,
                conversation_id=conversation_id,
                source_message_id=source_row,
                sender=sender,
                recipient=recipient.lower(),
                message_id=_MSGID.findall(str(message["Message-ID"]))[0],
                raw=to_wire(message),
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        return int(result.inserted_primary_key[0])

    def _circuit_is_open(self, conn: Any) -> bool:
        """Whether the breaker is open, from the latest open/closed event (cached)."""
        if self._circuit is None:
            latest = store.latest_event(conn, ("circuit-open", "circuit-closed"))
            self._circuit = latest is not None and latest.kind == "circuit-open"
        return self._circuit

    def _circuit_open(self, conn: Any, now: datetime, skip: Skip) -> None:
        if self._circuit_is_open(conn):
            return  # already alerted for this trip
        self._circuit = True
        store.add_event(conn, now, "circuit-open", {"reason": skip.reason})
        from .render import alert_message

        for recipient in self.config.alerts.to or (self.config.inboxes[0].address,):
            message = alert_message(
                self.config,
                recipient,
                subject="Acknowledgments paused: unusual volume",
                text=(
                    f"sla-gateway stopped sending acknowledgments: {skip.reason} "
                    f"(limits: {self.config.acknowledge.max_per_minute} per minute, "
                    f"{self.config.acknowledge.max_per_hour} per hour).\n\n"
                    "Incoming mail is still stored and measured. Acknowledgments resume by "
                    "themselves when the rate falls. If this is a mail loop or a flood, check "
                    "the messages with `sla-gateway status` and the mail server's logs.\n"
                ),
                now=now,
            )
            self.queue(conn, "alert", message, recipient, now)

    def _loop_alert(self, conn: Any, now: datetime, parsed: Parsed, skip: Skip, row_id: int) -> None:
        """Tell the owner that someone answers our acknowledgments: at most one alert an
        hour (a loop sends many such mails; each is recorded with its reason)."""
        latest = store.latest_event(conn, ("loop-alert",))
        if latest is not None and now - latest.at < LOOP_ALERT_EVERY:
            return
        sender = parsed.sender.addr if parsed.sender else "(no From)"
        store.add_event(conn, now, "loop-alert", {"from": sender, "reason": skip.reason},
                        message_row=row_id)  # fmt: skip
        from .render import alert_message

        for recipient in self.config.alerts.to or (self.config.inboxes[0].address,):
            message = alert_message(
                self.config,
                recipient,
                subject="Someone answers our acknowledgments",
                text=(
                    f"A mail from {sender} answers one of our acknowledgments, but {sender} "
                    f"is not the customer of that conversation: {skip.reason}.\n\n"
                    "It was not acknowledged and opened no conversation, so that a system "
                    "which answers every mail (a ticket desk, a CRM) cannot keep a mail loop "
                    "going. If a person wrote it, please answer them yourself. Further mail "
                    "like this within the hour is recorded (rule quotes-our-ack, see "
                    "`sla-gateway inspect`) without another alert.\n"
                ),
                now=now,
            )
            self.queue(conn, "alert", message, recipient, now)

    def _circuit_closed(self, conn: Any, now: datetime) -> None:
        if self._circuit_is_open(conn):
            self._circuit = False
            store.add_event(conn, now, "circuit-closed", {})
