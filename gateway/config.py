"""TOML configuration -> one validated, typed `Config`.

Owns: finding the file (`--config`, `$SLA_GATEWAY_CONFIG`, `./config/gateway.toml`,
`/etc/sla-gateway/gateway.toml`), reading it, checking every key, and building the values
the core needs (the business calendar, priority rules). Every problem found is collected
and reported together, one line each, naming the file, the key, what is wrong and what
would be right. It never raises anything but `ConfigError` for a bad file, never reads
the file twice, and keeps no global state: the `Config` it returns is passed down.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fnmatch import fnmatchcase
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from .calendar import BusinessCalendar, Range, Season
from .durations import parse_duration
from .errors import ConfigError, Problem
from .oauth import PROVIDERS as OAUTH_PROVIDERS
from .oauth import account_key
from .oauth import authorization_endpoint as oauth_authorization_endpoint
from .oauth import preset as oauth_preset

PRIORITIES = ("urgent", "high", "normal", "low")  # highest first
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LANGUAGES = ("en", "de", "fr", "es", "nl")  # with built-in catalogs; others need the owner's


def known_language(code: str) -> bool:
    """A language Babel can format dates and numbers in (`check` also wants a catalog)."""
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(code)
    except (UnknownLocaleError, ValueError, TypeError):
        return False
    return True
DEFAULT_DATABASE = "sqlite:///var/sla-gateway.db"
DEFAULT_TOKEN_KEY_ENV = "SLA_GATEWAY_TOKEN_KEY"
AUTH_METHODS = ("password", "oauth2")
LOOPBACK = ("127.0.0.1", "::1", "localhost")  # hosts that are this machine
OAUTH_KEYS = ("provider", "client_id", "client_secret_env", "client_secret_file", "tenant",
              "token_url", "device_authorization_url", "authorization_url", "scope")  # fmt: skip
SEARCH_PATH = (Path("config/gateway.toml"), Path("/etc/sla-gateway/gateway.toml"))
ENV_VAR = "SLA_GATEWAY_CONFIG"

_ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


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


@dataclass(frozen=True)
class HoursConfig:
    """Opening hours as written, kept for summaries and the published policy."""

    timezone: str
    week: tuple[tuple[Range, ...], ...]
    holidays: str | None
    closed: tuple[tuple[date, date], ...]
    seasons: tuple[Season, ...]


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


# ---------------------------------------------------------------------------- finding


def locate(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """Where the configuration is, by the documented lookup order."""
    if explicit:
        path = Path(explicit)
        if path.is_dir():
            raise ConfigError([Problem(str(path), "", "is a directory, not a configuration file",
                                       f"pass the file itself, e.g. --config {path / 'gateway.toml'}")])  # fmt: skip
        if not path.is_file():
            raise ConfigError([Problem(str(path), "", "no such file", "check the --config path")])
        return path
    if environ.get(ENV_VAR):
        path = Path(environ[ENV_VAR])
        if path.is_dir():
            raise ConfigError([Problem(str(path), "", f"is a directory (from ${ENV_VAR}), not a configuration file",
                                       f"set ${ENV_VAR} to the file itself, e.g. {path / 'gateway.toml'}")])  # fmt: skip
        if not path.is_file():
            raise ConfigError(
                [Problem(str(path), "", f"no such file (from ${ENV_VAR})", f"fix ${ENV_VAR}")]
            )
        return path
    for candidate in SEARCH_PATH:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(p) for p in SEARCH_PATH)
    raise ConfigError(
        [
            Problem(
                "(no configuration file)",
                "",
                f"none given and none found in {looked}",
                "pass --config FILE, set $SLA_GATEWAY_CONFIG, or copy "
                "config/gateway.example.toml to config/gateway.toml",
            )
        ]
    )


def load(path: Path) -> Config:
    """Read and validate one file; raise ConfigError listing every problem."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem(str(path), "", "is not UTF-8 text")]) from None
    return parse(text, str(path))


