"""`sla-gateway init`: a first, commented configuration from a few answers.

Owns: the provider presets (hosts, ports, security, Sent-folder names) and writing a
`gateway.toml` that passes `check` as written, plus a copy of the built-in templates to
customise. It asks nothing itself: the CLI collects the answers (prompts or flags).
"""

from __future__ import annotations

import json
import shutil
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


@dataclass(frozen=True)
class Preset:
    imap_host: str
    smtp_host: str
    smtp_port: int
    sent_folder: str | None
    note: str


PRESETS = {
    "gmail": Preset("imap.gmail.com", "smtp.gmail.com", 587, None,
                    "Gmail / Google Workspace: turn on 2-Step Verification and create an app password."),
    "fastmail": Preset("imap.fastmail.com", "smtp.fastmail.com", 587, None,
                       "Fastmail: create an app password (Settings → Privacy & Security)."),
    "microsoft365": Preset("outlook.office365.com", "smtp.office365.com", 587, None,
                           "Microsoft 365 accepts only OAuth 2.0 for IMAP: passwords will be refused."),
}  # fmt: skip


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
        'language = "en"                               # en, de, fr, es or nl',
        "agents = []                                   # team members' addresses (BCC replies)",
    ]
    preset = PRESETS.get(a.provider)
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
            'password_file = "imap-password"               # relative: $CREDENTIALS_DIRECTORY (systemd)',
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
                  'security = "starttls"', f"username = {_q(a.address)}", 'password_file = "smtp-password"']  # fmt: skip
    else:
        lines += ["", "[send]", 'transport = "maildir"                         # try it out first; then "smtp"',
                  f"path = {_q(outbox)}"]  # fmt: skip
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
    """Write gateway.toml and a templates/ copy into `directory`; returns the config path."""
    from .render import builtin_templates

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.toml"
    if path.exists() and not force:
        raise FileExistsError(str(path))
    templates = directory / "templates"
    if not templates.exists():
        shutil.copytree(
            builtin_templates(),
            templates,
            ignore=shutil.ignore_patterns("__init__.py", "__pycache__"),
        )
    state = directory / "var"
    text = render_config(answers, f"sqlite:///{(state / 'sla-gateway.db').resolve()}", str((state / "outbox").resolve()),
                         str(templates.resolve()))  # fmt: skip
    path.write_text(text, encoding="utf-8")
    return path
