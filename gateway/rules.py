"""The "do not acknowledge" rules: named, in a declared order, each explaining itself.

Owns: deciding from one message alone whether it was written by a machine, a list, a
bounce, ourselves or a spammer, per RFC 3834, RFC 5230 and what mature helpdesks learned;
the decisions on facts the policy supplies (an unwritable return path, a follow-up, a
promise already late, acknowledgments switched off); and the sender rate limits, decided
from counts the store supplies. The first rule that
fires is recorded with a reason so `inspect` and the digest can say why no
acknowledgment went out. Human mail with none of these markers must always pass: a
marker whose value says otherwise (`Auto-Submitted: no`) does not fire.
Pure: values in, values out; no I/O.

The chain (`CHAIN`, first match wins) is declared once, at the end of this module:
own-mail, bounce, complaint, auto-submitted, auto-reply, suppress-header, mailing-list,
precedence, spam, role-sender, no-sender, no-return-path, quotes-our-ack (our
acknowledgment quoted by anyone but its conversation's customer) — machine mail, which
opens no conversation —, then bad-return-path, follow-up, too-late, disabled and the rate
limits once-per-sender (a repeated subject, or a sender that `looks_automated`),
daily-limit, circuit-breaker (per minute and per hour). Mail from configured web-form
senders is written by a machine on a customer's behalf, so the machine-marker rules
(auto-submitted to precedence, no-sender) do not apply to it; the others do, on the
customer address.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from .model import Parsed

LOOP_HEADER = "X-SLA-Gateway-Loop"
OUR_KINDS = ("ack", "alert", "breach", "digest", "reminder", "closed")  # make_msgid idstrings of what we send


def is_our_message_id(message_id: str | None, domain: str) -> bool:
    """Our own Message-IDs look like <...NNN.ack@domain>: the domain alone is not enough,
    because agents' own mail clients make Message-IDs on the shop's domain too."""
    if not message_id:
        return False
    local, _, right = message_id.rpartition("@")
    return right.lower() == domain and local.rpartition(".")[2] in OUR_KINDS


@dataclass(frozen=True)
class LoopContext:
    """What the rules need to know about us and about this message's origin."""

    own_addresses: frozenset[str]  # lower-cased inbox addresses and aliases
    message_id_domain: str  # the right-hand side of the Message-IDs we generate
    return_path: str | None  # envelope MAIL FROM (SMTP) or Return-Path header; "" = null
    customer: str | None  # the address an acknowledgment would go to
    form: bool = False  # sent by a configured web-form sender
    missing_return_path_ok: bool = False  # acks go to From: only a null path (<>) matters
    reference_prefixes: tuple[str, ...] = ()  # our inboxes' reference prefixes ("SHOP")
    follow_up: bool = False  # it continues a known conversation (its customer writing)
    # What the later rules of the chain need: where an acknowledgment would go, whether
    # the return path holds bytes one cannot write to, the promised deadline, "now" (None
    # when rebuilding history: nothing is too late), the switch, the rate-limit counts
    # (None: no limits) and the limits themselves.
    ack_to: str | None = None
    subject: str = ""  # normalised (tracker.normalize_subject), for once-per-sender
    unwritable_return_path: bool = False
    received_at: datetime | None = None
    due_at: datetime | None = None
    now: datetime | None = None
    enabled: bool = True
    history: AckHistory | None = None
    limits: Limits | None = None


@dataclass(frozen=True)
class Rule:
    """One named rule: `check` returns a reason when it fires, else None."""

    name: str
    check: Callable[[Parsed, LoopContext], str | None]
    applies_to_forms: bool = True
    machine: bool = False  # what it stops is machine mail: no conversation


def _local(address: str | None) -> str:
    return (
        (address or "").rpartition("@")[0].lower()
        if "@" in (address or "")
        else (address or "").lower()
    )


_SCAN = 100_000  # how much of a body the rules read: a marker never sits deeper


