"""Response policy: the promised deadline, and whether to acknowledge at all.

Owns: which window applies (first or next reply), the season stretch for messages received
inside a season, and the deadline computed by the business calendar — the single place
deadlines are computed, so what an acknowledgment promises is what reports measure; and
the `Decision` for an incoming message: its priority, who the customer is, where an
acknowledgment would go, and the first rule of `rules.CHAIN` (loop protection,
follow-up, rate limits) that says not to send one. Pure: values in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .calendar import BusinessCalendar
from .classify import Classifier
from .config import Config, InboxConfig, PriorityConfig
from .model import Classification, Deadline, Parsed
from .rules import AckHistory, Limits, LoopContext, Skip, first_match
from .tracker import normalize_subject


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


# ---------------------------------------------------------------------------- acknowledge?


@dataclass(frozen=True)
class Decision:
    """Everything decided about one incoming customer message."""

    classification: Classification
    deadline: Deadline
    customer: str | None  # who the conversation is with
    ack_to: str | None  # where an acknowledgment goes (exactly one address)
    skip: Skip | None  # why not, when not

    @property
    def acknowledge(self) -> bool:
        return self.skip is None and self.ack_to is not None


def recipients(
    parsed: Parsed, *, inbox: InboxConfig, return_path: str | None, form: bool
) -> tuple[str | None, str | None]:
    """(customer, ack_to): web forms answer Reply-To; otherwise the return path by default,
    or From when the inbox says so. Reply-To is never used blindly."""
    sender = parsed.sender.addr if parsed.sender else None
    if form:
        reply_to = parsed.reply_to[0].addr if parsed.reply_to else None
        return reply_to, reply_to
    customer = sender or (return_path or None)
    ack_to = sender if inbox.ack_to == "from" else (return_path or None)
    return customer, ack_to


def decide(
    parsed: Parsed,
    *,
    config: Config,
    inbox: InboxConfig,
    classifier: Classifier,
    received_at: datetime,
    return_path: str | None,
    history: AckHistory | None = None,
    now: datetime | None = None,
    follow_up: bool = False,
    unwritable_return_path: bool = False,
) -> Decision:
    """Classify, compute the deadline and decide whether to acknowledge: the first rule
    of `rules.CHAIN` that fires is the reason not to.

    `history` (read by the store for `ack_to`) enables the rate limits; `follow_up`
    marks a message that continues a known conversation, which is never acknowledged
    again; `now` None (rebuilding history) makes nothing too late."""
    form = bool(parsed.sender) and config.is_form_sender(
        parsed.sender.addr if parsed.sender else ""
    )
    customer, ack_to = recipients(parsed, inbox=inbox, return_path=return_path, form=form)
    classification = classifier.classify(parsed, customer=customer)
    priority = classification.priority
    due = deadline(config.clock_for(priority), config.priority(priority), received_at)
    ack = config.acknowledge
    ctx = LoopContext(
        own_addresses=config.own_addresses,
        message_id_domain=config.message_id_domain,
        return_path=return_path,
        customer=customer,
        form=form,
        missing_return_path_ok=inbox.ack_to == "from",
        reference_prefixes=config.reference_prefixes,
        follow_up=follow_up,
        ack_to=ack_to,
        subject=normalize_subject(parsed.subject),
        unwritable_return_path=unwritable_return_path,
        received_at=received_at,
        due_at=due.due_at,
        now=now,
        enabled=ack.enabled,
        history=history if ack_to is not None else None,
        limits=Limits(
            ack.once_per_sender, ack.max_per_sender_per_day, ack.max_per_minute, ack.max_per_hour
        ),
    )
    return Decision(classification, due, customer, ack_to, first_match(parsed, ctx))
