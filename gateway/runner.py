"""The runner: one loop that turns stored messages into decisions, one message at a time.

Owns: Mailman's runner loop for incoming mail. `Runner.process_next()` claims the oldest
stored message (`store.claim`: on PostgreSQL `FOR UPDATE SKIP LOCKED`, so that several
runners on one database never take the same one), reads in that same transaction what
the decision needs (`Context`: the conversation it belongs to, the participant checks,
the acknowledgments lately queued per recipient, per minute and per hour, whether the
breaker is open — all from indexed queries, nothing kept in memory), decides with the
pure `decide(parsed, context)`, renders what the `Plan` sends, and applies the plan in
that transaction: conversation, decision, event and outbox rows, and the flip from
"stored" to "processed" only if the message is still stored (a runner that lost a race
rolls back and changes nothing). A message whose processing raises is rolled back and
set aside ("shunted") with its error — also one that fails again and again with what
looks like a passing database error — so every stored message ends processed or
shunted. A crash before the commit means the message is processed again; after it, it
is done: nothing is lost and nothing is acknowledged twice. It never sends anything: it
queues, and the service wakes the sender.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.message import Message
from typing import Any

from . import conversations, store
from .classify import Classifier
from .commands import addressed_to, commands_in
from .config import Config, InboxConfig
from .errors import InputError, TemporaryError
from .model import Parsed
from .parse import parse
from .policy import Decision, recipients
from .policy import decide as policy_decide
from .render import Alert, Renderer, alert_message, alert_recipients, template_line
from .rules import LOOP_HEADER, MACHINE_RULES, AckHistory, LoopContext, Skip, quoted_ack
from .tracker import Author, author, reply_event

log = logging.getLogger("sla_gateway.runner")

LOOP_ALERT_EVERY = timedelta(hours=1)  # at most one "someone answers our acks" alert
MAX_TEMPORARY_FAILURES = 3  # then a message that keeps failing "temporarily" is set aside


class _AlreadyDone(Exception):
    """The message left the "stored" state while we were deciding about it."""


@dataclass(frozen=True)
class Outcome:
    """What processing one stored message did."""

    message_row: int
    status: str  # "processed", "shunted" or "lost" (another runner got there first)
    conversation_id: int | None = None
    reference: str | None = None
    acknowledged: bool = False
    skip: Skip | None = None
    error: str | None = None


@dataclass(frozen=True)
class Context:
    """What the store knows that the decision about one message needs, read in the
    claim's transaction before deciding."""

    row: Any  # the claimed messages row
    now: datetime
    inbox: InboxConfig
    team: bool  # written by the team (our addresses, agents, the Sent folder)
    return_path: str | None  # readable form; see `unwritable_return_path`
    unwritable_return_path: bool = False
    conversation: Any = None  # the conversation it belongs to, if any
    match: str | None = None  # team replies: how the conversation was found
    refused: tuple[str, ...] = ()  # conversations it named that its sender takes no part in
    history: AckHistory | None = None  # acknowledgments lately queued to `ack_to` and to anyone
    breaker_open: bool = False  # the latest breaker event says open
    last_loop_alert: datetime | None = None
    replay: bool = False  # rebuilding history: nothing is too late, nothing goes out
    commands: tuple[str, ...] = ()  # addressed to support+resolved@ and the like
    to_others: bool = True  # team mail: written to someone besides our own addresses
    notice: str = ""  # the exception notice in force (`sla-gateway notice set`), for the ack


@dataclass(frozen=True)
class Outgoing:
    """One message to queue: its kind, recipient and (once rendered) the message."""

    kind: str  # "ack" or "alert"
    recipient: str
    alert: Alert | None = None  # alerts: what the template shows
    message: Message | None = None


@dataclass(frozen=True)
class Plan:
    """Everything decided about one message, before anything is written."""

    context: Context
    parsed: Parsed
    decision: Decision | None = None  # None for team replies
    opens: str | None = None  # the reference of the conversation it opens (once numbered)
    follows: bool = False  # it continues `context.conversation` as its customer
    direction: str = "customer"  # customer / machine / ours / team
    outgoing: tuple[Outgoing, ...] = ()
    event: tuple[str, dict[str, Any]] = ("", {})  # the message's own: kind and detail
    events: tuple[tuple[str, dict[str, Any]], ...] = ()  # breaker and loop-alert events
    skip: Skip | None = None
    opening: bool = False  # it opens a conversation (`opens` is its reference, once numbered)

    @property
    def reference(self) -> str | None:
        conversation = self.context.conversation
        return self.opens or (conversation.reference if conversation is not None else None)