def _value(parsed: Parsed, name: str) -> str | None:
    value = parsed.header(name)
    return value.strip() if value is not None else None


def _negative(value: str) -> bool:
    """A header value that says "not automatic"."""
    return value.split(";")[0].strip().lower() in ("no", "false", "0", "off")


# ---------------------------------------------------------------------------- the rules


def own_mail(parsed: Parsed, ctx: LoopContext) -> str | None:
    sender = parsed.sender.key if parsed.sender else ""
    if sender in ctx.own_addresses:
        return f"sent from our own address {sender}"
    loop = _value(parsed, LOOP_HEADER)
    if loop is not None:
        return f"carries our loop header ({LOOP_HEADER}: {loop})"
    if is_our_message_id(parsed.message_id, ctx.message_id_domain):
        return f"one of our own Message-IDs ({parsed.message_id})"
    return None


_BOUNCE_SUBJECT = re.compile(
    r"^\s*(undeliver(ed|able)|delivery (status notification|failure|has failed|failed)"
    r"|failure notice|returned mail|mail delivery (failed|failure|system|subsystem)"
    r"|delivery notification|non[- ]?delivery|unzustellbar|nicht zustellbar"
    r"|non remis|non distribuable|no se puede entregar|onbestelbaar|message not delivered"
    r"|warning: could not send message|mail system error)",
    re.IGNORECASE,
)
_REPORT_TYPES = (
    "message/delivery-status",
    "message/global-delivery-status",
    "message/feedback-report",
    "message/disposition-notification",
)


# How bounce messages from a real sender (not the null path) say what they are: the subject
# alone is not enough (customers write "Undelivered parcel" too), nor is the wording of the
# body ("could not be delivered to my address"); with a mail-system sender it is.
_BOUNCE_SUBJECT_END = re.compile(r"\((delivery failed|delivery failure|failure)\)\s*$", re.I)
_BOUNCE_BODY = re.compile(
    r"created automatically by mail delivery software|could not be delivered to"
    r"|delivery to the following recipients? (has )?failed|the following address(es)? failed"
    r"|was not delivered to|returning (this|the) message to (the )?sender"
    r"|permanent (fatal )?errors?|unable to deliver (your|this|the) message",
    re.IGNORECASE,
)
# The mail-system senders that send bounces under their own (non-null) address, after any
# BATV tag (prvs=TAG=ndr@, btv1==TAG==ndr@) is taken off.
_BOUNCE_SENDER = re.compile(
    r"^(ndr|bounces?|mailer-?daemon|mail-?daemon|postmaster|mail-?delivery(-?system)?"
    r"|non-?delivery|dsn|mdaemon)$",
    re.IGNORECASE,
)
_BATV = re.compile(r"^(prvs|msprvs\d*)=[^=]*=|^btv1==[^=]*==", re.IGNORECASE)


def _bounce_sender(address: str | None) -> bool:
    return bool(_BOUNCE_SENDER.match(_BATV.sub("", _local(address))))


def bounce(parsed: Parsed, ctx: LoopContext) -> str | None:
    types = parsed.content_types
    if types and types[0] == "multipart/report":
        return "a delivery or disposition report (multipart/report)"
    for kind in _REPORT_TYPES:
        if kind in types:
            return f"contains a {kind} part"
    if parsed.has_header("X-Failed-Recipients"):
        return "has X-Failed-Recipients"
    for who, address in (
        ("From", parsed.sender.addr if parsed.sender else None),
        ("return path", ctx.return_path),
    ):
        if _local(address) in ("mailer-daemon", "postmaster"):
            return f"{who} is {address}"
    if _BOUNCE_SUBJECT.match(parsed.subject) and (
        ctx.return_path == "" or _local(ctx.return_path) in ("", "mailer-daemon")
    ):
        # A subject alone is not enough: customers write "Undelivered parcel" too.
        return f"bounce subject ({parsed.subject[:60]!r}) with a null return path"
    if _BOUNCE_SUBJECT.match(parsed.subject) or _BOUNCE_SUBJECT_END.search(parsed.subject):
        body = _BOUNCE_BODY.search(parsed.text[:_SCAN])
        for address in (parsed.sender.addr if parsed.sender else None, ctx.return_path):
            if body is not None and _bounce_sender(address):
                return (
                    f"bounce subject ({parsed.subject[:60]!r}) from the mail system {address}: "
                    f"{body.group(0)!r}"
                )
    return None


