"""`sla-gateway init`: a first, commented configuration from a few answers.

Owns: the provider presets (hosts, ports, security, Sent-folder names, and for Google and
Microsoft 365 the OAuth 2.0 sign-in with its exact scopes), checking each answer the
moment it is given (`ANSWER_CHECKS`: address, time zone with a suggestion for a near
miss, opening hours, holidays, language), and writing a `gateway.toml` that passes
`check` as written, plus a copy of the built-in templates to customise — nothing at all
is written when the configuration would not load. It asks nothing itself: the CLI
collects the answers (prompts or flags).
"""

from __future__ import annotations

import difflib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROVIDERS = ("gmail", "fastmail", "microsoft365", "imap", "smtp-forwarding")


@dataclass(frozen=True)
class Answers:
    shop: str
    address: str
    timezone: str
    country: str  # holidays code, e.g. "DE-BE"; "" for none
    hours: str  # Monday-Friday, e.g. "09:00-17:00"
    provider: str
    imap_host: str = ""
    smtp_host: str = ""
    auth: str = ""  # "password" | "oauth2"; "" = the provider's default (see default_auth)
    language: str = "en"  # the acknowledgments' language


# ---------------------------------------------------------------------------- answers


class BadAnswer(ValueError):
    """An answer that cannot be used; the message says why and what would do."""


def check_address(text: str) -> str:
    from .configtypes import _ADDRESS  # the rule inbox.address is checked by

    value = text.strip()
    if not _ADDRESS.match(value):
        raise BadAnswer(f'"{value}" is not an e-mail address; write e.g. support@shop.example')
    return value