def decide(parsed: Parsed, context: Context, config: Config, classifier: Classifier) -> Plan:
    """The decision about one message: pure, from the message and its context."""
    if context.team:
        found = context.conversation is not None
        detail: dict[str, Any] = {"match": context.match}
        if context.commands:
            detail["commands"] = list(context.commands)
        if context.commands and not context.to_others:  # a note to support+resolved@ only
            kind = "team-command" if found else "team-command-unmatched"
        else:
            kind = "team-reply" if found else "team-reply-unmatched"
        return Plan(context, parsed, direction="team", event=(kind, detail))
    row = context.row
    decision = policy_decide(
        parsed, config=config, inbox=context.inbox, classifier=classifier,
        received_at=row.received_at, return_path=context.return_path, history=context.history,
        now=None if context.replay else context.now, follow_up=context.conversation is not None,
        unwritable_return_path=context.unwritable_return_path,
    )  # fmt: skip
    skip = decision.skip
    machine = skip is not None and skip.rule in MACHINE_RULES
    direction = "customer"
    if machine:
        direction = "ours" if skip is not None and skip.rule == "own-mail" else "machine"
    # It opens a conversation; its reference is numbered when the plan is applied.
    opening = context.conversation is None and not machine
    outgoing: list[Outgoing] = []
    events: list[tuple[str, dict[str, Any]]] = []
    acknowledging = decision.acknowledge and not context.replay and (
        opening or context.conversation is not None
    )
    if acknowledging and decision.ack_to is not None:
        outgoing.append(Outgoing("ack", decision.ack_to))
    now = context.now
    if skip is not None and skip.rule == "quotes-our-ack" and not context.replay:
        last = context.last_loop_alert
        if last is None or now - last >= LOOP_ALERT_EVERY:
            sender = parsed.sender.addr if parsed.sender else "(no From)"
            events.append(("loop-alert", {"from": sender, "reason": skip.reason}))
            alert = Alert("loop", {"sender": parsed.sender.addr if parsed.sender else "", "reason": skip.reason})
            outgoing.extend(Outgoing("alert", r, alert) for r in alert_recipients(config))
    if skip is not None and skip.rule == "circuit-breaker" and not context.breaker_open:
        events.append(("circuit-open", {"reason": skip.reason}))
        history = context.history
        alert = Alert("breaker", {
            "in_last_minute": history.in_last_minute if history else 0,
            "in_last_hour": history.in_last_hour if history else 0,
            "max_per_minute": config.acknowledge.max_per_minute,
            "max_per_hour": config.acknowledge.max_per_hour,
        })  # fmt: skip
        outgoing.extend(Outgoing("alert", r, alert) for r in alert_recipients(config))
    elif acknowledging and context.breaker_open:
        events.append(("circuit-closed", {}))
    acknowledged = any(out.kind == "ack" for out in outgoing)
    event = ("acknowledged" if acknowledged else "not-acknowledged", {
        "rule": skip.rule if skip else None,
        "reason": skip.reason if skip else None,
        "priority": decision.classification.priority,
        "matched": [str(x) for x in decision.classification.matches],
    })  # fmt: skip
    if context.refused:
        event[1]["not_joined"] = list(context.refused)  # the sender takes no part in them
    if context.commands:  # only the team commands; this is the customer's own mail
        event[1]["ignored_commands"] = list(context.commands)
    return Plan(context, parsed, decision, None, context.conversation is not None and not machine,
                direction, tuple(outgoing), event, tuple(events), skip, opening)  # fmt: skip


def _set_by(decision: Decision) -> str:
    """"vip" when the sender's VIP entry decided the priority, else "keywords"."""
    c = decision.classification
    vip = any(m.where == "sender" and m.priority == c.priority for m in c.matches)
    keywords = any(m.where != "sender" and m.priority == c.priority for m in c.matches)
    return "vip" if vip and not keywords else "keywords"


def _envelope(row: Any) -> list[str]:
    """The SMTP envelope recipients a message was stored with (none over IMAP)."""
    return [a.strip() for a in (row.envelope_to or "").split(",") if a.strip()]


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