# Abuse desks' complaints about a message: the message itself attached, and words that only
# such reports use. A customer forwarding a mail they complain about writes neither.
_COMPLAINT = re.compile(
    r"complaint about (a |the )?(e-?mail |message )?(message )?(sent )?from\b"
    r"|\b(e-?mail |spam |abuse )?abuse report\b|\bspam (report|complaint)\b"
    r"|\breport of (spam|abuse)\b|\bfeedback[- ]loop\b|was reported as (spam|abuse)"
    r"|\b(complained[- ]about|reported) (e-?mail|message) (is )?(attached|below)",
    re.IGNORECASE,
)
_ATTACHED_MESSAGE = ("message/rfc822", "text/rfc822-headers", "message/global")


def complaint(parsed: Parsed, ctx: LoopContext) -> str | None:
    if not any(kind in parsed.content_types[1:] for kind in _ATTACHED_MESSAGE):
        return None
    for where, text in (("subject", parsed.subject), ("text", parsed.text[:_SCAN])):
        found = _COMPLAINT.search(text)
        if found is not None:
            return f"an abuse complaint ({where}: {found.group(0)!r}) with the message attached"
    return None


def auto_submitted(parsed: Parsed, ctx: LoopContext) -> str | None:
    value = _value(parsed, "Auto-Submitted")
    if value is not None and not _negative(value):
        return f"Auto-Submitted: {value}"
    return None


# name, required value (None: any value that is not negative)
_AUTO_REPLY_MARKERS: tuple[tuple[str, str | None], ...] = (
    ("X-Autoreply", None),
    ("X-Autorespond", None),
    ("X-AutoReply-From", None),
    ("X-Mail-Autoreply", None),
    ("X-Autogenerated", "reply"),
    ("X-FC-MachineGenerated", None),
    ("X-Apple-Action", "vacation"),
    ("X-MS-Exchange-Inbox-Rules-Loop", None),
    ("X-MS-Exchange-Generated-Message-Source", None),
    ("X-Loop", None),
    ("X-AMAZON-MAIL-RELAY-TYPE", "notification"),
)


def auto_reply(parsed: Parsed, ctx: LoopContext) -> str | None:
    for name, required in _AUTO_REPLY_MARKERS:
        value = _value(parsed, name)
        if value is None:
            continue
        if name.startswith("X-MS-Exchange") and _names_us(value, ctx):
            continue  # our own mailbox's forwarding rule brought it here: not an auto-reply
        if required is None and not _negative(value):
            return f"{name}: {value}"[:120]
        if required is not None and value.lower() == required:
            return f"{name}: {value}"
    return None


def suppress_header(parsed: Parsed, ctx: LoopContext) -> str | None:
    value = _value(parsed, "X-Auto-Response-Suppress")
    if value is None:
        return None
    tokens = {t.strip().lower() for t in value.split(",")}
    if tokens & {"all", "oof", "autoreply"}:
        return f"X-Auto-Response-Suppress: {value}"
    return None


def _names_us(value: str, ctx: LoopContext) -> bool:
    """Whether a header value names one of our addresses (also as a List-Id: a.b.c)."""
    text = value.lower()
    return any(a in text or a.replace("@", ".") in text for a in ctx.own_addresses)