def check_timezone(text: str) -> str:
    """An IANA name; a near miss ("europe/berlin", "Berlin", "Europe/Berln") is refused
    with the names it was probably meant to be."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    value = text.strip()
    known = available_timezones()
    if value in known:
        try:
            ZoneInfo(value)
            return value
        except (ZoneInfoNotFoundError, ValueError):
            pass
    by_lower = {name.lower(): name for name in known}
    by_city = {name.rsplit("/", 1)[-1].lower().replace("_", " "): name for name in known if "/" in name}
    key = value.lower().replace("_", " ")
    guesses = [g for g in (by_lower.get(value.lower()), by_city.get(key)) if g]
    guesses += [by_lower[g] for g in difflib.get_close_matches(value.lower(), list(by_lower), n=2, cutoff=0.85)]
    guesses = list(dict.fromkeys(guesses))[:2]
    hint = ("did you mean " + " or ".join(f'"{g}"' for g in guesses) + "?") if guesses \
        else 'use an IANA name such as "Europe/Berlin" or "America/New_York"'  # fmt: skip
    raise BadAnswer(f'"{value}" is not a known time zone; {hint}')


def check_hours(text: str) -> str:
    from .config import parse_day_hours

    value = text.strip()
    try:
        ranges = parse_day_hours(value)
    except ValueError as exc:
        raise BadAnswer(f"{exc}; write e.g. 09:00-17:00 or 09:00-12:00, 13:00-17:00") from None
    if not ranges:
        raise BadAnswer("the shop needs opening hours on weekdays; write e.g. 09:00-17:00")
    return value


def check_country(text: str) -> str:
    """A `holidays` code ("DE", "DE-BE"), or "" for no public holidays."""
    value = text.strip().upper()
    if not value:
        return ""
    import holidays as holidays_lib

    supported = holidays_lib.list_supported_countries()
    country, _, subdivision = value.partition("-")
    if country not in supported:
        close = difflib.get_close_matches(country, sorted(supported), n=1)
        hint = f'did you mean "{close[0]}"?' if close else 'use a code such as "DE" or "DE-BE", or leave it empty'
        raise BadAnswer(f'"{text.strip()}" is not a known country code; {hint}')
    if subdivision and subdivision not in supported[country]:
        raise BadAnswer(f'"{subdivision}" is not a subdivision of {country}; known: {", ".join(sorted(supported[country]))}')
    return value


def check_language(text: str) -> str:
    from .config import LANGUAGES

    value = text.strip().lower()
    if value not in LANGUAGES:
        raise BadAnswer(f'"{text.strip()}" is not a language the acknowledgments are written in; '
                        f"use one of {', '.join(LANGUAGES)}")  # fmt: skip
    return value


def check_provider(text: str) -> str:
    value = text.strip().lower()
    if value not in PROVIDERS:
        raise BadAnswer(f'"{text.strip()}" is not one of {", ".join(PROVIDERS)}')
    return value


def check_auth(text: str) -> str:
    value = text.strip().lower()
    if value not in ("password", "oauth2"):
        raise BadAnswer(f'"{text.strip()}" is not one of password, oauth2')
    return value


ANSWER_CHECKS: dict[str, Callable[[str], str]] = {
    "address": check_address, "timezone": check_timezone, "hours": check_hours, "country": check_country,
    "language": check_language, "provider": check_provider, "auth": check_auth,
}  # fmt: skip


@dataclass(frozen=True)
class Preset:
    imap_host: str
    smtp_host: str
    smtp_port: int
    sent_folder: str | None
    note: str
    oauth_provider: str = ""  # the [inbox.imap] provider for auth = "oauth2"; "" = none
    oauth_note: tuple[str, ...] = ()


PRESETS = {
    "gmail": Preset("imap.gmail.com", "smtp.gmail.com", 587, None,
                    "Gmail / Google Workspace: turn on 2-Step Verification and create an app password.",
                    "google", ("Google Workspace with OAuth 2.0 (scope https://mail.google.com/, IMAP and SMTP):",
                               "register an OAuth client of type Desktop app in Google Cloud (README: Google",
                               "Workspace / Microsoft 365 with OAuth), put its ID below and its secret in the",
                               "credential file, then `sla-gateway login NAME --browser` (Google refuses the",
                               "device sign-in for mail; over SSH, forward the port it prints).")),
    "fastmail": Preset("imap.fastmail.com", "smtp.fastmail.com", 587, None,
                       "Fastmail: create an app password (Settings → Privacy & Security)."),
    "microsoft365": Preset("outlook.office365.com", "smtp.office365.com", 587, None,
                           "Microsoft 365 accepts only OAuth 2.0 for IMAP: passwords will be refused.",
                           "microsoft", ("Microsoft 365 with OAuth 2.0 (scopes IMAP.AccessAsUser.All, SMTP.Send, offline_access):",
                                         "register an app in Microsoft Entra with public client flows allowed (README:",
                                         "Google Workspace / Microsoft 365 with OAuth), put its Application (client) ID and",
                                         "Directory (tenant) ID below, then run `sla-gateway login NAME` and approve it.")),
}  # fmt: skip


def default_auth(provider: str) -> str:
    """Microsoft 365 refuses passwords: OAuth is its default; app passwords elsewhere."""
    return "oauth2" if provider == "microsoft365" else "password"


def _oauth_lines(preset: Preset, secret_file: str) -> list[str]:
    lines = ['auth = "oauth2"', f'provider = "{preset.oauth_provider}"',
             'client_id = "REPLACE-WITH-YOUR-CLIENT-ID"          # from the app registration']  # fmt: skip
    if preset.oauth_provider == "microsoft":
        lines.append('tenant = "organizations"                      # or your Directory (tenant) ID')
    else:
        lines.append(f'client_secret_file = "{secret_file}"    # relative: $CREDENTIALS_DIRECTORY')
    return lines


def _q(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML)."""
    return json.dumps(value, ensure_ascii=False)


