"""Conversations in the database: which one a message belongs to, opening them, matching
team replies, moving their state.

Owns: the writes that reply tracking makes inside the pipeline's transaction — a new
conversation and its first reply cycle; who takes part in it; a team reply closing the
open cycle (measured in business time by `tracker.measure`), moving the state and
cancelling what was still queued for the customer (an acknowledgment, a breach notice, a
reminder, a closing notice); a customer follow-up starting a next-reply cycle or raising
the priority (and cancelling a reminder or closing notice still queued); and finding
which conversation a message belongs to. Decisions come from the pure `tracker`; the
rows are read and written by the store (gateway/store/threads.py), this module runs no
SQL of its own.

Which conversation (every path obeys the participant rule):
  1. thread headers — In-Reply-To/References naming a message of the conversation or
     one we sent for it (acknowledgment, breach notice);
  2. our reference tag in the subject ("[SHOP-1042]");
  3. team replies only, a last resort recorded as such: a recipient who takes part in an
     open conversation with the same normalised subject.
The participant rule: a match counts only when the message was written by the team (our
addresses, agents, the Sent folder) or by a participant of that conversation — its
customer, or an address one of its messages came from (not a web form's) or was sent or
copied to (the `participants` table, filled as messages join). Everything else can be
forged by anyone: a tag is in the subject of every mail to the customer, a customer's
Message-ID can be guessed, and one of ours travels with every forward. A message refused
this way is a new conversation of its own (and acknowledged as one); the refused
references are recorded in its event.

Replies processed before the mail they answer (after a downtime INBOX and Sent catch up in
parallel): a team reply that matches nothing keeps what could match it later
(`reply_keys`: the Message-IDs it answers, its recipients). When a customer message opens
or joins a conversation, `adopt_replies` matches the replies that answer it — naming its
Message-ID, or sent to a participant with the same normalised subject after it — and
applies them in the order of their time, each at its own time; and a reply already in the
conversation but newer than the cycle the message opened closes that cycle. So the clock
measures what happened, whatever order the mail was read in. A reply that never finds its
conversation stays "unmatched" and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import store
from .config import PRIORITIES, Config
from .model import Classification, Parsed
from .tracker import (
    Clock,
    Event,
    Resolution,
    State,
    follow,
    measure,
    normalize_subject,
    reply_event,
    retarget,
    start_clock,
    start_resolution,
    transition,
)

_TAG = re.compile(r"\[([A-Z][A-Z0-9]{0,15}-\d+)\]")
THREAD_IDS = 50  # Message-IDs of a message's thread headers looked at (the newest)
KEPT_IDS = 20  # of those, kept for an unmatched team reply
KEY = 255  # length of a stored reply key
ADDRESS = 320  # length of a stored participant address
# What we queue for the customer that the team's reply makes moot.
MOOT_AFTER_REPLY = ("ack", "breach", "reminder", "closed")
# What we queue for the customer that the customer's own next message makes moot: a
# reminder that we wait for them, a notice that we closed the case.
MOOT_AFTER_CUSTOMER = ("reminder", "closed")


def subject_tags(subject: str) -> list[str]:
    """Our conversation references in a subject line ("[SHOP-1042]" -> "SHOP-1042")."""
    return _TAG.findall(subject)


@dataclass(frozen=True)
class Match:
    conversation: Any  # a conversations row, or None
    how: str | None  # "references", "reference-tag", "subject", or None
    refused: tuple[str, ...] = ()  # conversations it named but its sender takes no part in


def thread_ids(parsed: Parsed) -> list[str]:
    """The Message-IDs a message answers, the most telling first: In-Reply-To, then
    References from the newest."""
    ids = (*parsed.in_reply_to, *reversed(parsed.references))
    return list(dict.fromkeys(i for i in ids if i))[:THREAD_IDS]


def participant_addresses(parsed: Parsed, config: Config, *, team: bool = False) -> set[str]:
    """Whom a message makes a participant of its conversation: its sender (unless the team
    wrote it), Reply-To, To and Cc — never our own addresses or a web form's sender,
    which unrelated mail shares."""
    found = [*parsed.reply_to, *parsed.to, *parsed.cc]
    if not team and parsed.sender is not None:
        found.append(parsed.sender)
    return {
        a.key[:ADDRESS]
        for a in found
        if "@" in a.key and not config.is_ours(a.key) and not config.is_form_sender(a.key)
    }


def add_participants(conn: Any, conversation_id: int, addresses: Iterable[str]) -> None:
    store.add_participants(
        conn, conversation_id, sorted({a.lower()[:ADDRESS] for a in addresses if a})
    )


def is_participant(conn: Any, conversation_id: int, address: str) -> bool:
    return store.participant(conn, conversation_id, address.lower()[:ADDRESS])


def _conversation(conn: Any, conversation_id: int) -> Any:
    return store.conversation_or_none(conn, conversation_id)


def find_by_thread(conn: Any, parsed: Parsed, *, author: str | None, team: bool = False) -> Match:
    """The conversation a message continues by its thread headers or our subject tag —
    one that `author` (the customer the message is from) takes part in, or any for the
    team (`team=True`)."""
    candidates: list[tuple[int, str]] = []
    ids = thread_ids(parsed)
    if ids:
        rank = {i: n for n, i in enumerate(ids)}
        found = store.thread_owners(conn, ids)
        # A Message-ID that several conversations share (mailers reuse them; different
        # mails with one id are all kept) says nothing: the tag or the subject decides.
        owners: dict[str, set[int]] = {}
        for message_id, conv_id in found:
            owners.setdefault(message_id, set()).add(int(conv_id))
        found = [r for r in found if len(owners[r[0]]) == 1]
        found.sort(key=lambda r: rank.get(r[0], len(ids)))
        candidates.extend((int(conv_id), "references") for _, conv_id in found)
    for tag in subject_tags(parsed.subject):
        tagged = store.conversation_by_reference(conn, tag)
        if tagged is not None:
            candidates.append((tagged, "reference-tag"))
    refused: list[int] = []
    for conv_id, how in candidates:
        if conv_id in refused:
            continue
        if team or (author and is_participant(conn, conv_id, author)):
            return Match(_conversation(conn, conv_id), how, _references(conn, refused))
        refused.append(conv_id)
    return Match(None, None, _references(conn, refused))


def _references(conn: Any, conversation_ids: list[int]) -> tuple[str, ...]:
    if not conversation_ids:
        return ()
    found = store.references_of(conn, conversation_ids)
    return tuple(str(found[i]) for i in conversation_ids if i in found)


def find_for_reply(conn: Any, parsed: Parsed, config: Config) -> Match:
    """A team reply: thread headers and tag first; else the newest open conversation that
    one of the reply's recipients (not our own addresses: `Config.is_ours`) takes part in,
    with the same normalised subject."""
    found = find_by_thread(conn, parsed, author=None, team=True)
    if found.conversation is not None:
        return found
    recipients = sorted({a.key[:ADDRESS] for a in (*parsed.to, *parsed.cc) if not config.is_ours(a.key)})
    subject = normalize_subject(parsed.subject)
    if not recipients or not subject:
        return Match(None, None)
    for row in store.open_conversations_of(conn, recipients, 20):
        if normalize_subject(row.subject) == subject:
            return Match(row, "subject")
    return Match(None, None)


def remember_unmatched(conn: Any, config: Config, message_row: int, parsed: Parsed) -> None:
    """Keep what could match a team reply to the customer mail it answers, should that
    mail be processed after it (see `adopt_replies`)."""
    keys = {"<" + i[: KEY - 1] for i in thread_ids(parsed)[:KEPT_IDS]}
    keys |= {"@" + a.key[: KEY - 1] for a in (*parsed.to, *parsed.cc) if not config.is_ours(a.key)}
    if keys:
        store.add_reply_keys(conn, message_row, sorted(keys))


def adopt_replies(
    conn: Any, config: Config, conversation_id: int, message_id: str | None, at: datetime,
    now: datetime, *, opened: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """A customer message (received `at`, with `message_id`) has just opened or joined
    the conversation: apply, in the order of their time, the team replies processed
    before it that answer it — unmatched ones naming its Message-ID, or sent after it to a
    participant with the conversation's normalised subject — and then, while a cycle is
    open, the conversation's own team reply that is newer than its start (`opened`: the
    message opened the conversation, which has no replies but those). Returns what each
    did."""
    from .parse import parse

    by_id = "<" + message_id[: KEY - 1] if message_id else None
    people = store.participants_of(conn, conversation_id)
    keys = [*(["@" + a[: KEY - 1] for a in people]), *([by_id] if by_id else [])]
    found = store.replies_keyed(conn, keys)
    if message_id is not None and by_id is not None and any(key == by_id for _, key in found) and (
        store.messages_with_id(conn, message_id) > 1
    ):  # a reused Message-ID: a reply naming it may answer another mail; go by subject
        found = [(row_id, key) for row_id, key in found if key != by_id]
    hits: dict[int, str] = {}
    for row_id, key in found:
        if key == by_id:
            hits[int(row_id)] = "references"
        else:
            hits.setdefault(int(row_id), "subject")
    subject = normalize_subject(_conversation(conn, conversation_id).subject) if hits else ""
    replies: list[tuple[datetime, int, str | None, bytes | None]] = []
    if hits:
        for row in store.unmatched_team_replies(conn, sorted(hits)):
            by = hits[row.id]
            if by == "subject" and (
                not subject or row.received_at < at or normalize_subject(row.subject or "") != subject
            ):
                continue
            replies.append((row.received_at, row.id, by, row.raw))
    replies.sort(key=lambda r: (r[0], r[1]))
    done: list[dict[str, Any]] = []
    pending = list(replies)
    while len(done) < len(replies) + 20:  # each pass closes a cycle; a few suffice
        if not pending:
            if opened and not replies:
                break  # a new conversation: no reply of its own yet
            # A cycle still open that a reply already in the conversation post-dates.
            cycle = open_cycle_row(conn, conversation_id)
            if cycle is None:
                break
            later = store.team_reply_after(conn, conversation_id, cycle.started_at)
            if later is None:
                break
            pending = [(later.received_at, later.id, None, later.raw)]
        replied_at, row_id, how, raw = pending.pop(0)
        try:
            parsed = parse(raw) if raw else None
        except Exception:  # it was processed once; its text only tells question or answer
            parsed = None
        event = (reply_event(parsed, question_means_pending=config.tracking.question_means_pending)
                 if parsed is not None else Event.TEAM_REPLY)  # fmt: skip
        detail = team_reply(
            conn, config, _conversation(conn, conversation_id), event, replied_at, now
        )
        if how is not None:
            store.adopt_reply(conn, row_id, conversation_id, how)
            if parsed is not None:
                add_participants(conn, conversation_id,
                                 participant_addresses(parsed, config, team=True))  # fmt: skip
        detail = {"match": how or "already-matched", "late": True, **detail}
        store.add_event(conn, now, "team-reply", detail, conversation_id=conversation_id,
                        message_row=row_id)  # fmt: skip
        done.append({"message": row_id, **detail})
    return done


def cancel_moot(conn: Any, conversation_id: int, now: datetime, *, by_customer: bool = False) -> list[int]:
    """The team has replied (or, `by_customer`, the customer wrote): what is still queued
    for the customer that this makes moot (not yet handed to the server) is cancelled,
    each with an event; returns the outbox rows cancelled."""
    kinds = MOOT_AFTER_CUSTOMER if by_customer else MOOT_AFTER_REPLY
    who = "the customer wrote" if by_customer else "the team replied"
    cancelled: list[int] = []
    for row in store.pending_for_customer(conn, conversation_id, kinds):
        if not store.cancel_pending(conn, row.id, f"cancelled: {who} first"):
            continue
        if row.kind == "ack" and row.source_message_id is not None:
            store.mark_unacknowledged(conn, row.source_message_id)
        store.add_event(conn, now, f"{row.kind}-cancelled",
                        {"outbox": row.id, "reason": f"{who} before it was sent"},
                        conversation_id=conversation_id, message_row=row.source_message_id)  # fmt: skip
        cancelled.append(int(row.id))
    return cancelled


def _clock(config: Config, priority: str, started_at: datetime, *, next_reply: bool) -> Clock:
    p = config.priority(priority)
    window = p.next_reply if next_reply else p.first_reply
    return start_clock(config.clock_for(priority), started_at, window, config.alerts.warn_at)


def open_cycle(
    conn: Any, config: Config, conversation_id: int, priority: str, started_at: datetime, *,
    kind: str, replay: bool, now: datetime,
) -> Clock:  # fmt: skip
    clock = _clock(config, priority, started_at, next_reply=kind == "next")
    store.add_cycle(
        conn, dict(
            conversation_id=conversation_id,
            kind=kind,
            priority=priority,
            started_at=started_at,
            window_seconds=int(clock.window.total_seconds()),
            stretch=clock.stretch,
            due_at=clock.due_at,
            warn_at=clock.warn_at,
            breached=False,
            # Rebuilt history raises no alarms: its warnings and breaches are long past.
            warned_at=now if replay else None,
            breach_alerted_at=now if replay else None,
        )
    )
    return clock


def open_cycle_row(conn: Any, conversation_id: int) -> Any:
    return store.open_cycle_of(conn, conversation_id)


def team_reply(conn: Any, config: Config, conversation: Any, event: Event, replied_at: datetime,
               now: datetime) -> dict[str, Any]:  # fmt: skip
    """Close the open cycle with this reply (`event`: an answer or a question), measure
    it, move the state, and cancel what is still queued for the customer.

    Replies can arrive out of order (the Sent folder is read after a customer's newer
    message came in over SMTP): a reply older than the open cycle changes nothing but
    `last_team_at`; a reply that closes a cycle while the customer has written since
    opens the next cycle from that customer message."""
    last_team = max(t for t in (conversation.last_team_at, replied_at) if t is not None)
    values: dict[str, Any] = {"last_team_at": last_team}
    detail: dict[str, Any] = {}
    if replied_at >= conversation.received_at and (cancelled := cancel_moot(conn, conversation.id, now)):
        detail["cancelled"] = cancelled
    cycle = open_cycle_row(conn, conversation.id)
    if cycle is None or replied_at < cycle.started_at:
        store.update_conversation(conn, conversation.id, **values)
        return {
            **detail,
            "state": conversation.state,
            "note": "older than the open reply clock; nothing to measure",
        }
    seconds, met, closed = _close_cycle(conn, config, conversation, cycle, replied_at)
    values.update(closed)
    detail.update(cycle=cycle.kind, business_seconds=seconds, met=met)
    state, _ = transition(conversation.state, event)
    resolution = _moved(config, conversation.priority, resolution_of(conversation),
                        conversation.state, state, replied_at)  # fmt: skip
    customer_since = conversation.last_customer_at
    if (
        customer_since is not None
        and customer_since > replied_at
        and customer_since > cycle.started_at
    ):
        # The customer wrote after this reply: the team owes the next answer already.
        before = state
        state, _ = transition(state, Event.CUSTOMER_MESSAGE)
        resolution = _moved(config, conversation.priority, resolution, before, state, customer_since)
        nxt = open_cycle(conn, config, conversation.id, conversation.priority, customer_since,
                         kind="next", replay=conversation.source == "replay", now=now)  # fmt: skip
        values["next_due_at"] = nxt.due_at
        detail["next_due_at"] = nxt.due_at.isoformat()
    values.update(resolution_columns(resolution))
    values.update(_resolved_values(conversation.state, state, replied_at, None))
    values["state"] = state.value
    store.update_conversation(conn, conversation.id, **values)
    detail["state"] = state.value
    return detail


def customer_followup(
    conn: Any, config: Config, conversation: Any, classification: Classification, at: datetime, *,
    replay: bool, now: datetime,
) -> dict[str, Any]:  # fmt: skip
    """The customer wrote again: maybe a higher priority; maybe a new reply clock; a
    reminder or closing notice still queued for them is cancelled."""
    detail: dict[str, Any] = {}
    if cancelled := cancel_moot(conn, conversation.id, now, by_customer=True):
        detail["cancelled"] = cancelled
    values: dict[str, Any] = {"last_customer_at": at}
    priority = conversation.priority
    rank = {name: i for i, name in enumerate(PRIORITIES)}
    if rank[classification.priority] < rank[priority] and conversation.priority_set_by == "agent":
        detail["not_raised"] = {"to": classification.priority, "why": "the team set the priority"}
    elif rank[classification.priority] < rank[priority]:
        # Raised: the promise is recomputed from the original receipt.
        detail["raised"] = {
            "from": priority,
            "to": classification.priority,
            "why": classification.reason,
        }
        priority = classification.priority
        values.update(_reprioritized(conn, config, conversation, priority, f"raised: {classification.reason}", detail))
    state, new_clock = transition(conversation.state, Event.CUSTOMER_MESSAGE)
    resolution = _moved(config, priority, resolution_of_values(conversation, values), conversation.state,
                        state, at)  # fmt: skip
    values.update(resolution_columns(resolution))
    values.update(_resolved_values(conversation.state, state, at, None))
    if conversation.state == State.RESOLVED.value and state != State.RESOLVED:
        detail["reopened"] = True
    if new_clock:
        nxt = open_cycle(
            conn, config, conversation.id, priority, at, kind="next", replay=replay, now=now
        )
        values["next_due_at"] = nxt.due_at
        values["closed_at"] = None
        detail["next_due_at"] = nxt.due_at.isoformat()
    values["state"] = state.value
    store.update_conversation(conn, conversation.id, **values)
    detail["state"] = state.value
    return detail


# ---------------------------------------------------------------------------- resolution


def _seconds(value: timedelta) -> int:
    return int(value.total_seconds())


def resolution_of(row: Any) -> Resolution:
    """A conversation row's resolution clock."""
    return resolution_of_values(row, {})