# List servers that predate RFC 2369 name themselves in headers of their own: fml
# (X-MLServer, X-ML-Name, X-ML-Count), ezmlm (Mailing-List), and others (X-Mailing-List).
_LIST_SERVER_HEADERS = ("x-mlserver", "x-ml-name", "x-ml-count", "mailing-list", "x-mailing-list")


def mailing_list(parsed: Parsed, ctx: LoopContext) -> str | None:
    lists = [
        (name, value)
        for name, value in parsed.headers
        if name.startswith("list-") or name in _LIST_SERVER_HEADERS
    ]
    if lists and any(name == "list-id" and _names_us(value, ctx) for name, value in lists):
        return None  # our own support address is a group (e.g. Google Groups): customer mail
    if lists:
        return f"mailing-list header {lists[0][0].title()}"
    return None


def precedence(parsed: Parsed, ctx: LoopContext) -> str | None:
    for name in ("Precedence", "X-Precedence"):
        value = _value(parsed, name)
        if value is not None and value.lower() in ("bulk", "junk", "list", "auto_reply"):
            return f"{name}: {value}"
    return None


def spam(parsed: Parsed, ctx: LoopContext) -> str | None:
    flag = _value(parsed, "X-Spam-Flag")
    if flag is not None and flag.upper().startswith("YES"):
        return f"X-Spam-Flag: {flag}"
    status = _value(parsed, "X-Spam-Status")
    if status is not None and status.lower().startswith("yes"):
        return f"X-Spam-Status: {status[:40]}"
    verdict = _value(parsed, "X-Spam")  # rspamd's milter header
    if verdict is not None and verdict.lower().startswith("yes"):
        return f"X-Spam: {verdict}"
    action = _value(parsed, "X-Rspamd-Action")
    if action is not None and action.lower() in ("add header", "rewrite subject", "reject"):
        return f"X-Rspamd-Action: {action}"
    return None


_ROLE = re.compile(
    r"^(mailer-daemon|postmaster|listserv|majordomo|abuse|root|bounces?"
    r"|.+-request|owner-.+|.+-bounces?|bounces?[-+_.=].*"
    r"|(do[-_.]?not|dont|no)[-_.]?reply([-_.+].*)?|.*[-_.+](do[-_.]?not|no)[-_.]?reply)$",
    re.IGNORECASE,
)


def role_sender(parsed: Parsed, ctx: LoopContext) -> str | None:
    candidates = [ctx.customer]
    if not ctx.form:
        candidates += [parsed.sender.addr if parsed.sender else None, ctx.return_path]
    for address in candidates:
        local = _local(address)
        if "srs0=" in local or "+srs=" in local or "srs=" in local[:5]:
            continue  # a forwarder's rewritten (SRS) return path hides a real sender
        if address and _ROLE.match(local):
            return f"system or role sender {address}"
    return None


def no_sender(parsed: Parsed, ctx: LoopContext) -> str | None:
    if parsed.sender is None:
        return "no usable From address (RFC 5322 requires one; people's mail always has it)"
    return None


def no_return_path(parsed: Parsed, ctx: LoopContext) -> str | None:
    """No address an acknowledgment could go to: a null or missing return path, a web
    form's mail without Reply-To, or no address at all."""
    if ctx.form:
        return None if ctx.ack_to else "web-form mail without a Reply-To address"
    if ctx.return_path is None and not ctx.missing_return_path_ok:
        return "no return path"
    if ctx.return_path == "":
        return "null return path (<>)"
    if ctx.ack_to is None:
        return "no address to answer"
    return None


# ---------------------------------------------------------------------------- our ack quoted


@dataclass(frozen=True)
class Quote:
    """Our acknowledgment found quoted in a message, and what gives it away."""

    references: tuple[str, ...]  # our conversation references it names ("SHOP-1042")
    message_ids: tuple[str, ...]  # our Message-IDs it names
    evidence: str  # why this is our acknowledgment, for the recorded reason


