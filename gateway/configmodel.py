"""The validated configuration as the gateway uses it: frozen values, passed down.

Owns: the `Config` value and its parts (inboxes, mailboxes, priorities, sending, ...),
and the small questions asked of them for every message (is this address ours, which
inbox, which priority). Built only by `config` from a checked file; never global, never
changed after it is built. Stdlib and the core's value types only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path

from .calendar import BusinessCalendar, Range, Season
from .closed import ClosedDays
from .configkeys import PRIORITIES
from .oauth import account_key

DEFAULT_TOKEN_KEY_ENV = "SLA_GATEWAY_TOKEN_KEY"


@dataclass(frozen=True)
class Secret:
    """Where a password comes from: an environment variable or a file. Never the value."""

    env: str | None = None
    file: str | None = None

    def describe(self) -> str:
        if self.env:
            return f"${self.env}"
        return self.file or "(none)"


@dataclass(frozen=True)
class OAuthConfig:
    """Signing in to a mailbox with OAuth 2.0: the app registration and its endpoints.
    The tokens themselves are never here: they live encrypted in the database."""

    provider: str  # "google" | "microsoft" | "custom"
    client_id: str
    client_secret: Secret  # Secret() for a public client (Microsoft needs none)
    token_url: str
    device_authorization_url: str
    scope: str
    tenant: str = ""  # Microsoft only
    authorization_url: str = ""  # the browser sign-in (`login --browser`); "" for none

    def account(self, username: str) -> str:
        """The key of this mailbox's stored token (shared by sections naming the same)."""
        return account_key(self.token_url, self.client_id, username)


@dataclass(frozen=True)
class TokenStoreConfig:
    """`[oauth]`: where the key that encrypts stored tokens comes from."""

    key: Secret = Secret(env=DEFAULT_TOKEN_KEY_ENV)
    alert_maildir: str | None = None  # None: the [send] path


@dataclass(frozen=True)
class ImapConfig:
    """How to read one inbox's mailbox over IMAP."""

    host: str
    port: int
    security: str  # "tls" | "starttls" | "none"
    username: str
    password: Secret
    folders: tuple[str, ...] = ("INBOX",)
    idle: bool = True
    poll_interval: timedelta = timedelta(seconds=60)
    mark_seen: bool = False
    append_acks_to: str | None = None
    timeout: timedelta = timedelta(seconds=30)
    sent_folder: str | None = None  # None: find it by SPECIAL-USE \\Sent; "": don't watch
    auth: str = "password"  # "password" | "oauth2"
    oauth: OAuthConfig | None = None  # set when auth = "oauth2"


@dataclass(frozen=True)
class InboxConfig:
    """One published support address and how we speak from it."""

    name: str
    address: str
    aliases: tuple[str, ...] = ()
    from_name: str = ""
    language: str = "en"
    ack_to: str = "return-path"  # or "from"
    reference_prefix: str = ""
    imap: ImapConfig | None = None
    agents: tuple[str, ...] = ()  # team members whose mail (e.g. BCC copies) counts as replies

    @property
    def prefix(self) -> str:
        return self.reference_prefix or re.sub(r"[^A-Z0-9]", "", self.name.upper()) or "REF"

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.address, *self.aliases)


@dataclass(frozen=True)
class PriorityConfig:
    """One priority level: its response targets and what puts a message in it."""

    name: str
    first_reply: timedelta
    next_reply: timedelta
    keywords: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    resolve: timedelta | None = None  # the resolution target; None: no promise
    clock: str = "business"  # or "24/7": which time its windows count

    @property
    def rank(self) -> int:
        """Higher is more urgent: low=0 ... urgent=3."""
        return len(PRIORITIES) - 1 - PRIORITIES.index(self.name)


@dataclass(frozen=True)
class VipConfig:
    """Senders whose mail is raised to at least `min_priority`."""

    senders: tuple[str, ...] = ()
    min_priority: str = "high"


@dataclass(frozen=True)
class ListenConfig:
    """The SMTP listener the shop's mail server forwards or BCCs support mail to."""

    host: str = "127.0.0.1"
    port: int = 2525
    max_message_size: int = 25_000_000  # "25MB": the README states it in bytes, as EHLO SIZE does
    tls_cert: str | None = None
    tls_key: str | None = None
    require_auth: bool = False
    username: str | None = None
    password: Secret = Secret()


@dataclass(frozen=True)
class SendConfig:
    """How the outbox leaves: an SMTP server, or files in a local maildir."""

    transport: str = "maildir"  # "smtp" | "maildir"
    path: str = "var/outbox"
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password: Secret = Secret()
    timeout: timedelta = timedelta(seconds=30)
    give_up_after: timedelta = timedelta(days=2)
    alert_after: timedelta = timedelta(minutes=15)  # the owner hears once when mail waits longer
    null_sender: bool = False
    auth: str = "password"  # "password" | "oauth2"
    oauth: OAuthConfig | None = None  # set when auth = "oauth2"

    @property
    def uses_oauth(self) -> bool:
        """Whether the outbox signs in to an SMTP server with OAuth 2.0."""
        return self.transport == "smtp" and self.oauth is not None


