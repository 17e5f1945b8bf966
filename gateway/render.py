"""Jinja2 templates -> finished messages (acknowledgments, breach notices, alerts, digests,
the published policy).

Owns: the sandboxed template environments, one per language (operator templates first, then
the built-in ones; an operator's `LANG/NAME` before `NAME`), with Jinja2's i18n extension
wired to that language's message catalog (gateway/catalogs.py: a sentence without a
translation stays English, sentence by sentence); the localised values templates see
(dates, times, numbers and durations via Babel only; the sentences around them are msgids
here or in the templates, never word tables); and building messages whose headers are
safe: no header value is ever taken from a message unsanitised, so no customer can inject a
header. Pure apart from reading template and catalog files.
"""

from __future__ import annotations

import gettext
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import format_datetime, formataddr, make_msgid
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from babel import Locale
from babel.dates import DateTimeFormat, format_date, format_time, get_day_names
from babel.dates import format_datetime as format_datetime_babel
from babel.lists import format_list
from babel.numbers import format_decimal, format_percent
from babel.units import format_unit
from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from . import catalogs
from .calendar import BusinessCalendar
from .closed import ClosedDays
from .config import Config, InboxConfig
from .model import Deadline, Parsed
from .rules import LOOP_HEADER
from .senderinfo import customer_date, greeting_name
from .tracker import without_prefixes

Translations = gettext.NullTranslations

# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def builtin_templates() -> Path:
    return Path(str(files("gateway.templates")))


