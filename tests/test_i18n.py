"""Every word in the customer's language from one template: each message is rendered in
every language through the message catalogs (gateway/locale), no English sentence leaks
into a German, French, Spanish or Dutch message, the catalogs hold exactly the sentences
the templates and render.py use, and an owner can override a sentence or add a language
with a catalog of their own."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from click.testing import Result

from gateway.catalogs import builtin_locale, catalog_file
from gateway.config import Config, parse
from gateway.digest import DigestData, Figures, suggest
from gateway.parse import parse as parse_mail
from gateway.policy import deadline
from gateway.render import (
    ALERTS,
    Alert,
    Renderer,
    alert_message,
    breach_notice,
    business_time,
    duration_text,
    long_date,
    render_alert,
    render_digest,
    render_policy,
    when,
)
from gateway.templatecheck import _digest, _renderings, sample_alerts
from tests.conftest import EXAMPLE, example_text

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("en", "de", "fr", "es", "nl")
TRANSLATED = ("de", "fr", "es", "nl")
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # a Sunday: the shop is closed; a season is near
PLACEHOLDER = re.compile(r"%\(\w+\)s")

# Every rule and refusal reason the digest can name, so every counted phrase is rendered.
RULES = ("bounce", "complaint", "auto-submitted", "auto-reply", "suppress-header", "mailing-list",
         "precedence", "spam", "role-sender", "own-mail", "no-sender", "no-return-path",
         "quotes-our-ack", "bad-return-path", "follow-up", "too-late", "once-per-sender",
         "daily-limit", "circuit-breaker", "disabled")  # fmt: skip
REFUSED = ("too-large", "line-too-long", "unknown-recipient")


def config_in(language: str, text: str | None = None, tmp_path: Path | None = None) -> Config:
    """The example configuration in `language` (open until midnight on Saturdays, so the
    opening hours show one)."""
    text = (text or example_text()).replace('language = "en" ', f'language = "{language}" ', 1)
    text = text.replace('sat = "10:00-14:00"', 'sat = "10:00-24:00"', 1)
    path = (tmp_path or EXAMPLE.parent) / "gateway.toml"
    return parse(text, str(path))


def catalog(language: str) -> Catalog:
    with catalog_file(builtin_locale(), language).open("rb") as handle:
        return read_po(handle)


def template() -> Catalog:
    with (builtin_locale() / "messages.pot").open("rb") as handle:
        return read_po(handle)


def _ids(cat: Catalog) -> set[Any]:
    return {m.id if isinstance(m.id, str) else tuple(m.id) for m in cat if m.id}


def _texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def _readable(text: str) -> str:
    """Text as a reader sees it: no tags, entities decoded, white space collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def every_message(config: Config) -> dict[str, str]:
    """Each message kind the configuration can send, rendered with sample values (with and
    without the optional ones; a digest naming every rule and refusal)."""
    renderer = Renderer(config)
    out: dict[str, str] = {}
    for what, _keys, render in _renderings(renderer, NOW):  # alerts to the owner too
        out[what] = "\n".join(_texts(render()))
    inbox = config.inboxes[0]
    mail = parse_mail(b"From: kim@customer.example\r\nSubject: x\r\n\r\nHello\r\n")
    context = renderer.ack_context(parsed=mail, inbox=inbox, deadline=deadline(
        config.calendar, config.default_priority, NOW), reference="SHOP-1", customer_name="", now=NOW)  # fmt: skip
    context["closure"] = {"reason": "", "reopens": context["due"]}  # a plain closure: no reason
    out["ack.txt.j2 closed without a reason"] = renderer.render("ack.txt.j2", inbox.language, context)
    data: DigestData = _digest(config, NOW, filled=True)
    window = int(config.default_priority.first_reply.total_seconds())
    suggestions = (*data.suggestions, suggest("normal", window, 40, window // 2, []))  # it holds
    for parity in (0, 1):  # each counted phrase once with 1, once with 2
        counts = [1 + (i + parity) % 2 for i in range(len(RULES))]
        day = replace(data.periods[0], not_acknowledged=tuple(zip(RULES, counts, strict=True)))
        sample = replace(data, periods=(day, *data.periods[1:]), suggestions=suggestions,
                         refused=tuple(zip(REFUSED, counts, strict=False)))  # fmt: skip
        out[f"digest naming every rule ({parity})"] = "\n".join(render_digest(renderer, sample))
    # The digest's other headlines and at-risk states: at risk on a day nothing fell due
    # (with "and N more"), nothing at risk with one or two replies owed, or only late ones.
    quiet = replace(data.periods[0], overall=Figures(count=1))
    for what, variant in (
        ("at risk", replace(data, periods=(quiet, *data.periods[1:]), at_risk_more=2)),
        ("one on time", replace(data, periods=(quiet, *data.periods[1:]), at_risk=(), open_on_time=1)),
        ("two on time", replace(data, at_risk=(), open_on_time=2)),
        ("only late", replace(data, at_risk=(), open_on_time=0)),
    ):
        out[f"digest, {what}"] = "\n".join(render_digest(renderer, variant))
    # The policy page with other seasons and a shop open around the clock.
    language = inbox.language
    for stretch in ("3.0", "0.5", "1.5"):
        variant_config = config_in(language, example_text().replace("stretch = 2.0 ", f"stretch = {stretch} ", 1))
        out[f"policy, season x{stretch}"] = render_policy(Renderer(variant_config), "text", NOW)
    always = example_text().replace('sun = "closed" ', 'sun = "00:00-24:00" ', 1)
    for day, hours in (("mon", "09:00-17:00"), ("tue", "09:00-17:00"), ("wed", "09:00-17:00"),
                       ("thu", "09:00-17:00"), ("fri", "09:00-17:00"), ("sat", "10:00-14:00")):  # fmt: skip
        always = always.replace(f'{day} = "{hours}"', f'{day} = "00:00-24:00"', 1)
    twenty_four_seven = Renderer(config_in(language, always))
    out["policy, 24/7"] = render_policy(twenty_four_seven, "text", NOW)
    # Priorities on a round-the-clock clock: their windows in plain time, not business time.
    clocks = example_text()
    for window in ('first_reply = "30m"', 'first_reply = "1h"'):
        assert window in clocks, window
        clocks = clocks.replace(window, f'{window}\nclock = "24/7"', 1)
    out["policy, 24/7 priorities"] = render_policy(Renderer(config_in(language, clocks)), "text", NOW)
    return out


def _fragments(text: str) -> list[str]:
    """The English words of a msgid between its placeholders (one-word messages too)."""
    found = []
    for part in PLACEHOLDER.split(text):
        part = part.strip(" ,.;:()—–→[]")
        whole = part == text.strip(" ,.;:")  # "Closed", "High"
        if (len(part) >= 8 or whole) and re.search(r"[A-Za-z]{2}", part):
            found.append(part)
    return found


def english_fragments() -> list[tuple[Any, str]]:
    """(msgid, fragment) for every form of every msgid in the template catalog."""
    return [
        (message.id, part)
        for message in template()
        if message.id
        for text in _texts(message.id)
        for part in _fragments(text)
    ]


@pytest.mark.parametrize("language", TRANSLATED)
def test_no_english_sentence_leaks_into_a_translated_message(language: str) -> None:
    translations = {m.id: m.string for m in catalog(language) if m.id}
    rendered = {what: _readable(text) for what, text in every_message(config_in(language)).items()}
    assert len(rendered) >= 30, sorted(rendered)
    leaks = []
    for msgid, fragment in english_fragments():
        own = " ".join(_texts(translations[msgid])) if msgid in translations else ""
        if fragment in own:  # the same word in this language ("Conversations", "Median")
            continue
        pattern = re.compile(rf"(?<![\w-]){re.escape(fragment)}(?![\w-])")
        leaks += [f"{what}: {fragment!r}" for what, text in rendered.items() if pattern.search(text)]
    assert leaks == [], "\n".join(leaks)


def test_the_english_messages_are_the_msgids() -> None:
    """The leak test can see English: rendered in English, the msgids' words are there."""
    rendered = " ".join(_readable(t) for t in every_message(config_in("en")).values()).lower()
    missing = sorted(
        str(message.id)
        for message in template()
        if message.id and not any(  # a plural message: one of its forms is enough
            all(f.lower() in rendered for f in _fragments(form)) for form in _texts(message.id)
        )
    )
    assert missing == [], "\n".join(missing)


def _fresh_extraction() -> set[Any]:
    with (ROOT / "babel.cfg").open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    return {
        message if isinstance(message, str) else tuple(message)
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map
        )
        if message
    }


@pytest.mark.parametrize("language", ["pot", *LANGUAGES])
def test_each_catalog_holds_exactly_the_extracted_sentences(language: str) -> None:
    """Fails when a template or render.py gains, loses or rewords a sentence and
    `make catalogs` was not run (a catalog lacks a message or keeps a stale one)."""
    fresh = _fresh_extraction()
    cat = template() if language == "pot" else catalog(language)
    ids = _ids(cat)
    assert sorted(map(str, fresh - ids)) == [], "missing: run `make catalogs` and translate"
    assert sorted(map(str, ids - fresh)) == [], "stale: run `make catalogs`"
    assert not cat.obsolete


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated_with_the_same_placeholders(language: str) -> None:
    cat = catalog(language)
    untranslated = [m.id for m in cat if m.id and (m.fuzzy or not all(_texts(m.string)))]
    assert untranslated == []
    errors = [(m.id, [str(e) for e in errs]) for m, errs in cat.check()]
    assert errors == []
    for message in cat:
        if not message.id:
            continue
        wanted = set(PLACEHOLDER.findall(" ".join(_texts(message.id))))
        for form in _texts(message.string):
            assert set(PLACEHOLDER.findall(form)) == wanted, (message.id, form)


# ------------------------------------------------------------------ German, read as German


def _german() -> tuple[Config, Renderer]:
    config = config_in("de")
    return config, Renderer(config)


def test_the_german_acknowledgment_reads_as_german() -> None:
    config, renderer = _german()
    inbox = config.inboxes[0]
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin
    mail = parse_mail(b"From: Kim Meyer <kim@customer.example>\r\nTo: support@shop.example\r\n"
                      b"Subject: Bestellung 1042\r\nDate: Mon, 23 Nov 2026 04:00:00 -0500\r\n"
                      b"Message-ID: <k1@customer.example>\r\n\r\nHallo\r\n")  # fmt: skip
    due = deadline(config.calendar, config.default_priority, now)
    context = renderer.ack_context(parsed=mail, inbox=inbox, deadline=due, reference="SHOP-1042",
                                   customer_name="Kim Meyer", now=now)  # fmt: skip
    text = renderer.render("ack.txt.j2", "de", context)
    assert text.startswith("Guten Tag Kim Meyer,\n\nvielen Dank für Ihre Nachricht. Wir haben sie "
                           "unter der Vorgangsnummer SHOP-1042 erfasst.\n")  # fmt: skip
    assert ("Sie hören spätestens am Montag, 23. November 2026, 14:00 Uhr CET von uns "
            "(bei Ihnen 08:00 Uhr UTC−05:00).") in text  # fmt: skip
    assert "Unsere Antwortzeit beträgt 4 Stunden Geschäftszeit." in text
    assert "Montag–Freitag: 09:00–17:00 Uhr" in text
    html_text = renderer.render("ack.html.j2", "de", context)
    assert "Vorgangsnummer <strong style=\"white-space:nowrap;\">SHOP-1042</strong> erfasst." in html_text
    assert '<html lang="de">' in html_text
    assert renderer.render("ack.subject.j2", "de", dict(context, subject="")).strip() == (
        "Re: Ihre Nachricht [SHOP-1042]"
    )


def test_the_german_breach_notice_reads_as_german() -> None:
    config, renderer = _german()
    promised = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    message = breach_notice(renderer, inbox=config.inboxes[0], reference="SHOP-1", subject="Paket",
                            to="kim@customer.example", promised=promised,
                            new_due=promised + timedelta(hours=4), now=promised)  # fmt: skip
    text = message.get_payload()[0].get_payload(decode=True).decode()
    assert ("wir hatten Ihnen zugesagt, Ihre Nachricht (SHOP-1) bis Montag, 23. November 2026, "
            "10:00 Uhr CET zu beantworten, und haben das leider nicht geschafft. "
            "Das tut uns leid.") in text  # fmt: skip
    assert ("Ihre Nachricht steht weiterhin ganz oben auf unserer Liste. Sie hören spätestens am "
            "Montag, 23. November 2026, 14:00 Uhr CET von uns.") in text  # fmt: skip


def test_the_german_policy_page_reads_as_german() -> None:
    _config, renderer = _german()
    text = render_policy(renderer, "text", NOW)
    assert text.startswith("UNSER SERVICEVERSPRECHEN\n\nWir beantworten jede Nachricht an "
                           "support@shop.example innerhalb dieser Zeiten, gerechnet in unseren "
                           "Geschäftszeiten (Europe/Berlin):\n")  # fmt: skip
    assert "  Dringend, z. B. fraud, charged twice, chargeback, hacked: 30 Minuten Geschäftszeit\n" in text
    assert "  Alles andere: 4 Stunden Geschäftszeit\n" in text
    assert "  Montag–Freitag: 09:00–17:00 Uhr\n" in text
    assert "Geschlossen (wir antworten am nächsten Geschäftstag):" in text
    assert "Freitag, 25. Dezember 2026: Erster Weihnachtstag" in text
    assert "Die Antwortzeiten sind doppelt so lang." in text
    markdown = render_policy(renderer, "markdown", NOW)
    assert "| Ihre Nachricht | Wir antworten innerhalb von |" in markdown


def test_the_german_digest_reads_as_german() -> None:
    config, renderer = _german()
    page, text, subject = render_digest(renderer, _digest(config, NOW, filled=True))
    assert subject == "Example Shop Support: Kundenservice am 21.11.2026 — 83\u00a0% pünktlich"
    assert text.startswith("Example Shop Support — Kundenservice am Samstag, 21. November 2026\n\n")
    assert "83\u00a0% pünktlich — 10 eingehalten, 2 verpasst, 12 Vorgänge" in text
    assert "Bestätigt 11; nicht bestätigt 4: 3 Abwesenheitsnotizen, 1 Unzustellbarkeitsmeldung" in text
    assert "zu wenige Daten: 3 der 20 Erstantworten, die ein Vorschlag braucht (letzte 90 Tage)" in text
    assert "30 Min. zu spät" in text
    assert "  dringend Ziel 30 Min.: 83\u00a0%" in text and "  niedrig " in text  # the default priorities
    assert ">83\u00a0% der Erstantworten pünktlich</h1>" in page
    assert "Bestätigt am Sa. 21 Nov.: 11." in page


def test_every_alert_kind_is_rendered_in_every_language() -> None:
    assert {alert.kind for _label, alert in sample_alerts(config_in("en"), NOW)} == set(ALERTS)
    for language in LANGUAGES:
        renderer = Renderer(config_in(language))
        for _label, alert in sample_alerts(renderer.config, NOW):
            subject, text = render_alert(renderer, alert)
            assert subject and text.strip() and "{{" not in text, (language, alert.kind)


def test_the_german_alerts_read_as_german() -> None:
    config, renderer = _german()
    samples = dict((a.kind + label, a) for label, a in sample_alerts(config, NOW))
    subject, text = render_alert(renderer, samples["replies"])
    assert subject == "Antwortzusagen: 1 verpasst, 2 bald fällig"
    assert text.startswith("Verpasst — die zugesagte Antwortzeit ist überschritten:\n"
                           "  SHOP-1042  normal  kim@customer.example  “Where is my order 1042?”\n"
                           "      fällig So. 22 Nov. 12:00 CET (20 Min. Geschäftszeit zu spät)\n")  # fmt: skip
    assert "Bald fällig — beantworten Sie diese zuerst:" in text
    assert "Antworten Sie wie gewohnt aus Ihrem Mailprogramm;" in text
    subject, text = render_alert(renderer, samples["set-aside (many)"])
    assert subject == "5 Nachrichten zurückgestellt, nicht bestätigt"
    assert "  #7  eingegangen So. 22 Nov. 13:00 CET  kim@customer.example  “Parcel”\n" in text
    assert "  und 3 weitere\n" in text
    assert "höchstens einmal alle 1 Std." in text
    subject, text = render_alert(renderer, samples["too-large"])
    assert subject == "Zu groß zum Abholen: 1 Nachricht in INBOX"
    assert "größer als die Grenze von 25.000.000 Bytes" in text and "  Größe: 31.457.280 Bytes\n" in text
    subject, text = render_alert(renderer, samples["outage"])
    assert subject == "Ausgehende Post wird nicht verschickt"
    assert text.startswith("sla-gateway kann seit 20 Min. keine Post verschicken: 3 Nachrichten warten")
    assert "Prüfen Sie den Server smtp.shop.example:587" in text
    message = alert_message(renderer, "owner@shop.example", Alert("test"), now=NOW)
    assert str(message["Subject"]) == "[sla-gateway] Testnachricht"
    assert message.get_payload(decode=True).decode() == "sla-gateway kann Post verschicken. Sonst ist nichts zu tun.\n"


def test_french_dates_write_the_first_of_the_month_as_1er() -> None:
    """Through the catalog (the day number "1" in its date context), not a table."""
    first, second = datetime(2026, 12, 1, 9, 0, tzinfo=UTC), datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    assert long_date(first.date(), "full", "fr") == "mardi 1er décembre 2026"
    assert long_date(first.date(), "long", "fr") == "1er décembre 2026"
    assert long_date(second.date(), "full", "fr") == "mercredi 2 décembre 2026"
    assert when(first, "fr").date == "mardi 1er décembre 2026"
    assert long_date(first.date(), "full", "de") == "Dienstag, 1. Dezember 2026"
    assert long_date(first.date(), "full", "en") == "Tuesday, December 1, 2026"
    assert "1er décembre 2026" in render_policy(Renderer(config_in("fr")), "text", NOW)  # the season's end


# ------------------------------------------------------------------ durations through Babel


@pytest.mark.parametrize(
    ("language", "seconds", "expected"),
    [
        ("de", 3600, "1 Stunde Geschäftszeit"),
        ("de", 5400, "1,5 Stunden Geschäftszeit"),
        ("fr", 7200, "2 heures ouvrées"),
        ("fr", 5400, "1,5 heure ouvrée"),
        ("fr", 1800, "30 minutes ouvrées"),
        ("es", 3600, "1 hora hábil"),
        ("nl", 14400, "4 werkuren"),
        ("en", 60, "1 business minute"),
        ("en", 1800, "30 business minutes"),
        ("en", 3600, "1 business hour"),
    ],
)
def test_business_time_is_a_babel_number_in_a_translated_phrase(
    language: str, seconds: int, expected: str
) -> None:
    config = config_in(language)
    assert business_time(seconds, language, Renderer(config).translations(language)) == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "4 days 21 hr"), ("de", "4 Tg., 21 Std."), ("fr", "4\u202fj 21\u202fh"),
     ("es", "4 d 21 h"), ("nl", "4 dagen, 21 uur")],
)  # fmt: skip
def test_lateness_is_told_in_babel_units(language: str, expected: str) -> None:
    assert duration_text((4 * 24 + 21) * 3600, language) == expected
    assert duration_text(20 * 60, "en") == "20 min"