@dataclass
class Runner:
    """Processes stored messages for one configuration, against one database.
    `enqueue(conn, kind, message, recipient, now, conversation_id, source_row)` queues
    outgoing mail (the pipeline's, shared with every other module that queues)."""

    config: Config
    engine: Any
    clock: Callable[[], datetime]
    renderer: Renderer
    enqueue: Callable[..., int]
    replay: bool = False
    classifier: Classifier = field(init=False)
    _failures: dict[int, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.classifier = Classifier.from_config(self.config)

    def reconfigure(self, config: Config, renderer: Renderer) -> None:
        """A reloaded configuration for the messages claimed from now on (between two
        messages: the service holds its reload lock while the runner works)."""
        self.classifier = Classifier.from_config(config)
        self.config, self.renderer = config, renderer

    # ------------------------------------------------------------------ the loop

    def process_pending(self, limit: int = 100) -> list[Outcome]:
        """Process up to `limit` stored messages, oldest first, one at a time."""
        outcomes: list[Outcome] = []
        while len(outcomes) < limit:
            outcome = self.process_next()
            if outcome is None:
                break
            if outcome.status != "lost":
                outcomes.append(outcome)
        return outcomes

    def process(self, row_id: int) -> Outcome | None:
        """Process one stored message; None when it was not (or no longer) stored."""
        outcome = self.process_next(row_id)
        return None if outcome is None or outcome.status == "lost" else outcome

    def process_next(self, row_id: int | None = None) -> Outcome | None:
        """Claim the next stored message (or `row_id`), decide, apply the plan in the
        claim's transaction — or roll back and set the message aside with its error.
        None: nothing was stored. Raises TemporaryError when the database fails."""
        claimed: int | None = None
        try:
            with store.begin(self.engine) as conn:
                row = store.claim(conn, row_id)
                if row is None:
                    return None
                claimed = row.id
                outcome = self._handle(conn, row)
            self._failures.pop(row.id, None)
            return outcome
        except _AlreadyDone:
            assert claimed is not None
            return Outcome(claimed, "lost")
        except Exception as exc:
            if claimed is None:  # the claim itself failed: the database's fault
                if store.is_temporary(exc):
                    raise TemporaryError(f"cannot claim a stored message: {exc}") from exc
                raise
            if not store.is_temporary(exc) and not self._still_stored(claimed):
                # Another runner finished it meanwhile: the race is lost, and what
                # failed here was rolled back.
                return Outcome(claimed, "lost")
            return self._failed(claimed, exc)

    def _still_stored(self, row_id: int) -> bool:
        with self.engine.connect() as conn:
            return store.claim(conn, row_id) is not None

    def _failed(self, row_id: int, exc: Exception) -> Outcome:
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

    def _shunt(self, conn: Any, row_id: int, error: str) -> Outcome:
        error = _storable(error)
        store.shunt(conn, row_id, error, self.clock())
        return Outcome(row_id, "shunted", error=error)

    # ------------------------------------------------------------------ one message

    def _handle(self, conn: Any, row: Any) -> Outcome:
        try:
            parsed = parse(row.raw)
        except InputError as exc:
            return self._shunt(conn, row.id, str(exc))
        context = self._context(conn, row, parsed)
        plan = decide(parsed, context, self.config, self.classifier)
        if plan.opening:  # numbered in this transaction: a rollback gives the number back
            plan = replace(plan, opens=store.next_reference(conn, context.inbox.prefix))
        plan = self._render(plan)
        return self._apply(conn, plan)

    def _inbox(self, row: Any, parsed: Parsed) -> InboxConfig:
        """The intake's own inbox, else the first configured address among the envelope
        recipients, To and Cc, else the first inbox."""
        if row.inbox:
            return self.config.inbox_named(row.inbox)
        return self.config.inbox_among([*_envelope(row), *(a.addr for a in (*parsed.to, *parsed.cc))])

    def _context(self, conn: Any, row: Any, parsed: Parsed) -> Context:
        """Read what the decision needs, in the claim's transaction."""
        now = self.clock()
        inbox = self._inbox(row, parsed)
        cfg = self.config
        who = author(parsed, own_addresses=cfg.own_addresses, agents=cfg.agent_addresses,
                     message_id_domain=cfg.message_id_domain, loop_header=LOOP_HEADER,
                     from_sent_folder=row.direction == "team")  # fmt: skip
        commands = commands_in(addressed_to(parsed, _envelope(row)), cfg)
        if who == Author.TEAM:
            match = conversations.find_for_reply(conn, parsed, cfg)
            others = [a.addr for a in (*parsed.to, *parsed.cc) if not cfg.is_ours(a.addr)]
            return Context(row, now, inbox, True, None, conversation=match.conversation,
                           match=match.how, replay=self.replay, commands=commands,
                           to_others=bool(others) or not commands)  # fmt: skip
        return_path = row.envelope_from if row.source == "smtp" else parsed.return_path
        if row.source == "replay" and return_path is None and parsed.sender is not None:
            return_path = parsed.sender.addr  # exports often drop the envelope; nothing is sent
        unusable = return_path is not None and not _writable(return_path)
        if unusable:  # 8-bit, not UTF-8, or a NUL: readable for people, never written to
            assert return_path is not None
            return_path = _readable(return_path)
        form = parsed.sender is not None and cfg.is_form_sender(parsed.sender.addr)
        customer, ack_to = recipients(parsed, inbox=inbox, return_path=return_path, form=form)
        found = conversations.find_by_thread(conn, parsed, author=customer)
        conversation = found.conversation
        if conversation is None:
            conversation = self._quoted_conversation(conn, parsed, return_path, customer, form)
        ack = cfg.acknowledge
        history = None
        if ack_to is not None:
            history = store.ack_history(
                conn, ack_to, now, day_start=cfg.calendar.local(now).replace(
                    hour=0, minute=0, second=0, microsecond=0),
                once_per_sender=ack.once_per_sender,
            )  # fmt: skip
        latest = store.latest_events(conn, ("circuit-open", "circuit-closed", "loop-alert"))
        notice = store.current_notice(conn, now) if not self.replay else None
        return Context(
            row, now, inbox, False, return_path, unusable, conversation, None, found.refused,
            history, store.breaker_open(latest), latest.get("loop-alert"), self.replay, commands,
            notice=notice.text if notice is not None else "",
        )  # fmt: skip

    def _quoted_conversation(self, conn: Any, parsed: Parsed, return_path: str | None,
                             customer: str | None, form: bool) -> Any:  # fmt: skip
        """The conversation whose acknowledgment the message quotes, when its sender takes
        part in it (`conversations.is_participant`): then it is a follow-up, like a reply
        with threading headers. For anyone else it is None, and the quotes-our-ack rule
        stops it."""
        quote = quoted_ack(parsed, LoopContext(
            own_addresses=self.config.own_addresses, message_id_domain=self.config.message_id_domain,
            return_path=return_path, customer=None, form=form,
            reference_prefixes=self.config.reference_prefixes,
        ))  # fmt: skip
        if quote is None or not customer:
            return None
        found = store.conversations_quoted(conn, quote.references[:20], quote.message_ids[:20])
        return next((c for c in found if conversations.is_participant(conn, c.id, customer)), None)

    def _render(self, plan: Plan) -> Plan:
        """The Plan's messages, rendered (templates are pure enough to run here)."""
        if not plan.outgoing:
            return plan

        rendered: list[Outgoing] = []
        now = plan.context.now
        for out in plan.outgoing:
            if out.kind == "ack":
                decision = plan.decision
                assert decision is not None and plan.reference is not None
                parsed = plan.parsed
                name = ""
                if parsed.sender and parsed.sender.addr.lower() == out.recipient.lower():
                    name = parsed.sender.name
                message = self.renderer.acknowledgment(
                    parsed=parsed, inbox=plan.context.inbox, deadline=decision.deadline,
                    reference=plan.reference, ack_to=out.recipient, customer_name=name, now=now,
                    notice=plan.context.notice,
                )  # fmt: skip
            else:
                assert out.alert is not None
                message = alert_message(self.renderer, out.recipient, out.alert, now=now)
            rendered.append(replace(out, message=message))
        return replace(plan, outgoing=tuple(rendered))

    # ------------------------------------------------------------------ apply

    def _apply(self, conn: Any, plan: Plan) -> Outcome:
        if plan.direction == "team":
            return self._apply_team(conn, plan)
        context, parsed, decision = plan.context, plan.parsed, plan.decision
        assert decision is not None
        row, now, inbox = context.row, context.now, context.inbox
        skip = plan.skip
        conversation_id: int | None = (
            context.conversation.id if context.conversation is not None else None
        )
        kind, detail = plan.event[0], dict(plan.event[1])
        if plan.opens is not None:
            conversation_id = self._open_conversation(conn, parsed, inbox, decision, row, plan.opens, now)
        elif plan.follows:
            detail.update(conversations.customer_followup(
                conn, self.config, context.conversation, decision.classification, row.received_at,
                replay=self.replay, now=now,
            ))  # fmt: skip
        for side, event in plan.events:
            store.add_event(conn, now, side, event, message_row=row.id if side == "loop-alert" else None)
        ack_row: int | None = None
        for out in plan.outgoing:
            assert out.message is not None
            if out.kind == "ack":
                ack_row = self.enqueue(conn, "ack", out.message, out.recipient, now, conversation_id, row.id)
            else:
                self.enqueue(conn, out.kind, out.message, out.recipient, now)
        if conversation_id is not None and plan.direction == "customer":
            conversations.add_participants(
                conn, conversation_id,
                {decision.customer or "", *conversations.participant_addresses(parsed, self.config)},
            )  # fmt: skip
            # Team replies processed before this message that answer it count now, at
            # their own time; an acknowledgment they make moot is cancelled.
            late = conversations.adopt_replies(
                conn, self.config, conversation_id, parsed.message_id, row.received_at, now,
                opened=plan.opens is not None,
            )  # fmt: skip
            if late:
                detail["late_replies"] = late
                if ack_row is not None and any(ack_row in r.get("cancelled", ()) for r in late):
                    kind = "not-acknowledged"
                    detail["ack_cancelled"] = "the team had replied before it was processed"
        acknowledged = kind == "acknowledged"
        if not store.flip_processed(
            conn, row.id, inbox=inbox.name, conversation_id=conversation_id,
            direction=plan.direction, from_addr=parsed.sender.addr if parsed.sender else None,
            subject=parsed.subject[:2000], skip_rule=skip.rule if skip else None,
            skip_reason=skip.reason[:500] if skip else None, acknowledged=acknowledged,
        ):  # fmt: skip
            raise _AlreadyDone()  # another runner processed it meanwhile: undo everything
        store.add_event(conn, now, kind, detail, conversation_id=conversation_id, message_row=row.id)
        log.info(
            "event=processed message=%s reference=%s priority=%s ack=%s rule=%s",
            row.id, plan.reference, decision.classification.priority, acknowledged,
            skip.rule if skip else "-",
        )  # fmt: skip
        return Outcome(row.id, "processed", conversation_id, plan.reference, acknowledged, skip)

    def _open_conversation(self, conn: Any, parsed: Parsed, inbox: InboxConfig,
                           decision: Decision, row: Any, reference: str, now: datetime) -> int:  # fmt: skip
        d = decision.deadline
        conv_id = store.open_conversation(conn, dict(
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
            priority_set_by=_set_by(decision),
            # Rebuilt history raises no alarms: its resolution warnings are long past.
            resolve_warned_at=now if self.replay else None,
            resolve_alerted_at=now if self.replay else None,
            **conversations.new_resolution(self.config, decision.classification.priority, row.received_at),
        ))  # fmt: skip
        conversations.open_cycle(
            conn, self.config, conv_id, decision.classification.priority, row.received_at,
            kind="first", replay=self.replay, now=now,
        )  # fmt: skip
        return conv_id

    def _apply_team(self, conn: Any, plan: Plan) -> Outcome:
        """A reply written by the team: measure it against its conversation's clock."""
        context, parsed = plan.context, plan.parsed
        row, now, conversation = context.row, context.now, context.conversation
        kind, detail = plan.event[0], dict(plan.event[1])
        replied = kind in ("team-reply", "team-reply-unmatched")
        if conversation is not None and replied:
            event = reply_event(parsed, question_means_pending=self.config.tracking.question_means_pending)
            detail.update(
                conversations.team_reply(conn, self.config, conversation, event, row.received_at, now)
            )
            conversations.add_participants(
                conn, conversation.id,
                conversations.participant_addresses(parsed, self.config, team=True),
            )  # fmt: skip
        elif replied:  # the customer's mail may still come: keep what could match it then
            conversations.remember_unmatched(conn, self.config, row.id, parsed)
        if conversation is not None:
            by = parsed.sender.key if parsed.sender else "the Sent folder"
            for command in context.commands:
                done = conversations.apply_command(
                    conn, self.config, conversation, command, by=by, via="address",
                    at=row.received_at, now=now,
                )  # fmt: skip
                detail["state"] = done["state"]
        conv_id = conversation.id if conversation is not None else None
        if not store.flip_processed(
            conn, row.id, inbox=context.inbox.name, direction="team", conversation_id=conv_id,
            from_addr=parsed.sender.addr if parsed.sender else None,
            subject=parsed.subject[:2000], match=context.match, acknowledged=False,
        ):  # fmt: skip
            raise _AlreadyDone()
        store.add_event(conn, now, kind, detail, conversation_id=conv_id, message_row=row.id)
        log.info("event=%s message=%s reference=%s match=%s", kind, row.id,
                 conversation.reference if conversation is not None else "-", context.match)  # fmt: skip
        return Outcome(row.id, "processed", conv_id,
                       conversation.reference if conversation is not None else None, False, None)  # fmt: skip
