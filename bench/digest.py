"""Benchmark: the daily digest and `report` over a million conversations.

Seeds a database (SQLite file, or PostgreSQL with --url) with N conversations spread over
two years (first-reply cycles, the customers' acknowledged mail, acknowledgments and
skipped machine mail alongside), then
times, each in a fresh process so peak memory is measured alone:
  - the digest for the last day (all SQL aggregates + rendering HTML and text),
  - `report` over the last 30 days, and over the whole two years.
Run by hand:

    .venv/bin/python bench/digest.py                       # SQLite, 1,000,000 conversations
    .venv/bin/python bench/digest.py --url postgresql+psycopg://postgres@127.0.0.1/test

Goal (issue 5): digest and report each under 2 s and 250 MB peak memory, on both.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway import store  # noqa: E402
from gateway.config import parse  # noqa: E402

NOW = datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
PRIORITIES = (
    ("urgent", 1800, 0.05),
    ("high", 3600, 0.2),
    ("normal", 14400, 0.6),
    ("low", 86400, 0.15),
)


def choose(pick: float) -> tuple[str, int]:
    """A priority and its window, with the shares in PRIORITIES."""
    for name, window, share in PRIORITIES:
        if pick < share:
            return name, window
        pick -= share
    return PRIORITIES[-1][0], PRIORITIES[-1][1]


def config_for(url: str):  # type: ignore[no-untyped-def]
    text = (ROOT / "config" / "gateway.example.toml").read_text()
    text = text.replace('database = "sqlite:///var/sla-gateway.db"', f'database = "{url}"')
    return parse(text, "bench.toml")


def seed(url: str, count: int) -> None:
    engine = store.make_engine(url)
    store.upgrade(engine)
    rng = random.Random(7)
    start = NOW - timedelta(days=730)
    span = 730 * 86400
    chunk = 20_000
    with engine.connect() as conn:
        if conn.execute(store.conversations.select().limit(1)).first() is not None:
            print("database already seeded", file=sys.stderr)
            return
    made = 0
    t0 = time.perf_counter()
    while made < count:
        conversations, cycles, messages, acks = [], [], [], []
        for i in range(made, min(made + chunk, count)):
            received = start + timedelta(seconds=int(span * i / count) + rng.randint(0, 59))
            priority, window = choose(rng.random())
            answered = rng.random() < 0.97 or received > NOW - timedelta(hours=6)
            seconds = int(rng.expovariate(1 / (window * 0.6))) if answered else None
            due = received + timedelta(seconds=window * 2)  # close enough for load; not measured
            breached = bool(seconds is not None and seconds > window)
            conversations.append({
                "id": i + 1, "reference": f"SHOP-{i + 1001}", "inbox": "shop", "customer": f"c{i % 50000}@customer.example",
                "subject": f"Question {i}", "priority": priority, "priority_reason": "", "state": "answered" if answered else "awaiting_team",
                "received_at": received, "window_seconds": window, "stretch": 1.0, "due_at": due,
                "first_reply_at": received + timedelta(seconds=seconds or 0) if answered else None,
                "first_reply_business_seconds": seconds, "breached": breached, "created_at": received,
            })  # fmt: skip
            cycles.append({
                "conversation_id": i + 1, "kind": "first", "priority": priority, "started_at": received,
                "window_seconds": window, "stretch": 1.0, "due_at": due, "warn_at": None,
                "replied_at": received + timedelta(seconds=seconds or 0) if answered else None,
                "business_seconds": seconds, "breached": breached, "warned_at": received, "breach_alerted_at": received,
            })  # fmt: skip
            acks.append({
                "kind": "ack", "conversation_id": i + 1, "sender": "support@shop.example", "recipient": f"c{i % 50000}@customer.example",
                "message_id": f"ack{i}@shop.example", "raw": b"", "status": "sent", "attempts": 1,
                "next_attempt_at": received, "created_at": received, "sent_at": received,
            })  # fmt: skip
            messages.append({  # the customer's mail: the acknowledged figure counts these
                "dedup_key": f"c{i}@x", "source": "smtp", "status": "processed", "received_at": received,
                "sha256": "0" * 64, "size": 2400, "conversation_id": i + 1, "direction": "customer",
                "acknowledged": True,
            })  # fmt: skip
            if i % 5 == 0:
                messages.append({
                    "dedup_key": f"machine{i}@x", "source": "smtp", "status": "processed", "received_at": received,
                    "sha256": "0" * 64, "size": 1000, "conversation_id": None, "skip_rule": rng.choice(["bounce", "auto-reply", "mailing-list"]),
                    "direction": "machine", "acknowledged": False,
                })  # fmt: skip
        with engine.begin() as conn:
            conn.execute(store.conversations.insert(), conversations)
            conn.execute(store.cycles.insert(), cycles)
            conn.execute(store.outbox.insert(), acks)
            if messages:
                conn.execute(store.messages.insert(), messages)
        made += len(conversations)
        print(
            f"\rseeded {made:,}/{count:,} ({time.perf_counter() - t0:.0f} s)",
            end="",
            file=sys.stderr,
        )
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    print(file=sys.stderr)
    engine.dispose()


def measure(url: str, what: str) -> dict[str, float]:
    """Run one measurement in this (fresh) process; print JSON."""
    from gateway.digest import previous_business_day
    from gateway.pipeline import Pipeline
    from gateway.render import render_digest
    from gateway.reports import digest_inputs, report

    config = config_for(url)
    engine = store.make_engine(url)
    with engine.connect() as conn:  # connect and warm the schema cache outside the timing
        conn.execute(store.conversations.select().limit(1)).first()
    renderer = Pipeline(config, engine, lambda: NOW).renderer
    t0 = time.perf_counter()
    if what == "digest":
        day = previous_business_day(config.calendar, config.calendar.local(NOW).date())
        render_digest(renderer, digest_inputs(engine, config, day, NOW))
    elif what == "report-30d":
        report(engine, config, NOW - timedelta(days=30), NOW, NOW)
    else:
        report(engine, config, NOW - timedelta(days=731), NOW, NOW)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"seconds": seconds, "peak_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", help="database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.url, args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/bench.db"
        seed(url, args.n)
        print(f"python {platform.python_version()}, {platform.machine()}, {args.n:,} conversations, "
              f"{store.make_engine(url).dialect.name}")  # fmt: skip
        for what in ("digest", "report-30d", "report-2y"):
            out = subprocess.run([sys.executable, __file__, "--url", url, "--measure", what],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
            result = json.loads(out)
            print(f"{what:12s} {result['seconds']:6.2f} s   peak {result['peak_mb']:6.0f} MB")


if __name__ == "__main__":
    main()