_LOCAL_END = re.compile(r"[\w.+=$-]{1,100}$")


@lru_cache(maxsize=4)
def _our_id_end(domain: str) -> re.Pattern[str]:
    """Where one of our Message-IDs ends: ".ack@shop.example" (its local part is read
    backwards from there, so a long line costs one pass, never a backtracking search)."""
    kinds = "|".join(OUR_KINDS)
    return re.compile(r"\.(?:" + kinds + r")@" + re.escape(domain) + r"(?![\w-]|\.\w)", re.I)


def _our_ids(text: str, domain: str) -> tuple[str, ...]:
    found: list[str] = []
    if not domain:
        return ()
    for end in _our_id_end(domain).finditer(text):
        local = _LOCAL_END.search(text, max(0, end.start() - 100), end.start())
        if local is not None:
            candidate = local.group(0) + end.group(0)
            if is_our_message_id(candidate.lower(), domain):
                found.append(candidate)
    return tuple(dict.fromkeys(found))


@lru_cache(maxsize=16)
def _reference_pattern(prefixes: tuple[str, ...]) -> re.Pattern[str]:
    """Our references as written in our mail: SHOP-1042, bare or as the tag [SHOP-1042]."""
    names = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    return re.compile(r"(\[?)(?<![\w-])((?:" + names + r")-\d{1,12})(?!\d)(\]?)")


def quoted_ack(parsed: Parsed, ctx: LoopContext) -> Quote | None:
    """Whether the message quotes one of our acknowledgments, and which.

    A system that answers every mail it gets (a CRM, a ticket desk) answers our
    acknowledgment too, often from a new address and without any header that says so,
    but quoting what we wrote. What we wrote gives it away, and none of it can be
    stripped without stripping the quote: one of our Message-IDs (quoted headers, or
    In-Reply-To/References naming our mail); our reference tag "[SHOP-1042]", which every
    acknowledgment's text asks to keep; our reference in quoted ("> ") lines beside one of
    our addresses (a quote's "support@shop.example wrote:" line); or a subject that carries the tags of two of our acknowledgments (an answer to
    an answer to us). One tag in the subject alone is not enough: people copy it into a
    new mail, and whether they belong to that conversation is for threading to decide."""
    text = parsed.text[:_SCAN]
    ids = _our_ids(f"{parsed.subject}\n{text}", ctx.message_id_domain)
    answered = tuple(  # thread headers naming our mail: an answer to it, quoted or not
        i for i in (*parsed.in_reply_to, *parsed.references)
        if is_our_message_id(i.lower(), ctx.message_id_domain)
    )  # fmt: skip
    ids = tuple(dict.fromkeys((*answered, *ids)))
    in_text: list[str] = []
    tagged: list[str] = []
    in_subject: list[str] = []
    if ctx.reference_prefixes:
        pattern = _reference_pattern(ctx.reference_prefixes)
        for opening, reference, closing in pattern.findall(text):
            in_text.append(reference)
            if opening and closing:
                tagged.append(reference)
        in_subject = [r for o, r, c in pattern.findall(parsed.subject) if o and c]
    references = tuple(dict.fromkeys((*in_text, *in_subject)))
    # Our bare reference and our address only give a quote away inside quoted text ("> "
    # lines): a person's own words may name both ("About SHOP-1001 … not to support@…").
    quoted = "\n".join(line for line in text.splitlines() if line.lstrip().startswith(">"))
    in_quote = [r for _, r, _ in _reference_pattern(ctx.reference_prefixes).findall(quoted)] \
        if ctx.reference_prefixes and quoted else []  # fmt: skip
    lowered = text.lower()
    ours = next((a for a in sorted(ctx.own_addresses) if a in lowered), None)
    if ids:
        evidence = f"quotes our Message-ID <{ids[0]}>"
    elif tagged:
        evidence = f"quotes our reference tag [{tagged[0]}] in its text"
    elif in_quote and ours is not None:
        evidence = f"quotes our reference {in_quote[0]} and our address {ours}"
    elif len(set(in_subject)) >= 2:
        evidence = f"its subject carries the tags of two acknowledgments ({', '.join(in_subject[:2])})"
    else:
        return None
    return Quote(references, ids, evidence)