def render_config(a: Answers, database: str, outbox: str, templates: str) -> str:
    """A complete, commented configuration for these answers."""
    local = a.address.split("@")[0]
    name = "".join(ch for ch in local.lower() if ch.isalnum()) or "shop"
    holidays = f"holidays = {_q(a.country)}" if a.country else '# holidays = "DE-BE"'
    lines = [
        f"# sla-gateway configuration for {' '.join(a.shop.split())}, written by `sla-gateway init`.",
        "# Every key is explained in config/gateway.example.toml and the README.",
        "# Check it with: sla-gateway --config THIS_FILE check --connect",
        "",
        f"database = {_q(database)}",
        f"templates = {_q(templates)}                 # your copies of the message templates",
        "",
        "[[inbox]]",
        f'name = "{name}"',
        f"address = {_q(a.address)}",
        f"from_name = {_q(a.shop + ' Support')}",
        f'language = "{a.language}"                               # en, de, fr, es or nl',
        "agents = []                                   # team members' addresses (BCC replies)",
    ]
    preset = PRESETS.get(a.provider)
    oauth = (a.auth or default_auth(a.provider)) == "oauth2" and preset is not None and bool(preset.oauth_provider)
    if a.provider in ("gmail", "fastmail", "microsoft365", "imap"):
        host = a.imap_host or (preset.imap_host if preset else "imap.example.com")
        lines += [
            "",
            f"# {preset.note}" if preset else "# Your mail host's IMAP server.",
            "[inbox.imap]",
            f"host = {_q(host)}",
            "port = 993",
            'security = "tls"',
            f"username = {_q(a.address)}",
            *(_oauth_lines(preset, "oauth-client-secret") if oauth and preset else
              ['password_file = "imap-password"               # relative: $CREDENTIALS_DIRECTORY (systemd)']),
            'folders = ["INBOX"]',
            '# sent_folder = "Sent"                       # found through SPECIAL-USE when not set',
        ]
    lines += [
        "",
        "[business_hours]",
        f"timezone = {_q(a.timezone)}",
        *(f"{day} = {_q(a.hours)}" for day in ("mon", "tue", "wed", "thu", "fri")),
        'sat = "closed"',
        'sun = "closed"',
        holidays,
        "closed = []",
        "",
        "[priority.urgent]",
        'first_reply = "1h"',
        'keywords = ["fraud", "charged twice", "chargeback", "hacked"]',
        "[priority.high]",
        'first_reply = "4h"',
        'keywords = ["refund", "damaged", "wrong item", "never arrived", "cancel my order"]',
        "[priority.normal]",
        'first_reply = "8h"',
        "[priority.low]",
        'first_reply = "24h"',
        'keywords = ["wholesale", "partnership", "feature request"]',
    ]
    if a.provider == "smtp-forwarding":
        lines += ["", "# Your mail server forwards or BCCs support mail here.", "[listen]",
                  'host = "0.0.0.0"', "port = 2525", 'max_message_size = "25MB"']  # fmt: skip
    smtp_host = a.smtp_host or (preset.smtp_host if preset else "")
    if smtp_host:
        lines += ["", "[send]", 'transport = "smtp"', f"host = {_q(smtp_host)}", f"port = {preset.smtp_port if preset else 587}",
                  'security = "starttls"', f"username = {_q(a.address)}"]  # fmt: skip
        if oauth and preset:
            lines += ["# the same sign-in as [inbox.imap]: one `sla-gateway login` serves both",
                      *_oauth_lines(preset, "oauth-client-secret")]  # fmt: skip
        else:
            lines.append('password_file = "smtp-password"')
    else:
        lines += ["", "[send]", 'transport = "maildir"                         # try it out first; then "smtp"',
                  f"path = {_q(outbox)}"]  # fmt: skip
    if oauth and preset:
        lines = [*lines[:lines.index("[inbox.imap]") - 1], *(f"# {line}" for line in preset.oauth_note),
                 *lines[lines.index("[inbox.imap]"):]]  # fmt: skip
        lines += ["", "# The key that encrypts the stored OAuth tokens (README: OAuth); never in this file.",
                  "[oauth]", 'token_key_file = "oauth-token-key"            # relative: $CREDENTIALS_DIRECTORY']  # fmt: skip
    lines += [
        "",
        "[alerts]",
        f"to = [{_q(a.address)}]",
        "",
        "[digest]",
        f"to = [{_q(a.address)}]",
        'at = "08:00"',
        "",
    ]
    return "\n".join(lines)


def write(directory: Path, answers: Answers, *, force: bool = False) -> Path:
    """Write gateway.toml and a templates/ copy into `directory`; returns the config path.
    Raises FileExistsError, or ConfigError when the answers would not load — then having
    written nothing."""
    from .config import parse
    from .render import builtin_templates

    path = directory / "gateway.toml"
    if path.exists() and not force:
        raise FileExistsError(str(path))
    state = directory / "var"
    # What would be written, tried first (with the built-in templates, which exist now).
    parse(render_config(answers, f"sqlite:///{(state / 'sla-gateway.db').resolve()}", str((state / "outbox").resolve()),
                        str(builtin_templates())), str(path))  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    templates = directory / "templates"
    if not templates.exists():
        shutil.copytree(
            builtin_templates(),
            templates,
            ignore=shutil.ignore_patterns("__init__.py", "__pycache__"),
        )
    text = render_config(answers, f"sqlite:///{(state / 'sla-gateway.db').resolve()}", str((state / "outbox").resolve()),
                         str(templates.resolve()))  # fmt: skip
    path.write_text(text, encoding="utf-8")
    return path
