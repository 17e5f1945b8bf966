"""Every configuration key, declared once: its name, value type, default and meaning.

Owns: the shape of `gateway.toml` as frozen dataclasses, one per table. A field is a key;
its annotation names the value type (from `configtypes`) and carries its `Doc` (the
README's text and the fix when it is missing); its default is written as it would be in
the file. From this one declaration come the reader (pydantic validates the file against
it), the unknown-key check with "did you mean", the JSON Schema (`check --schema`) and
the README's configuration table (`check --readme-table`). Rules that span several keys
(OAuth blocks, TLS pairs, overlapping ranges) are not here: `config` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field

from . import configtypes as t
from .calendar import Range
from .configtypes import Check, Doc
from .oauth import PROVIDERS as OAUTH_PROVIDERS

PRIORITIES = ("urgent", "high", "normal", "low")  # highest first
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LANGUAGES = ("en", "de", "fr", "es", "nl")  # with built-in catalogs; others need the owner's

DEFAULT_DATABASE = "sqlite:///var/sla-gateway.db"
OAUTH_KEYS = ("provider", "client_id", "client_secret_env", "client_secret_file", "tenant",
              "token_url", "device_authorization_url", "authorization_url", "scope")  # fmt: skip

_STR = {"type": "string"}
Str = Check(t.string, _STR, "string")
Bool = Check(t.boolean, {"type": "boolean"}, "bool")
Strings = Check(t.string_list, {"type": "array", "items": _STR}, "list of strings")  # fmt: skip
Addresses = Check(t.addresses, {"type": "array", "items": _STR}, "list")
LowerAddresses = Check(t.lower_addresses, {"type": "array", "items": _STR}, "list")  # fmt: skip
Address = Check(t.address, _STR, "string")
Duration = Check(t.duration, {"type": "string", "pattern": r"^\s*(\d+\s*[dhms]\s*)+$"}, "duration")  # fmt: skip
Url = Check(t.url, {"type": "string", "pattern": "^https?://"}, "string")
Port = Check(t.whole(1, 65535), {"type": "integer", "minimum": 1, "maximum": 65535}, "integer")  # fmt: skip
Security = Check(t.choice(("tls", "starttls", "none")), {"enum": ["tls", "starttls", "none"]}, "string")  # fmt: skip
Auth = Check(t.choice(("password", "oauth2")), {"enum": ["password", "oauth2"]}, "string")  # fmt: skip
Tenant = Check(t.pattern(r"[A-Za-z0-9.-]+", "a tenant ID or domain", 'write the Directory (tenant) ID, a domain such as "shop.example", or "organizations"'), _STR, "string")  # fmt: skip
DayHours = Check(t.day_hours, _STR, "string")
Day = Check(t.one_date, {"type": "string", "format": "date"}, "date")


def _whole(low: int, high: int) -> Check:
    return Check(t.whole(low, high), {"type": "integer", "minimum": low, "maximum": high}, "integer")


def _tables(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value  # [inbox] written for [[inbox]]


def _enum(choices: tuple[str, ...], noun: str = "") -> Check:
    return Check(t.choice(choices, noun), {"enum": list(choices)}, "string")


_TABLE = ConfigDict(extra="forbid", validate_default=True)


# --------------------------------------------------------------------- mailboxes


@dataclass(frozen=True)
class OAuthKeys:
    """The app registration for `auth = "oauth2"`, shared by [inbox.imap] and [send]."""

    __pydantic_config__ = _TABLE
    provider: Annotated[str | None, _enum(OAUTH_PROVIDERS),
                        Doc('`oauth2`: `"google"`, `"microsoft"` or `"custom"`. The presets set the endpoints and scopes: Google `https://oauth2.googleapis.com/device/code`, `https://oauth2.googleapis.com/token`, scope `https://mail.google.com/`; Microsoft `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode` and `/token`, scopes `https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access`.')] = None  # fmt: skip
    client_id: Annotated[str | None, Check(t.string, _STR, "string"), Doc("`oauth2`: the registered app's client ID. Required.")] = None  # fmt: skip
    client_secret_env: Annotated[str | None, Check(t.string, _STR, "string"), Doc("`oauth2`: the environment variable holding the app's client secret. Required for Google (this or `client_secret_file`); not used by a Microsoft public client.")] = None  # fmt: skip
    client_secret_file: Annotated[str | None, Check(t.string, _STR, "string"), Doc("`oauth2`: a file holding the app's client secret (relative names in `$CREDENTIALS_DIRECTORY` first).")] = None  # fmt: skip
    tenant: Annotated[str, Tenant, Doc('`provider = "microsoft"`: the Directory (tenant) ID or a verified domain; `"organizations"` for any work account. `""`: `"common"`.')] = ""  # fmt: skip
    token_url: Annotated[str | None, Url, Doc('`provider = "custom"`: the authorization server\'s token endpoint (required); `https://` (plain `http://` only to 127.0.0.1, for testing). Refused for the presets, which set it.')] = None  # fmt: skip
    device_authorization_url: Annotated[str | None, Url, Doc('`provider = "custom"`: the device authorization endpoint (RFC 8628, for `login`); this or `authorization_url` is required.')] = None  # fmt: skip
    authorization_url: Annotated[str | None, Url, Doc('`provider = "custom"`: the authorization endpoint (for `login --browser`). The presets set it: Google `https://accounts.google.com/o/oauth2/v2/auth`, Microsoft `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize`.')] = None  # fmt: skip
    scope: Annotated[str | None, Check(t.string, _STR, "string"), Doc("`oauth2`: replaces the provider's scopes (space-separated). Optional.")] = None  # fmt: skip


@dataclass(frozen=True)
class ImapKeys(OAuthKeys):
    """`[inbox.imap]`"""

    host: Annotated[str, Str, Doc("The IMAP server.", missing='write host = "imap.example.com"')] = ""  # fmt: skip
    port: Annotated[int | None, Port, Doc("The IMAP port. Default 993 for `tls`, else 143.")] = None  # fmt: skip
    security: Annotated[str, Security, Doc('`"tls"`, `"starttls"` or `"none"` (local testing only).')] = "tls"  # fmt: skip
    username: Annotated[str, Str, Doc("The login.")] = ""
    password_env: Annotated[str | None, Check(t.string, _STR, "string"), Doc("The environment variable holding the password. Never the password itself.")] = None  # fmt: skip
    password_file: Annotated[str | None, Check(t.string, _STR, "string"), Doc("A file holding the password (relative names are looked up in `$CREDENTIALS_DIRECTORY` first, for systemd credentials).")] = None  # fmt: skip
    folders: Annotated[tuple[str, ...], Strings, Doc("Folders to watch.", type="list")] = ("INBOX",)  # fmt: skip
    idle: Annotated[bool, Bool, Doc("Use IMAP IDLE when the server offers it.")] = True
    poll_interval: Annotated[timedelta, Duration, Doc("Polling interval without IDLE, and how often IDLE is renewed.")] = "60s"  # type: ignore[assignment]  # fmt: skip
    mark_seen: Annotated[bool, Bool, Doc("Mark fetched mail as read (`false`: the mailbox is never changed).")] = False  # fmt: skip
    append_acks_to: Annotated[str | None, Check(t.string, _STR, "string"), Doc('Also store each acknowledgment (marked read) in this folder, e.g. `"Sent"`, so agents see it in their mail client. Optional.')] = None  # fmt: skip
    timeout: Annotated[timedelta, Duration, Doc("Network timeout.")] = "30s"  # type: ignore[assignment]
    sent_folder: Annotated[str | None, Check(t.string, _STR, "string"), Doc('The folder with the team\'s sent replies, watched for reply tracking. Not set: the folder the server marks `\\Sent` (SPECIAL-USE); `""` to watch none.')] = None  # fmt: skip
    auth: Annotated[str, Auth, Doc('`"password"` (`password_env`/`password_file`) or `"oauth2"`: SASL XOAUTH2 (OAUTHBEARER when the server offers only that) with an access token, after a one-time `sla-gateway login INBOX`. With `oauth2` no password keys are allowed.')] = "password"  # fmt: skip
    resolve_on_archive: Annotated[bool, Bool, Doc("Archive = resolved: when every customer message of a conversation has left the watched folders (archived, moved to another folder, deleted), the conversation is resolved at that time. Works with Gmail's archive (the message leaves INBOX) and Outlook's Archive folder. A renumbering of the folder (a UIDVALIDITY change) never resolves anything by itself.")] = False  # fmt: skip


@dataclass(frozen=True)
class InboxKeys:
    """`[[inbox]]`"""

    __pydantic_config__ = _TABLE
    name: Annotated[str, Str, Doc("Short unique name, used in commands and logs. Required.", missing='give the inbox a short name, e.g. name = "shop"')]  # fmt: skip
    address: Annotated[str, Address, Doc("The published support address. Required.", missing='write address = "support@your-shop.example"')]  # fmt: skip
    aliases: Annotated[tuple[str, ...], Addresses, Doc("Other addresses that reach the same team.", type="list of strings")] = ()  # fmt: skip
    from_name: Annotated[str, Str, Doc("Display name on acknowledgments.")] = ""
    language: Annotated[str, Check(t.language(LANGUAGES), {"type": "string"}, "string"), Doc("Acknowledgment language: `en`, `de`, `fr`, `es` or `nl` (built-in catalogs), or another language with your own catalog (see Translations).")] = "en"  # fmt: skip
    ack_to: Annotated[str, _enum(("return-path", "from")), Doc('Where acknowledgments go: `"return-path"` (the envelope sender, as RFC 3834 asks) or `"from"`. Reply-To is never used, except for web-form mail.')] = "return-path"  # fmt: skip
    reference_prefix: Annotated[str, Check(t.pattern(r"[A-Z][A-Z0-9]{0,15}", "a reference prefix", 'use 1-16 capital letters or digits starting with a letter, e.g. "SHOP"'), _STR, "string"),
                                Doc("Prefix of conversation references (`SHOP-1001`); 1–16 capitals/digits. `\"\"`: the inbox name in capitals.")] = ""  # fmt: skip
    imap: Annotated[ImapKeys | None, Doc("Read this inbox's mailbox over IMAP (written below its `[[inbox]]`). Optional.")] = None  # fmt: skip
    agents: Annotated[tuple[str, ...], LowerAddresses, Doc("Team members' addresses: their mail arriving at the listener (e.g. BCC copies of their replies) counts as a team reply, like mail from the inbox's own addresses.")] = ()  # fmt: skip
    command_delimiter: Annotated[str, Check(t.delimiter, {"type": "string", "minLength": 1, "maxLength": 1}, "string"),
                                 Doc('The character between the local part and a command in the inbox\'s plus-addresses: a team member\'s mail to `support+resolved@shop.example` (To, Cc or Bcc) marks the conversation it answers. The listener accepts `<local part><delimiter><anything>@<domain>` for the address and every alias. One character, not `"@"`.')] = "+"  # fmt: skip


# --------------------------------------------------------------------- the calendar


@dataclass(frozen=True)
class SeasonKeys:
    """`[[business_hours.season]]`"""

    __pydantic_config__ = _TABLE
    start: Annotated[date, Day, Field(alias="from"), Doc("First day (inclusive, shop-local date).", missing='write from = "2026-11-27"')]  # fmt: skip
    end: Annotated[date, Day, Field(alias="to"), Doc("Last day (inclusive, shop-local date).", missing='write to = "2026-11-27"')]  # fmt: skip
    name: Annotated[str, Str, Doc("Shown in summaries and reports. Default: season 1, 2, …")] = ""
    stretch: Annotated[float, Check(t.stretch, {"type": "number", "exclusiveMinimum": 0, "maximum": 100}, "number"),
                       Doc("Multiplies every window for mail received in the season (2.0: 1h becomes 2h).")] = 1.0  # fmt: skip
    notice: Annotated[tuple[str, tuple[tuple[str, str], ...]], Check(t.notice(LANGUAGES), {"anyOf": [_STR, {"type": "object", "additionalProperties": _STR}]}, "string or table"),
                      Doc('Told to customers in acknowledgments during the season; one string, or one per language: `{ en = "...", de = "..." }`.')] = ""  # type: ignore[assignment]  # fmt: skip


_DAY = Doc('`"09:00-17:00"`; several ranges `"09:00-12:00, 13:00-17:00"`; `"00:00-24:00"` all day; `"22:00-02:00"` runs past midnight into the next day; `"closed"`. Ranges must not overlap.')  # fmt: skip


@dataclass(frozen=True)
class HoursKeys:
    """`[business_hours]`"""

    __pydantic_config__ = _TABLE
    timezone: Annotated[str, Check(t.timezone, _STR, "string"), Doc("IANA time zone, e.g. `Europe/Berlin`. Required.", missing='write e.g. timezone = "Europe/Berlin"')]  # fmt: skip
    mon: Annotated[tuple[Range, ...], DayHours, _DAY] = "closed"  # type: ignore[assignment]
    tue: Annotated[tuple[Range, ...], DayHours, _DAY] = "closed"  # type: ignore[assignment]
    wed: Annotated[tuple[Range, ...], DayHours, _DAY] = "closed"  # type: ignore[assignment]
    thu: Annotated[tuple[Range, ...], DayHours, _DAY] = "closed"  # type: ignore[assignment]
    fri: Annotated[tuple[Range, ...], DayHours, _DAY] = "closed"  # type: ignore[assignment]
    sat: Annotated[tuple[Range, ...], DayHours, _DAY] = "closed"  # type: ignore[assignment]
    sun: Annotated[tuple[Range, ...], DayHours, _DAY] = "closed"  # type: ignore[assignment]
    holidays: Annotated[str | None, Check(t.holiday_code, _STR, "string"), Doc('Public holidays as `country[-subdivision]` codes of the `holidays` package, e.g. `"DE-BE"`, `"US-CA"`, `"GB"`. Omit for none.')] = None  # fmt: skip
    closed: Annotated[tuple[tuple[date, date], ...], Check(t.date_spans, {"type": "array", "items": _STR}, "list"),
                      Doc('Extra closed days: `"2026-12-24"` or spans `"2026-12-24..2026-12-31"` (TOML dates work too).')] = ()  # fmt: skip
    season: Annotated[tuple[SeasonKeys, ...], BeforeValidator(_tables), Doc("Periods whose mail gets stretched windows. Seasons must not overlap.")] = ()  # fmt: skip


@dataclass(frozen=True)
class PriorityKeys:
    """`[priority.NAME]`"""

    __pydantic_config__ = _TABLE
    first_reply: Annotated[timedelta, Duration, Doc("Published window for the team's first reply, business time. Required.", missing='write first_reply = "4h" (business time)')]  # fmt: skip
    next_reply: Annotated[timedelta | None, Duration, Doc("Window for later replies after the customer writes again. Not set: `first_reply`.")] = None  # fmt: skip
    resolve: Annotated[timedelta | None, Duration, Doc("Resolution target: from receipt to resolved, paused while the conversation waits for the customer (`+pending`, a team question) and while it is resolved. Business time like the windows: `\"1d\"` is 24 business hours, so one 09:00–17:00 working day is `\"8h\"`. Not set: no resolution promise for this priority.")] = None  # fmt: skip
    clock: Annotated[str, _enum(("business", "24/7")), Doc('Which time this priority\'s windows count: `"business"` (the opening hours) or `"24/7"` (every hour of every day, e.g. for payment failures). The acknowledgment, the policy page and the measurement all use it.')] = "business"  # fmt: skip
    keywords: Annotated[tuple[str, ...], Check(t.keywords, {"type": "array", "items": _STR}, "list of strings"),
                        Doc("Whole words or phrases, matched case- and accent-insensitively in the subject and in the customer's own new text (quoted earlier mail and signatures below `-- ` are ignored; HTML-only mail is read as text; only the first 64 Ki characters of each are examined).")] = ()  # fmt: skip
    patterns: Annotated[tuple[Any, ...], Check(t.patterns, {"type": "array", "items": _STR}, "list of strings"),
                        Doc("Regular expressions (Python syntax, case-insensitive), matched the same way.")] = ()  # fmt: skip


@dataclass(frozen=True)
class VipKeys:
    """`[vip]`"""

    __pydantic_config__ = _TABLE
    senders: Annotated[tuple[str, ...], Check(t.sender_patterns, {"type": "array", "items": _STR}, "list of strings"),
                       Doc('Addresses or patterns: `"ceo@partner.example"`, `"*@bigcustomer.example"`.')] = ()  # fmt: skip
    min_priority: Annotated[str, _enum(PRIORITIES, "priority"), Doc("Senders above are treated at least at this priority.")] = "high"  # fmt: skip


# --------------------------------------------------------------------- intake and sending


@dataclass(frozen=True)
class ListenKeys:
    """`[listen]`"""

    __pydantic_config__ = _TABLE
    host: Annotated[str, Str, Doc("Where to listen.")] = "127.0.0.1"
    port: Annotated[int, _whole(0, 65535), Doc("Where to listen (0: any free port).")] = 2525
    max_message_size: Annotated[int, Check(t.size, {"anyOf": [{"type": "integer", "minimum": 1}, _STR]}, "integer or string"),
                                Doc('Bytes, or `"25MB"`; larger messages are refused with 552. The IMAP poller applies the same limit (without `[listen]`, the default): it leaves a larger message in the mailbox unread and alerts the owner once. `"25MB"` is 25,000,000 bytes (`KB`, `MB`, `GB` count in thousands; `KiB`, `MiB`, `GiB` in 1,024s); the listener announces the limit in bytes in its EHLO answer (`SIZE 25000000`).')] = 25_000_000  # fmt: skip
    tls_cert: Annotated[str | None, Check(t.string, _STR, "string"), Doc("Offer STARTTLS with this certificate (with `tls_key`: both or neither).")] = None  # fmt: skip
    tls_key: Annotated[str | None, Check(t.string, _STR, "string"), Doc("The key of `tls_cert`.")] = None  # fmt: skip
    require_auth: Annotated[bool, Bool, Doc("Require SMTP AUTH (over TLS unless listening on loopback).")] = False  # fmt: skip
    username: Annotated[str | None, Check(t.string, _STR, "string"), Doc("The login the forwarding server must use when `require_auth` is set.")] = None  # fmt: skip
    password_env: Annotated[str | None, Check(t.string, _STR, "string"), Doc("The environment variable holding that login's password.")] = None  # fmt: skip
    password_file: Annotated[str | None, Check(t.string, _STR, "string"), Doc("A file holding that login's password.")] = None  # fmt: skip


@dataclass(frozen=True)
class SendKeys(OAuthKeys):
    """`[send]`"""

    transport: Annotated[str, _enum(("maildir", "smtp")), Doc('`"maildir"` (files in `path`, to try things out) or `"smtp"`.')] = "maildir"  # fmt: skip
    path: Annotated[str, Str, Doc('The maildir for `"maildir"`.')] = "var/outbox"
    host: Annotated[str | None, Check(t.string, _STR, "string"), Doc('The submission server for `"smtp"`. Required for it.')] = None  # fmt: skip
    port: Annotated[int | None, Port, Doc("The submission port. Default 587 for `starttls`, 465 for `tls`, 25 for `none`.")] = None  # fmt: skip
    security: Annotated[str, Check(t.choice(("starttls", "tls", "none")), {"enum": ["starttls", "tls", "none"]}, "string"), Doc('`"starttls"`, `"tls"` or `"none"`.')] = "starttls"  # fmt: skip
    username: Annotated[str | None, Check(t.string, _STR, "string"), Doc("The submission login (optional).")] = None  # fmt: skip
    password_env: Annotated[str | None, Check(t.string, _STR, "string"), Doc("The environment variable holding the submission password.")] = None  # fmt: skip
    password_file: Annotated[str | None, Check(t.string, _STR, "string"), Doc("A file holding the submission password.")] = None  # fmt: skip
    timeout: Annotated[timedelta, Duration, Doc("Network timeout.")] = "30s"  # type: ignore[assignment]
    give_up_after: Annotated[timedelta, Duration, Doc("Temporary failures (4xx, connection trouble) are retried with exponential backoff (30 s, 1 min, 2 min, 4 min, then every 5 min) this long, then marked failed. A 5xx answer fails at once.")] = "2d"  # type: ignore[assignment]  # fmt: skip
    alert_after: Annotated[timedelta, Duration, Doc('When outgoing mail has waited this long (the server is down or answers 4xx), the owner is alerted once per outage: through the outbox (it arrives when sending works again, or at once when only some mail is held up) and, for `"smtp"`, also written to the `oauth.alert_maildir` maildir (default `send.path`). The outage is over (and the next one alerts again) when no mail that failed is still waiting.')] = "15m"  # type: ignore[assignment]  # fmt: skip
    null_sender: Annotated[bool, Bool, Doc("Send acknowledgments (and breach notices, reminders and closing notices) with an empty envelope sender (RFC 3834); many submission servers refuse it.")] = False  # fmt: skip
    auth: Annotated[str, Auth, Doc('`"password"` or `"oauth2"` (SASL XOAUTH2, or OAUTHBEARER when only that is offered), with `send.username` and the same OAuth keys as `[inbox.imap]`. When they name the same mailbox and app as an inbox, that inbox\'s `login` serves both.')] = "password"  # fmt: skip


@dataclass(frozen=True)
class TokenStoreKeys:
    """`[oauth]`"""

    __pydantic_config__ = _TABLE
    token_key_env: Annotated[str | None, Check(t.string, _STR, "string"), Doc("An environment variable holding the Fernet key (32 random bytes, url-safe base64) that encrypts stored tokens. Not set (and no `token_key_file`): `SLA_GATEWAY_TOKEN_KEY`. Changing it means signing in again.")] = None  # fmt: skip
    token_key_file: Annotated[str | None, Check(t.string, _STR, "string"), Doc("A file holding that key (relative: `$CREDENTIALS_DIRECTORY`, for a systemd credential). Missing or malformed, the gateway says so (file, key, fix).")] = None  # fmt: skip
    alert_maildir: Annotated[str | None, Check(t.string, _STR, "string"), Doc("When the sign-in of the *sending* account breaks, the owner's alert cannot go through the outbox; it is written to this maildir instead (not set: `send.path`), besides the log line and `status`. The outage alert of `send.alert_after` is written here too.")] = None  # fmt: skip


@dataclass(frozen=True)
class AckKeys:
    """`[acknowledge]`"""

    __pydantic_config__ = _TABLE
    enabled: Annotated[bool, Bool, Doc("`false`: classify and measure, send nothing.")] = True
    once_per_sender: Annotated[timedelta, Duration, Doc("Within this time after an acknowledgment, the same sender is acknowledged again only for a new conversation of a person: a subject not acknowledged to it in that time, from a sender that does not look automated. A sender looks automated when mail from it was stopped as machine mail in that time (bounce, auto-reply, quotes-our-ack, …), when the message has no `Date` or no `Message-ID` header (scripts leave them out; mail programs never do), or when it arrives less than 2 minutes after our acknowledgment to it. Such senders, and repeated subjects, get one acknowledgment per `once_per_sender`. `max_per_sender_per_day` applies to everyone.")] = "24h"  # type: ignore[assignment]  # fmt: skip
    max_per_sender_per_day: Annotated[int, _whole(1, 10_000), Doc("At most this many acknowledgments per sender per shop day.")] = 5  # fmt: skip
    max_per_minute: Annotated[int, _whole(1, 1_000_000), Doc("Circuit breaker: beyond this rate all acknowledgments stop and the owner is alerted once; they resume by themselves.")] = 60  # fmt: skip
    max_per_hour: Annotated[int, _whole(1, 60_000_000), Doc("The same circuit breaker over the last hour (one alert per trip, shared with `max_per_minute`), for a loop that stays under the per-minute rate.")] = 200  # fmt: skip
    message_id_domain: Annotated[str, Str, Doc("Right-hand side of our Message-IDs. `\"\"`: the first inbox's domain.")] = ""  # fmt: skip


@dataclass(frozen=True)
class FormKeys:
    """`[[form]]`"""

    __pydantic_config__ = _TABLE
    sender: Annotated[tuple[str, ...], Check(t.one_or_more_strings, {"anyOf": [_STR, {"type": "array", "items": _STR}]}, "string or list"),
                      Doc('The mailer\'s addresses (`"*"` wildcards allowed). Required.', missing='write sender = ["mailer@shopify.com"]')]  # fmt: skip
    name: Annotated[str, Str, Doc("A label.")] = ""


@dataclass(frozen=True)
class AlertsKeys:
    """`[alerts]`"""

    __pydantic_config__ = _TABLE
    to: Annotated[tuple[str, ...], Addresses, Doc("Who gets them. Empty: the first inbox address.")] = ()  # fmt: skip
    warn_at: Annotated[float | None, Check(t.fraction_or_false, {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, {"const": False}]}, "number or `false`"),
                       Doc("Warn once this fraction of a reply window has passed (business time); `false` for breach alerts only.")] = 0.75  # fmt: skip
    only_in_business_hours: Annotated[bool, Bool, Doc("Hold warnings, breach alerts and set-aside alerts at night and on closed days until the next opening.")] = True  # fmt: skip


@dataclass(frozen=True)
class TrackingKeys:
    """`[tracking]`"""

    __pydantic_config__ = _TABLE
    close_after: Annotated[timedelta, Duration, Doc("A conversation the team answered (or marked pending) with no word from the customer for this long (real time) is resolved, at the team's last reply.")] = "7d"  # type: ignore[assignment]  # fmt: skip
    question_means_pending: Annotated[bool, Bool, Doc("A team reply whose new text asks a question (`?`) sets the conversation pending (waiting for the customer; the resolution clock pauses). `+pending` always does.")] = True  # fmt: skip
    remind_after: Annotated[tuple[timedelta, ...], Check(t.durations, {"type": "array", "items": Duration.schema}, "list of durations"),
                            Doc('Remind a customer the team is waiting for (a pending conversation): one reminder (templates `reminder.*.j2`) at each of these times after the pause began, business time on the priority\'s clock, e.g. `["8h", "16h"]` for one and two 8-hour business days (`"1d"` is 24 business hours). Never twice for one step; none once the customer writes or the state changes; only to customers who were acknowledged. Empty: no reminders.')] = ()  # fmt: skip
    close_notice: Annotated[bool, Bool, Doc("When `close_after` resolves a quiet conversation, tell the customer (templates `closed.*.j2`: we have closed it; a reply reopens it). Only to customers who were acknowledged.")] = False  # fmt: skip


@dataclass(frozen=True)
class RemedyKeys:
    """`[[breach.remedy]]`"""

    __pydantic_config__ = _TABLE
    late_by: Annotated[timedelta, Duration, Doc("Applies when the reply is expected this late or later (business time past the promise, measured when the breach notice is composed: now + the window − the promised time). The largest matching `late_by` wins. Required.", missing='write late_by = "4h" (business time)')]  # fmt: skip
    text: Annotated[tuple[str, tuple[tuple[str, str], ...]], Check(t.notice(LANGUAGES), {"anyOf": [_STR, {"type": "object", "additionalProperties": _STR}]}, "string or table"),
                    Doc('What the shop does to make up for it, told in the breach notice and on the policy page; one string, or one per language: `{ en = "...", de = "..." }`. Required.', missing='write text = "We refund your shipping costs."')]  # fmt: skip
    codes_file: Annotated[str | None, Check(t.readable_file, _STR, "string"), Doc("A file of coupon codes exported from the shop system, one per line: each breach notice with this remedy carries one code never given before (recorded in the database). When none is left the owner is alerted once and the notice goes without a code. Optional; must be readable.")] = None  # fmt: skip


@dataclass(frozen=True)
class BreachKeys:
    """`[breach]`"""

    __pydantic_config__ = _TABLE
    notify_customer: Annotated[bool, Bool, Doc("Send the customer one short, honest message (templates `breach.subject.j2`, `breach.txt.j2`, `breach.html.j2`) when a reply promise is missed, the first reply's or a later one's: we missed the promised time, here is when you will hear from us (now + the window). At most one per reply clock; only to customers who were acknowledged.")] = False  # fmt: skip
    remedy: Annotated[tuple[RemedyKeys, ...], BeforeValidator(_tables), Doc("What the shop offers when it is late, by how late: the breach notice carries the remedy with the largest `late_by` that the expected lateness reaches.")] = ()  # fmt: skip


@dataclass(frozen=True)
class DigestKeys:
    """`[digest]`"""

    __pydantic_config__ = _TABLE
    to: Annotated[tuple[str, ...], Addresses, Doc("Who gets it. Empty: the service sends none (`digest --send` then uses the first inbox address).")] = ()  # fmt: skip
    at: Annotated[int, Check(t.time_of_day, {"type": "string", "pattern": r"^\d{1,2}:\d{2}$"}, "string"),
                  Doc("When the service sends it, shop time: the previous business day's digest, once per day even across restarts.")] = "08:00"  # type: ignore[assignment]  # fmt: skip
    skip_empty: Annotated[bool, Bool, Doc("No digest after a day without customer mail.")] = False  # fmt: skip


@dataclass(frozen=True)
class PrioritiesKeys:
    """`[priority.*]`: the priorities, highest first."""

    __pydantic_config__ = _TABLE
    urgent: Annotated[PriorityKeys | None, Doc("The most urgent priority. Optional.")] = None
    high: Annotated[PriorityKeys | None, Doc("Optional.")] = None
    normal: Annotated[PriorityKeys | None, Doc("Required: it is the default when nothing matches.")] = None  # fmt: skip
    low: Annotated[PriorityKeys | None, Doc("The least urgent priority. Optional.")] = None


# --------------------------------------------------------------------- the file


@dataclass(frozen=True)
class FileKeys:
    """The whole file. Each field is validated on its own, so one bad table does not
    hide the problems of another."""

    __pydantic_config__ = _TABLE
    database: Annotated[str, Check(t.database_url, _STR, "string"), Doc("SQLAlchemy URL (SQLite relative to the working directory; the directory is created). PostgreSQL: `postgresql+psycopg://user@host/db` (install `sla-gateway[postgresql]`).")] = DEFAULT_DATABASE  # fmt: skip
    retention_days: Annotated[int, _whole(1, 36500), Doc("Stored message bodies (customers' mail and what we sent) older than this many days are deleted by the running service (hourly check), and so are the outbox rows of acknowledgments sent before then (once the rate limits no longer look at them), what was kept to match team replies that never found their conversation, and the UIDs of IMAP messages that left their folder; conversations, messages, reply times and every figure stay.")] = 365  # fmt: skip
    templates: Annotated[str | None, Check(t.directory, _STR, "string"), Doc("A directory whose templates override the built-in ones (same file names, e.g. `ack.txt.j2`, or `de/ack.txt.j2` for one language only), and whose `locale/<lang>/LC_MESSAGES/messages.po` catalogs reword sentences or add a language (see Translations). Optional; when set, the directory must exist (a relative path is taken from the working directory). `check` renders every template in it.")] = None  # fmt: skip
    inbox: Annotated[tuple[InboxKeys, ...], BeforeValidator(_tables), Doc("One table per published support address. At least one.", missing='add an [[inbox]] table with name and address = "support@your-shop.example"')] = ()  # fmt: skip
    business_hours: Annotated[HoursKeys, Doc("When the team works; every window is counted inside these hours.")] = field(default_factory=dict)  # type: ignore[assignment]  # fmt: skip
    priority: Annotated[PrioritiesKeys, Doc("The priorities, highest first. `normal` is required.")] = field(default_factory=dict)  # type: ignore[assignment]  # fmt: skip
    vip: Annotated[VipKeys, Doc("Senders who are always treated at least at `min_priority`.")] = field(default_factory=dict)  # type: ignore[assignment]  # fmt: skip
    listen: Annotated[ListenKeys | None, Doc("The SMTP listener, for mail servers that forward or BCC support mail to the gateway. Optional.")] = None  # fmt: skip
    send: Annotated[SendKeys, Doc("How outgoing mail leaves.")] = field(default_factory=dict)  # type: ignore[assignment]  # fmt: skip
    oauth: Annotated[TokenStoreKeys, Doc("Where the key that encrypts stored OAuth tokens comes from. Tokens are never in the configuration and never logged.")] = field(default_factory=dict)  # type: ignore[assignment]  # fmt: skip
    acknowledge: Annotated[AckKeys, Doc("When to acknowledge.")] = field(default_factory=dict)  # type: ignore[assignment]  # fmt: skip
    form: Annotated[tuple[FormKeys, ...], BeforeValidator(_tables), Doc("Web-form mailers: their mail is a customer's message, and the customer is in Reply-To.")] = ()  # fmt: skip
    alerts: Annotated[AlertsKeys, Doc("Warnings before a reply promise breaks, breach alerts, operational alerts.")] = field(default_factory=dict)  # type: ignore[assignment]  # fmt: skip
    tracking: Annotated[TrackingKeys, Doc("Reply tracking.")] = field(default_factory=dict)  # type: ignore[assignment]  # fmt: skip
    breach: Annotated[BreachKeys, Doc("What happens when a reply is late.")] = field(default_factory=dict)  # type: ignore[assignment]  # fmt: skip
    digest: Annotated[DigestKeys, Doc("The owner's daily digest.")] = field(default_factory=dict)  # type: ignore[assignment]  # fmt: skip


