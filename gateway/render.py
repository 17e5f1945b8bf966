"""Jinja2 templates -> finished messages (acknowledgments now; alerts, digests later).

Owns: the sandboxed template environment (operator templates first, then the built-in
ones; per-language variants `LANG/NAME` before `NAME`), the localised values templates
see (dates, times and zones via Babel, opening hours, windows), and building messages
whose headers are safe: no header value is ever taken from a message unsanitised, so no
customer can inject a header. Pure apart from reading template files.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
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
from typing import Any

from babel.dates import format_date, format_time, get_day_names
from babel.numbers import format_decimal
from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from .calendar import BusinessCalendar
from .config import Config, InboxConfig
from .model import Deadline, Parsed
from .rules import LOOP_HEADER

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


class Renderer:
    """Templates for every inbox language, loaded once."""

    def __init__(self, config: Config) -> None:
        search = [str(builtin_templates())]
        if config.templates:
            search.insert(0, config.templates)
        self.env = SandboxedEnvironment(
            loader=ChoiceLoader([FileSystemLoader(p) for p in search]),
            autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,  # loaded once: a changed template takes effect on restart
        )
        self.config = config
        self.env.filters.update(
            digest_filters(config.inboxes[0].language)
        )  # set once, not per digest

    def render(self, name: str, language: str, context: dict[str, Any]) -> str:
        template = self.env.select_template([f"{language}/{name}", name])
        return template.render(**context)

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
    ) -> Message:
        cal = self.config.calendar
        lang = inbox.language
        context = self.ack_context(parsed=parsed, inbox=inbox, deadline=deadline,
                                   reference=reference, customer_name=customer_name, now=now)  # fmt: skip
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
    ) -> dict[str, Any]:
        """The values the acknowledgment templates see (`check` renders them with samples)."""
        cal = self.config.calendar
        lang = inbox.language
        return {
            "customer_name": clean_header(customer_name, 80),
            "subject": clean_header(parsed.subject, 150),
            "reference": reference,
            "shop_name": inbox.from_name or inbox.address,
            "inbox_address": inbox.address,
            "priority": deadline.priority,
            "window": window_values(deadline.effective_window, lang),
            "published_window": window_values(deadline.window, lang),
            "due": when(deadline.due_at, lang),
            "due_sender": sender_time(deadline.due_at, parsed.date, lang),
            "opening_hours": opening_hours(cal, lang),
            "timezone": self.config.hours.timezone,
            "season": deadline.season,
            "season_notice": _season_notice(cal, deadline, lang),
            "closure": closure(cal, now, lang, self.config.hours.holidays),
        }


def alert_message(
    config: Config, recipient: str, *, subject: str, text: str, now: datetime
) -> Message:
    """A short operational notice to the owner (never a customer)."""
    inbox = config.inboxes[0]
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
        message = MIMEMultipart("alternative")
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
    return _when(moment, moment.tzinfo, language)


@lru_cache(maxsize=4096)  # many acknowledgments share a deadline's minute; Babel is slow
def _when(moment: datetime, zone: Any, language: str) -> When:
    """`when`, cached by instant, zone (equal instants in two zones read differently) and
    language."""
    return When(
        date=format_date(moment, format="full", locale=language),
        time=format_time(moment, format="short", tzinfo=moment.tzinfo, locale=language),
        zone=_zone_name(moment),
        iso=moment.isoformat(),
    )


def sender_time(due: datetime, sender_date: datetime | None, language: str) -> When | None:
    """The deadline in the sender's own offset (from their Date header), when it differs."""
    if sender_date is None or sender_date.utcoffset() is None:
        return None
    offset = sender_date.utcoffset()
    if offset == due.utcoffset():
        return None
    assert offset is not None
    return when(due.astimezone(timezone(offset)), language)


def window_values(window: timedelta, language: str) -> dict[str, Any]:
    return dict(_window_values(window, language))


