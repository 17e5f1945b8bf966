"""IMAP intake latency: from a mail's arrival at the IMAP server to its acknowledgment.

Goal (issue 11): every mail acknowledged within 2 s of arrival at the IMAP server, bursts
included. Method: a throwaway Dovecot on 127.0.0.1 (as the tests start it), `Service`
with the example configuration reading its INBOX with IDLE (renewed only every 5 min, so
a mail left for the renewal shows up as a 300 s latency), the outbox over SMTP to an
aiosmtpd sink in this process. Mail is appended in bursts (the first of each a 3 MB
message, so later ones arrive while a FETCH is busy); the latency of each mail is the
time from its APPEND's completion to its acknowledgment's arrival at the sink.

    .venv/bin/python bench/imap_latency.py [--bursts 5] [--size 10]

Run as root (Dovecot needs it, like the tests). Prints p50 / p95 / max in milliseconds.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.service import Service
from tests.imapserver import Dovecot
from tests.mailtools import Sink, gateway_config


def mail(n: int, padding: int = 0) -> bytes:
    sender = f"c{n}@customer.example"
    head = (
        f"Return-Path: <{sender}>\r\nFrom: <{sender}>\r\nTo: support@shop.example\r\n"
        f"Subject: Question {n}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
        f"Message-ID: <bench{n}@customer.example>\r\n\r\nHello, question {n}.\r\n"
    ).encode()
    return head + b"".join(b"x" * 76 + b"\r\n" for _ in range(padding // 78))


class TimedSink(Sink):
    """The test sink, noting when each recipient's acknowledgment arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[str, float] = {}

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        for address in envelope.rcpt_tos:  # type: ignore[attr-defined]
            self.at.setdefault(address, time.monotonic())
        return reply


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--size", type=int, default=10, help="mails per burst")
    parser.add_argument("--each", action="store_true", help="print every mail's latency")
    parser.add_argument("--log", action="store_true", help="the gateway's log on stderr")
    args = parser.parse_args()
    if args.log:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = Path(tempfile.mkdtemp(prefix="imap-latency-"))
    dovecot = Dovecot(work / "dovecot")
    dovecot.start()
    sink = TimedSink()
    sink.start()
    appended: dict[str, float] = {}
    try:
        secret = work / "imap-password"
        secret.write_text(dovecot.password + "\n")
        section = (
            "[inbox.imap]\n"
            f'host = "{dovecot.host}"\nport = {dovecot.port}\nsecurity = "none"\n'
            f'username = "{dovecot.user}"\npassword_file = "{secret}"\n'
            'idle = true\npoll_interval = "300s"\ntimeout = "10s"\n'
        )
        config = gateway_config(work, f"sqlite:///{work / 'gateway.db'}", sink_port=sink.port,
                                extra={"# [inbox.imap]\n": section})  # fmt: skip
        service = Service(config, clock=lambda: datetime.now(UTC))
        service.start()
        time.sleep(2)  # the first sync marks where history ends
        n = 0
        for burst in range(args.bursts):
            for k in range(n, n + args.size):  # the first a 3 MB mail: a FETCH stays busy
                dovecot.append("INBOX", mail(k, 3_000_000 if k == n else 0))
                appended[f"c{k}@customer.example"] = time.monotonic()
            n += args.size
            sink.wait_for(n, timeout=600)
            print(f"burst {burst + 1}: {args.size} mails acknowledged", flush=True)
        service.close()
    finally:
        sink.stop()
        dovecot.stop()
    for address, t in appended.items():  # in arrival order, for a look at the slow ones
        if "--each" in sys.argv:
            print(f"{address}: {(sink.at[address] - t) * 1000:.0f} ms")
    latencies = sorted((sink.at[a] - t) * 1000 for a, t in appended.items() if a in sink.at)
    p95 = latencies[max(int(len(latencies) * 0.95) - 1, 0)]
    print(f"{len(latencies)} mails: p50 {statistics.median(latencies):.0f} ms, "
          f"p95 {p95:.0f} ms, max {latencies[-1]:.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