def clean_header(value: str, limit: int = 200) -> str:
    """One line, no control characters, bounded length: safe in any header."""
    text = _CONTROL.sub(" ", value).strip()
    text = re.sub(r"\s{2,}", " ", text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def template_line(exc: BaseException) -> str | None:
    """"FILE:LINE" of the template line an error was raised in (Jinja2 puts template
    lines in the traceback), or None when no template was rendering."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.endswith(".py")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def translations_for(config: Config, language: str) -> Translations:
    """The catalog chain for `language`: the owner's catalog (beside their templates), the
    built-in one, then English."""
    return catalogs.translations(language, config.templates)


class Renderer:
    """Templates for every inbox language, each language's environment made once."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._search = [str(builtin_templates())]
        if config.templates:
            self._search.insert(0, config.templates)
        self._envs: dict[str, SandboxedEnvironment] = {}
        self._translations: dict[str, Translations] = {}
        self._hours: dict[str, list[dict[str, str]]] = {}  # the week does not change
        self._templates: dict[tuple[str, str], Any] = {}

    @property
    def env(self) -> SandboxedEnvironment:
        """The environment of the first inbox's language (for compiling templates)."""
        return self.environment(self.config.inboxes[0].language)

    def translations(self, language: str) -> Translations:
        found = self._translations.get(language)
        if found is None:
            found = self._translations[language] = translations_for(self.config, language)
        return found

    def environment(self, language: str) -> SandboxedEnvironment:
        env = self._envs.get(language)
        if env is None:
            env = SandboxedEnvironment(
                loader=ChoiceLoader([FileSystemLoader(p) for p in self._search]),
                autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
                undefined=StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=True,
                auto_reload=False,  # loaded once: a changed template takes effect on reload
                extensions=["jinja2.ext.i18n"],
            )
            env.policies["ext.i18n.trimmed"] = True  # as babel.cfg extracts them
            t = self.translations(language)
            env.install_gettext_translations(t, newstyle=True)  # type: ignore[attr-defined]
            env.filters.update(digest_filters(language, t))
            self._envs[language] = env
        return env

    def template(self, name: str, language: str) -> Any:
        """The template `name` for `language` (the owner's per-language copy first),
        looked up once per (language, name): templates load once."""
        template = self._templates.get((language, name))
        if template is None:
            template = self.environment(language).select_template([f"{language}/{name}", name])
            self._templates[(language, name)] = template
        return template

    def render(self, name: str, language: str, context: dict[str, Any]) -> str:
        return str(self.template(name, language).render(**context))

    # ------------------------------------------------------------------ acknowledgments

    def acknowledgment(
        self,
        *,
        parsed: Parsed,
        inbox: InboxConfig,
        deadline: Deadline,
        reference: str,
        ack_to: str,
        customer_name: str,
        now: datetime,
        notice: str = "",
    ) -> Message:
        cal = self.config.calendar
        lang = inbox.language
        context = self.ack_context(parsed=parsed, inbox=inbox, deadline=deadline, reference=reference,
                                   customer_name=customer_name, now=now, notice=notice)  # fmt: skip
        text = self.render("ack.txt.j2", lang, context)
        html = self.render("ack.html.j2", lang, context)
        subject_line = self.render("ack.subject.j2", lang, context).strip()
        references = None
        if parsed.message_id:
            chain = [*parsed.references[-10:], parsed.message_id]
            references = " ".join(f"<{m}>" for m in dict.fromkeys(chain))
        return build_message(
            from_name=inbox.from_name,
            from_addr=inbox.address,
            to=ack_to,
            subject=subject_line,
            date=cal.local(now),
            message_id=make_msgid("ack", domain=self.config.message_id_domain),
            headers=[
                ("In-Reply-To", f"<{parsed.message_id}>" if parsed.message_id else None),
                ("References", references),
                ("Auto-Submitted", "auto-replied"),
                ("Precedence", "bulk"),
                ("X-Auto-Response-Suppress", "All"),
                (LOOP_HEADER, inbox.address),
                ("X-SLA-Gateway-Reference", reference),
            ],
            text=text,
            html=html,
        )

    def ack_context(
        self,
        *,
        parsed: Parsed,
        inbox: InboxConfig,
        deadline: Deadline,
        reference: str,
        customer_name: str,
        now: datetime,
        notice: str = "",
    ) -> dict[str, Any]:
        """The values the acknowledgment templates see (`check` renders them with samples);
        `notice` is the current exception (`sla-gateway notice set`), or empty."""
        cal = self.config.calendar
        lang = inbox.language
        t = self.translations(lang)
        form = parsed.sender is not None and self.config.is_form_sender(parsed.sender.addr)
        always = self.config.clock_for(deadline.priority) is self.config.round_the_clock
        return {
            "language": lang,
            "customer_name": clean_header(greeting_name(customer_name, parsed.header("from") or ""), 80),
            "subject": clean_header(without_prefixes(parsed.subject), 150),
            "reference": reference,
            "shop_name": inbox.from_name or inbox.address,
            "inbox_address": inbox.address,
            "priority": deadline.priority,
            "window": window_values(deadline.effective_window, lang, t, always),
            "published_window": window_values(deadline.window, lang, t, always),
            "due": when(deadline.due_at, lang),
            "due_sender": sender_time(deadline.due_at, customer_date(parsed, form=form), lang),
            "opening_hours": self._hours.get(lang) or self._hours.setdefault(
                lang, opening_hours(cal, lang, t)
            ),
            "timezone": self.config.hours.timezone,
            "season": deadline.season,
            "season_notice": _season_notice(cal, deadline, lang),
            "closure": closure(cal, now, lang, self.config.hours.closed_days),
            "notice": notice,
        }


@dataclass(frozen=True)
class Alert:
    """An alert to the owner as values: which one (its template is `alert-KIND.txt.j2`)
    and what it shows. Dates in `values` are aware datetimes (shown in the shop's time
    zone), durations seconds, counts numbers; the template formats them in the shop's
    language."""

    kind: str
    values: dict[str, Any] = field(default_factory=dict)


# Every alert the gateway sends to the owner, by kind (templates/alert-KIND.txt.j2).
ALERTS = ("loop", "breaker", "replies", "set-aside", "too-large", "outage", "sign-in", "test", "codes")


def alert_template(kind: str) -> str:
    return f"alert-{kind}.txt.j2"


def render_alert(renderer: Renderer, alert: Alert) -> tuple[str, str]:
    """(subject, text) of an alert, in the first inbox's language: the template's
    `{% set subject %}` block and its body."""
    config = renderer.config
    lang = config.inboxes[0].language
    name = alert_template(alert.kind)
    template = renderer.template(name, lang)
    context = {"language": lang, "shop_name": config.inboxes[0].from_name or config.inboxes[0].address,
               "timezone": config.hours.timezone, **alert.values}  # fmt: skip
    module = template.make_module(context)
    subject = clean_header(str(getattr(module, "subject", "")))
    return subject, str(module).lstrip("\n")


def alert_message(renderer: Renderer, recipient: str, alert: Alert, *, now: datetime) -> Message:
    """A short operational notice to the owner (never a customer), from its template."""
    config = renderer.config
    inbox = config.inboxes[0]
    subject, text = render_alert(renderer, alert)
    return build_message(
        from_name="sla-gateway",
        from_addr=inbox.address,
        to=recipient,
        subject=f"[sla-gateway] {subject}",
        date=config.calendar.local(now),
        message_id=make_msgid("alert", domain=config.message_id_domain),
        headers=[
            ("Auto-Submitted", "auto-generated"),
            ("Precedence", "bulk"),
            ("X-Auto-Response-Suppress", "All"),
            (LOOP_HEADER, inbox.address),
        ],
        text=text,
    )


def alert_recipients(config: Config) -> tuple[str, ...]:
    """Who gets the owner's alerts: `alerts.to`, else the first inbox's address."""
    return config.alerts.to or (config.inboxes[0].address,)


class _WirePolicy(Compat32):
    """compat32 with CRLF line ends, and a short cut for the common header: ASCII, one
    line, short enough not to fold, written as it is (the stdlib runs every header
    through `email.header.Header`, the larger part of serialising our messages). A CR or
    LF in a value that is not folding is never written as a line break, on either path."""

    def fold_binary(self, name: str, value: str) -> bytes:
        if isinstance(value, str) and ("\r" in value or "\n" in value):
            value = _folds_only(value)
        line = f"{name}: {value}"
        if (
            isinstance(value, str)
            and len(line) <= (self.max_line_length or 78)
            and line.isascii()
            and "\n" not in line
            and "\r" not in line
        ):
            return (line + self.linesep).encode("ascii")
        return super().fold_binary(name, value)


WIRE = _WirePolicy(linesep="\r\n")


def _folds_only(value: str) -> str:
    """A header value whose line breaks can only be folding: kept when every further line
    starts with white space and has text, else joined into one line (no CR or LF in a value
    may ever start a header line or end the header block)."""
    lines = _LINE_BREAK.split(value)
    if all(line[:1] in (" ", "\t") and line.strip() for line in lines[1:]):
        return value
    return " ".join(part for part in (line.strip() for line in lines) if part)


def to_wire(message: Message) -> bytes:
    """A message as it goes on the wire: bytes with CRLF line ends."""
    return message.as_bytes(policy=WIRE)


def _utf8_qp() -> Charset:
    charset = Charset("utf-8")
    charset.body_encoding = QP
    return charset


_QP_UTF8: Any = _utf8_qp()  # MIMEText accepts a Charset at run time; typeshed says str


def _header_text(value: str) -> str:
    """A header value, RFC 2047-encoded when it is not ASCII; never more than one line."""
    value = clean_header(value, 250)
    return value if value.isascii() else Header(value, "utf-8").encode()


def build_message(
    *,
    from_name: str,
    from_addr: str,
    to: str,
    subject: str,
    date: datetime,
    message_id: str,
    headers: list[tuple[str, str | None]],
    text: str,
    html: str | None = None,
) -> Message:
    """A text (+ HTML) message with safe headers. Uses the stdlib's lean compat32 MIME
    classes: the header registry's objects cost milliseconds per message."""
    if html is None:
        message: Message = MIMEText(text, "plain", _QP_UTF8)
    else:
        # A random boundary of our own: the stdlib's search for one that no line of the
        # parts contains compiles a regular expression per message. "=_" never occurs in
        # quoted-printable text ("=" is followed by two hex digits or a line end there).
        message = MIMEMultipart("alternative", boundary=f"=_{secrets.token_hex(16)}")
        message.attach(MIMEText(text, "plain", _QP_UTF8))
        message.attach(MIMEText(html, "html", _QP_UTF8))
    message["From"] = formataddr((clean_header(from_name, 80), from_addr), charset="utf-8")
    message["To"] = clean_header(to, 320)
    message["Subject"] = _header_text(subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    for name, value in headers:
        if value is not None:
            message[name] = clean_header(value, 2000)
    return message


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True)
class When:
    """A moment as templates show it, localised."""

    date: str  # "Monday, November 23, 2026"
    time: str  # "1:00 PM" / "13:00"
    zone: str  # "CET", "UTC-05:00"
    iso: str

    def __str__(self) -> str:
        return f"{self.date}, {self.time} {self.zone}"


def _zone_name(moment: datetime) -> str:
    name = moment.tzname() or ""
    if re.fullmatch(r"[A-Z]{2,5}", name):
        return name
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "−"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def when(moment: datetime, language: str) -> When:
    """A moment as templates show it: to the minute (Babel's short time shows no seconds),
    so that the Babel formatting is cached per minute; `iso` is the moment itself."""
    shown = _when(moment.replace(second=0, microsecond=0), moment.tzinfo, language)
    return When(shown.date, shown.time, shown.zone, moment.isoformat())


@lru_cache(maxsize=4096)  # many acknowledgments share a deadline's minute; Babel is slow
def _when(moment: datetime, zone: Any, language: str) -> When:
    """`when`, cached by minute, zone (equal instants in two zones read differently) and
    language."""
    return When(
        date=long_date(moment, "full", language),
        time=format_time(moment, format="short", tzinfo=moment.tzinfo, locale=language),
        zone=_zone_name(moment),
        iso=moment.isoformat(),
    )


def long_date(value: date, length: Literal["full", "long"], language: str) -> str:
    """Babel's full or long date, with the first day of a month written as the language
    writes it in dates ("mardi 1er décembre 2026"): the catalog's translation of the day
    number "1" in the context "first day of a month, in dates" (most languages keep "1")."""
    first = _first_day(language)
    if value.day != 1 or first == "1":
        return format_date(value, format=length, locale=language)
    locale = Locale.parse(language)
    day = value.date() if isinstance(value, datetime) else value
    fields = _FirstDay(DateTimeFormat(day, locale=locale), first)
    return str(locale.date_formats[length].format % fields)


@lru_cache(maxsize=32)
def _first_day(language: str) -> str:
    return catalogs.translations(language).pgettext("first day of a month, in dates", "1")


class _FirstDay:
    """Babel's date fields, the day of the month ("d") replaced."""

    def __init__(self, fields: DateTimeFormat, first: str) -> None:
        self.fields, self.first = fields, first

    def __getitem__(self, name: str) -> str:
        return self.first if name == "d" else str(self.fields[name])


def short_moment(moment: datetime, language: str) -> str:
    """A moment in an alert's list, in its own zone: "Mon 23 Nov 10:00 CET" (Babel's
    day and month names, as the digest's day columns)."""
    return (format_datetime_babel(moment, "EEE d MMM HH:mm", tzinfo=moment.tzinfo, locale=language)
            + " " + _zone_name(moment))  # fmt: skip


def sender_time(due: datetime, sender_date: datetime | None, language: str) -> When | None:
    """The deadline in the sender's own offset (from their Date header), when it differs."""
    if sender_date is None or sender_date.utcoffset() is None:
        return None
    offset = sender_date.utcoffset()
    if offset == due.utcoffset():
        return None
    assert offset is not None
    return when(due.astimezone(timezone(offset)), language)


def _plural_n(value: float, language: str) -> int:
    """The integer gettext's plural formula should see for `value`: the value itself when
    whole, else the smallest whole number in the same CLDR plural category ("1,5 heure"
    is singular in French, "1,5 Stunden" plural in German)."""
    if float(value).is_integer():
        return int(value)
    locale = Locale.parse(language)
    category = locale.plural_form(value)
    return next((n for n in range(200) if locale.plural_form(n) == category), 2)


def business_time(seconds: float, language: str, t: Translations, round_the_clock: bool = False) -> str:
    """A response window for customers: "30 business minutes", "4 business hours",
    "1 Stunde Geschäftszeit", "2 heures ouvrées" (the number through Babel, the words
    from the catalog); for a `clock = "24/7"` priority plain time: "30 minutes", "4 hours"."""
    minutes = round(seconds / 60)
    if minutes < 60:
        if round_the_clock:
            text = t.ngettext("%(num)s minute", "%(num)s minutes", minutes)
        else:
            text = t.ngettext("%(num)s business minute", "%(num)s business minutes", minutes)
        return text % {"num": format_decimal(minutes, locale=language)}
    hours = round(minutes / 60, 2)
    n = _plural_n(hours, language)
    if round_the_clock:
        text = t.ngettext("%(num)s hour", "%(num)s hours", n)
    else:
        text = t.ngettext("%(num)s business hour", "%(num)s business hours", n)
    return text % {"num": format_decimal(hours, locale=language)}


def window_values(window: timedelta, language: str, t: Translations,
                  round_the_clock: bool = False) -> dict[str, Any]:  # fmt: skip
    """A window as templates see it: `text` to show, and the figures behind it."""
    return dict(_window_values(window, language, t, round_the_clock))


@lru_cache(maxsize=256)  # a handful of windows per configuration; Babel is slow
def _window_values(window: timedelta, language: str, t: Translations, round_the_clock: bool) -> dict[str, Any]:
    minutes = round(window.total_seconds() / 60)
    return {
        "text": business_time(window.total_seconds(), language, t, round_the_clock),
        "minutes": minutes,
        "hours": format_decimal(round(minutes / 60, 2), locale=language),
        "in_minutes": minutes < 60,
        "one": minutes == 60 or minutes == 1,
    }


def opening_hours(cal: BusinessCalendar, language: str, t: Translations) -> list[dict[str, str]]:
    """Consecutive weekdays with the same hours, grouped: [{days, hours}]."""
    names = get_day_names("wide", locale=language)
    groups: list[tuple[list[int], str]] = []
    for index, ranges in enumerate(cal.week):
        if not ranges:
            text = ""
        elif [(r.start, r.end) for r in ranges] == [(0, 24 * 60)]:
            text = t.gettext("open around the clock")
        else:
            text = ", ".join(
                t.gettext("%(start)s–%(end)s")
                % {"start": _clock(r.start, language, t), "end": _clock(r.end, language, t)}
                for r in ranges
            )
        if groups and groups[-1][1] == text and groups[-1][0][-1] == index - 1:
            groups[-1][0].append(index)
        else:
            groups.append(([index], text))
    result = []
    for days, text in groups:
        if not text:
            continue
        if len(days) == 7:
            label = t.gettext("Every day")
        else:
            label = str(names[days[0]] if len(days) == 1 else f"{names[days[0]]}–{names[days[-1]]}")
        # Day names are lower case in French, Spanish and Dutch; these start a line.
        result.append({"days": label[:1].upper() + label[1:], "hours": text})
    return result


def _clock(minutes: int, language: str, t: Translations) -> str:
    minutes %= 24 * 60
    if minutes == 0:
        return t.gettext("midnight")
    return format_time(time(minutes // 60, minutes % 60), format="short", locale=language)


def closure(cal: BusinessCalendar, now: datetime, language: str, closed: ClosedDays) -> dict[str, Any] | None:
    """When today is a closed day (holiday, closure): its reason, in the inbox's language
    where the holidays package knows it (else empty for a plain closure), and when we reopen."""
    reason = closed.reason(cal.local(now).date(), language)
    if reason is None:
        return None
    return {"reason": reason, "reopens": when(cal.next_open(now), language)}


def _season_notice(cal: BusinessCalendar, deadline: Deadline, language: str) -> str:
    season = cal.season_at(deadline.received_at)
    return season.notice_for(language) if season else ""


def breach_context(
    config: Config, *, inbox: InboxConfig, reference: str, subject: str, promised: datetime,
    new_due: datetime, notice: str = "", remedy: str = "", code: str = "",
) -> dict[str, Any]:  # fmt: skip
    """The values the breach-notice templates see: `notice` the current exception
    (`sla-gateway notice`), `remedy` what the shop offers for this lateness, `code` the
    coupon code that goes with it (each may be empty)."""
    cal, lang = config.calendar, inbox.language
    return {
        **_to_the_customer(inbox, reference, subject),
        "promised": when(cal.local(promised), lang),
        "new_due": when(cal.local(new_due), lang),
        "notice": notice,
        "remedy": remedy,
        "code": code,
    }


def breach_notice(
    renderer: Renderer,
    *,
    inbox: InboxConfig,
    reference: str,
    subject: str,
    to: str,
    promised: datetime,
    new_due: datetime,
    now: datetime,
    thread: list[str] | None = None,
    notice: str = "",
    remedy: str = "",
    code: str = "",
) -> Message:
    """The one honest message a customer gets when we missed a promised reply time."""
    context = breach_context(renderer.config, inbox=inbox, reference=reference, subject=subject,
                             promised=promised, new_due=new_due, notice=notice, remedy=remedy,
                             code=code)  # fmt: skip
    return follow_up_message(renderer, "breach", inbox=inbox, reference=reference, to=to,
                             context=context, now=now, thread=thread or [])  # fmt: skip


# ---------------------------------------------------------------------------- follow-through

# The templates of each message the customer gets after the acknowledgment.
FOLLOW_UP = {
    "breach": ("breach.subject.j2", "breach.txt.j2", "breach.html.j2"),
    "reminder": ("reminder.subject.j2", "reminder.txt.j2", "reminder.html.j2"),
    "closed": ("closed.subject.j2", "closed.txt.j2", "closed.html.j2"),
}


def follow_up_context(
    config: Config, *, inbox: InboxConfig, reference: str, subject: str, since: datetime,
) -> dict[str, Any]:  # fmt: skip
    """The values the reminder and closing-notice templates see: `since` when the team
    began to wait for the customer."""
    return {
        **_to_the_customer(inbox, reference, subject),
        "since": when(config.calendar.local(since), inbox.language),
    }


def _to_the_customer(inbox: InboxConfig, reference: str, subject: str) -> dict[str, Any]:
    """What every message in a conversation's thread shows: its language, the reference,
    the subject without stacked prefixes, the shop's name."""
    return {
        "language": inbox.language,
        "reference": reference,
        "subject": clean_header(without_prefixes(subject), 150),
        "shop_name": inbox.from_name or inbox.address,
    }


def follow_up_message(
    renderer: Renderer, kind: str, *, inbox: InboxConfig, reference: str, to: str,
    context: dict[str, Any], now: datetime, thread: list[str],
) -> Message:  # fmt: skip
    """A message to the customer in the conversation's thread (`thread`: the customer's
    Message-IDs, oldest first; In-Reply-To names the last), made like the acknowledgment:
    one recipient, Auto-Submitted: auto-replied, our loop header and Message-ID, so that
    any answer to it by a machine is recognised as an answer to our own mail."""
    lang = inbox.language
    subject_t, text_t, html_t = FOLLOW_UP[kind]
    ids = thread[-10:]
    return build_message(
        from_name=inbox.from_name,
        from_addr=inbox.address,
        to=to,
        subject=renderer.render(subject_t, lang, context).strip(),
        date=renderer.config.calendar.local(now),
        message_id=make_msgid(kind, domain=renderer.config.message_id_domain),
        headers=[
            ("In-Reply-To", f"<{ids[-1]}>" if ids else None),
            ("References", " ".join(f"<{m}>" for m in ids) if ids else None),
            ("Auto-Submitted", "auto-replied"),
            ("Precedence", "bulk"),
            ("X-Auto-Response-Suppress", "All"),
            (LOOP_HEADER, inbox.address),
            ("X-SLA-Gateway-Reference", reference),
        ],
        text=renderer.render(text_t, lang, context),
        html=renderer.render(html_t, lang, context),
    )


# ---------------------------------------------------------------------------- the digest

# Why mail was not acknowledged, as counted phrases ("3 bounces"), by rule name.
_NOT_ACKNOWLEDGED: dict[str, Callable[[Translations, int], str]] = {
    "bounce": lambda t, n: t.ngettext("%(num)s bounce", "%(num)s bounces", n),
    "complaint": lambda t, n: t.ngettext("%(num)s abuse complaint", "%(num)s abuse complaints", n),
    "auto-submitted": lambda t, n: t.ngettext("%(num)s automatic reply", "%(num)s automatic replies", n),
    "auto-reply": lambda t, n: t.ngettext("%(num)s out-of-office reply", "%(num)s out-of-office replies", n),
    "suppress-header": lambda t, n: t.ngettext("%(num)s mail asking for no automatic reply", "%(num)s mails asking for no automatic reply", n),
    "mailing-list": lambda t, n: t.ngettext("%(num)s mailing list mail", "%(num)s mailing list mails", n),
    "precedence": lambda t, n: t.ngettext("%(num)s bulk mail", "%(num)s bulk mails", n),
    "spam": lambda t, n: t.ngettext("%(num)s spam mail", "%(num)s spam mails", n),
    "role-sender": lambda t, n: t.ngettext("%(num)s no-reply/system sender", "%(num)s no-reply/system senders", n),
    "own-mail": lambda t, n: t.ngettext("%(num)s mail of our own", "%(num)s mails of our own", n),
    "no-sender": lambda t, n: t.ngettext("%(num)s mail without sender", "%(num)s mails without sender", n),
    "no-return-path": lambda t, n: t.ngettext("%(num)s mail without return path", "%(num)s mails without return path", n),
    "quotes-our-ack": lambda t, n: t.ngettext("%(num)s answer to our acknowledgment", "%(num)s answers to our acknowledgments", n),
    "bad-return-path": lambda t, n: t.ngettext("%(num)s mail with an unusable return path", "%(num)s mails with an unusable return path", n),
    "follow-up": lambda t, n: t.ngettext("%(num)s follow-up", "%(num)s follow-ups", n),
    "too-late": lambda t, n: t.ngettext("%(num)s mail too late to promise", "%(num)s mails too late to promise", n),
    "once-per-sender": lambda t, n: t.ngettext("%(num)s repeat sender", "%(num)s repeat senders", n),
    "daily-limit": lambda t, n: t.ngettext("%(num)s mail over the daily limit", "%(num)s mails over the daily limit", n),
    "circuit-breaker": lambda t, n: t.ngettext("%(num)s mail held by the circuit breaker", "%(num)s mails held by the circuit breaker", n),
    "disabled": lambda t, n: t.ngettext("%(num)s mail (acknowledgments off)", "%(num)s mails (acknowledgments off)", n),
}  # fmt: skip

# Mail the listener refused, as counted phrases, by reason.
_REFUSED: dict[str, Callable[[Translations, int], str]] = {
    "too-large": lambda t, n: t.ngettext("%(num)s mail refused: too large", "%(num)s mails refused: too large", n),
    "line-too-long": lambda t, n: t.ngettext("%(num)s mail refused: a line too long", "%(num)s mails refused: a line too long", n),
    "unknown-recipient": lambda t, n: t.ngettext("%(num)s mail refused: not one of our addresses", "%(num)s mails refused: not one of our addresses", n),
}  # fmt: skip


def _counted(table: dict[str, Callable[[Translations, int], str]], key: str, n: int,
             language: str, t: Translations) -> str:  # fmt: skip
    """"3 bounces": the table's phrase for `key`, or the key itself for one we do not know
    (a rule added later), with the count in the language's digits."""
    phrase = table[key](t, n) if key in table else f"%(num)s {key}"
    return phrase % {"num": format_decimal(n, locale=language)}


def duration_text(
    seconds: float | None, language: str, length: Literal["short", "narrow", "long"] = "short"
) -> str:
    """Business time for people, through Babel's units: "45 min", "1 hr 30 min", "26 hr",
    "4 days 21 hr" in English, "4 Tg., 21 Std." in German; the two largest units, days
    from 48 hours on. `length="narrow"`: "16m", "1h 30m" (the alerts' spans of clock time);
    `length="long"`: "1 hour 30 minutes" (the command line's)."""
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 24 * 60) if minutes >= 48 * 60 else (0, minutes)
    hours, minutes = divmod(rest, 60)
    units = [(days, "duration-day"), (hours, "duration-hour"), (minutes, "duration-minute")]
    while len(units) > 1 and units[0][0] == 0:
        units.pop(0)
    shown = [format_unit(v, unit, length=length, locale=language) for v, unit in units[:2] if v]
    if not shown:
        return format_unit(0, "duration-minute", length=length, locale=language)
    return _unit_list(shown, language)


def _unit_list(parts: list[str], language: str) -> str:
    if len(parts) == 1:
        return parts[0]
    try:
        return format_list(parts, style="unit-narrow", locale=language)
    except KeyError:  # a locale without that list pattern
        return " ".join(parts)


def digest_message(renderer: Renderer, data: Any, *, to: str, now: datetime) -> Message:
    """The multipart digest mail (HTML and a text alternative that reads on its own)."""
    html, text, subject = render_digest(renderer, data)
    inbox = renderer.config.inboxes[0]
    return build_message(
        from_name="sla-gateway", from_addr=inbox.address, to=to, subject=subject,
        date=renderer.config.calendar.local(now),
        message_id=make_msgid("digest", domain=renderer.config.message_id_domain),
        headers=[("Auto-Submitted", "auto-generated"), ("Precedence", "bulk"),
                 ("X-Auto-Response-Suppress", "All"), (LOOP_HEADER, inbox.address)],
        text=text, html=html,
    )  # fmt: skip


def period_label(period: Any, day: date, language: str, t: Translations) -> str:
    """A digest period's column heading: the day's short name, or "7 days"."""
    days = round((period.end - period.start).total_seconds() / 86400)
    if days <= 1:
        return format_date(day, format="EEE d MMM", locale=language)
    return t.ngettext("%(num)s day", "%(num)s days", days) % {
        "num": format_decimal(days, locale=language)
    }


def suggestion_note(suggestion: Any, language: str, t: Translations) -> str:
    """A suggestion's note (a msgid from digest.py, placeholders named after the
    suggestion's fields) in `language`."""
    from .digest import MIN_ANSWERED, TIGHTEN_AFTER

    return t.gettext(suggestion.note) % {
        "answered": format_decimal(suggestion.answered, locale=language),
        "needed": format_decimal(MIN_ANSWERED, locale=language),
        "share": format_percent(TIGHTEN_AFTER, locale=language),
    }


def digest_filters(language: str, t: Translations) -> dict[str, Callable[..., str]]:
    """The templates' filters: numbers, dates, durations and counted phrases in `language`."""

    def hours(values: list[int]) -> str:
        return ", ".join(format_time(time(h), format="short", locale=language) for h in values)

    return {
        "pct": lambda v: "—" if v is None else format_percent(v, locale=language),
        "dur": lambda v: duration_text(v, language),
        "span": lambda v: duration_text(v, language, "narrow"),
        "num": lambda v: format_decimal(v or 0, locale=language),
        "longdate": lambda d: long_date(d, "full", language),
        "shortdate": lambda d: format_date(d, format="short", locale=language),
        "dayname": lambda d: format_date(d, format="EEE d MMM", locale=language),
        "period": lambda p, day: period_label(p, day, language, t),
        "not_acknowledged": lambda pairs: ", ".join(
            _counted(_NOT_ACKNOWLEDGED, rule, n, language, t) for rule, n in pairs
        ),
        "refused": lambda pairs: "; ".join(
            _counted(_REFUSED, reason, n, language, t) for reason, n in pairs
        ),
        "note": lambda s: suggestion_note(s, language, t),
        "hours": hours,
        "priority": lambda name: priority_name(name, t),
        "moment": lambda m: short_moment(m, language),
        "stamp": lambda m: format_datetime_babel(m, "yyyy-MM-dd HH:mm:ss", tzinfo=m.tzinfo,
                                                 locale=language) + " " + _zone_name(m),
    }


def render_digest(renderer: Renderer, data: Any) -> tuple[str, str, str]:
    """(html, text, subject) for a `digest.DigestData`."""
    config = renderer.config
    lang = config.inboxes[0].language
    t = renderer.translations(lang)

    def figures(period: Any, name: str) -> Any:
        for key, value in period.priorities:
            if key == name:
                return value
        from .digest import Figures

        return Figures()

    total = sum(data.by_hour) or 1
    closed_share = (
        sum(n for n, is_open in zip(data.by_hour, data.open_hours, strict=True) if not is_open)
        / total
    )
    context = {
        "data": data,
        "periods": data.periods,
        "shop": data.shop,
        "language": lang,
        "targets": [(p.name, int(p.first_reply.total_seconds())) for p in config.priorities],
        "figures": figures,
        "max_hour": max(data.by_hour) or 1,
        "max_weekday": max(data.by_weekday) or 1,
        "weekday_names": [
            str(get_day_names("abbreviated", locale=lang)[i]) for i in range(7)
        ],  # Monday first
        "busiest_hours": [h for h in sorted(range(24), key=lambda h: -data.by_hour[h])[:3]
                          if data.by_hour[h]],  # hours without mail are no busiest hours
        "outside_share": closed_share if sum(data.by_hour) else None,
    }
    kind, headline, short = digest_headline(data, lang, t)
    context.update(headline=headline, headline_kind=kind)
    html = renderer.render("digest.html.j2", lang, context)
    text = renderer.render("digest.txt.j2", lang, context)
    subject = t.gettext("%(shop)s: customer service on %(day)s — %(headline)s") % {
        "shop": data.shop, "day": format_date(data.day, format="medium", locale=lang),
        "headline": short,
    }  # fmt: skip
    return html, text, subject


def digest_headline(data: Any, language: str, t: Translations) -> tuple[str, str, str]:
    """(kind, headline, its short form for the subject). The day's share on time; on a
    day no first reply fell due, what is at risk now (never "nothing was due" above a list
    of replies about to fall due); else that no mail came, or that nothing fell due."""
    day = data.periods[0].overall
    if day.compliance is not None:
        pct = format_percent(day.compliance, locale=language)
        return ("on-time", t.gettext("%(pct)s of first replies on time") % {"pct": pct},
                t.gettext("%(pct)s on time") % {"pct": pct})  # fmt: skip
    risky = len(data.at_risk) + data.at_risk_more
    if risky:
        num = {"num": format_decimal(risky, locale=language)}
        return ("at-risk", t.ngettext("%(num)s reply at risk now", "%(num)s replies at risk now", risky) % num,
                t.ngettext("%(num)s reply at risk", "%(num)s replies at risk", risky) % num)  # fmt: skip
    if data.empty:
        return ("no-mail", t.gettext("No customer mail arrived that day"), t.gettext("no customer mail"))
    return ("none-due", t.gettext("No first reply fell due that day"), t.gettext("no first reply was due"))


# ---------------------------------------------------------------------------- the published policy

# The default priorities' names as customers read them; an owner's own names show as written.
_PRIORITY_NAMES: dict[str, Callable[[Translations], str]] = {
    "urgent": lambda t: t.gettext("Urgent"),
    "high": lambda t: t.gettext("High"),
    "low": lambda t: t.gettext("Low"),
}


# The default priorities' names where the owner reads them (digest, alerts): lower case,
# as configured; an owner's own names show as written.
_PRIORITY_WORDS: dict[str, Callable[[Translations], str]] = {
    "urgent": lambda t: t.pgettext("priority", "urgent"),
    "high": lambda t: t.pgettext("priority", "high"),
    "normal": lambda t: t.pgettext("priority", "normal"),
    "low": lambda t: t.pgettext("priority", "low"),
}


def priority_name(name: str, t: Translations) -> str:
    """A priority's name in the owner's language ("dringend"), or as configured."""
    return _PRIORITY_WORDS[name](t) if name in _PRIORITY_WORDS else name


def priority_label(name: str, keywords: tuple[str, ...], t: Translations) -> str:
    """ "Urgent, e.g. fraud, charged twice" from the configured keywords; the default
    priority is "everything else"."""
    if name == "normal":
        return t.gettext("Everything else")
    shown = _PRIORITY_NAMES[name](t) if name in _PRIORITY_NAMES else name.title()
    if not keywords:
        return shown
    return t.gettext("%(priority)s, e.g. %(keywords)s") % {
        "priority": shown, "keywords": ", ".join(keywords[:4])
    }


def policy_order(config: Config) -> list[Any]:
    """The priorities as customers read them: highest first, "Everything else" (the
    default priority, which no keyword chooses) last."""
    default = config.default_priority
    return [p for p in config.priorities if p.name != default.name] + [default]


def stretch_sentence(stretch: float, language: str, t: Translations) -> str:
    """How a season changes reply times, in words: "twice as long", "1.5 times as long"."""
    if stretch == 1:
        return ""
    if stretch == 2:
        return t.gettext("Reply times are twice as long.")
    if stretch == 3:
        return t.gettext("Reply times are three times as long.")
    if stretch < 1:
        return t.gettext("Reply times are shorter.")
    return t.gettext("Reply times are %(stretch)s times as long.") % {
        "stretch": format_decimal(stretch, locale=language)
    }


POLICY_TEMPLATES = {"markdown": "policy.md.j2", "html": "policy.html.j2", "text": "policy.txt.j2"}


def render_policy(renderer: Renderer, fmt: str, now: datetime) -> str:
    """The public promise: hours, windows per priority, coming closures, the season notice."""
    context = policy_context(renderer.config, now)
    return renderer.render(POLICY_TEMPLATES[fmt], renderer.config.inboxes[0].language, context)


def _policy_clock(config: Config) -> str:
    clocks = {p.clock for p in config.priorities}
    return clocks.pop() if len(clocks) == 1 else "mixed"


def policy_context(config: Config, now: datetime) -> dict[str, Any]:
    """The values the policy templates see."""
    cal = config.calendar
    lang = config.inboxes[0].language
    t = translations_for(config, lang)
    today = cal.local(now).date()
    closures = []
    for offset in range(90):
        day = today + timedelta(days=offset)
        reason = config.hours.closed_days.reason(day, lang)
        if cal.week[day.weekday()] and reason is not None:
            closures.append({"date": long_date(day, "full", lang), "reason": reason})
    season = None
    for s in cal.seasons:
        if s.end >= today and (s.start - today).days <= 60:
            season = {"name": s.name, "start": long_date(s.start, "long", lang),
                      "end": long_date(s.end, "long", lang), "notice": s.notice_for(lang),
                      "stretch": format_decimal(s.stretch, locale=lang),
                      "longer": stretch_sentence(s.stretch, lang, t)}  # fmt: skip
            break
    return {
        "language": lang,
        "address": config.inboxes[0].address,
        "timezone": config.hours.timezone,
        "priorities": [
            {
                "name": p.name,
                "label": priority_label(p.name, p.keywords, t),
                "window": business_time(p.first_reply.total_seconds(), lang, t, p.clock == "24/7"),
                "round_the_clock": p.clock == "24/7",
                "resolve": business_time(p.resolve.total_seconds(), lang, t, p.clock == "24/7")
                if p.resolve is not None else None,
            }
            for p in policy_order(config)
        ],
        # Which clock the windows count on: "business" (all), "24/7" (all), or "mixed".
        "clock": _policy_clock(config),
        "hours": opening_hours(cal, lang, t),
        "closures": closures,
        "season": season,
        # What the shop does when it misses ([[breach.remedy]]), smallest lateness first.
        "remedies": [
            {"late_by": business_time(r.late_by.total_seconds(), lang, t), "text": r.text_for(lang)}
            for r in config.tracking.remedies
        ],
    }
