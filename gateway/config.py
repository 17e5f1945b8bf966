"""TOML configuration -> one validated, typed `Config`.

Owns: finding the file (`--config`, `$SLA_GATEWAY_CONFIG`, `./config/gateway.toml`,
`/etc/sla-gateway/gateway.toml`), reading it against the key declaration (`configkeys`:
each key once, with its type, default and meaning), checking the rules that span
several keys, and building the values the core needs (the business calendar with its one
holiday table, priority rules). Every problem found is collected
and reported together, one line each, naming the file, the key, what is wrong and what
would be right. It never raises anything but `ConfigError` for a bad file, never reads
the file twice, and keeps no global state: the `Config` it returns is passed down.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import tomllib
import typing
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from .calendar import BusinessCalendar, Season
from .closed import ClosedDays
from .configdoc import key_at, keys
from .configkeys import (
    LANGUAGES,
    OAUTH_KEYS,
    PRIORITIES,
    WEEKDAYS,
    FileKeys,
    HoursKeys,
    ImapKeys,
    InboxKeys,
    ListenKeys,
    PrioritiesKeys,
    RemedyKeys,
    SendKeys,
    TokenStoreKeys,
    VipKeys,
)
from .configmodel import (
    DEFAULT_TOKEN_KEY_ENV,
    AckConfig,
    AlertsConfig,
    Config,
    DigestConfig,
    FormConfig,
    HoursConfig,
    ImapConfig,
    InboxConfig,
    ListenConfig,
    OAuthConfig,
    PriorityConfig,
    RemedyConfig,
    Secret,
    SendConfig,
    TokenStoreConfig,
    TrackingConfig,
    VipConfig,
)
from .configtypes import DEFAULT, KEY, parse_date_span, parse_day_hours, parse_minutes, suggest
from .errors import ConfigError, Problem
from .oauth import authorization_endpoint as oauth_authorization_endpoint
from .oauth import preset as oauth_preset

__all__ = [  # the configuration's public names, wherever they are defined
    "DEFAULT_TOKEN_KEY_ENV",
    "LANGUAGES",
    "PRIORITIES",
    "WEEKDAYS",
    "AckConfig",
    "AlertsConfig",
    "Config",
    "ConfigError",
    "DigestConfig",
    "FormConfig",
    "HoursConfig",
    "ImapConfig",
    "InboxConfig",
    "ListenConfig",
    "OAuthConfig",
    "PriorityConfig",
    "Problem",
    "RemedyConfig",
    "Secret",
    "SendConfig",
    "TokenStoreConfig",
    "TrackingConfig",
    "VipConfig",
    "parse_date_span",
    "parse_day_hours",
    "parse_minutes",
]
LOOPBACK = ("127.0.0.1", "::1", "localhost")  # hosts that are this machine
SEARCH_PATH = (Path("config/gateway.toml"), Path("/etc/sla-gateway/gateway.toml"))
ENV_VAR = "SLA_GATEWAY_CONFIG"


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


def load(path: Path, today: date | None = None) -> Config:
    """Read and validate one file; raise ConfigError listing every problem. `today` (the
    caller's clock; the system date when not given) is where checks of the calendar start."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem(str(path), "", "is not UTF-8 text")]) from None
    return parse(text, str(path), today=today)


def parse(text: str, filename: str = "<config>", *, today: date | None = None) -> Config:
    """Validate TOML text; `filename` is only used in messages, `today` as in `load`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            [Problem(filename, "", f"is not valid TOML: {exc}", "fix the syntax at that line")]
        ) from None
    return _Reader(filename, today or date.today()).read(data)


# ---------------------------------------------------------------------------- reading


def _path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _table_path(loc: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in loc if isinstance(p, str))


def _problem(file: str, loc: tuple[str | int, ...], error: Any) -> Problem:
    """One pydantic error in our words: the key, what is wrong, what would be right."""
    kind, path = error["type"], _path(loc)
    name = next((p for p in reversed(loc) if isinstance(p, str)), "")
    siblings, found = key_at(loc)
    if kind == "problem":
        hint = error["ctx"]["hint"].replace(KEY, name)
        if DEFAULT in hint:
            default = found.default if found and isinstance(found.default, int) else "a whole number"
            hint = hint.replace(DEFAULT, str(default))
        return Problem(file, path, error["ctx"]["message"], hint)
    if kind == "missing":
        return Problem(file, path, "is missing", found.doc.missing if found else "")
    if kind == "unexpected_keyword_argument":
        allowed = [k.name for k in siblings]
        return Problem(file, path, "unknown key", suggest(name, allowed) or "known keys: " + ", ".join(allowed))
    if kind in ("dataclass_type", "dataclass_exact_type"):
        brackets = "[[{}]]" if isinstance(loc[-1], int) else "[{}]"
        return Problem(file, path, "must be a table", "write it as " + brackets.format(_table_path(loc)))
    if kind in ("tuple_type", "list_type"):
        return Problem(file, path, "must be an array of tables", f"write each one as [[{_table_path(loc)}]]")
    return Problem(file, path, error["msg"].lower())  # not expected: every key has a checker


class _Reader:
    """Validates each top-level table against the declaration, then checks the rules that
    span several keys; collects every problem instead of stopping at the first."""

    def __init__(self, filename: str, today: date) -> None:
        self.file, self.today = filename, today
        self.problems: list[Problem] = []

    def problem(self, key: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.file, key, message, hint))

    def read(self, data: dict[str, Any]) -> Config:
        declared = {k.name: k for k in keys(FileKeys)}
        for name in data:
            if name not in declared:
                self.problem(name, "unknown key", suggest(name, list(declared)) or "known keys: " + ", ".join(declared))
        hints = typing.get_type_hints(FileKeys, include_extras=True)
        v = {name: self.section(name, hints[name], data.get(name, k.default)) for name, k in declared.items()}
        found = len(self.problems)
        inboxes = self.inboxes(v["inbox"])
        hours, calendar = self.hours(v["business_hours"]) if v["business_hours"] else (None, None)
        priorities = self.priorities(v["priority"]) if v["priority"] else ()
        vip = v["vip"] or VipKeys()
        if vip.senders and vip.min_priority not in (p.name for p in priorities) and v["priority"]:
            self.problem("vip.min_priority", f'"{vip.min_priority}" has no [priority.{vip.min_priority}] section', "add it")
        listen = self.listen(v["listen"]) if v["listen"] else None
        send = self.send(v["send"]) if v["send"] else SendConfig()
        oauth = self.token_store(v["oauth"]) if v["oauth"] else TokenStoreConfig()
        forms = []
        for index, f in enumerate(v["form"] or ()):
            if not f.sender:
                self.problem(f"form[{index}].sender", "is missing", 'write sender = ["mailer@shopify.com"]')
            forms.append(FormConfig(tuple(s.lower() for s in f.sender), f.name))
        a, t, b, d = v["acknowledge"], v["tracking"], v["breach"], v["digest"]
        remedies = self.remedies(b.remedy) if b is not None else ()
        reported = [p.key for p in self.problems[:found]]  # a rule over a key already wrong adds nothing
        self.problems[found:] = [p for p in self.problems[found:] if p.key not in reported]
        if self.problems:
            raise ConfigError(self.problems)
        assert hours is not None and calendar is not None
        return Config(
            path=Path(self.file), database=v["database"], inboxes=inboxes, hours=hours,
            priorities=priorities, vip=VipConfig(vip.senders, vip.min_priority), calendar=calendar,
            listen=listen, send=send,
            acknowledge=AckConfig(a.enabled, a.once_per_sender, a.max_per_sender_per_day, a.max_per_minute,
                                  a.max_per_hour, a.message_id_domain.lower()),
            forms=tuple(forms), alerts=AlertsConfig(**dataclasses.asdict(v["alerts"])),
            templates=v["templates"],
            tracking=TrackingConfig(t.close_after, b.notify_customer, t.question_means_pending,
                                    t.remind_after, t.close_notice, remedies),
            digest=DigestConfig(d.to, d.at, d.skip_empty), retention_days=v["retention_days"], oauth=oauth,
        )  # fmt: skip

    def section(self, name: str, annotation: Any, raw: Any) -> Any:
        """One top-level table, validated against its declaration. A wrong key is reported
        and left out, so the rules across keys still check the rest; None when the table
        cannot be read at all (a required key missing, not a table)."""
        raw = {} if dataclasses.is_dataclass(raw) else copy.deepcopy(raw)
        dropped: set[tuple[str | int, ...]] = set()
        for _ in range(100):
            try:
                return _adapter(name, annotation).validate_python(raw)
            except ValidationError as exc:
                errors = exc.errors()
            for e in errors:
                problem = _problem(self.file, (name, *e["loc"]), e)
                if problem not in self.problems and tuple(e["loc"]) not in dropped:
                    self.problems.append(problem)
            dropped.update(tuple(e["loc"]) for e in errors)
            if not all(_drop(raw, e["loc"]) for e in errors):
                return None
        return None

    # ---------------------------------------------------------------- rules across keys

    def inboxes(self, items: tuple[InboxKeys, ...] | None) -> tuple[InboxConfig, ...]:
        if items is None:
            return ()
        if not items:
            self.problem("inbox", "no inbox is configured",
                         'add an [[inbox]] table with name and address = "support@your-shop.example"')  # fmt: skip
        result, names, seen = [], set(), set()
        for index, i in enumerate(items):
            prefix = f"inbox[{index}]"
            if i.name in names:
                self.problem(f"{prefix}.name", f'"{i.name}" is used by two inboxes', "give each a unique name")
            names.add(i.name)
            for addr in (i.address, *i.aliases):
                if addr.lower() in seen:
                    self.problem(prefix, f'"{addr}" is configured twice', "each address belongs to one inbox")
                seen.add(addr.lower())
            imap = self.imap(i.imap, f"{prefix}.imap") if i.imap else None
            result.append(InboxConfig(i.name, i.address, i.aliases, i.from_name, i.language, i.ack_to,
                                      i.reference_prefix, imap, i.agents, i.command_delimiter))  # fmt: skip
        return tuple(result)

    def hours(self, h: HoursKeys) -> tuple[HoursConfig | None, BusinessCalendar | None]:
        prefix = "business_hours"
        week = [getattr(h, day) for day in WEEKDAYS]
        for index, day in enumerate(WEEKDAYS):
            following = week[(index + 1) % 7]
            for r in (r for r in week[index] if r.end > 24 * 60):
                if following and following[0].start < r.end - 24 * 60:
                    self.problem(f"{prefix}.{day}", f"range {r} runs into {WEEKDAYS[(index + 1) % 7]}'s range {following[0]}",
                                 "make them not overlap")  # fmt: skip
        if not any(week):
            self.problem(prefix, "the shop is never open",
                         'give at least one weekday opening hours, e.g. mon = "09:00-17:00"')  # fmt: skip
        seasons = []
        for index, s in enumerate(h.season):
            if s.end < s.start:
                self.problem(f"{prefix}.season[{index}].to", "is before from", "swap them")
                continue
            seasons.append(Season(s.name or f"season {index + 1}", s.start, s.end, s.stretch, *s.notice))
        seasons.sort(key=lambda s: s.start)
        for a, b in pairwise(seasons):
            if b.start <= a.end:
                self.problem(f"{prefix}.season", f'seasons "{a.name}" and "{b.name}" overlap', "make their dates not overlap")
        if self.problems:
            return None, None
        tz = ZoneInfo(h.timezone)
        closed = ClosedDays.of(h.closed, h.holidays)
        calendar = BusinessCalendar(tz, week, closed, seasons)
        try:  # closed days and holidays could leave no open time at all
            calendar.next_open(datetime.combine(self.today, time(), tzinfo=tz))
        except ValueError:
            self.problem(prefix, f"the shop is never open from {self.today} on (closed days cover every opening hour)",
                         "check business_hours.closed")  # fmt: skip
            return None, None
        return HoursConfig(h.timezone, tuple(week), h.holidays, h.closed, tuple(seasons), closed), calendar

    def remedies(self, found: tuple[RemedyKeys, ...]) -> tuple[RemedyConfig, ...]:
        """`[[breach.remedy]]`, smallest `late_by` first; two with one `late_by` are a problem."""
        seen: dict[timedelta, int] = {}
        for index, r in enumerate(found):
            if r.late_by in seen:
                self.problem(f"breach.remedy[{index}].late_by", f"is the same as breach.remedy[{seen[r.late_by]}]'s",
                             "give each remedy its own late_by, or merge the two")  # fmt: skip
            seen.setdefault(r.late_by, index)
            if not r.text[0].strip():
                self.problem(f"breach.remedy[{index}].text", "is empty", 'write text = "We refund your shipping costs."')
        return tuple(sorted((RemedyConfig(r.late_by, r.text[0], r.text[1], r.codes_file) for r in found),
                            key=lambda r: r.late_by))  # fmt: skip

    def priorities(self, p: PrioritiesKeys) -> tuple[PriorityConfig, ...]:
        if p.normal is None:
            self.problem("priority.normal", "is missing", 'add [priority.normal] with first_reply = "4h"')
        return tuple(PriorityConfig(name, k.first_reply, k.next_reply or k.first_reply, k.keywords, k.patterns, k.resolve, k.clock)
                     for name in PRIORITIES if (k := getattr(p, name)) is not None)  # fmt: skip

    def secret(self, prefix: str, env: str | None, file: str | None, env_key: str, file_key: str) -> Secret:
        if env and file:
            self.problem(f"{prefix}.{env_key}", f"and {file_key} are both set", "keep one of them")
        return Secret(env, file)

    def password(self, prefix: str, k: ImapKeys | ListenKeys | SendKeys, *, required: bool) -> Secret:
        found = self.secret(prefix, k.password_env, k.password_file, "password_env", "password_file")
        if required and not found.env and not found.file:
            self.problem(prefix, "has no password source",
                         'set password_env = "VARIABLE_NAME" or password_file = "/path/to/file"')  # fmt: skip
        return found

    def imap(self, k: ImapKeys, prefix: str) -> ImapConfig:
        if not k.host:
            self.problem(f"{prefix}.host", "is missing", 'write host = "imap.example.com"')
        if not k.username:
            self.problem(f"{prefix}.username", "is missing", "write the mailbox login name")
        oauth = self.auth(k, prefix)
        self.bearer_in_clear(k.auth, k.security, k.host, prefix)
        return ImapConfig(
            host=k.host, port=k.port or (993 if k.security == "tls" else 143), security=k.security,
            username=k.username, password=self.password(prefix, k, required=k.auth == "password"),
            folders=k.folders or ("INBOX",), idle=k.idle, poll_interval=k.poll_interval, mark_seen=k.mark_seen,
            append_acks_to=k.append_acks_to, timeout=k.timeout, sent_folder=k.sent_folder, auth=k.auth, oauth=oauth,
            resolve_on_archive=k.resolve_on_archive,
        )  # fmt: skip

    def listen(self, k: ListenKeys) -> ListenConfig:
        if bool(k.tls_cert) != bool(k.tls_key):
            self.problem("listen", "tls_cert and tls_key must be given together", "set both paths, or neither")
        if k.require_auth and not k.username:
            self.problem("listen.username", "is missing while require_auth = true",
                         "set the login name the forwarding server uses")  # fmt: skip
        return ListenConfig(k.host, k.port, k.max_message_size, k.tls_cert, k.tls_key, k.require_auth,
                            k.username, self.password("listen", k, required=k.require_auth))  # fmt: skip

    def send(self, k: SendKeys) -> SendConfig:
        prefix = "send"
        if k.transport == "smtp" and not k.host:
            self.problem("send.host", 'is missing for transport = "smtp"', 'write host = "smtp.example.com"')
        auth, oauth = (k.auth, self.auth(k, prefix)) if k.transport == "smtp" else ("password", None)
        self.bearer_in_clear(auth, k.security, k.host, prefix)
        if auth == "oauth2" and not k.username:
            self.problem("send.username", 'is missing for auth = "oauth2"', "write the mailbox address that signs in")
        return SendConfig(
            transport=k.transport, path=k.path, host=k.host or "localhost",
            port=k.port or {"tls": 465, "starttls": 587, "none": 25}[k.security], security=k.security,
            username=k.username, password=self.password(prefix, k, required=bool(k.username) and auth == "password"),
            timeout=k.timeout, give_up_after=k.give_up_after, alert_after=k.alert_after,
            null_sender=k.null_sender, auth=auth, oauth=oauth,
        )  # fmt: skip

    def token_store(self, k: TokenStoreKeys) -> TokenStoreConfig:
        key = self.secret("oauth", k.token_key_env, k.token_key_file, "token_key_env", "token_key_file")
        if not key.env and not key.file:
            key = Secret(env=DEFAULT_TOKEN_KEY_ENV)
        return TokenStoreConfig(key=key, alert_maildir=k.alert_maildir)

    def bearer_in_clear(self, auth: str, security: str, host: str | None, prefix: str) -> None:
        """An access token (for Google: the whole mailbox) never crosses a network in
        clear text: oauth2 with security = "none" only to this machine (a local relay)."""
        if auth == "oauth2" and security == "none" and host and host not in LOOPBACK:
            self.problem(f"{prefix}.security", f'is "none" with auth = "oauth2" to {host}: the access '
                         "token would cross the network unencrypted",
                         'use security = "tls" or "starttls"')  # fmt: skip

    def auth(self, k: ImapKeys | SendKeys, prefix: str) -> OAuthConfig | None:
        """For auth = "oauth2", the app registration (provider, client, endpoints)."""
        given = {name for name in OAUTH_KEYS if getattr(k, name) not in (None, "")}
        if k.auth == "password":
            for name in sorted(given):
                self.problem(f"{prefix}.{name}", 'is only used with auth = "oauth2"', 'set auth = "oauth2", or remove it')
            return None
        for name in ("password_env", "password_file"):
            if getattr(k, name) is not None:
                self.problem(f"{prefix}.{name}", 'is not used with auth = "oauth2"',
                             "remove it: the mailbox signs in with `sla-gateway login`, not a password")  # fmt: skip
        provider = k.provider
        if provider is None:
            self.problem(f"{prefix}.provider", 'is missing for auth = "oauth2"',
                         'write provider = "google", "microsoft" or "custom"')  # fmt: skip
            return None
        if not k.client_id:
            self.problem(f"{prefix}.client_id", "is missing",
                         "write the Application (client) ID of the app you registered; see README")  # fmt: skip
        secret = self.secret(prefix, k.client_secret_env, k.client_secret_file, "client_secret_env", "client_secret_file")
        if provider == "google" and not (secret.env or secret.file):
            self.problem(prefix, "has no client secret (Google requires one)",
                         'set client_secret_env = "VARIABLE" or client_secret_file = "google-client-secret"')  # fmt: skip
        if k.tenant and provider != "microsoft":
            self.problem(f"{prefix}.tenant", 'is only used with provider = "microsoft"', "remove it")
        if provider == "custom":
            if not k.token_url:
                self.problem(f"{prefix}.token_url", 'is missing for provider = "custom"',
                             'write token_url = "https://login.example/oauth2/token"')  # fmt: skip
            if not k.device_authorization_url and not k.authorization_url:
                self.problem(f"{prefix}.device_authorization_url", 'is missing for provider = "custom"',
                             'write device_authorization_url = "https://login.example/oauth2/device" '
                             '(the device sign-in), authorization_url = ".../authorize" (the browser '
                             "sign-in), or both")  # fmt: skip
            device, token, scope = k.device_authorization_url or "", k.token_url or "", ""
            authorize = k.authorization_url or ""
        else:
            for name in ("token_url", "device_authorization_url", "authorization_url"):
                if name in given:
                    self.problem(f"{prefix}.{name}", f'is set by provider = "{provider}"',
                                 'remove it, or use provider = "custom"')  # fmt: skip
            device, token, scope = oauth_preset(provider, k.tenant)
            authorize = oauth_authorization_endpoint(provider, k.tenant)
        return OAuthConfig(provider=provider, client_id=k.client_id or "", client_secret=secret, token_url=token,
                           device_authorization_url=device, scope=scope if k.scope is None else k.scope,
                           tenant=k.tenant, authorization_url=authorize)  # fmt: skip


def _drop(data: Any, loc: Sequence[str | int]) -> bool:
    """Remove the key at `loc` from the raw tables; False when it is not there to remove."""
    for part in loc[:-1]:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return False
    if loc and isinstance(data, dict) and isinstance(loc[-1], str) and loc[-1] in data:
        del data[loc[-1]]
        return True
    return False


@functools.cache
def _adapter(name: str, annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)