# ------------------------------------------------------------------ the owner's catalogs

Cli = Callable[..., Result]

_OWNER_PO = """msgid ""
msgstr ""
"Content-Type: text/plain; charset=utf-8\\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\\n"

msgid "Hello,"
msgstr "{hello}"
"""


def _owner_config(tmp_path: Path, language: str, hello: str) -> Config:
    po = tmp_path / "templates" / "locale" / language / "LC_MESSAGES" / "messages.po"
    po.parent.mkdir(parents=True)
    po.write_text(_OWNER_PO.format(hello=hello), encoding="utf-8")
    text = example_text().replace('# templates = "/etc/sla-gateway/templates"',
                                  f'templates = "{tmp_path / "templates"}"')  # fmt: skip
    text = text.replace('language = "en" ', f'language = "{language}" ', 1)
    (tmp_path / "gateway.toml").write_text(text, encoding="utf-8")
    return config_in(language, text, tmp_path)


def _breach_text(config: Config) -> str:
    promised = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    message = breach_notice(Renderer(config), inbox=config.inboxes[0], reference="SHOP-1",
                            subject="x", to="kim@customer.example", promised=promised,
                            new_due=promised, now=promised)  # fmt: skip
    return str(message.get_payload()[0].get_payload(decode=True).decode())


