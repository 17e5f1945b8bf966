"""The digest and `report`: figures checked against a hand-computed fixture (counts,
compliance, nearest-rank percentiles, business-time lateness), the text and HTML forms,
sending once per day, and the HTML opened in headless Chromium at phone and desktop widths."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import Result

from gateway import store
from gateway.config import Config
from gateway.digest import nice_ceiling, previous_business_day, suggest
from tests.mailtools import gateway_config

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 24, 8, 30, tzinfo=BERLIN)  # Tuesday morning: the digest covers Monday


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.fixture
def seeded(tmp_path: Path, database_url: str) -> Iterator[Config]:
    """Monday 23 Nov 2026, by hand:
    urgent (target 30 min): replies after 10, 20, 30, 50 min -> 3 met, 1 missed (20 min late)
    high (target 1 h): one reply after 30 min; one unanswered, due Mon 12:00 -> 1 met, 1 missed
    normal (target 4 h): one unanswered, due Tue 12:00 -> neither yet; warned Tue 8:00, so
    at risk at NOW; and one received Tue 8:10, due Tue 13:10, warned only at 12:10: open
    but not at risk (and not in Monday's figures)
    plus 3 bounces and 1 out-of-office reply not acknowledged, 5 messages acknowledged,
    and on Friday 20 Nov one urgent reply after 15 min (counts in 7 and 30 days only)."""
    config = gateway_config(
        tmp_path,
        database_url,
        extra={"to = []  # who gets it": 'to = ["owner@shop.example"]  # who gets it'},
    )
    engine = store.make_engine(database_url)
    store.upgrade(engine)
    rows = [
        ("urgent", at(2026, 11, 23, 9, 0), 600, False, at(2026, 11, 23, 9, 30)),
        ("urgent", at(2026, 11, 23, 9, 5), 1200, False, at(2026, 11, 23, 9, 35)),
        ("urgent", at(2026, 11, 23, 10, 0), 1800, False, at(2026, 11, 23, 10, 30)),
        ("urgent", at(2026, 11, 23, 11, 0), 3000, True, at(2026, 11, 23, 11, 30)),
        ("high", at(2026, 11, 23, 9, 0), 1800, False, at(2026, 11, 23, 10, 0)),
        ("high", at(2026, 11, 23, 11, 0), None, False, at(2026, 11, 23, 12, 0)),
        ("normal", at(2026, 11, 23, 16, 0), None, False, at(2026, 11, 24, 12, 0)),
        ("urgent", at(2026, 11, 20, 9, 0), 900, False, at(2026, 11, 20, 9, 30)),
        ("normal", at(2026, 11, 24, 8, 10), None, False, at(2026, 11, 24, 13, 10)),
    ]
    warned = {7: at(2026, 11, 24, 8, 0), 9: at(2026, 11, 24, 12, 10)}  # warn_at, by row
    windows = {"urgent": 1800, "high": 3600, "normal": 14400}
    with engine.begin() as conn:
        for n, (priority, received, seconds, breached, due) in enumerate(rows, start=1):
            replied = config.calendar.add(received, timedelta(seconds=seconds)) if seconds else None
            conv = conn.execute(store.conversations.insert().values(
                reference=f"SHOP-{1000 + n}", inbox="shop", customer=f"c{n}@customer.example", subject=f"Question {n}",
                priority=priority, priority_reason="", state="answered" if seconds else "awaiting_team",
                received_at=received, window_seconds=windows[priority], stretch=1.0, due_at=due,
                first_reply_at=replied, first_reply_business_seconds=seconds, breached=breached, created_at=received,
            )).inserted_primary_key[0]  # fmt: skip
            conn.execute(store.cycles.insert().values(
                conversation_id=conv, kind="first", priority=priority, started_at=received,
                window_seconds=windows[priority], stretch=1.0, due_at=due, warn_at=warned.get(n), replied_at=replied,
                business_seconds=seconds, breached=breached, warned_at=received, breach_alerted_at=None,
            ))  # fmt: skip
        for n, rule in enumerate(["bounce", "bounce", "bounce", "auto-reply"]):
            conn.execute(store.messages.insert().values(
                dedup_key=f"m{n}@x", source="smtp", received_at=at(2026, 11, 23, 12, n), sha256="0" * 64,
                size=1, status="processed", skip_rule=rule, direction="machine",
            ))  # fmt: skip
        for n in range(5):  # the acknowledged messages (the figure) and our acks
            conn.execute(store.messages.insert().values(
                dedup_key=f"c{n}@x", source="smtp", received_at=at(2026, 11, 23, 10, n), sha256="0" * 64,
                size=1, status="processed", direction="customer", acknowledged=True,
            ))  # fmt: skip
            conn.execute(store.outbox.insert().values(
                kind="ack", sender="support@shop.example", recipient=f"c{n}@customer.example", message_id=f"a{n}@shop",
                raw=b"x", status="sent", next_attempt_at=at(2026, 11, 23, 10, n), created_at=at(2026, 11, 23, 10, n),
            ))  # fmt: skip
    engine.dispose()
    yield config


def test_report_json_matches_the_hand_computed_figures(
    seeded: Config, run_cli: Callable[..., Result]
) -> None:
    result = run_cli("--config", str(seeded.path), "report", "--since", "2026-11-23", "--until", "2026-11-23",
                     "--json", now=NOW)  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["conversations"] == 7
    assert figures["acknowledged"] == 5
    assert figures["not_acknowledged"] == {"bounce": 3, "auto-reply": 1}
    assert (figures["met"], figures["breached"]) == (4, 2)
    urgent = figures["priorities"]["urgent"]
    assert (urgent["count"], urgent["met"], urgent["breached"], urgent["compliance"]) == (
        4,
        3,
        1,
        0.75,
    )
    assert (urgent["p50_seconds"], urgent["p80_seconds"], urgent["p90_seconds"]) == (
        1200,
        3000,
        3000,
    )
    high = figures["priorities"]["high"]
    assert (high["count"], high["met"], high["breached"], high["compliance"]) == (2, 1, 1, 0.5)
    assert (high["p50_seconds"], high["p90_seconds"]) == (1800, 1800)
    normal = figures["priorities"]["normal"]
    assert (normal["count"], normal["met"], normal["breached"], normal["compliance"]) == (
        1,
        0,
        0,
        None,
    )
    week = json.loads(run_cli("--config", str(seeded.path), "report", "--since", "2026-11-17", "--until",
                              "2026-11-23", "--json", now=NOW).output)  # fmt: skip
    assert week["priorities"]["urgent"]["count"] == 5
    assert week["priorities"]["urgent"]["p50_seconds"] == 1200  # 600, 900, 1200, 1800, 3000


def test_report_table(seeded: Config, run_cli: Callable[..., Result]) -> None:
    result = run_cli(
        "--config",
        str(seeded.path),
        "report",
        "--since",
        "2026-11-23",
        "--until",
        "2026-11-23",
        now=NOW,
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    assert "7 conversations, 67% of first replies on time, 5 acknowledged" in " ".join(
        result.output.split()
    )
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_digest_text(seeded: Config, run_cli: Callable[..., Result]) -> None:
    result = run_cli("--config", str(seeded.path), "digest", "--text", now=NOW)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "customer service on Monday, November 23, 2026" in text
    assert "Mon 23 Nov 67% on time — 4 met, 2 missed, 7 conversations" in text
    assert "3 bounces, 1 out-of-office reply" in text
    assert "SHOP-1004  urgent" in text and "late by 20 min" in text  # 50 min against 30
    assert "SHOP-1006  high" in text  # unanswered, due Monday 12:00
    assert "AT RISK NOW" in text and "SHOP-1007" in text  # normal, due Tuesday 12:00
    assert "OLDEST UNANSWERED: SHOP-1006" in text
    assert "too little data" in text
    assert "by weekday: Mon 7, Tue 0, Wed 0, Thu 0, Fri 1, Sat 0, Sun 0" in text
    assert re.search(r"(^|[\s(:|])—\s*($|[—,;:)|])", text, re.M) is None, text  # no blank figure


def test_digest_html_is_mail_safe(
    seeded: Config, run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    out = tmp_path / "digest.html"
    result = run_cli(
        "--config", str(seeded.path), "digest", "--date", "2026-11-23", "--out", str(out), now=NOW
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "<script" not in html.lower()
    assert not re.search(r"""src=["']?https?:""", html)  # no remote images
    assert "67%" in html and "SHOP-1004" in html


def test_digest_is_sent_once_per_day(
    seeded: Config, run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    first = run_cli("--config", str(seeded.path), "digest", "--send", now=NOW)
    assert first.exit_code == 0, first.output
    assert "queued for owner@shop.example" in first.output
    again = run_cli("--config", str(seeded.path), "digest", "--send", now=NOW + timedelta(hours=3))
    assert "already sent" in again.output
    files = list((tmp_path / "outbox" / "new").iterdir())
    assert len(files) == 1
    raw = files[0].read_bytes()
    assert b"multipart/alternative" in raw and b"text/html" in raw and b"text/plain" in raw


def test_service_sends_the_digest_at_the_configured_time(
    seeded: Config, tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    from gateway.service import Service

    now = {"t": at(2026, 11, 24, 7, 59)}
    for _ in range(2):  # a restart must not send it again
        service = Service(seeded, clock=lambda: now["t"])
        service.start(workers=False)
        service.run_once()
        assert not (tmp_path / "outbox" / "new").exists() or now["t"].hour >= 8
        now["t"] = at(2026, 11, 24, 8, 0)
        service.run_once()
        service.close()
    files = list((tmp_path / "outbox" / "new").iterdir())
    assert len(files) == 1
    status = run_cli("--config", str(seeded.path), "status", now=at(2026, 11, 24, 8, 10)).output
    assert ", 1 digest\n" in status  # one, not "1 digests"


def test_the_first_start_mails_no_digest_for_the_day_before(tmp_path: Path, database_url: str) -> None:
    """A gateway started for the first time on Tuesday 8:30 (after `[digest] at`, 8:00)
    sends no digest about Monday, when it did not exist; on Wednesday it sends Tuesday's,
    even though no mail came (it was running), and a restart changes neither."""
    from gateway.service import Service

    config = gateway_config(
        tmp_path, database_url,
        extra={"to = []  # who gets it": 'to = ["owner@shop.example"]  # who gets it'},
    )  # fmt: skip
    outbox = tmp_path / "outbox" / "new"
    now = {"t": at(2026, 11, 24, 8, 30)}
    for _ in range(2):  # the second time round: a restart the same morning
        service = Service(config, clock=lambda: now["t"])
        service.start(workers=False)
        service.run_once()
        service.close()
        assert not outbox.exists() or not list(outbox.iterdir())
    now["t"] = at(2026, 11, 25, 8, 30)
    service = Service(config, clock=lambda: now["t"])
    service.start(workers=False)
    service.run_once()
    service.close()
    [mail] = list(outbox.iterdir())
    assert b"Tuesday, November 24, 2026" in mail.read_bytes().replace(b"=\r\n", b"")


def test_previous_business_day_and_suggestions(example_config: Config) -> None:
    cal = example_config.calendar
    assert (
        previous_business_day(cal, at(2026, 11, 23, 8).date()).isoformat() == "2026-11-21"
    )  # Monday -> Saturday
    assert (
        previous_business_day(cal, at(2026, 12, 28, 8).date()).isoformat() == "2026-12-23"
    )  # over Christmas
    assert nice_ceiling(50 * 60) == 60 * 60
    s = suggest("urgent", 1800, answered=40, p80=2400, monthly=[0.9, 0.9, 0.9])
    assert (s.suggested, s.tighten_to) == (3600, None)  # 40 min x 1.25 -> 1 h
    s = suggest("high", 3600, answered=200, p80=1200, monthly=[0.97, 0.96, 0.99])
    assert (s.suggested, s.tighten_to) == (1800, 2700)  # 13 % tighter: 45 min
    assert "too little data" in suggest("low", 86400, answered=3, p80=100, monthly=[]).note


# ------------------------------------------------------------------ in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHECK = """<script>
window.addEventListener('load', function () {
  var doc = document.documentElement, head = document.getElementById('headline');
  var r = head.getBoundingClientRect(), figures = document.querySelectorAll('.figure');
  var visible = Array.prototype.every.call(figures, function (e) {
    var b = e.getBoundingClientRect(); return b.width > 0 && b.right <= window.innerWidth + 1; });
  document.title = JSON.stringify({overflow: doc.scrollWidth > window.innerWidth + 1,
    headline: r.width > 0 && r.right <= window.innerWidth + 1 && head.textContent.trim(), figures: visible});
});
</script></body>"""


def in_chromium(page: Path, width: int, tmp_path: Path, check: str = CHECK) -> dict[str, object]:
    """Open an HTML page in headless Chromium at `width` px: whether anything overflows
    horizontally, the headline's text when it is fully visible, whether every `.figure`
    is (or what another `check` script puts in the title, as JSON); and a screenshot
    beside the page (looked at, and checked not to be blank)."""
    assert CHROMIUM, "chromium is installed by scripts/install-system-deps"
    probe = tmp_path / f"probe-{page.stem}.html"
    probe.write_text(page.read_text().replace("</body>", check))  # the check is the test's, not the page's
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},2400"]  # fmt: skip
    dom = subprocess.run([*flags, "--virtual-time-budget=2000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title, dom[:500]
    shot = tmp_path / f"{page.stem}-{width}.png"
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 5_000
    result: dict[str, object] = json.loads(title.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    return result


@pytest.mark.parametrize("width", [390, 1280])
def test_digest_renders_in_chromium(
    seeded: Config, run_cli: Callable[..., Result], tmp_path: Path, width: int
) -> None:
    out = tmp_path / "digest.html"
    run_cli(
        "--config", str(seeded.path), "digest", "--date", "2026-11-23", "--out", str(out), now=NOW
    )
    assert in_chromium(out, width, tmp_path) == {
        "overflow": False,
        "headline": "67% of first replies on time",
        "figures": True,
    }


@pytest.mark.parametrize("width", [390, 1280])
def test_an_empty_digest_renders_in_chromium(
    empty: Config, run_cli: Callable[..., Result], tmp_path: Path, width: int
) -> None:
    out = tmp_path / "digest.html"
    run_cli("--config", str(empty.path), "digest", "--out", str(out), now=NOW)
    assert in_chromium(out, width, tmp_path) == {
        "overflow": False,
        "headline": "No customer mail arrived that day",
        "figures": True,
    }


@pytest.mark.parametrize("width", [390, 1280])
@pytest.mark.parametrize("language", ["en", "de", "fr", "es", "nl"])
def test_the_policy_page_renders_in_chromium(
    example_config: Config, run_cli: Callable[..., Result], tmp_path: Path, width: int, language: str
) -> None:
    """A complete page (doctype, language, charset, viewport) that fits a phone; its
    headline and every reply window visible."""
    config = tmp_path / "gateway.toml"
    config.write_text(Path(example_config.path).read_text().replace('language = "en"', f'language = "{language}"', 1))
    out = tmp_path / "policy.html"
    result = run_cli("--config", str(config), "policy", "--format", "html", "--out", str(out), now=NOW)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.startswith("<!doctype html>")
    assert f'<html lang="{language}">' in html and '<meta charset="utf-8">' in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    checks = in_chromium(out, width, tmp_path)
    assert checks["overflow"] is False and checks["figures"] is True
    assert isinstance(checks["headline"], str) and checks["headline"]


# ------------------------------------------------------------------ at risk, and the empty day


@pytest.fixture
def empty(tmp_path: Path, database_url: str) -> Iterator[Config]:
    """A gateway that has seen no mail at all."""
    config = gateway_config(tmp_path, database_url)
    engine = store.make_engine(database_url)
    store.upgrade(engine)
    engine.dispose()
    yield config


def test_the_digest_at_risk_is_tickets_at_risk(seeded: Config, run_cli: Callable[..., Result]) -> None:
    """One meaning: open, past the warning point, not yet due. SHOP-1007 (warned at 8:00)
    is; SHOP-1009 (warned only at 12:10) and SHOP-1006 (already past due) are not."""
    tickets = run_cli("--config", str(seeded.path), "tickets", "--at-risk", "--json", now=NOW).output
    assert [json.loads(line)["reference"] for line in tickets.splitlines()] == ["SHOP-1007"]
    text = run_cli("--config", str(seeded.path), "digest", "--text", now=NOW).output
    at_risk = text.split("AT RISK NOW (TIME LEFT)")[1].split("\n\n")[0]
    assert [line.split()[0] for line in at_risk.strip().splitlines()] == ["SHOP-1007"]


def test_many_at_risk_on_a_day_nothing_fell_due(tmp_path: Path, database_url: str,
                                                 run_cli: Callable[..., Result]) -> None:  # fmt: skip
    """Twelve replies at risk on Tuesday morning, none due on Monday: the headline says
    what is at risk (not "no replies were due" above the list), ten are listed, "and 2
    more" counts the rest."""
    config = gateway_config(tmp_path, database_url)
    engine = store.make_engine(database_url)
    store.upgrade(engine)
    with engine.begin() as conn:
        for n in range(12):
            received = at(2026, 11, 23, 16, 0) + timedelta(minutes=n)
            conv = conn.execute(store.conversations.insert().values(
                reference=f"SHOP-{1001 + n}", inbox="shop", customer=f"c{n}@customer.example",
                subject=f"Question {n}", priority="normal", priority_reason="", state="awaiting_team",
                received_at=received, window_seconds=14400, stretch=1.0, due_at=at(2026, 11, 24, 12, n),
                breached=False, created_at=received,
            )).inserted_primary_key[0]  # fmt: skip
            conn.execute(store.cycles.insert().values(
                conversation_id=conv, kind="first", priority="normal", started_at=received,
                window_seconds=14400, stretch=1.0, due_at=at(2026, 11, 24, 12, n),
                warn_at=at(2026, 11, 24, 8, 0), breached=False,
            ))  # fmt: skip
    engine.dispose()
    text = run_cli("--config", str(config.path), "digest", "--text", now=NOW).output
    assert "\n12 replies at risk now\n" in text
    assert "no replies were due" not in text.lower() and "fell due that day" not in text
    listed = [line for line in text.splitlines() if line.startswith("  SHOP-")]
    assert len(listed) == 10 and listed[0].startswith("  SHOP-1001")
    assert "  and 2 more" in text
    assert "busiest hours: 4:00\u202fPM; 0% of mail" in text  # not hours without any mail
    html = run_cli("--config", str(config.path), "digest", now=NOW).output
    assert ">12 replies at risk now</h1>" in html and "and 2 more" in html


def test_the_text_digest_of_an_empty_day_has_no_empty_fields(
    empty: Config, run_cli: Callable[..., Result]
) -> None:
    text = run_cli("--config", str(empty.path), "digest", "--text", now=NOW).output
    assert "No customer mail arrived that day" in text
    assert "Nothing is waiting for a reply." in text
    assert "No customer mail in the last 30 days." in text
    for blank in ("— on time", "median —", ": ;", ":\n", "()", " ; "):
        assert blank not in text, (blank, text)
    # A dash only ever separates two phrases; never stands for a missing figure.
    assert re.search(r"(^|[\s(:|])—\s*($|[—,;:)|])", text, re.M) is None, text


def test_digest_in_the_inbox_language(
    seeded: Config, run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    config_path = Path(seeded.path)
    config_path.write_text(config_path.read_text().replace('language = "en"', 'language = "de"', 1))
    text = run_cli("--config", str(config_path), "digest", "--text", now=NOW).output
    assert "Montag, 23. November 2026" in text
    assert "7 Tage" in text and "30 Tage" in text
    assert "3 Unzustellbarkeitsmeldungen, 1 Abwesenheitsnotiz" in text
    assert "zu wenige Daten" in text
    assert "67\u00a0%" in text  # Babel's German percent format (no-break space)
    send = run_cli("--config", str(config_path), "digest", "--send", now=NOW)
    assert send.exit_code == 0, send.output
    [mail] = list((tmp_path / "outbox" / "new").iterdir())
    from email import message_from_bytes, policy

    subject = str(message_from_bytes(mail.read_bytes(), policy=policy.default)["Subject"]).strip()
    assert subject == "Example Shop Support: Kundenservice am 23.11.2026 — 67\u00a0% pünktlich"


def test_refusals_of_a_closed_day_are_in_the_next_digest(tmp_path: Path, database_url: str) -> None:
    """A photo mail refused on Sunday is in Monday's digest (the shop is closed on
    Sundays, so no digest covers Sunday itself)."""
    from datetime import date

    from gateway import store
    from gateway.reports import digest_inputs
    from tests.mailtools import gateway_config

    config = gateway_config(tmp_path, database_url)
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    try:
        berlin = config.calendar.tz
        with store.begin(engine) as conn:
            for when in (datetime(2026, 11, 22, 15, 0, tzinfo=berlin),   # Sunday, closed
                         datetime(2026, 11, 23, 11, 0, tzinfo=berlin),   # Monday
                         datetime(2026, 11, 20, 11, 0, tzinfo=berlin)):  # Friday: its own digest
                store.add_event(conn, when, "refused", {"reason": "too-large"})  # fmt: skip
        monday = digest_inputs(engine, config, date(2026, 11, 23), datetime(2026, 11, 24, 8, 0, tzinfo=berlin))
        assert monday.refused == (("too-large", 2),)
    finally:
        engine.dispose()
