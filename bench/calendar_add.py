"""Benchmark: business-calendar arithmetic, the inner loop of every report.

Measures calendar.add() for a 24 business-hour window that spans a weekend and a public
holiday (the example configuration: Europe/Berlin, Mon-Fri 09-17, Sat 10-14, DE-BE
holidays), and calendar.elapsed() over the same spans. Run by hand:

    .venv/bin/python bench/calendar_add.py

Target (issue 2): at least 100,000 add() calls per second on one core.
"""

from __future__ import annotations

import platform
import time
from datetime import datetime, timedelta
from pathlib import Path

from gateway.config import load

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    config = load(ROOT / "config" / "gateway.example.toml")
    cal = config.calendar
    window = timedelta(hours=24)
    # Thursday 2026-12-24 is closed, 25/26 are holidays, 27 is Sunday: the window spans
    # them all. Vary the start by the minute so no result is trivially cached.
    base = datetime(2026, 12, 23, 12, 0, tzinfo=cal.tz)
    starts = [base + timedelta(minutes=i % 240) for i in range(200_000)]
    cal.add(base, window)  # build the interval table once, as a running service would

    best_add = 0.0
    best_elapsed = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        ends = [cal.add(s, window) for s in starts]
        best_add = max(best_add, len(starts) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for s, e in zip(starts, ends, strict=True):
            cal.elapsed(s, e)
        best_elapsed = max(best_elapsed, len(starts) / (time.perf_counter() - t0))
    assert cal.elapsed(starts[0], ends[0]) == window
    print(
        f"python {platform.python_version()} on {platform.machine()} ({platform.processor() or 'cpu'})"
    )
    print(f"add():     {best_add:,.0f} calls/s (24 business hours over a weekend and holidays)")
    print(f"elapsed(): {best_elapsed:,.0f} calls/s")


if __name__ == "__main__":
    main()
