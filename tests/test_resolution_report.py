"""Resolution figures in `report` and the digest, checked against a hand-computed fixture:
compliance and nearest-rank percentiles of the cases resolved in the period (those still
open past their target count as missed), the backlog (open at the start, opened,
resolved, open at the end), and the digest's resolution lines and oldest unresolved case.
`tickets --json` counts an open clock up to now."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import Result

from gateway import store
from gateway.config import Config
from tests.mailtools import gateway_config

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 24, 8, 30, tzinfo=BERLIN)  # Tuesday morning: the digest covers Monday
H = 3600


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.fixture
def seeded(tmp_path: Path, database_url: str) -> Iterator[Config]:
    """Monday 23 Nov 2026, by hand (urgent: resolve within 1d = 24 business hours; high:
    2d; normal: no target):
    A urgent, received Fri 20, resolved Mon 10:00 after 10 h      -> met (resolved Monday)
    B urgent, received Mon 09:00, resolved Mon 12:00 after 3 h    -> met
    C urgent, received Mon 09:30, resolved Mon 15:00 after 25 h   -> missed
    D urgent, received Mon 10:00, open, due Mon 16:00 (past now)  -> missed (still open)
    E urgent, received Mon 11:00, open, due Wednesday             -> not yet decided
    F high, received Mon 09:00, resolved Mon 09:45 after 45 min   -> met
    G high, received Thu 19, pending since Fri, breached          -> received before Monday
    H normal, received Mon 10:00, resolved Mon 11:00              -> no target: backlog only
    Resolution: 5 decided, 3 met, 2 missed; resolved with a target 45 min, 3 h, 10 h, 25 h.
    Backlog: open at the start A, G; opened B C D E F H; resolved A B C F H; open at the end
    D E G."""
    config = gateway_config(
        tmp_path, database_url,
        extra={"to = []  # who gets it": 'to = ["owner@shop.example"]  # who gets it'},
    )  # fmt: skip
    engine = store.make_engine(database_url)
    store.upgrade(engine)
    rows: list[dict[str, Any]] = [
        dict(priority="urgent", received_at=at(2026, 11, 20, 9, 0), resolved_at=at(2026, 11, 23, 10, 0), spent=10 * H),
        dict(priority="urgent", received_at=at(2026, 11, 23, 9, 0), resolved_at=at(2026, 11, 23, 12, 0), spent=3 * H),
        dict(priority="urgent", received_at=at(2026, 11, 23, 9, 30), resolved_at=at(2026, 11, 23, 15, 0), spent=25 * H,
             resolution_breached=True),
        dict(priority="urgent", received_at=at(2026, 11, 23, 10, 0), spent=0, running=at(2026, 11, 23, 10, 0),
             resolve_due_at=at(2026, 11, 23, 16, 0)),
        dict(priority="urgent", received_at=at(2026, 11, 23, 11, 0), spent=0, running=at(2026, 11, 23, 11, 0),
             resolve_due_at=at(2026, 11, 25, 11, 0)),
        dict(priority="high", received_at=at(2026, 11, 23, 9, 0), resolved_at=at(2026, 11, 23, 9, 45), spent=45 * 60),
        dict(priority="high", received_at=at(2026, 11, 19, 9, 0), spent=5 * H, state="pending",
             waiting_since=at(2026, 11, 20, 9, 0), resolution_breached=True),
        dict(priority="normal", received_at=at(2026, 11, 23, 10, 0), resolved_at=at(2026, 11, 23, 11, 0), spent=H),
    ]  # fmt: skip
    targets = {"urgent": 24 * H, "high": 48 * H, "normal": None}
    with engine.begin() as conn:
        for n, r in enumerate(rows, start=1):
            resolved = r.get("resolved_at")
            conn.execute(store.conversations.insert().values(
                reference=f"SHOP-{1000 + n}", inbox="shop", customer=f"c{n}@customer.example",
                subject=f"Question {n}", priority=r["priority"], priority_reason="",
                state="resolved" if resolved else r.get("state", "answered"),
                received_at=r["received_at"], window_seconds=1800, stretch=1.0, due_at=r["received_at"],
                first_reply_at=r["received_at"], first_reply_business_seconds=60, breached=False,
                created_at=r["received_at"], resolve_window_seconds=targets[r["priority"]],
                resolution_business_seconds=r["spent"], resolution_running_since=r.get("running"),
                waiting_since=r.get("waiting_since") or resolved, resolve_due_at=r.get("resolve_due_at"),
                resolution_breached=r.get("resolution_breached", False), resolved_at=resolved,
                resolved_by="anna@shop.example" if resolved else None,
            ))  # fmt: skip
    engine.dispose()
    yield config


def report(run_cli: Callable[..., Result], config: Config, *args: str) -> Result:
    result = run_cli("--config", str(config.path), "report", "--since", "2026-11-23", "--until", "2026-11-23",
                     *args, now=NOW)  # fmt: skip
    assert result.exit_code == 0, result.output
    return result


def test_report_json_has_resolution_and_backlog(seeded: Config, run_cli: Callable[..., Result]) -> None:
    figures = json.loads(report(run_cli, seeded, "--json").output)
    resolution = figures["resolution"]
    assert (resolution["count"], resolution["met"], resolution["breached"], resolution["compliance"]) == (5, 3, 2, 0.6)
    # 45 min, 3 h, 10 h, 25 h: nearest rank of 4 values
    assert (resolution["p50_seconds"], resolution["p80_seconds"], resolution["p90_seconds"]) == (3 * H, 25 * H, 25 * H)
    urgent = resolution["priorities"]["urgent"]
    assert (urgent["count"], urgent["met"], urgent["breached"], urgent["compliance"]) == (4, 2, 2, 0.5)
    assert (urgent["p50_seconds"], urgent["p80_seconds"], urgent["target_seconds"]) == (10 * H, 25 * H, 8 * H)  # target: as configured now
    high = resolution["priorities"]["high"]
    assert (high["count"], high["met"], high["compliance"], high["p50_seconds"]) == (1, 1, 1.0, 45 * 60)
    assert "normal" not in resolution["priorities"]  # no target, nothing to keep
    assert figures["backlog"] == {"open_at_start": 2, "opened": 6, "resolved": 5, "open_at_end": 3}
    nothing = json.loads(run_cli("--config", str(seeded.path), "report", "--since", "2026-10-01", "--until",
                                 "2026-10-02", "--json", now=NOW).output)  # fmt: skip
    assert nothing["resolution"]["count"] == 0 and nothing["resolution"]["compliance"] is None
    assert nothing["backlog"] == {"open_at_start": 0, "opened": 0, "resolved": 0, "open_at_end": 0}


def test_report_text_shows_resolution_and_backlog(seeded: Config, run_cli: Callable[..., Result]) -> None:
    text = " ".join(report(run_cli, seeded).output.split())
    assert "resolution: 60% of 5 cases within their target (3 met, 2 missed); median 3 hr, 80% 25 hr" in text
    assert "urgent 50% of 4, high 100% of 1" in text
    assert "backlog: 2 open at the start, 6 opened, 5 resolved, 3 open at the end" in text


def test_tickets_json_counts_open_clocks_up_to_now(seeded: Config, run_cli: Callable[..., Result]) -> None:
    result = run_cli("--config", str(seeded.path), "tickets", "--json", now=NOW)
    assert result.exit_code == 0, result.output
    rows = {r["reference"]: r for r in map(json.loads, result.output.splitlines())}
    d, e, g = rows["SHOP-1004"], rows["SHOP-1005"], rows["SHOP-1007"]
    assert d["resolution_business_seconds"] == 7 * H  # Mon 10:00-17:00, not yet open on Tuesday
    assert d["resolution_breached"] is True  # past due now, though no scheduler marked it
    assert (e["resolution_breached"], e["resolve_due_at"]) == (False, "2026-11-25T11:00:00+01:00")
    assert (g["state"], g["resolution_business_seconds"]) == ("pending", 5 * H)
    assert g["customer_wait_business_seconds"] == 20 * H  # Fri 9-17, Sat 10-14, Mon 9-17
    resolved = rows["SHOP-1002"]
    assert (resolved["resolved_at"], resolved["resolution_business_seconds"]) == ("2026-11-23T12:00:00+01:00", 3 * H)
    assert resolved["priority_set_by"] == "keywords" and resolved["state"] == "resolved"


def test_digest_shows_resolution_and_the_oldest_unresolved(seeded: Config, run_cli: Callable[..., Result]) -> None:
    result = run_cli("--config", str(seeded.path), "digest", "--text", now=NOW)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "CASES RESOLVED IN TIME" in text
    assert "Mon 23 Nov 60% resolved in time — 3 met, 2 missed; opened 6, resolved 5" in text
    assert ("OLDEST UNRESOLVED: SHOP-1007 from c7@customer.example, open since Thu 19 Nov, "
            "5 hr of business time on the clock. Waiting for the customer.") in text  # fmt: skip
    html = run_cli("--config", str(seeded.path), "digest", now=NOW).output
    assert 'id="resolution"' in html and "60%" in html and "6 / 5" in html
    assert "SHOP-1007" in html


def test_tickets_table_names_pending_and_resolved(seeded: Config, run_cli: Callable[..., Result]) -> None:
    result = run_cli("--config", str(seeded.path), "tickets", now=NOW, env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:] if line.strip()}
    assert "pending (cust.) !" in lines["SHOP-1007"]  # waiting for the customer, resolution missed
    assert "resolved !" in lines["SHOP-1003"] and "resolved !" not in lines["SHOP-1002"]
    assert "answered !" in lines["SHOP-1004"]  # open past its resolution time
    assert "awaiting cust" not in result.output