@lru_cache(maxsize=256)
def _window_values(window: timedelta, language: str) -> dict[str, Any]:
    minutes = round(window.total_seconds() / 60)
    hours = minutes / 60
    return {
        "minutes": minutes,
        "hours": format_decimal(round(hours, 2), locale=language),
        "in_minutes": minutes < 60,
        "one": minutes == 60 or minutes == 1,
    }


def opening_hours(cal: BusinessCalendar, language: str) -> list[dict[str, str]]:
    """Consecutive weekdays with the same hours, grouped: [{days, hours}]."""
    names = get_day_names("wide", locale=language)
    groups: list[tuple[list[int], str]] = []
    for index, ranges in enumerate(cal.week):
        if not ranges:
            text = ""
        else:
            text = ", ".join(
                f"{_clock(r.start, language)}–{_clock(r.end, language)}" for r in ranges
            )
        if groups and groups[-1][1] == text and groups[-1][0][-1] == index - 1:
            groups[-1][0].append(index)
        else:
            groups.append(([index], text))
    result = []
    for days, text in groups:
        if not text:
            continue
        label = names[days[0]] if len(days) == 1 else f"{names[days[0]]}–{names[days[-1]]}"
        result.append({"days": str(label), "hours": text})
    return result


def _clock(minutes: int, language: str) -> str:
    minutes %= 24 * 60
    if minutes == 0:
        return "24:00" if language != "en" else "midnight"
    return format_time(time(minutes // 60, minutes % 60), format="short", locale=language)


def closure(
    cal: BusinessCalendar, now: datetime, language: str, holidays_code: str | None = None
) -> dict[str, Any] | None:
    """When today is a closed day (holiday, closure): its reason, in the inbox's language
    where the holidays package knows it (else empty for a plain closure), and when we reopen."""
    day = cal.local(now).date()
    reason = closure_reason(cal, day, language, holidays_code)
    if reason is None:
        return None
    return {"reason": reason, "reopens": when(cal.next_open(now), language)}


def closure_reason(
    cal: BusinessCalendar, day: date, language: str, holidays_code: str | None
) -> str | None:
    """Why a day is closed, for customers: the holiday's name in their language where the
    holidays package has it, nothing for a plain closure; None when the day is open."""
    reason = cal.closure(day)
    if reason is None:
        return None
    localized = holiday_name(holidays_code, day, language) if holidays_code else None
    return localized or ("" if reason == "closed" else reason)


@lru_cache(maxsize=64)
def _holiday_table(code: str, language: str) -> Any:
    import holidays as holidays_lib

    country, _, subdivision = code.upper().partition("-")
    cls = holidays_lib.country_holidays(country, subdiv=subdivision or None)
    supported = getattr(cls, "supported_languages", ()) or ()
    wanted = [lang for lang in supported if lang == language or lang.split("_")[0] == language]
    if not wanted:
        return None
    choice = "en_US" if language == "en" and "en_US" in wanted else wanted[0]
    return holidays_lib.country_holidays(country, subdiv=subdivision or None, language=choice)


def holiday_name(code: str, day: date, language: str) -> str | None:
    """The public holiday's name in `language`, when the holidays package has it."""
    table = _holiday_table(code, language)
    if table is None:
        return None
    name = table.get(day)
    return str(name) if name else None


def _season_notice(cal: BusinessCalendar, deadline: Deadline, language: str) -> str:
    season = cal.season_at(deadline.received_at)
    return season.notice_for(language) if season else ""


def breach_context(
    config: Config, *, inbox: InboxConfig, reference: str, subject: str, promised: datetime,
    new_due: datetime,
) -> dict[str, Any]:  # fmt: skip
    """The values the breach-notice templates see."""
    cal, lang = config.calendar, inbox.language
    return {
        "reference": reference,
        "subject": clean_header(subject, 150),
        "shop_name": inbox.from_name or inbox.address,
        "promised": when(cal.local(promised), lang),
        "new_due": when(cal.local(new_due), lang),
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
) -> Message:
    """The one honest message a customer gets when we missed the promised time."""
    cal = renderer.config.calendar
    lang = inbox.language
    context = breach_context(renderer.config, inbox=inbox, reference=reference, subject=subject,
                             promised=promised, new_due=new_due)  # fmt: skip
    return build_message(
        from_name=inbox.from_name,
        from_addr=inbox.address,
        to=to,
        subject=renderer.render("breach.subject.j2", lang, context).strip(),
        date=cal.local(now),
        message_id=make_msgid("breach", domain=renderer.config.message_id_domain),
        headers=[
            ("Auto-Submitted", "auto-generated"),
            ("Precedence", "bulk"),
            ("X-Auto-Response-Suppress", "All"),
            (LOOP_HEADER, inbox.address),
            ("X-SLA-Gateway-Reference", reference),
        ],
        text=renderer.render("breach.txt.j2", lang, context),
        html=renderer.render("breach.html.j2", lang, context),
    )


# ---------------------------------------------------------------------------- the digest

RULE_WORDS = {
    "bounce": ("bounce", "bounces"),
    "complaint": ("abuse complaint", "abuse complaints"),
    "auto-submitted": ("automatic reply", "automatic replies"),
    "auto-reply": ("out-of-office reply", "out-of-office replies"),
    "suppress-header": ("auto-reply-suppressed mail", "auto-reply-suppressed mails"),
    "mailing-list": ("mailing list", "mailing list mails"),
    "precedence": ("bulk mail", "bulk mails"),
    "spam": ("spam", "spam"),
    "role-sender": ("no-reply/system sender", "no-reply/system senders"),
    "own-mail": ("of our own", "of our own"),
    "no-sender": ("without sender", "without sender"),
    "no-return-path": ("without return path", "without return path"),
    "quotes-our-ack": ("answer to our acknowledgment", "answers to our acknowledgments"),
    "bad-return-path": ("with an unusable return path", "with an unusable return path"),
    "follow-up": ("follow-up", "follow-ups"),
    "too-late": ("too late to promise", "too late to promise"),
    "once-per-sender": ("repeat sender", "repeat senders"),
    "daily-limit": ("over the daily limit", "over the daily limit"),
    "circuit-breaker": ("held by the circuit breaker", "held by the circuit breaker"),
    "disabled": ("(acknowledgments off)", "(acknowledgments off)"),
}


# The few digest words that come from data rather than templates, per inbox language.
DIGEST_WORDS: dict[str, dict[str, str]] = {
    "de": {
        "7 days": "7 Tage", "30 days": "30 Tage",
        "subject": "{shop}: Kundenservice am {day} — {headline}", "on time": "{pct} pünktlich",
        "none due": "keine Antworten fällig",
        "too little data": "zu wenige Daten: {n} Erstantworten in 90 Tagen (für einen Vorschlag braucht es {need})",
        "longer": "Ihre Antworten dauern länger als versprochen: veröffentlichen Sie das vorgeschlagene Zeitfenster oder antworten Sie schneller",
        "shorter": "drei Monate mit mindestens 95 %: Sie könnten ein kürzeres Zeitfenster versprechen",
        "holds": "Ihr veröffentlichtes Zeitfenster hält",
        "bounce": "Unzustellbarkeitsmeldung|Unzustellbarkeitsmeldungen", "auto-submitted": "automatische Antwort|automatische Antworten",
        "auto-reply": "Abwesenheitsnotiz|Abwesenheitsnotizen", "mailing-list": "Mailingliste|Mailinglisten-Mails",
        "precedence": "Massenmail|Massenmails", "spam": "Spam|Spam", "role-sender": "No-Reply-Absender|No-Reply-Absender",
        "follow-up": "Folgenachricht|Folgenachrichten",
    },
    "fr": {
        "7 days": "7 jours", "30 days": "30 jours",
        "subject": "{shop} : service client du {day} — {headline}", "on time": "{pct} dans les délais",
        "none due": "aucune réponse attendue",
        "too little data": "pas assez de données : {n} premières réponses en 90 jours (il en faut {need})",
        "longer": "vos réponses prennent plus de temps que promis : publiez le délai suggéré ou répondez plus vite",
        "shorter": "trois mois à 95 % ou plus : vous pourriez promettre un délai plus court",
        "holds": "votre délai publié est tenu",
        "bounce": "message non distribué|messages non distribués", "auto-submitted": "réponse automatique|réponses automatiques",
        "auto-reply": "message d'absence|messages d'absence", "mailing-list": "liste de diffusion|messages de listes de diffusion",
        "precedence": "envoi en masse|envois en masse", "spam": "spam|spams", "role-sender": "expéditeur no-reply|expéditeurs no-reply",
        "follow-up": "relance|relances",
    },
    "es": {
        "7 days": "7 días", "30 days": "30 días",
        "subject": "{shop}: atención al cliente del {day} — {headline}", "on time": "{pct} a tiempo",
        "none due": "no había respuestas pendientes",
        "too little data": "pocos datos: {n} primeras respuestas en 90 días (una sugerencia necesita {need})",
        "longer": "sus respuestas tardan más de lo prometido: publique el plazo sugerido o responda más rápido",
        "shorter": "tres meses al 95 % o más: podría prometer un plazo más corto",
        "holds": "su plazo publicado se cumple",
        "bounce": "rebote|rebotes", "auto-submitted": "respuesta automática|respuestas automáticas",
        "auto-reply": "respuesta de ausencia|respuestas de ausencia", "mailing-list": "lista de correo|mensajes de listas de correo",
        "precedence": "envío masivo|envíos masivos", "spam": "spam|spam", "role-sender": "remitente no-reply|remitentes no-reply",
        "follow-up": "seguimiento|seguimientos",
    },
    "nl": {
        "7 days": "7 dagen", "30 days": "30 dagen",
        "subject": "{shop}: klantenservice op {day} — {headline}", "on time": "{pct} op tijd",
        "none due": "er waren geen antwoorden verschuldigd",
        "too little data": "te weinig gegevens: {n} eerste antwoorden in 90 dagen (een voorstel heeft er {need} nodig)",
        "longer": "uw antwoorden duren langer dan beloofd: publiceer de voorgestelde termijn of antwoord sneller",
        "shorter": "drie maanden op 95 % of meer: u kunt een kortere termijn beloven",
        "holds": "uw gepubliceerde termijn wordt gehaald",
        "bounce": "onbestelbaarheidsmelding|onbestelbaarheidsmeldingen", "auto-submitted": "automatisch antwoord|automatische antwoorden",
        "auto-reply": "afwezigheidsbericht|afwezigheidsberichten", "mailing-list": "mailinglijst|mailinglijstberichten",
        "precedence": "bulkmail|bulkmails", "spam": "spam|spam", "role-sender": "no-reply-afzender|no-reply-afzenders",
        "follow-up": "vervolgbericht|vervolgberichten",
    },
}  # fmt: skip


def _translate(text: str, language: str) -> str:
    """Digest words that come from the data: period labels and suggestion notes."""
    import re as _re

    from .digest import MIN_ANSWERED

    words = DIGEST_WORDS.get(language)
    if not words:
        return text
    if text in words:
        return words[text]
    if text.startswith("too little data"):
        found = _re.search(r"(\d+) first replies", text)
        return words["too little data"].format(
            n=found.group(1) if found else "?", need=MIN_ANSWERED
        )
    if text.startswith("your replies take longer"):
        return words["longer"]
    if text.startswith("three months"):
        return words["shorter"]
    if text.startswith("your published window holds"):
        return words["holds"]
    return text


def duration_text(seconds: float | None, language: str) -> str:
    """Business time for people: "45 min", "1 h 30 min", "26 h"."""
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{format_decimal(minutes, locale=language)} min"
    hours, rest = divmod(minutes, 60)
    return f"{format_decimal(hours, locale=language)} h" + (f" {rest} min" if rest else "")


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


def digest_filters(language: str) -> dict[str, Callable[..., str]]:
    """The digest templates' filters: numbers, dates and words in the digest's language."""
    from babel.dates import format_date as babel_date
    from babel.numbers import format_percent

    def rulename(rule: str, n: int) -> str:
        local = DIGEST_WORDS.get(language, {}).get(rule)
        if local:
            return local.split("|")[0 if n == 1 else 1]
        return RULE_WORDS.get(rule, (rule, rule))[0 if n == 1 else 1]

    return {
        "pct": lambda v: "—" if v is None else format_percent(v, locale=language),
        "dur": lambda v: duration_text(v, language),
        "num": lambda v: format_decimal(v or 0, locale=language),
        "longdate": lambda d: babel_date(d, format="full", locale=language),
        "shortdate": lambda d: babel_date(d, format="short", locale=language),
        "dayname": lambda d: babel_date(d, format="EEE d MMM", locale=language),
        "tr": lambda text: _translate(str(text), language),
        "rulename": rulename,
    }


def render_digest(renderer: Renderer, data: Any) -> tuple[str, str, str]:
    """(html, text, subject) for a `digest.DigestData`."""
    from babel.dates import format_date as babel_date
    from babel.numbers import format_percent

    config = renderer.config
    lang = config.inboxes[0].language

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
        "busiest_hours": sorted(range(24), key=lambda h: -data.by_hour[h])[:3]
        if sum(data.by_hour)
        else [],
        "outside_share": closed_share if sum(data.by_hour) else None,
    }
    html = renderer.render("digest.html.j2", lang, context)
    text = renderer.render("digest.txt.j2", lang, context)
    day = data.periods[0].overall
    words = DIGEST_WORDS.get(lang, {})
    pct = format_percent(day.compliance, locale=lang) if day.compliance is not None else ""
    headline = (words.get("on time", "{pct} on time").format(pct=pct) if day.compliance is not None
                else words.get("none due", "no replies were due"))  # fmt: skip
    subject = words.get("subject", "{shop}: customer service on {day} — {headline}").format(
        shop=data.shop, day=babel_date(data.day, format="medium", locale=lang), headline=headline
    )
    return html, text, subject


# ---------------------------------------------------------------------------- the published policy


def priority_label(name: str, keywords: tuple[str, ...]) -> str:
    """ "Urgent, e.g. fraud, charged twice" from the configured keywords; the default
    priority is "everything else"."""
    if name == "normal" or not keywords:
        return "Everything else" if name == "normal" else name.title()
    return f"{name.title()}, e.g. {', '.join(keywords[:4])}"


def window_words(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} minutes (business time)"
    hours = minutes / 60
    return f"{hours:g} business hour{'' if hours == 1 else 's'}"


POLICY_TEMPLATES = {"markdown": "policy.md.j2", "html": "policy.html.j2", "text": "policy.txt.j2"}


def render_policy(renderer: Renderer, fmt: str, now: datetime) -> str:
    """The public promise: hours, windows per priority, coming closures, the season notice."""
    context = policy_context(renderer.config, now)
    return renderer.render(POLICY_TEMPLATES[fmt], renderer.config.inboxes[0].language, context)


def policy_context(config: Config, now: datetime) -> dict[str, Any]:
    """The values the policy templates see."""
    from babel.dates import format_date as babel_date

    cal = config.calendar
    lang = config.inboxes[0].language
    today = cal.local(now).date()
    closures = []
    for offset in range(90):
        day = today + timedelta(days=offset)
        reason = closure_reason(cal, day, lang, config.hours.holidays)
        if cal.week[day.weekday()] and reason is not None:
            closures.append({"date": babel_date(day, format="full", locale=lang), "reason": reason})
    season = None
    for s in cal.seasons:
        if s.end >= today and (s.start - today).days <= 60:
            season = {"name": s.name, "start": babel_date(s.start, format="long", locale=lang),
                      "end": babel_date(s.end, format="long", locale=lang), "notice": s.notice_for(lang),
                      "stretch": f"{s.stretch:g}"}  # fmt: skip
            break
    return {
        "address": config.inboxes[0].address,
        "timezone": config.hours.timezone,
        "priorities": [
            {
                "name": p.name,
                "label": priority_label(p.name, p.keywords),
                "window": window_words(p.first_reply.total_seconds()),
            }
            for p in config.priorities
        ],
        "hours": opening_hours(cal, lang),
        "closures": closures,
        "season": season,
    }
