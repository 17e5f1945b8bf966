"""Frozen values passed between the pipeline's stages.

Owns: the shapes of data that flow intake -> parse -> classify -> policy -> store. Nothing
here does work beyond trivial derived properties; nothing here imports beyond the stdlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


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
    folder_uid: tuple[str, int, int] | None = None  # IMAP: (folder, UIDVALIDITY, UID) read from


@dataclass(frozen=True)
class Address:
    """One mailbox: the bare address (as written) and its display name."""

    addr: str
    name: str = ""

    @property
    def key(self) -> str:
        """The address for comparisons: lower-cased."""
        return self.addr.lower()

    @property
    def domain(self) -> str:
        return self.addr.rpartition("@")[2].lower()

    def __str__(self) -> str:
        return f"{self.name} <{self.addr}>" if self.name else self.addr


@dataclass(frozen=True)
class Parsed:
    """What we understood of one message. Built by `parse.parse`, never by hand in code."""

    message_id: str | None  # without angle brackets
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    sender: Address | None  # From
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    return_path: str | None  # None: no header; "": the null path <>
    date: datetime | None  # aware; None when missing or unparsable
    headers: tuple[tuple[str, str], ...]  # (lower-case name, decoded value), in order
    content_types: tuple[str, ...]  # every MIME part's type, outermost first
    text: str  # the readable body (text part, or text made from HTML)
    new_text: str  # the sender's own new words: no quoted mail, no signature
    html_only: bool
    size: int
    defects: tuple[str, ...] = ()
    delivered_to: tuple[Address, ...] = ()  # Delivered-To and X-Original-To (raw headers)
    bcc: tuple[Address, ...] = ()  # kept only in the writer's own copy (a Sent folder's)

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    def header_all(self, name: str) -> tuple[str, ...]:
        wanted = name.lower()
        return tuple(value for key, value in self.headers if key == wanted)

    def has_header(self, name: str) -> bool:
        return self.header(name) is not None


@dataclass(frozen=True)
class Match:
    """One reason a message got (or would get) a priority."""

    priority: str
    where: str  # "subject", "body" or "sender"
    what: str  # the keyword, pattern or VIP entry that matched

    def __str__(self) -> str:
        if self.where == "sender":
            return f"sender: VIP {self.what!r} → at least {self.priority}"
        return f"{self.where}: {self.what!r} → {self.priority}"


@dataclass(frozen=True)
class Classification:
    """The priority a message gets and every match that explains it."""

    priority: str
    matches: tuple[Match, ...] = field(default=())

    @property
    def reason(self) -> str:
        if not self.matches:
            return f"nothing matched → {self.priority} (default)"
        return "; ".join(str(m) for m in self.matches)


@dataclass(frozen=True)
class Deadline:
    """When a reply is due: the published window, any season stretch, and the instant."""

    received_at: datetime
    priority: str
    window: timedelta  # the published target, business time
    stretch: float  # 1.0 outside seasons
    season: str | None
    due_at: datetime  # in the calendar's time zone

    @property
    def effective_window(self) -> timedelta:
        return self.window * self.stretch