def quotes_our_ack(parsed: Parsed, ctx: LoopContext) -> str | None:
    """Mail that quotes our acknowledgment answers us; it is never a new conversation.
    Its own customer writing is a follow-up (`ctx.follow_up`, decided by threading);
    anyone else gets no acknowledgment, or a system answering ours would loop forever."""
    if ctx.follow_up:
        return None
    quote = quoted_ack(parsed, ctx)
    if quote is None:
        return None
    about = f" (about {quote.references[0]})" if quote.references else ""
    return f"{quote.evidence}{about}: an answer to our acknowledgment, not a new conversation"


@dataclass(frozen=True)
class AckHistory:
    """What the store knows about acknowledgments already queued, and about the sender."""

    last_to_sender: datetime | None  # latest ack to this address, within once_per_sender
    to_sender_today: int  # acks to this address since the start of the shop's day
    in_last_minute: int  # acks to anyone in the last 60 seconds
    in_last_hour: int = 0  # acks to anyone in the last 60 minutes
    # The normalised subjects of the conversations acknowledged to this address within
    # once_per_sender, and the rule that stopped mail from it as machine mail in that time.
    subjects_to_sender: tuple[str, ...] = ()
    machine_rule: str | None = None


AUTOMATED_WITHIN = timedelta(minutes=2)  # a new mail this soon after our ack: a machine's


def looks_automated(parsed: Parsed, history: AckHistory, received_at: datetime) -> str | None:
    """Why this sender looks like a machine rather than a person, or None.

    A sender looks automated when (1) mail from it was stopped by a machine rule within
    once_per_sender (it bounced, auto-replied, quoted our acknowledgment ...); (2) the
    message has no Date or no Message-ID header, which every mail program writes and
    scripts often leave out; or (3) it arrived less than AUTOMATED_WITHIN after our
    acknowledgment to the same address: a person does not write a new, unrelated mail
    that fast, an auto-responder does. People's second mail has none of these."""
    if history.machine_rule is not None:
        return f"mail from it was machine mail ({history.machine_rule}) lately"
    if not parsed.has_header("Date"):
        return "the message has no Date header, as scripts send it"
    if parsed.message_id is None:
        return "the message has no Message-ID, as scripts send it"
    last = history.last_to_sender
    if last is not None and last < received_at < last + AUTOMATED_WITHIN:
        seconds = int((received_at - last).total_seconds())
        return f"it came {seconds} s after our acknowledgment, faster than a person writes"
    return None


# ---------------------------------------------------------------------------- decision rules


def bad_return_path(parsed: Parsed, ctx: LoopContext) -> str | None:
    if ctx.unwritable_return_path and ctx.ack_to is not None and ctx.ack_to == ctx.return_path:
        return f"the envelope sender {ctx.return_path!r} is no address one can write to"
    return None


def follow_up(parsed: Parsed, ctx: LoopContext) -> str | None:
    if ctx.follow_up:
        return "continues a conversation that was already acknowledged"
    return None


def too_late(parsed: Parsed, ctx: LoopContext) -> str | None:
    if ctx.now is not None and ctx.due_at is not None and ctx.due_at <= ctx.now:
        return f"the reply was already due at {ctx.due_at.isoformat()}; a promise can't be made"
    return None


def disabled(parsed: Parsed, ctx: LoopContext) -> str | None:
    if not ctx.enabled:
        return "acknowledgments are switched off ([acknowledge] enabled = false)"
    return None


# ---------------------------------------------------------------------------- rate limits