def test_an_owner_catalog_overrides_one_sentence_and_the_rest_stays_translated(
    tmp_path: Path,
) -> None:
    text = _breach_text(_owner_config(tmp_path, "de", "Hallo,"))
    assert text.startswith("Hallo,\n\nwir hatten Ihnen zugesagt")


def test_an_owner_adds_a_language_with_a_catalog(tmp_path: Path, run_cli: Cli) -> None:
    """Polish: the owner's catalog translates one sentence; the others fall back to
    English one by one, and dates come from Babel in Polish."""
    config = _owner_config(tmp_path, "pl", "Dzień dobry,")
    text = _breach_text(config)
    assert text.startswith("Dzień dobry,\n\nwe promised to answer your message (SHOP-1) by "
                           "poniedziałek, 23 listopada 2026, 10:00 CET")  # fmt: skip
    result = run_cli("--config", str(config.path), "check")
    assert result.exit_code == 0, result.output


def test_check_names_a_language_without_a_catalog(tmp_path: Path, run_cli: Cli) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(example_text().replace('language = "en" ', 'language = "pl" ', 1))
    result = run_cli("--config", str(path), "check")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f'error: {path}: inbox[0].language: "pl" has no message catalog')
    assert "LC_MESSAGES/messages.po" in lines[0] and "en, de, fr, es, nl" in lines[0]


def test_an_owner_overrides_an_alert_template(tmp_path: Path) -> None:
    config = _owner_config(tmp_path, "de", "Hallo,")
    assert config.templates is not None
    (Path(config.templates) / "alert-test.txt.j2").write_text(
        "{% set subject %}Probe{% endset %}{% trans %}Hello,{% endtrans %} {{ shop_name }}\n")
    subject, text = render_alert(Renderer(config), Alert("test"))
    assert (subject, text) == ("Probe", "Hallo, Example Shop Support\n")