def parse(text: str, filename: str = "<config>") -> Config:
    """Validate TOML text; `filename` is only used in messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            [Problem(filename, "", f"is not valid TOML: {exc}", "fix the syntax at that line")]
        ) from None
    return _Reader(filename).read(data)


# ---------------------------------------------------------------------------- checking


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"?' if close else ""


def parse_minutes(text: str, *, allow_24: bool) -> int:
    """ "09:30" -> 570; "24:00" -> 1440 when allowed."""
    m = _HHMM.match(text.strip())
    if not m:
        raise ValueError(f'"{text.strip()}" is not a time of day like "09:00"')
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise ValueError(f'"{text.strip()}" is not a valid time of day')
    return hours * 60 + minutes


def parse_day_hours(text: str) -> tuple[Range, ...]:
    """ "09:00-12:00, 13:00-17:00" -> ranges; "closed" -> (); raise ValueError on bad text."""
    cleaned = text.strip().lower()
    if cleaned in ("closed", ""):
        return ()
    ranges: list[Range] = []
    for part in cleaned.split(","):
        if "-" not in part:
            raise ValueError(f'"{part.strip()}" is not a range like "09:00-17:00"')
        left, right = part.split("-", 1)
        start = parse_minutes(left, allow_24=False)
        end = parse_minutes(right, allow_24=True)
        if end == start:
            raise ValueError(f'"{part.strip()}" is empty (starts and ends at the same time)')
        if end < start:  # runs past midnight into the next day
            end += 24 * 60
        ranges.append(Range(start, end))
    ranges.sort()
    for a, b in pairwise(ranges):
        if b.start < a.end:
            raise ValueError(f"ranges {a} and {b} overlap")
    return tuple(ranges)


def parse_date_span(value: object) -> tuple[date, date]:
    """ "2026-12-24" or "2026-12-24..2026-12-31" (or a TOML date) -> inclusive span."""
    if isinstance(value, datetime):
        raise ValueError(
            f"{value.isoformat()} is a date and time; write just the date, e.g. {value.date()}"
        )
    if isinstance(value, date):
        return value, value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date")
    left, sep, right = value.partition("..")
    try:
        first = date.fromisoformat(left.strip())
        last = date.fromisoformat(right.strip()) if sep else first
    except ValueError:
        raise ValueError(
            f'"{value}" is not a date like "2026-12-24" or a span like "2026-12-24..2026-12-31"'
        ) from None
    if last < first:
        raise ValueError(f'"{value}" ends before it starts')
    if (last - first).days > 366:
        raise ValueError(f'"{value}" is longer than a year')
    if not 1970 <= first.year <= 2200 or not 1970 <= last.year <= 2200:
        raise ValueError(f'"{value}" is outside the years 1970-2200')
    return first, last


class _Reader:
    """Walks the TOML tree once, collecting problems instead of stopping at the first."""

    def __init__(self, filename: str) -> None:
        self.file = filename
        self.problems: list[Problem] = []

    def problem(self, key: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.file, key, message, hint))

    def table(self, data: Mapping[str, Any], key: str, prefix: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.problem(
                _join(prefix, key), "must be a table", f"write it as [{_join(prefix, key)}]"
            )
            return {}
        return value

    def unknown(self, data: Mapping[str, Any], allowed: Sequence[str], prefix: str) -> None:
        for key in data:
            if key not in allowed:
                hint = _suggest(key, allowed) or "known keys: " + ", ".join(allowed)
                self.problem(_join(prefix, key), "unknown key", hint)

    def string(
        self, data: Mapping[str, Any], key: str, prefix: str, default: str | None = None
    ) -> str | None:
        value = data.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(
                _join(prefix, key), f"must be a string, got {_kind(value)}", f'write {key} = "..."'
            )
            return default
        return value

    def string_list(self, data: Mapping[str, Any], key: str, prefix: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if isinstance(value, str):
            self.problem(
                _join(prefix, key),
                "must be a list of strings, got a single string",
                f'write {key} = ["{value}"]',
            )
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(
                _join(prefix, key),
                f"must be a list of strings, got {_kind(value)}",
                f'write {key} = ["...", "..."]',
            )
            return ()
        return tuple(value)

    def duration(self, data: Mapping[str, Any], key: str, prefix: str) -> timedelta | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(
                _join(prefix, key),
                f"must be a duration string, got {_kind(value)}",
                f'write {key} = "{value}m" or "{value}h" (business time)',
            )
            return None
        try:
            result = parse_duration(value)
        except ValueError as exc:
            self.problem(
                _join(prefix, key), str(exc), 'use h and m units, e.g. "30m", "4h" or "1h30m"'
            )
            return None
        if result <= timedelta(0):
            self.problem(_join(prefix, key), "must be longer than zero", 'e.g. "30m"')
            return None
        return result

    def address(self, value: str, key: str) -> bool:
        if not _ADDRESS.match(value):
            self.problem(
                key, f'"{value}" is not an e-mail address', 'write e.g. "support@shop.example"'
            )
            return False
        return True

    # ---------------------------------------------------------------- sections

    def read(self, data: dict[str, Any]) -> Config:
        self.unknown(
            data,
            (
                "database",
                "templates",
                "inbox",
                "business_hours",
                "priority",
                "vip",
                "listen",
                "send",
                "acknowledge",
                "form",
                "alerts",
                "tracking",
                "breach",
                "digest",
                "retention_days",
                "oauth",
            ),
            "",
        )
        database = self.string(data, "database", "", DEFAULT_DATABASE) or DEFAULT_DATABASE
        if "://" not in database:
            self.problem(
                "database",
                f'"{database}" is not a database URL',
                'write e.g. "sqlite:///var/sla-gateway.db" or "postgresql+psycopg://user@host/db"',
            )
        inboxes = self.inboxes(data.get("inbox"))
        hours, calendar = self.hours(self.table(data, "business_hours", ""))
        priorities = self.priorities(self.table(data, "priority", ""))
        declared = [name for name in PRIORITIES if name in data.get("priority", {})]
        vip = self.vip(self.table(data, "vip", ""), declared)
        listen = self.listen(data["listen"]) if "listen" in data else None
        send = self.send(self.table(data, "send", ""))
        acknowledge = self.acknowledge(self.table(data, "acknowledge", ""))
        forms = self.forms(data.get("form", []))
        alerts = self.alerts(self.table(data, "alerts", ""))
        tracking = self.tracking(self.table(data, "tracking", ""), self.table(data, "breach", ""))
        digest = self.digest(self.table(data, "digest", ""))
        retention_days = self.integer(data, "retention_days", "", 365, low=1, high=36500)
        templates = self.string(data, "templates", "")
        if templates and not Path(templates).is_dir():
            self.problem("templates", f'directory "{templates}" does not exist'
                         + (f" (relative to {Path.cwd()})" if not Path(templates).is_absolute() else ""),
                         "create it (`sla-gateway init` writes one with copies of the built-in templates) "
                         "or remove the key to use the built-in ones")  # fmt: skip
        oauth = self.token_store(self.table(data, "oauth", ""))
        if self.problems:
            raise ConfigError(self.problems)
        assert hours is not None and calendar is not None
        return Config(
            path=Path(self.file),
            database=database,
            inboxes=inboxes,
            hours=hours,
            priorities=priorities,
            vip=vip,
            calendar=calendar,
            listen=listen,
            send=send,
            acknowledge=acknowledge,
            forms=forms,
            alerts=alerts,
            templates=templates,
            tracking=tracking,
            digest=digest,
            retention_days=retention_days,
            oauth=oauth,
        )

    def inboxes(self, value: object) -> tuple[InboxConfig, ...]:
        if value is None:
            self.problem(
                "inbox",
                "no inbox is configured",
                'add an [[inbox]] table with name and address = "support@your-shop.example"',
            )
            return ()
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            self.problem("inbox", "must be an array of tables", "write each one as [[inbox]]")
            return ()
        result: list[InboxConfig] = []
        names: set[str] = set()
        seen_addresses: set[str] = set()
        for index, item in enumerate(value):
            prefix = f"inbox[{index}]"
            if not isinstance(item, dict):
                self.problem(prefix, "must be a table", "write it as [[inbox]]")
                continue
            self.unknown(
                item,
                (
                    "name",
                    "address",
                    "aliases",
                    "from_name",
                    "language",
                    "ack_to",
                    "reference_prefix",
                    "imap",
                    "agents",
                ),
                prefix,
            )
            ack_to = self.choice(item, "ack_to", prefix, ("return-path", "from"), "return-path")
            reference_prefix = self.string(item, "reference_prefix", prefix, "") or ""
            if reference_prefix and not re.fullmatch(r"[A-Z][A-Z0-9]{0,15}", reference_prefix):
                self.problem(
                    _join(prefix, "reference_prefix"),
                    f'"{reference_prefix}" is not a reference prefix',
                    'use 1-16 capital letters or digits starting with a letter, e.g. "SHOP"',
                )
            imap = self.imap(item["imap"], _join(prefix, "imap")) if "imap" in item else None
            name = self.string(item, "name", prefix)
            address = self.string(item, "address", prefix)
            if not name:
                self.problem(
                    _join(prefix, "name"),
                    "is missing",
                    'give the inbox a short name, e.g. name = "shop"',
                )
            elif name in names:
                self.problem(
                    _join(prefix, "name"),
                    f'"{name}" is used by two inboxes',
                    "give each a unique name",
                )
            if not address:
                self.problem(
                    _join(prefix, "address"),
                    "is missing",
                    'write address = "support@your-shop.example"',
                )
            aliases = self.string_list(item, "aliases", prefix)
            for addr in (address, *aliases):
                if addr and self.address(
                    addr, _join(prefix, "address" if addr == address else "aliases")
                ):
                    if addr.lower() in seen_addresses:
                        self.problem(
                            prefix,
                            f'"{addr}" is configured twice',
                            "each address belongs to one inbox",
                        )
                    seen_addresses.add(addr.lower())
            language = self.string(item, "language", prefix, "en") or "en"
            if language not in LANGUAGES and not known_language(language):
                self.problem(
                    _join(prefix, "language"),
                    f'"{language}" is not a supported language',
                    _suggest(language, LANGUAGES) or "use one of " + ", ".join(LANGUAGES),
                )
            from_name = self.string(item, "from_name", prefix, "") or ""
            if name and address:
                names.add(name)
                result.append(
                    InboxConfig(
                        name,
                        address,
                        aliases,
                        from_name,
                        language,
                        ack_to,
                        reference_prefix,
                        imap,
                        tuple(a.lower() for a in self.addresses(item, "agents", prefix)),
                    )
                )
        return tuple(result)

    def hours(self, data: dict[str, Any]) -> tuple[HoursConfig | None, BusinessCalendar | None]:
        prefix = "business_hours"
        self.unknown(data, ("timezone", *WEEKDAYS, "holidays", "closed", "season"), prefix)
        tz: ZoneInfo | None = None
        tz_name = self.string(data, "timezone", prefix)
        if tz_name is None:
            self.problem(
                _join(prefix, "timezone"), "is missing", 'write e.g. timezone = "Europe/Berlin"'
            )
        else:
            try:
                tz = ZoneInfo(tz_name)
            except (ZoneInfoNotFoundError, ValueError):
                self.problem(
                    _join(prefix, "timezone"),
                    f'"{tz_name}" is not a known time zone',
                    _suggest(tz_name, sorted(available_timezones()))
                    or 'use an IANA name such as "Europe/Berlin"',
                )
        week: list[tuple[Range, ...]] = []
        for day in WEEKDAYS:
            text = self.string(data, day, prefix, "closed") or "closed"
            try:
                week.append(parse_day_hours(text))
            except ValueError as exc:
                self.problem(
                    _join(prefix, day),
                    str(exc),
                    'write e.g. "09:00-17:00", "09:00-12:00, 13:00-17:00", "00:00-24:00" or "closed"',
                )
                week.append(())
        for index, day in enumerate(WEEKDAYS):
            spill = [r for r in week[index] if r.end > 24 * 60]
            following = week[(index + 1) % 7]
            for r in spill:
                if following and following[0].start < r.end - 24 * 60:
                    self.problem(
                        _join(prefix, day),
                        f"range {r} runs into {WEEKDAYS[(index + 1) % 7]}'s range {following[0]}",
                        "make them not overlap",
                    )
        if not any(week):
            self.problem(
                prefix,
                "the shop is never open",
                'give at least one weekday opening hours, e.g. mon = "09:00-17:00"',
            )
        holidays_code = self.string(data, "holidays", prefix)
        holiday_lookup = self.holidays(holidays_code) if holidays_code else None
        closed = self.closed(data.get("closed", []))
        seasons = self.seasons(data.get("season", []))
        if tz is None or self.problems:
            return None, None
        closed_days = _closed_lookup(closed)

        def is_closed(day: date) -> str | None:
            reason = closed_days.get(day)
            if reason is None and holiday_lookup is not None:
                reason = holiday_lookup(day)
            return reason

        hours = HoursConfig(tz_name or "UTC", tuple(week), holidays_code, closed, seasons)
        calendar = BusinessCalendar(tz, week, is_closed, seasons)
        try:  # closed days and holidays could leave no open time at all
            calendar.next_open(datetime(2026, 1, 1, tzinfo=tz))
        except ValueError:
            self.problem(prefix, "the shop is never open (closed days cover every opening hour)",
                         "check business_hours.closed")  # fmt: skip
            return None, None
        return hours, calendar

    def holidays(self, code: str) -> Callable[[date], str | None] | None:
        import holidays as holidays_lib  # imported here: loading it is slow and optional

        key = _join("business_hours", "holidays")
        country, _, subdivision = code.strip().upper().partition("-")
        supported = holidays_lib.list_supported_countries()
        if country not in supported:
            self.problem(
                key,
                f'"{code}" is not a known country code',
                _suggest(country, sorted(supported))
                or 'use an ISO 3166 code such as "DE", optionally with a subdivision: "DE-BE"',
            )
            return None
        if subdivision and subdivision not in supported[country]:
            choices = sorted(supported[country])
            self.problem(
                key,
                f'"{subdivision}" is not a subdivision of {country}',
                _suggest(subdivision, choices) or "known: " + ", ".join(choices),
            )
            return None
        table = holidays_lib.country_holidays(country, subdiv=subdivision or None)

        def lookup(day: date) -> str | None:
            name = table.get(day)
            return str(name) if name else None

        return lookup

    def closed(self, value: object) -> tuple[tuple[date, date], ...]:
        key = _join("business_hours", "closed")
        if isinstance(value, (str, date)):
            value = [value]
        if not isinstance(value, list):
            self.problem(
                key,
                "must be a list of dates",
                'write closed = ["2026-12-24", "2026-12-27..2026-12-31"]',
            )
            return ()
        spans: list[tuple[date, date]] = []
        for item in value:
            try:
                spans.append(parse_date_span(item))
            except ValueError as exc:
                self.problem(key, str(exc))
        return tuple(spans)

    def seasons(self, value: object) -> tuple[Season, ...]:
        prefix = "business_hours.season"
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            self.problem(
                prefix, "must be an array of tables", "write each as [[business_hours.season]]"
            )
            return ()
        result: list[Season] = []
        for index, item in enumerate(value):
            here = f"{prefix}[{index}]"
            if not isinstance(item, dict):
                self.problem(here, "must be a table", "write it as [[business_hours.season]]")
                continue
            self.unknown(item, ("name", "from", "to", "stretch", "notice"), here)
            name = self.string(item, "name", here, f"season {index + 1}") or ""
            notice, notices = self.notice(item.get("notice", ""), _join(here, "notice"))
            spans: list[date] = []
            for key in ("from", "to"):
                if key not in item:
                    self.problem(_join(here, key), "is missing", f'write {key} = "2026-11-27"')
                    continue
                try:
                    spans.append(parse_date_span(item[key])[0])
                except ValueError as exc:
                    self.problem(_join(here, key), str(exc))
            stretch = item.get("stretch", 1.0)
            if (
                isinstance(stretch, bool)
                or not isinstance(stretch, (int, float))
                or not 0 < stretch <= 100
            ):
                self.problem(
                    _join(here, "stretch"),
                    f"must be a positive number, got {stretch!r}",
                    "e.g. stretch = 2.0 doubles every response window",
                )
                continue
            if len(spans) != 2:
                continue
            if spans[1] < spans[0]:
                self.problem(_join(here, "to"), "is before from", "swap them")
                continue
            result.append(Season(name, spans[0], spans[1], float(stretch), notice, notices))
        result.sort(key=lambda s: s.start)
        for a, b in pairwise(result):
            if b.start <= a.end:
                self.problem(
                    prefix,
                    f'seasons "{a.name}" and "{b.name}" overlap',
                    "make their dates not overlap",
                )
        return tuple(result)

    def notice(self, value: object, key: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        """A notice is one string, or a table of language -> string ({ en = ..., de = ... })."""
        if isinstance(value, str):
            return value, ()
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            for lang in value:
                if lang not in LANGUAGES and not known_language(lang):
                    self.problem(key, f'"{lang}" is not a supported language',
                                 _suggest(lang, LANGUAGES) or "use " + ", ".join(LANGUAGES))  # fmt: skip
            default = value.get("en") or next(iter(value.values()), "")
            return default, tuple(sorted(value.items()))
        self.problem(key, f"must be a string or a table of languages, got {_kind(value)}",
                     'write notice = "..." or notice = { en = "...", de = "..." }')  # fmt: skip
        return "", ()

    def priorities(self, data: dict[str, Any]) -> tuple[PriorityConfig, ...]:
        self.unknown(data, PRIORITIES, "priority")
        if "normal" not in data:
            self.problem(
                "priority.normal", "is missing", 'add [priority.normal] with first_reply = "4h"'
            )
        result: list[PriorityConfig] = []
        for name in PRIORITIES:
            if name not in data:
                continue
            prefix = f"priority.{name}"
            section = self.table(data, name, "priority")
            self.unknown(section, ("first_reply", "next_reply", "keywords", "patterns"), prefix)
            first = self.duration(section, "first_reply", prefix)
            if first is None and "first_reply" not in section:
                self.problem(
                    _join(prefix, "first_reply"),
                    "is missing",
                    'write first_reply = "4h" (business time)',
                )
            following = self.duration(section, "next_reply", prefix)
            keywords = self.string_list(section, "keywords", prefix)
            for word in keywords:
                if not word.strip():
                    self.problem(
                        _join(prefix, "keywords"), "contains an empty keyword", "remove it"
                    )
            patterns: list[re.Pattern[str]] = []
            for text in self.string_list(section, "patterns", prefix):
                try:
                    compiled = re.compile(text, re.IGNORECASE)
                    if compiled.search("") is not None:
                        self.problem(_join(prefix, "patterns"), f'"{text}" matches every message (it matches empty text)',
                                     "make it require at least one character")  # fmt: skip
                        continue
                    patterns.append(compiled)
                except re.error as exc:
                    self.problem(
                        _join(prefix, "patterns"),
                        f'"{text}" is not a valid regular expression: {exc}',
                        "escape special characters with a backslash",
                    )
            if first is not None:
                result.append(
                    PriorityConfig(name, first, following or first, keywords, tuple(patterns))
                )
        return tuple(result)

    # ---------------------------------------------------------------- scalars

    def choice(
        self, data: Mapping[str, Any], key: str, prefix: str, choices: Sequence[str], default: str
    ) -> str:
        value = self.string(data, key, prefix, default) or default
        if value not in choices:
            self.problem(
                _join(prefix, key),
                f'"{value}" is not one of {", ".join(choices)}',
                _suggest(value, choices) or f'write {key} = "{choices[0]}"',
            )
            return default
        return value

    def integer(
        self, data: Mapping[str, Any], key: str, prefix: str, default: int, *, low: int, high: int
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(
                _join(prefix, key),
                f"must be a whole number, got {_kind(value)}",
                f"write {key} = {default}",
            )
            return default
        if not low <= value <= high:
            self.problem(_join(prefix, key), f"{value} is out of range", f"use {low}..{high}")
            return default
        return value

    def boolean(self, data: Mapping[str, Any], key: str, prefix: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.problem(
                _join(prefix, key),
                f"must be true or false, got {_kind(value)}",
                f"write {key} = {'true' if default else 'false'}",
            )
            return default
        return value

    def size(self, data: Mapping[str, Any], key: str, prefix: str, default: int) -> int:
        value = data.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str):
            m = re.fullmatch(
                r"\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g|kib|mib|gib)?\s*", value.lower()
            )
            if m:
                factor = {
                    None: 1,
                    "b": 1,
                    "k": 1000,
                    "kb": 1000,
                    "m": 1000**2,
                    "mb": 1000**2,
                    "g": 1000**3,
                    "gb": 1000**3,
                    "kib": 1024,
                    "mib": 1024**2,
                    "gib": 1024**3,
                }
                return int(float(m.group(1)) * factor[m.group(2)])
        self.problem(
            _join(prefix, key), f"{value!r} is not a size", 'write a number of bytes or e.g. "25MB"'
        )
        return default

    def secret(self, data: Mapping[str, Any], prefix: str, *, required: bool) -> Secret:
        found = self.optional_secret(data, prefix, "password_env", "password_file")
        if required and not found.env and not found.file:
            self.problem(
                prefix,
                "has no password source",
                'set password_env = "VARIABLE_NAME" or password_file = "/path/to/file"',
            )
        return found

    def optional_secret(
        self, data: Mapping[str, Any], prefix: str, env_key: str, file_key: str
    ) -> Secret:
        env = self.string(data, env_key, prefix)
        file = self.string(data, file_key, prefix)
        if env and file:
            self.problem(_join(prefix, env_key), f"and {file_key} are both set", "keep one of them")
        return Secret(env, file)

    def url(self, data: Mapping[str, Any], key: str, prefix: str) -> str | None:
        value = self.string(data, key, prefix)
        if value is None:
            return None
        local = re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/", value)
        if not value.startswith("https://") and not local:
            self.problem(
                _join(prefix, key),
                f'"{value}" is not an https:// URL',
                "tokens travel over it: use https (http only to 127.0.0.1 for testing)",
            )
            return None
        return value

    def bearer_in_clear(self, auth: str, security: str, host: str | None, prefix: str) -> None:
        """An access token (for Google: the whole mailbox) never crosses a network in
        clear text: oauth2 with security = "none" only to this machine (a local relay)."""
        if auth == "oauth2" and security == "none" and host is not None and host not in LOOPBACK:
            self.problem(_join(prefix, "security"), f'is "none" with auth = "oauth2" to {host}: the access '
                         "token would cross the network unencrypted",
                         'use security = "tls" or "starttls"')  # fmt: skip

    def auth(self, data: Mapping[str, Any], prefix: str) -> tuple[str, OAuthConfig | None]:
        """`auth` and, for "oauth2", the app registration (provider, client, endpoints)."""
        auth = self.choice(data, "auth", prefix, AUTH_METHODS, "password")
        if auth == "password":
            for key in OAUTH_KEYS:
                if key in data:
                    self.problem(_join(prefix, key), 'is only used with auth = "oauth2"',
                                 'set auth = "oauth2", or remove it')  # fmt: skip
            return auth, None
        for key in ("password_env", "password_file"):
            if key in data:
                self.problem(
                    _join(prefix, key),
                    'is not used with auth = "oauth2"',
                    "remove it: the mailbox signs in with `sla-gateway login`, not a password",
                )
        provider = self.string(data, "provider", prefix)
        if provider is None:
            self.problem(_join(prefix, "provider"), 'is missing for auth = "oauth2"',
                         'write provider = "google", "microsoft" or "custom"')  # fmt: skip
            return auth, None
        if provider not in OAUTH_PROVIDERS:
            self.problem(_join(prefix, "provider"), f'"{provider}" is not one of {", ".join(OAUTH_PROVIDERS)}',
                         _suggest(provider, OAUTH_PROVIDERS) or 'write provider = "google"')  # fmt: skip
            return auth, None
        client_id = self.string(data, "client_id", prefix)
        if not client_id:
            self.problem(_join(prefix, "client_id"), "is missing",
                         "write the Application (client) ID of the app you registered; see README")  # fmt: skip
        secret = self.optional_secret(data, prefix, "client_secret_env", "client_secret_file")
        if provider == "google" and not (secret.env or secret.file):
            self.problem(prefix, "has no client secret (Google requires one)",
                         'set client_secret_env = "VARIABLE" or client_secret_file = "google-client-secret"')  # fmt: skip
        tenant = self.string(data, "tenant", prefix, "") or ""
        if tenant and provider != "microsoft":
            self.problem(_join(prefix, "tenant"), 'is only used with provider = "microsoft"', "remove it")
        if tenant and not re.fullmatch(r"[A-Za-z0-9.-]+", tenant):
            self.problem(_join(prefix, "tenant"), f'"{tenant}" is not a tenant ID or domain',
                         'write the Directory (tenant) ID, a domain such as "shop.example", or "organizations"')  # fmt: skip
        token_url = self.url(data, "token_url", prefix)
        device_url = self.url(data, "device_authorization_url", prefix)
        authorization_url = self.url(data, "authorization_url", prefix)
        scope = self.string(data, "scope", prefix)
        if provider == "custom":
            if not token_url:
                self.problem(_join(prefix, "token_url"), 'is missing for provider = "custom"',
                             'write token_url = "https://login.example/oauth2/token"')  # fmt: skip
            if not device_url and not authorization_url:
                self.problem(_join(prefix, "device_authorization_url"), 'is missing for provider = "custom"',
                             'write device_authorization_url = "https://login.example/oauth2/device" '
                             '(the device sign-in), authorization_url = ".../authorize" (the browser '
                             "sign-in), or both")  # fmt: skip
            preset_device, preset_token, preset_scope = device_url or "", token_url or "", ""
            preset_authorize = authorization_url or ""
        else:
            for key in ("token_url", "device_authorization_url", "authorization_url"):
                if key in data:
                    self.problem(_join(prefix, key), f'is set by provider = "{provider}"',
                                 'remove it, or use provider = "custom"')  # fmt: skip
            preset_device, preset_token, preset_scope = oauth_preset(provider, tenant)
            preset_authorize = oauth_authorization_endpoint(provider, tenant)
        return auth, OAuthConfig(
            provider=provider,
            client_id=client_id or "",
            client_secret=secret,
            token_url=preset_token,
            device_authorization_url=preset_device,
            scope=preset_scope if scope is None else scope,
            tenant=tenant,
            authorization_url=preset_authorize,
        )

    def token_store(self, value: dict[str, Any]) -> TokenStoreConfig:
        prefix = "oauth"
        self.unknown(value, ("token_key_env", "token_key_file", "alert_maildir"), prefix)
        key = self.optional_secret(value, prefix, "token_key_env", "token_key_file")
        if not key.env and not key.file:
            key = Secret(env=DEFAULT_TOKEN_KEY_ENV)
        return TokenStoreConfig(key=key, alert_maildir=self.string(value, "alert_maildir", prefix))

    def addresses(self, data: Mapping[str, Any], key: str, prefix: str) -> tuple[str, ...]:
        values = self.string_list(data, key, prefix)
        for value in values:
            self.address(value, _join(prefix, key))
        return values

    def positive_duration(
        self, data: Mapping[str, Any], key: str, prefix: str, default: timedelta
    ) -> timedelta:
        return self.duration(data, key, prefix) or default

    # ---------------------------------------------------------------- intake and sending

    def imap(self, value: object, prefix: str) -> ImapConfig | None:
        if not isinstance(value, dict):
            self.problem(prefix, "must be a table", "write it as [inbox.imap] below its [[inbox]]")
            return None
        self.unknown(
            value,
            (
                "host",
                "port",
                "security",
                "username",
                "password_env",
                "password_file",
                "folders",
                "idle",
                "poll_interval",
                "mark_seen",
                "append_acks_to",
                "timeout",
                "sent_folder",
                "auth",
                *OAUTH_KEYS,
            ),
            prefix,
        )
        host = self.string(value, "host", prefix)
        if not host:
            self.problem(_join(prefix, "host"), "is missing", 'write host = "imap.example.com"')
        security = self.choice(value, "security", prefix, ("tls", "starttls", "none"), "tls")
        port = self.integer(
            value, "port", prefix, 993 if security == "tls" else 143, low=1, high=65535
        )
        username = self.string(value, "username", prefix)
        if not username:
            self.problem(_join(prefix, "username"), "is missing", "write the mailbox login name")
        auth, oauth = self.auth(value, prefix)
        self.bearer_in_clear(auth, security, host, prefix)
        password = self.secret(value, prefix, required=auth == "password")
        folders = self.string_list(value, "folders", prefix) or ("INBOX",)
        return ImapConfig(
            host=host or "",
            port=port,
            security=security,
            username=username or "",
            password=password,
            folders=folders,
            idle=self.boolean(value, "idle", prefix, True),
            poll_interval=self.positive_duration(
                value, "poll_interval", prefix, timedelta(seconds=60)
            ),
            mark_seen=self.boolean(value, "mark_seen", prefix, False),
            append_acks_to=self.string(value, "append_acks_to", prefix),
            timeout=self.positive_duration(value, "timeout", prefix, timedelta(seconds=30)),
            sent_folder=self.string(value, "sent_folder", prefix),
            auth=auth,
            oauth=oauth,
        )

    def alerts(self, value: dict[str, Any]) -> AlertsConfig:
        prefix = "alerts"
        self.unknown(value, ("to", "warn_at", "only_in_business_hours"), prefix)
        warn_at: float | None = 0.75
        raw = value.get("warn_at", 0.75)
        if raw is False:
            warn_at = None
        elif isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 < raw < 1:
            self.problem(_join(prefix, "warn_at"), f"must be a fraction between 0 and 1, got {raw!r}",
                         "e.g. warn_at = 0.75 warns when three quarters of the window have passed; false for none")  # fmt: skip
        else:
            warn_at = float(raw)
        return AlertsConfig(
            to=self.addresses(value, "to", prefix),
            warn_at=warn_at,
            only_in_business_hours=self.boolean(value, "only_in_business_hours", prefix, True),
        )

    def digest(self, value: dict[str, Any]) -> DigestConfig:
        prefix = "digest"
        self.unknown(value, ("to", "at", "skip_empty"), prefix)
        at_text = self.string(value, "at", prefix, "08:00") or "08:00"
        try:
            at = parse_minutes(at_text, allow_24=False)
        except ValueError as exc:
            self.problem(_join(prefix, "at"), str(exc), 'write at = "08:00" (shop time)')
            at = 8 * 60
        return DigestConfig(
            to=self.addresses(value, "to", prefix),
            at=at,
            skip_empty=self.boolean(value, "skip_empty", prefix, False),
        )

    def tracking(self, value: dict[str, Any], breach: dict[str, Any]) -> TrackingConfig:
        self.unknown(value, ("close_after",), "tracking")
        self.unknown(breach, ("notify_customer",), "breach")
        return TrackingConfig(
            close_after=self.positive_duration(value, "close_after", "tracking", timedelta(days=7)),
            notify_customer_on_breach=self.boolean(breach, "notify_customer", "breach", False),
        )

    def listen(self, value: object) -> ListenConfig | None:
        prefix = "listen"
        if not isinstance(value, dict):
            self.problem(prefix, "must be a table", "write it as [listen]")
            return None
        self.unknown(
            value,
            (
                "host",
                "port",
                "max_message_size",
                "tls_cert",
                "tls_key",
                "require_auth",
                "username",
                "password_env",
                "password_file",
            ),
            prefix,
        )
        cert = self.string(value, "tls_cert", prefix)
        key = self.string(value, "tls_key", prefix)
        if bool(cert) != bool(key):
            self.problem(
                prefix, "tls_cert and tls_key must be given together", "set both paths, or neither"
            )
        require_auth = self.boolean(value, "require_auth", prefix, False)
        username = self.string(value, "username", prefix)
        if require_auth and not username:
            self.problem(
                _join(prefix, "username"),
                "is missing while require_auth = true",
                "set the login name the forwarding server uses",
            )
        return ListenConfig(
            host=self.string(value, "host", prefix, "127.0.0.1") or "127.0.0.1",
            port=self.integer(value, "port", prefix, 2525, low=0, high=65535),
            max_message_size=self.size(value, "max_message_size", prefix, ListenConfig.max_message_size),
            tls_cert=cert,
            tls_key=key,
            require_auth=require_auth,
            username=username,
            password=self.secret(value, prefix, required=require_auth),
        )

    def send(self, value: dict[str, Any]) -> SendConfig:
        prefix = "send"
        self.unknown(
            value,
            (
                "transport",
                "path",
                "host",
                "port",
                "security",
                "username",
                "password_env",
                "password_file",
                "timeout",
                "give_up_after",
                "alert_after",
                "null_sender",
                "auth",
                *OAUTH_KEYS,
            ),
            prefix,
        )
        transport = self.choice(value, "transport", prefix, ("maildir", "smtp"), "maildir")
        security = self.choice(value, "security", prefix, ("starttls", "tls", "none"), "starttls")
        default_port = {"tls": 465, "starttls": 587, "none": 25}[security]
        if transport == "smtp" and not value.get("host"):
            self.problem(
                _join(prefix, "host"),
                'is missing for transport = "smtp"',
                'write host = "smtp.example.com"',
            )
        username = self.string(value, "username", prefix)
        auth, oauth = self.auth(value, prefix) if transport == "smtp" else ("password", None)
        self.bearer_in_clear(auth, security, self.string(value, "host", prefix), prefix)
        if auth == "oauth2" and not username:
            self.problem(
                _join(prefix, "username"),
                'is missing for auth = "oauth2"',
                "write the mailbox address that signs in",
            )
        return SendConfig(
            transport=transport,
            path=self.string(value, "path", prefix, "var/outbox") or "var/outbox",
            host=self.string(value, "host", prefix, "localhost") or "localhost",
            port=self.integer(value, "port", prefix, default_port, low=1, high=65535),
            security=security,
            username=username,
            password=self.secret(value, prefix, required=bool(username) and auth == "password"),
            timeout=self.positive_duration(value, "timeout", prefix, timedelta(seconds=30)),
            give_up_after=self.positive_duration(value, "give_up_after", prefix, timedelta(days=2)),
            alert_after=self.positive_duration(value, "alert_after", prefix, timedelta(minutes=15)),
            null_sender=self.boolean(value, "null_sender", prefix, False),
            auth=auth,
            oauth=oauth,
        )

    def acknowledge(self, value: dict[str, Any]) -> AckConfig:
        prefix = "acknowledge"
        self.unknown(
            value,
            (
                "enabled",
                "once_per_sender",
                "max_per_sender_per_day",
                "max_per_minute",
                "max_per_hour",
                "message_id_domain",
            ),
            prefix,
        )
        return AckConfig(
            enabled=self.boolean(value, "enabled", prefix, True),
            once_per_sender=self.positive_duration(
                value, "once_per_sender", prefix, timedelta(hours=24)
            ),
            max_per_sender_per_day=self.integer(
                value, "max_per_sender_per_day", prefix, 5, low=1, high=10_000
            ),
            max_per_minute=self.integer(value, "max_per_minute", prefix, 60, low=1, high=1_000_000),
            max_per_hour=self.integer(value, "max_per_hour", prefix, 200, low=1, high=60_000_000),
            message_id_domain=(self.string(value, "message_id_domain", prefix, "") or "").lower(),
        )

    def forms(self, value: object) -> tuple[FormConfig, ...]:
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            self.problem("form", "must be an array of tables", "write each as [[form]]")
            return ()
        result = []
        for index, item in enumerate(value):
            prefix = f"form[{index}]"
            if not isinstance(item, dict):
                self.problem(prefix, "must be a table", "write it as [[form]]")
                continue
            self.unknown(item, ("sender", "name"), prefix)
            raw = item.get("sender")
            senders = (raw,) if isinstance(raw, str) else self.string_list(item, "sender", prefix)
            if not senders:
                self.problem(
                    _join(prefix, "sender"), "is missing", 'write sender = ["mailer@shopify.com"]'
                )
            result.append(
                FormConfig(
                    tuple(x.lower() for x in senders), self.string(item, "name", prefix, "") or ""
                )
            )
        return tuple(result)

    def vip(self, data: dict[str, Any], known: Sequence[str]) -> VipConfig:
        self.unknown(data, ("senders", "min_priority"), "vip")
        senders = self.string_list(data, "senders", "vip")
        for sender in senders:
            if "@" not in sender:
                self.problem(
                    "vip.senders",
                    f'"{sender}" is not an address or pattern',
                    'write "ceo@partner.example" or "*@bigcustomer.example"',
                )
        level = self.string(data, "min_priority", "vip", "high") or "high"
        if level not in PRIORITIES:
            self.problem(
                "vip.min_priority",
                f'"{level}" is not a priority',
                _suggest(level, PRIORITIES) or "use one of " + ", ".join(PRIORITIES),
            )
        elif level not in known and senders:
            self.problem(
                "vip.min_priority", f'"{level}" has no [priority.{level}] section', "add it"
            )
        return VipConfig(tuple(s.lower() for s in senders), level)


def _closed_lookup(spans: Sequence[tuple[date, date]]) -> dict[date, str]:
    days: dict[date, str] = {}
    for first, last in spans:
        day = first
        while day <= last:
            days[day] = "closed"
            day += timedelta(days=1)
    return days


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__
