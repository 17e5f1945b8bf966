"""`check` for message templates: compile every template and render each one the
configuration can use with sample values, so a broken template is found by the operator,
not by a customer's mail.

Owns: the sample values (a sample customer mail, deadline, breach, digest and policy, each
once with every optional value present and once with the optional values empty, as real
mail has them, and every alert to the owner with its variants), rendering through the same functions the running gateway uses (so the
templates see exactly the variables they see at run time), turning a Jinja2 error into
one `Problem` naming the template file, its line and what to do, and naming an inbox
language that has no message catalog (its messages would be English). It reads template
and catalog files and renders text; it stores and sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import (
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.exceptions import SecurityError

from .catalogs import builtin_locale, has_catalog
from .config import LANGUAGES, Config
from .errors import Problem
from .parse import parse
from .policy import deadline
from .render import (
    FOLLOW_UP,
    POLICY_TEMPLATES,
    Alert,
    Renderer,
    alert_message,
    alert_recipients,
    alert_template,
    breach_context,
    builtin_templates,
    business_time,
    follow_up_context,
    policy_context,
    render_digest,
    stretch_sentence,
    template_line,
    when,
)

ACK = ("ack.subject.j2", "ack.txt.j2", "ack.html.j2")
BREACH = ("breach.subject.j2", "breach.txt.j2", "breach.html.j2")
SAMPLE_NOTICE = "Our courier is on strike; replies are slower this week."
SPARSE = " without optional values"

_SAMPLE_MAIL = (
    b"From: Kim Meyer <kim@customer.example>\r\nTo: support@shop.example\r\n"
    b"Subject: Where is my order 1042?\r\nDate: Mon, 23 Nov 2026 04:00:00 -0500\r\n"
    b"Message-ID: <sample-1@customer.example>\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"\r\nHello, my parcel has not arrived yet.\r\n"
)


def check_templates(config: Config, now: datetime) -> list[Problem]:
    """Every problem found in the templates, one per template file and line (empty: fine)."""
    renderer = Renderer(config)
    problems: dict[str, Problem] = {}  # by "file:line": one problem there is enough

    def add(problem: Problem) -> None:
        problems.setdefault(problem.file, problem)

    for directory in _directories(config):
        for path in sorted(directory.rglob("*.j2")):
            problem = _compile(renderer, directory, path)
            if problem is not None:
                add(problem)
    for what, keys, render in _renderings(renderer, now):
        try:
            render()
        except Exception as exc:
            add(_explain(exc, what, keys))
    return _missing_catalogs(config) + list(problems.values())


def _missing_catalogs(config: Config) -> list[Problem]:
    """One problem per inbox whose language no catalog translates."""
    found = []
    for index, inbox in enumerate(config.inboxes):
        if has_catalog(inbox.language, config.templates):
            continue
        lang = inbox.language
        where = f"{config.templates}/locale" if config.templates else 'DIR/locale (with templates = "DIR")'
        found.append(Problem(
            str(config.path), f"inbox[{index}].language",
            f'"{lang}" has no message catalog, so its customers would get English sentences',
            f"add {where}/{lang}/LC_MESSAGES/messages.po, a translation of "
            f"{builtin_locale() / 'messages.pot'} (README: Translations), or use one of "
            + ", ".join(LANGUAGES),
        ))  # fmt: skip
    return found


def _directories(config: Config) -> list[Path]:
    found = [builtin_templates()]
    if config.templates and Path(config.templates).is_dir():  # a missing one: config.py says so
        found.insert(0, Path(config.templates))
    return found


def _compile(renderer: Renderer, directory: Path, path: Path) -> Problem | None:
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return Problem(str(path), "", f"is not UTF-8 text (byte {exc.start})",
                       "save the file as UTF-8")  # fmt: skip
    except OSError as exc:
        return Problem(str(path), "", f"cannot be read ({exc.strerror})",
                       "check the file's permissions")  # fmt: skip
    try:
        renderer.env.parse(source, path.relative_to(directory).as_posix(), str(path))
    except TemplateSyntaxError as exc:
        return _syntax(exc, str(path))
    return None


def _syntax(exc: TemplateSyntaxError, fallback: str) -> Problem:
    where = f"{exc.filename or fallback}:{exc.lineno}"
    return Problem(where, "", f"template syntax error: {exc.message}",
                   "fix the Jinja2 syntax there ({{ value }}, {% if ... %}...{% endif %}, "
                   "{% for ... %}...{% endfor %})")  # fmt: skip


def _explain(exc: Exception, what: str, keys: list[str]) -> Problem:
    """One line for a template that fails to render: where, what, and the fix."""
    if isinstance(exc, TemplateSyntaxError):  # found while loading an included template
        return _syntax(exc, what)
    where = template_line(exc) or what
    if isinstance(exc, UndefinedError):
        if what.endswith(SPARSE):  # fine with every value present: one can be empty
            hint = ("this value is empty for some mail: guard it with {% if value %}...{% endif %} "
                    "or give it a default: {{ value | default('') }}")  # fmt: skip
        else:
            known = ", ".join(sorted(keys))
            hint = "check the spelling" + (f"; the values available here are {known}" if known else "")
        return Problem(where, "", f"{exc} (rendering {what})", hint)
    if isinstance(exc, TemplateNotFound):
        return Problem(where, "", f"includes a template that does not exist: {exc.name} "
                       f"(rendering {what})", "add that file to the templates directory or "
                       "remove the {% include %} / {% extends %}")  # fmt: skip
    if isinstance(exc, SecurityError):
        return Problem(where, "", f"not allowed in the template sandbox: {exc} (rendering {what})",
                       "templates may only show values and call simple filters")  # fmt: skip
    kind = "template error" if isinstance(exc, TemplateError) else type(exc).__name__
    return Problem(where, "", f"{kind}: {exc} (rendering {what})",
                   "this expression fails with sample values: simplify it, or guard it with "
                   "{% if ... %}")  # fmt: skip


# ---------------------------------------------------------------------------- samples

Rendering = tuple[str, list[str], Callable[[], object]]


def _renderings(renderer: Renderer, now: datetime) -> Iterator[Rendering]:
    """(what, the variables it gets, a call that renders it) for every message kind, in
    every language the configuration uses."""
    config = renderer.config
    cal = config.calendar
    parsed = parse(_SAMPLE_MAIL)
    due = deadline(cal, config.default_priority, now)
    seen: set[str] = set()
    for inbox in config.inboxes:
        lang = inbox.language
        if lang in seen:
            continue
        seen.add(lang)
        full = renderer.ack_context(parsed=parsed, inbox=inbox, deadline=due,
                                    reference=f"{inbox.prefix}-1042", customer_name="Kim Meyer", now=now)  # fmt: skip
        later = when(cal.local(now + timedelta(days=1)), lang)
        full.update(
            due_sender=full["due_sender"] or later,
            season=full["season"] or "sample season",
            season_notice=full["season_notice"] or "We are busier than usual.",
            closure=full["closure"] or {"reason": "Sample holiday", "reopens": later},
            notice=SAMPLE_NOTICE,
        )
        sparse = dict(full, customer_name="", due_sender=None, season=None, season_notice="",
                      closure=None, notice="")  # fmt: skip
        for label, context in (("", full), (SPARSE, sparse)):
            for name in ACK:
                yield (f"{name} (acknowledgment, {lang}){label}", list(context),
                       _render(renderer, name, lang, context))  # fmt: skip
        breach = breach_context(config, inbox=inbox, reference=f"{inbox.prefix}-1042",
                                subject=parsed.subject, promised=due.due_at,
                                new_due=due.due_at + timedelta(hours=4), notice=SAMPLE_NOTICE,
                                remedy="We refund your shipping costs.", code="SORRY-1042")  # fmt: skip
        bare = dict(breach, notice="", remedy="", code="")
        for label, context in (("", breach), (SPARSE, bare)):
            for name in BREACH:
                yield (f"{name} (breach notice, {lang}){label}", list(context),
                       _render(renderer, name, lang, context))  # fmt: skip
        follow = follow_up_context(config, inbox=inbox, reference=f"{inbox.prefix}-1042",
                                   subject=parsed.subject, since=now - timedelta(days=1))  # fmt: skip
        for kind, what in (("reminder", "reminder"), ("closed", "closing notice")):
            for name in FOLLOW_UP[kind]:
                yield (f"{name} ({what}, {lang})", list(follow), _render(renderer, name, lang, follow))
    lang = config.inboxes[0].language
    for label, data in (("", _digest(config, now, filled=True)),
                        (SPARSE, _digest(config, now, filled=False))):  # fmt: skip
        yield (f"digest.html.j2 / digest.txt.j2 (daily digest, {lang}){label}", [],
               _render_digest(renderer, data))  # fmt: skip
    policy = policy_context(config, now)
    sample_season = {"name": "Sample season", "start": "1 December", "end": "24 December",
                     "notice": "We are busier than usual.", "stretch": "2",
                     "longer": stretch_sentence(2.0, lang, renderer.translations(lang))}  # fmt: skip
    sample_closure = [{"date": "Friday, 25 December", "reason": "Sample holiday"}]
    late = business_time(4 * 3600, lang, renderer.translations(lang))
    sample_remedies = [{"late_by": late, "text": "We refund your shipping costs."}]
    variants = (("", dict(policy, season=policy["season"] or sample_season,
                          closures=policy["closures"] or sample_closure,
                          remedies=policy["remedies"] or sample_remedies)),
                (SPARSE, dict(policy, season=None, closures=[], remedies=[],
                              priorities=[dict(p, resolve=None) for p in policy["priorities"]])),
                (" (one priority around the clock)", dict(policy, clock="mixed", priorities=[
                    dict(p, round_the_clock=i == 0) for i, p in enumerate(policy["priorities"])])),
                (" (all around the clock)", dict(policy, clock="24/7")))  # fmt: skip
    for label, context in variants:
        for name in POLICY_TEMPLATES.values():
            yield (f"{name} (policy page, {lang}){label}", list(context),
                   _render(renderer, name, lang, context))  # fmt: skip
    recipient = alert_recipients(config)[0]
    for label, alert in sample_alerts(config, now):
        yield (f"{alert_template(alert.kind)} (alert to the owner, {lang}){label}", list(alert.values),
               _render_alert(renderer, recipient, alert, now))  # fmt: skip


def _render_alert(renderer: Renderer, recipient: str, alert: Alert, now: datetime) -> Callable[[], str]:
    def render() -> str:
        message = alert_message(renderer, recipient, alert, now=now)
        body = message.get_payload(decode=True)
        assert isinstance(body, bytes)
        return f"{message['Subject']}\n{body.decode('utf-8')}"

    return render


def sample_alerts(config: Config, now: datetime) -> list[tuple[str, Alert]]:
    """Every alert to the owner with sample values: each kind once, several with their
    variants (one conversation or many, never tried or failing, ...)."""
    local = config.calendar.local(now).replace(microsecond=0)
    conversation = {"reference": f"{config.inboxes[0].prefix}-1042", "priority": config.default_priority.name,
                    "customer": "kim@customer.example", "subject": "Where is my order 1042?",
                    "due": local - timedelta(hours=1)}  # fmt: skip
    give_up = config.send.give_up_after.total_seconds()
    too_large = {"sender": "Kim Meyer <kim@customer.example>", "subject": "Photos of the parcel",
                 "received": local, "size": 31_457_280}  # fmt: skip
    set_aside = {"id": 7, "received": local, "from": "kim@customer.example", "subject": "Parcel",
                 "error": "UndefinedError: 'customer' is undefined"}  # fmt: skip
    outage = {"waited": 1200.0, "pending": 3, "oldest": local, "attempts": 4,
              "last_error": "451 4.3.0 Mail server temporarily unavailable", "give_up_after": give_up,
              "transport": "smtp", "server": "smtp.shop.example:587"}  # fmt: skip
    resolved = {"resolved_address": "support+resolved@shop.example"}
    return [
        ("", Alert("loop", {"sender": "desk@partner.example", "reason": "quotes our reference [SHOP-1042]"})),
        ("", Alert("breaker", {"in_last_minute": 61, "in_last_hour": 75,
                               "max_per_minute": config.acknowledge.max_per_minute,
                               "max_per_hour": config.acknowledge.max_per_hour})),
        ("", Alert("replies", {"breaches": [dict(conversation, late=1200.0)],
                               "warnings": [dict(conversation, left=900.0)] * 2,
                               "unresolved": [], "resolving": [], **resolved})),
        (" (breaches only)", Alert("replies", {"breaches": [dict(conversation, late=90000.0)] * 2, "warnings": [],
                                               "unresolved": [], "resolving": [], **resolved})),
        (" (warnings only)", Alert("replies", {"breaches": [], "warnings": [dict(conversation, left=60.0)],
                                               "unresolved": [], "resolving": [], **resolved})),
        (" (resolutions)", Alert("replies", {"breaches": [], "warnings": [],
                                             "unresolved": [dict(conversation, late=7200.0)],
                                             "resolving": [dict(conversation, left=1800.0)], **resolved})),
        ("", Alert("codes", {"file": "/etc/sla-gateway/coupons.txt", "given": 200, "unreadable": False})),
        (" (unreadable)", Alert("codes", {"file": "/etc/sla-gateway/coupons.txt", "given": 0, "unreadable": True})),
        ("", Alert("set-aside", {"rows": [set_aside], "more": 0, "every": 3600.0})),
        (" (many)", Alert("set-aside", {"rows": [set_aside, dict(set_aside, id=8, **{"from": ""})],
                                        "more": 3, "every": 3600.0})),
        ("", Alert("too-large", {"username": "support@shop.example", "folder": "INBOX",
                                 "limit": 25_000_000, "sent": False, "messages": [too_large]})),
        (" (Sent folder, several)", Alert("too-large", {
            "username": "support@shop.example", "folder": "Sent", "limit": 25_000_000, "sent": True,
            "messages": [too_large, dict(too_large, subject="")]})),
        ("", Alert("outage", outage)),
        (" (never tried, maildir)", Alert("outage", dict(outage, pending=1, attempts=0, last_error="",
                                                        transport="maildir", server="var/outbox"))),
        (" (one attempt)", Alert("outage", dict(outage, attempts=1))),
        ("", Alert("sign-in", {"account": "support@shop.example", "why": "invalid_grant",
                               "command": "login shop", "give_up_after": give_up})),
        ("", Alert("test")),
    ]  # fmt: skip


def _render(renderer: Renderer, name: str, lang: str, context: dict[str, Any]) -> Callable[[], str]:
    return lambda: renderer.render(name, lang, context)


def _render_digest(renderer: Renderer, data: Any) -> Callable[[], object]:
    return lambda: render_digest(renderer, data)


def _digest(config: Config, now: datetime, *, filled: bool) -> Any:
    """A sample `DigestData`: a busy day with a breach, risks and suggestions, or a day
    with no mail at all."""
    from .digest import DigestData, Figures, Item, Period, Unresolved, opening_grid, suggest

    cal = config.calendar
    day = cal.local(now).date() - timedelta(days=1)
    start = datetime.combine(day, datetime.min.time(), cal.tz)
    figures = Figures(12, 10, 2, 10 / 12, 1800, 3600, 5400) if filled else Figures()
    names = [p.name for p in config.priorities]
    periods = tuple(
        Period(label, start - timedelta(days=days - 1), start + timedelta(days=1), figures,
               tuple((n, figures) for n in names), figures if filled else Figures(),
               11 if filled else 0, (("auto-reply", 3), ("bounce", 1)) if filled else (),
               Figures(5, 4, 1, 0.8, 7200, 14400, 28800) if filled else Figures(),
               12 if filled else 0, 9 if filled else 0)
        for label, days in (("day", 1), ("7 days", 7), ("30 days", 30))
    )  # fmt: skip
    item = Item("SHOP-1042", "kim@customer.example", "Where is my order 1042?",
                config.default_priority.name, now, 3600)  # fmt: skip
    window = int(config.default_priority.first_reply.total_seconds())
    suggestions = (
        (suggest(names[0], window, 40, window * 2, [0.7, 0.8, 0.9]),
         suggest(names[-1], window, 60, window // 4, [0.97, 0.98, 0.99]),
         suggest(config.default_priority.name, window, 3, None, []))
        if filled else tuple(suggest(n, window, 0, None, []) for n in names)
    )  # fmt: skip
    hours, days_open = opening_grid(cal)
    trend: tuple[tuple[date, float | None, int | None], ...] = tuple(
        (day - timedelta(days=n), (0.9 if n % 2 else None) if filled else None,
         (1800 if n % 2 else None) if filled else None)
        for n in range(29, -1, -1)
    )  # fmt: skip
    inbox = config.inboxes[0]
    return DigestData(
        shop=inbox.from_name or inbox.address, day=day, timezone=config.hours.timezone,
        periods=periods, breaches=(replace(item, seconds=1800),) if filled else (),
        at_risk=(item,) if filled else (), oldest=item if filled else None,
        by_hour=tuple((h % 5) if filled else 0 for h in range(24)),
        by_weekday=tuple((d + 1) if filled else 0 for d in range(7)),
        open_hours=hours, open_days=days_open, trend=trend, suggestions=suggestions,
        oldest_unresolved=Unresolved("SHOP-1001", "lee@customer.example", "My refund", names[0],
                                     cal.local(now) - timedelta(days=3), 5 * 3600, True) if filled else None,
    )  # fmt: skip