def resolution_of_values(row: Any, values: dict[str, Any]) -> Resolution:
    """The resolution clock of a row with `values` about to be written over it."""

    def get(name: str) -> Any:
        return values[name] if name in values else getattr(row, name)

    window = get("resolve_window_seconds")
    return Resolution(
        timedelta(seconds=window) if window is not None else None,
        timedelta(seconds=get("resolution_business_seconds") or 0),
        get("resolution_running_since"),
        get("waiting_since"),
        timedelta(seconds=get("customer_wait_business_seconds") or 0),
        get("resolve_due_at"),
        get("resolve_warn_at"),
    )


def resolution_columns(r: Resolution) -> dict[str, Any]:
    """The columns that store a resolution clock."""
    return {
        "resolve_window_seconds": _seconds(r.target) if r.target is not None else None,
        "resolution_business_seconds": _seconds(r.spent),
        "resolution_running_since": r.running_since,
        "customer_wait_business_seconds": _seconds(r.wait),
        "waiting_since": r.waiting_since,
        "resolve_due_at": r.due_at,
        "resolve_warn_at": r.warn_at,
    }


def new_resolution(config: Config, priority: str, received_at: datetime) -> dict[str, Any]:
    """The resolution columns of a conversation received at `received_at`: running."""
    target = config.priority(priority).resolve
    clock = start_resolution(config.clock_for(priority), received_at, target, config.alerts.warn_at)
    return resolution_columns(clock)


