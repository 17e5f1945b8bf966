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
    resolve_on_archive: bool = False  # a conversation whose customer mail all left is resolved


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
    command_delimiter: str = "+"  # support+resolved@: local part, delimiter, command

    @property
    def prefix(self) -> str:
        return self.reference_prefix or re.sub(r"[^A-Z0-9]", "", self.name.upper()) or "REF"

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.address, *self.aliases)

    def suffix_of(self, address: str) -> str | None:
        """What follows the delimiter when `address` is one of this inbox's addresses or
        aliases with a suffix (`support+resolved@shop.example` gives "resolved"), "" for
        the address itself, None for any other address. Case-insensitive; the suffix
        comes back lower-cased. The longest own local part that fits wins (the shortest
        suffix)."""
        local, at, domain = address.strip().lower().rpartition("@")
        if not at:
            return None
        found: str | None = None
        for own in self.addresses:
            own_local, _, own_domain = own.lower().rpartition("@")
            if domain != own_domain:
                continue
            if local == own_local:
                return ""
            if local.startswith(own_local + self.command_delimiter):
                suffix = local[len(own_local) + len(self.command_delimiter) :]
                if found is None or len(suffix) < len(found):
                    found = suffix
        return found


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
class RemedyConfig:
    """`[[breach.remedy]]`: what the shop offers when a reply is at least `late_by` late."""

    late_by: timedelta
    text: str
    texts: tuple[tuple[str, str], ...] = ()  # (language, text) translations
    codes_file: str | None = None

    def text_for(self, language: str) -> str:
        """The text in `language` when one was written for it, else the default one."""
        return next((text for lang, text in self.texts if lang == language), self.text)


@dataclass(frozen=True)
class TrackingConfig:
    """Reply tracking: when quiet conversations close; what the customer hears meanwhile
    (breach notices and their remedies, reminders while we wait, the closing notice)."""

    close_after: timedelta = timedelta(days=7)
    notify_customer_on_breach: bool = False
    question_means_pending: bool = True
    remind_after: tuple[timedelta, ...] = ()  # business time after the pause began
    close_notice: bool = False
    remedies: tuple[RemedyConfig, ...] = ()  # by late_by, smallest first

    def remedy_for(self, late: timedelta) -> RemedyConfig | None:
        """The remedy with the largest `late_by` that `late` reaches (None: none does)."""
        return next((r for r in reversed(self.remedies) if late >= r.late_by), None)


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

    def is_ours(self, address: str) -> bool:
        """Whether an address is the shop's own: an inbox address or alias (also with a
        command suffix, support+resolved@) or an agent's."""
        return address.lower() in self.agent_addresses or self.inbox_for(address) is not None

    def inbox_for(self, address: str) -> InboxConfig | None:
        """The inbox this address reaches: one of its addresses or aliases, also with a
        suffix after the inbox's delimiter (`support+resolved@`); None for any other."""
        found = self.suffix_for(address)
        return found[0] if found is not None else None

    def suffix_for(self, address: str) -> tuple[InboxConfig, str] | None:
        """The inbox an address reaches and the suffix after its delimiter ("" for the
        address itself): the inbox whose own address fits it most closely, so that an
        inbox `support+vip@` is not taken for `support@` with the suffix "vip"."""
        best: tuple[InboxConfig, str] | None = None
        for inbox in self.inboxes:
            suffix = inbox.suffix_of(address)
            if suffix is not None and (best is None or len(suffix) < len(best[1])):
                best = (inbox, suffix)
        return best