@dataclass(frozen=True)
class Limits:
    """The rate limits of `[acknowledge]`."""

    once_per_sender: timedelta
    max_per_sender_per_day: int
    max_per_minute: int
    max_per_hour: int | None = None


def _rate_now(ctx: LoopContext) -> datetime | None:
    return ctx.now or ctx.received_at


def once_per_sender(parsed: Parsed, ctx: LoopContext) -> str | None:
    """A sender acknowledged within `once_per_sender` gets another acknowledgment for a
    new conversation (a subject not acknowledged to it in that time) unless it looks
    automated."""
    history, limits, now = ctx.history, ctx.limits, _rate_now(ctx)
    if history is None or limits is None or now is None or ctx.received_at is None:
        return None
    last = history.last_to_sender
    if last is None or now - last >= limits.once_per_sender:
        return None
    why = (
        "the subject repeats"
        if ctx.subject in history.subjects_to_sender
        else looks_automated(parsed, history, ctx.received_at)
    )
    if why is None:
        return None
    return f"already acknowledged this sender at {last:%Y-%m-%d %H:%M} UTC, and {why}"


def daily_limit(parsed: Parsed, ctx: LoopContext) -> str | None:
    history, limits = ctx.history, ctx.limits
    if history is None or limits is None or history.to_sender_today < limits.max_per_sender_per_day:
        return None
    return f"{history.to_sender_today} acknowledgments to this sender today"


def circuit_breaker(parsed: Parsed, ctx: LoopContext) -> str | None:
    history, limits = ctx.history, ctx.limits
    if history is None or limits is None:
        return None
    if history.in_last_minute >= limits.max_per_minute:
        return f"{history.in_last_minute} acknowledgments in the last minute"
    if limits.max_per_hour is not None and history.in_last_hour >= limits.max_per_hour:
        return f"{history.in_last_hour} acknowledgments in the last hour"
    return None


# ---------------------------------------------------------------------------- the chain

# Every reason not to acknowledge, in the order they are asked; the first that fires is
# recorded. `machine`: what it stops is machine mail, which opens no conversation.
CHAIN: tuple[Rule, ...] = (
    Rule("own-mail", own_mail, machine=True),
    Rule("bounce", bounce, machine=True),
    Rule("complaint", complaint, machine=True),
    Rule("auto-submitted", auto_submitted, applies_to_forms=False, machine=True),
    Rule("auto-reply", auto_reply, applies_to_forms=False, machine=True),
    Rule("suppress-header", suppress_header, applies_to_forms=False, machine=True),
    Rule("mailing-list", mailing_list, applies_to_forms=False, machine=True),
    Rule("precedence", precedence, applies_to_forms=False, machine=True),
    Rule("spam", spam, machine=True),
    Rule("role-sender", role_sender, machine=True),
    Rule("no-sender", no_sender, applies_to_forms=False, machine=True),
    Rule("no-return-path", no_return_path, machine=True),
    Rule("quotes-our-ack", quotes_our_ack, machine=True),
    Rule("bad-return-path", bad_return_path),
    Rule("follow-up", follow_up),
    Rule("too-late", too_late),
    Rule("disabled", disabled),
    Rule("once-per-sender", once_per_sender),
    Rule("daily-limit", daily_limit),
    Rule("circuit-breaker", circuit_breaker),
)
RULE_NAMES = tuple(rule.name for rule in CHAIN)
MACHINE_RULES = frozenset(rule.name for rule in CHAIN if rule.machine)


@dataclass(frozen=True)
class Skip:
    """Why no acknowledgment: the rule's name and a human reason."""

    rule: str
    reason: str


def first_match(parsed: Parsed, ctx: LoopContext) -> Skip | None:
    """The first rule of the chain, in declared order, that says "do not acknowledge"."""
    for rule in CHAIN:
        if ctx.form and not rule.applies_to_forms:
            continue
        reason = rule.check(parsed, ctx)
        if reason is not None:
            return Skip(rule.name, reason)
    return None