def _moved(config: Config, priority: str, r: Resolution, old: State | str, new: State | str,
           at: datetime) -> Resolution:  # fmt: skip
    """The clock after the state went from `old` to `new` at `at`: it stands still while
    the conversation is pending or resolved, and runs otherwise."""
    return follow(config.clock_for(priority), r, old, new, at, config.alerts.warn_at)


def _retargeted(config: Config, priority: str, r: Resolution) -> Resolution:
    p = config.priority(priority)
    return retarget(config.clock_for(priority), r, p.resolve, config.alerts.warn_at)


def _resolved_values(old: State | str, new: State, at: datetime, by: str | None) -> dict[str, Any]:
    if new == State.RESOLVED and State(old) != State.RESOLVED:
        return {"resolved_at": at, "resolved_by": (by or "")[:ADDRESS] or None}
    if new != State.RESOLVED and State(old) == State.RESOLVED:
        return {"resolved_at": None, "resolved_by": None}
    return {}


COMMAND_EVENTS = {"resolved": Event.RESOLVE, "pending": Event.PEND, "open": Event.REOPEN}


def apply_command(
    conn: Any, config: Config, conversation: Any, command: str, *, by: str, via: str,
    at: datetime, now: datetime, note: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Apply a team's command to a conversation at `at`: resolve it, set it pending,
    reopen it, or set its priority (the reply deadline of the open cycle and the
    resolution target are recomputed from their starts; the priority is the team's from
    then on). Records a `command` event; a command that changes nothing says so."""
    conversation = _conversation(conn, conversation.id)  # the latest, in this transaction
    old = State(conversation.state)
    values: dict[str, Any] = {}
    detail: dict[str, Any] = {"command": command, "by": by, "via": via, "was": old.value}
    if note:
        detail["note"] = note[:2000]
    if command in COMMAND_EVENTS:
        state, _ = transition(old, COMMAND_EVENTS[command])
        if command == "open" and state == State.ANSWERED and old != State.ANSWERED:
            cycle = open_cycle_row(conn, conversation.id)
            if cycle is not None:  # the team still owes a reply
                state = State.BREACHED if cycle.breached else State.AWAITING_TEAM
        if state == old:
            detail["change"] = "none"
        else:
            clock = _moved(config, conversation.priority, resolution_of(conversation), old, state, at)
            values.update(resolution_columns(clock))
            if clock.due_at is None and clock.target is not None and clock.spent > clock.target:
                # Stopped past its target before the scheduler looked: missed all the same
                # (no alert follows: resolutions_breached_unalerted wants a running clock).
                values["resolution_breached"] = True
            values.update(_resolved_values(old, state, at, by))
            values["state"] = state.value
            if state in (State.RESOLVED, State.PENDING):  # the team owes nothing now
                values.update(_settle(conn, config, conversation, at, now, detail))
            if state == State.RESOLVED:
                detail["resolution_business_seconds"] = _seconds(clock.spent)
                detail["customer_wait_business_seconds"] = _seconds(clock.wait_at(
                    config.clock_for(conversation.priority), at))
    elif command in PRIORITIES:
        values.update(_set_priority(conn, config, conversation, command, by, detail))
    elif command == "note":
        detail.setdefault("note", "")
    else:
        detail["change"] = "unknown command"
    if values:
        store.update_conversation(conn, conversation.id, **values)
    detail["state"] = values.get("state", conversation.state)
    store.add_event(conn, now, "command", detail, conversation_id=conversation.id)
    return detail


def _settle(conn: Any, config: Config, conversation: Any, at: datetime, now: datetime,
            detail: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Resolved or pending: the team owes no answer now. A reply clock still open ends at
    `at` (the team answered without a mail — by phone, in the shop system — and that answer
    is measured then), and what is still queued for the customer is cancelled."""
    values: dict[str, Any] = {}
    if cancelled := cancel_moot(conn, conversation.id, now):
        detail["cancelled"] = cancelled
    cycle = open_cycle_row(conn, conversation.id)
    if cycle is None or at < cycle.started_at:
        return values
    seconds, met, closed = _close_cycle(conn, config, conversation, cycle, at)
    detail["settled_cycle"] = {"cycle": cycle.kind, "business_seconds": seconds, "met": met}
    return {**values, **closed}


def _close_cycle(conn: Any, config: Config, conversation: Any, cycle: Any,
                 at: datetime) -> tuple[int, bool, dict[str, Any]]:  # fmt: skip
    """End the open reply cycle at `at`: its business time on the priority's clock, met
    or not, written to the cycle; returns (seconds, met, the conversation's new values)."""
    clock = Clock(cycle.started_at, timedelta(seconds=cycle.window_seconds), cycle.stretch, cycle.due_at, None)
    result = measure(config.clock_for(cycle.priority), clock, at)
    seconds = _seconds(result.business_time)
    store.update_cycle(conn, cycle.id, replied_at=at, business_seconds=seconds, breached=not result.met)
    values: dict[str, Any] = {"next_due_at": None}
    if cycle.kind == "first":
        values.update(first_reply_at=at, first_reply_business_seconds=seconds,
                      breached=bool(conversation.breached or not result.met))  # fmt: skip
    return seconds, result.met, values


def _set_priority(conn: Any, config: Config, conversation: Any, priority: str, by: str,
                  detail: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The team sets the priority: deadlines recomputed from receipt (the open cycle's
    from its start), and kept through the customer's later keywords."""
    if not any(p.name == priority for p in config.priorities):
        detail["change"] = f"no [priority.{priority}] is configured"
        return {}
    values: dict[str, Any] = {"priority_set_by": "agent"}
    if priority == conversation.priority:
        detail["change"] = "none" if conversation.priority_set_by == "agent" else "confirmed"
        return values
    detail["from"] = conversation.priority
    values.update(_reprioritized(conn, config, conversation, priority, f"set by {by}: {priority}", detail))
    return values


def _reprioritized(conn: Any, config: Config, conversation: Any, priority: str, why: str,
                   detail: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """A new priority: the open reply clock's deadline recomputed from its start (the
    first reply's from the receipt), the resolution target changed, the reason kept."""
    values: dict[str, Any] = {"priority": priority,
                              "priority_reason": f"{conversation.priority_reason}; {why}"[:2000]}  # fmt: skip
    cycle = open_cycle_row(conn, conversation.id)
    if cycle is not None:
        clock = _clock(config, priority, cycle.started_at, next_reply=cycle.kind == "next")
        store.update_cycle(conn, cycle.id, priority=priority, window_seconds=int(clock.window.total_seconds()),
                           stretch=clock.stretch, due_at=clock.due_at, warn_at=clock.warn_at)  # fmt: skip
        if cycle.kind == "first":
            values.update(due_at=clock.due_at, window_seconds=int(clock.window.total_seconds()),
                          warn_at=clock.warn_at)  # fmt: skip
        else:
            values["next_due_at"] = clock.due_at
        detail["due_at"] = clock.due_at.isoformat()
    values.update(resolution_columns(_retargeted(config, priority, resolution_of(conversation))))
    return values


def resolve_quiet(conn: Any, config: Config, conversation: Any, now: datetime) -> dict[str, Any]:
    """`close_after` passed with no word from the customer: resolved at the team's last
    reply (when the work was done), not at the moment we noticed."""
    old = State(conversation.state)
    state, _ = transition(old, Event.IDLE_TIMEOUT)
    if state != State.RESOLVED:
        return {}
    at = conversation.last_team_at or conversation.waiting_since or now
    clock = _moved(config, conversation.priority, resolution_of(conversation), old, state, at)
    values = {**resolution_columns(clock), **_resolved_values(old, state, at, "close_after"),
              "state": state.value, "closed_at": now}  # fmt: skip
    if clock.target is not None:  # judged by where it ended: at the team's last reply
        values["resolution_breached"] = clock.spent > clock.target
    store.update_conversation(conn, conversation.id, **values)
    detail = {"after": str(config.tracking.close_after), "resolved_at": at.isoformat(),
              "resolution_business_seconds": _seconds(clock.spent)}  # fmt: skip
    store.add_event(conn, now, "resolved", detail, conversation_id=conversation.id)
    return detail


def set_by_reference(
    engine: Any, config: Config, reference: str, commands: Iterable[str], *, by: str,
    note: str | None, now: datetime,
) -> list[dict[str, Any]] | None:  # fmt: skip
    """`sla-gateway set`: apply commands (and a note) to the conversation `reference`,
    in one transaction, at `now`. None when no conversation has that reference."""
    with store.begin(engine) as conn:
        found = store.conversation_by_reference(conn, reference.strip().upper())
        if found is None:
            return None
        conversation = _conversation(conn, found)
        done = [apply_command(conn, config, conversation, c, by=by, via="cli", at=now, now=now)
                for c in commands]  # fmt: skip
        if note and not done:
            done.append(apply_command(conn, config, conversation, "note", by=by, via="cli",
                                      at=now, now=now, note=note))  # fmt: skip
        elif note:
            store.add_event(conn, now, "note", {"by": by, "note": note[:2000]},
                            conversation_id=conversation.id)  # fmt: skip
    return done