@dataclass(frozen=True)
class AckConfig:
    """When acknowledgments are sent, and the limits that keep them from ever spamming."""

    enabled: bool = True
    once_per_sender: timedelta = timedelta(hours=24)
    max_per_sender_per_day: int = 5
    max_per_minute: int = 60
    max_per_hour: int = 200
    message_id_domain: str = ""


@dataclass(frozen=True)
class FormConfig:
    """Web-form senders: their mail is a customer's message; the customer is in Reply-To."""

    senders: tuple[str, ...]
    name: str = ""


@dataclass(frozen=True)
class AlertsConfig:
    """Who hears about trouble: SLA warnings and breaches, the circuit breaker."""

    to: tuple[str, ...] = ()
    warn_at: float | None = 0.75  # fraction of the window; None: no warnings
    only_in_business_hours: bool = True


@dataclass(frozen=True)
class DigestConfig:
    """The owner's daily digest."""

    to: tuple[str, ...] = ()  # empty: the digest is not sent by the service
    at: int = 8 * 60  # minutes after local midnight
    skip_empty: bool = False


@dataclass(frozen=True)
class TrackingConfig:
    """Reply tracking: when quiet conversations close; the breach notice to customers."""

    close_after: timedelta = timedelta(days=7)
    notify_customer_on_breach: bool = False
    question_means_pending: bool = True


@dataclass(frozen=True)
class HoursConfig:
    """Opening hours as written, kept for summaries and the published policy."""

    timezone: str
    week: tuple[tuple[Range, ...], ...]
    holidays: str | None
    closed: tuple[tuple[date, date], ...]
    seasons: tuple[Season, ...]
    closed_days: ClosedDays = field(default_factory=ClosedDays, compare=False, repr=False)


@dataclass(frozen=True)
class Config:
    """Everything the gateway was told, validated. Passed down; never global."""

    path: Path
    database: str
    inboxes: tuple[InboxConfig, ...]
    hours: HoursConfig
    priorities: tuple[PriorityConfig, ...]  # highest first
    vip: VipConfig
    calendar: BusinessCalendar = field(compare=False, repr=False)
    listen: ListenConfig | None = None
    send: SendConfig = SendConfig()
    acknowledge: AckConfig = AckConfig()
    forms: tuple[FormConfig, ...] = ()
    alerts: AlertsConfig = AlertsConfig()
    templates: str | None = None
    tracking: TrackingConfig = TrackingConfig()
    digest: DigestConfig = DigestConfig()
    retention_days: int = 365  # stored message bodies older than this are purged
    oauth: TokenStoreConfig = TokenStoreConfig()

    @property
    def oauth_inboxes(self) -> tuple[InboxConfig, ...]:
        """The inboxes whose mailbox signs in with OAuth 2.0."""
        return tuple(i for i in self.inboxes if i.imap is not None and i.imap.oauth is not None)

    @cached_property  # asked for every message; the config never changes
    def agent_addresses(self) -> frozenset[str]:
        return frozenset(a.lower() for inbox in self.inboxes for a in inbox.agents)

    @cached_property  # asked for every message; the config never changes
    def own_addresses(self) -> frozenset[str]:
        return frozenset(a.lower() for inbox in self.inboxes for a in inbox.addresses)

    @cached_property  # asked for every message; the config never changes
    def reference_prefixes(self) -> tuple[str, ...]:
        """Every inbox's reference prefix ("SHOP" in SHOP-1042), once each."""
        return tuple(dict.fromkeys(inbox.prefix for inbox in self.inboxes))

    @cached_property  # asked for every message; the config never changes
    def message_id_domain(self) -> str:
        return (
            self.acknowledge.message_id_domain or self.inboxes[0].address.rpartition("@")[2].lower()
        )

    @cached_property  # the clock of "24/7" priorities: every hour, closed days included
    def round_the_clock(self) -> BusinessCalendar:
        always = [[Range(0, 24 * 60)]] * 7
        return BusinessCalendar(self.calendar.tz, always, seasons=self.calendar.seasons)

    def clock_for(self, priority: str) -> BusinessCalendar:
        """The calendar a priority's windows count on: the opening hours, or every hour
        for a `clock = "24/7"` priority (a priority no longer configured: the hours)."""
        found = next((p for p in self.priorities if p.name == priority), None)
        return self.round_the_clock if found is not None and found.clock == "24/7" else self.calendar

    def is_form_sender(self, address: str) -> bool:
        wanted = address.lower()
        return any(fnmatchcase(wanted, s) for form in self.forms for s in form.senders)

    def priority(self, name: str) -> PriorityConfig:
        for p in self.priorities:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def default_priority(self) -> PriorityConfig:
        return self.priority("normal")

    def inbox_named(self, name: str) -> InboxConfig:
        """The inbox of that name, else the first (a name from an older configuration)."""
        return next((i for i in self.inboxes if i.name == name), self.inboxes[0])

    def inbox_among(self, addresses: Iterable[str]) -> InboxConfig:
        """The inbox of the first address that is one of ours, else the first inbox."""
        for address in addresses:
            found = self.inbox_for(address)
            if found is not None:
                return found
        return self.inboxes[0]

    def inbox_for(self, address: str) -> InboxConfig | None:
        wanted = address.lower()
        for inbox in self.inboxes:
            if wanted in (a.lower() for a in inbox.addresses):
                return inbox
        return None
