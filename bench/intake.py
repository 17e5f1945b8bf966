"""Benchmark: intake throughput and acknowledgment latency over real SMTP sockets.

Runs on 127.0.0.1, the clients and the acknowledgment sink in this process:
  1. a bare aiosmtpd sink in its own process: N messages over C client connections, as the
     ceiling;
  2. the gateway (`sla-gateway run` in its own process: SQLite, SMTP listener, outbox
     sending over SMTP to an aiosmtpd sink in this process): the same N messages over C
     connections; messages/second from the first byte
     sent to the last acknowledgment received, and ack latency (client's 250 -> ack at
     the sink) p50/p99;
  3. the gateway again at half of that maximum rate (paced), for latency under load.
Then prints the ratio gateway/bare. Run by hand:

    .venv/bin/python bench/intake.py [-n 2000] [-c 8]

Goal (issue 3): >= 0.3x the bare sink's throughput; p99 ack latency < 250 ms at half load.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import parse  # noqa: E402

PROFILE = ""  # set by --profile FILE: record the gateway with py-spy


def cpu_seconds(pid: int) -> list[float]:
    """CPU time (user + system) used so far by a process, then by each of its children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [0.0]
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return [own, *(sum(cpu_seconds(int(c))) for c in children)]


def peak_rss_mb(pid: int) -> list[float]:
    """Peak resident memory (VmHWM) of a process, then of each of its children, in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [0.0]
    kb = int(re.search(r"^VmHWM:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    return [kb / 1024, *(m for c in children for m in peak_rss_mb(int(c)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CountingSink:
    """Counts messages; remembers when each acknowledgment (by In-Reply-To) arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.arrived: dict[str, float] = {}
        self.done = threading.Event()
        self.expect = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.perf_counter()
        raw: bytes = envelope.original_content
        start = raw.find(b"In-Reply-To:")
        if start >= 0:
            end = raw.find(b"\n", start)
            self.arrived[raw[start + 12 : end].strip().decode().strip("<>")] = now
        self.count += 1
        if self.count >= self.expect:
            self.done.set()
        return "250 OK"


def message(n: int) -> tuple[str, bytes]:
    msgid = f"bench{n}.{time.time_ns()}@customer.example"
    sender = f"customer{n}@customer.example"
    raw = (
        f"From: Customer {n} <{sender}>\r\nTo: support@shop.example\r\nSubject: Order {n} question\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{msgid}>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello, where is my parcel number {n}? It has not arrived.\r\n"
    ).encode()
    return msgid, raw


def blast(port: int, count: int, conns: int, rate: float | None = None) -> dict[str, float]:
    """Send `count` messages over `conns` connections; returns {message-id: time of 250}."""
    accepted: dict[str, float] = {}
    lock = threading.Lock()
    per = [list(range(i, count, conns)) for i in range(conns)]
    start = time.perf_counter()

    def worker(numbers: list[int]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            for n in numbers:
                if rate:
                    wait = start + n / rate - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                msgid, raw = message(n)
                client.sendmail(f"customer{n}@customer.example", ["support@shop.example"], raw)
                t = time.perf_counter()
                with lock:
                    accepted[msgid] = t

    threads = [threading.Thread(target=worker, args=(p,)) for p in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return accepted


BARE_SINK = """
import sys, time
from aiosmtpd.controller import Controller
class H:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
c = Controller(H(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"""


def bare(count: int, conns: int) -> float:
    """The ceiling: a do-nothing aiosmtpd server in its own process, like the gateway."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE_SINK, str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        blast(port, count, conns)  # each 250 means the sink has the message
        return count / (time.perf_counter() - t0)
    finally:
        proc.communicate("", timeout=30)


def gateway_run(
    count: int, conns: int, rate: float | None, workdir: Path
) -> tuple[float, list[float]]:
    sink = CountingSink()
    sink.expect = count
    sink_port, listen_port = free_port(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    db = workdir / f"bench-{time.time_ns()}.db"
    text = (ROOT / "config" / "gateway.example.toml").read_text()
    text = text.replace('database = "sqlite:///var/sla-gateway.db"', f'database = "sqlite:///{db}"')
    text = text.replace("port = 2525 ", f"port = {listen_port} ")
    text = text.replace('transport = "maildir" ', 'transport = "smtp" ')
    text = text.replace('# host = "smtp.gmail.com"', 'host = "127.0.0.1"')
    text = text.replace("# port = 587 ", f"port = {sink_port} ")
    text = text.replace('# security = "starttls"     ', 'security = "none"     ')
    text = text.replace("max_per_minute = 60 ", "max_per_minute = 1000000 ")
    text = text.replace("max_per_hour = 200 ", "max_per_hour = 1000000 ")
    # Every day open all day, so no message is "too late" whatever the date.
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        text = re.sub(rf'^{day} = "[^"]*"', f'{day} = "00:00-24:00"', text, flags=re.M)
    parse(text, "bench.toml")  # fail early on a broken edit
    config_path = workdir / "bench.toml"
    config_path.write_text(text)
    command = [str(ROOT / ".venv" / "bin" / "sla-gateway"), "--config", str(config_path), "run"]
    gateway = subprocess.Popen(
        command,
        stderr=subprocess.DEVNULL,
    )
    spy = None
    if PROFILE:  # sample the gateway's threads while it works
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(gateway.pid), "--threads", "--subprocesses", "--nonblocking",
                                "-f", "raw", "-o", PROFILE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until the listener answers
            try:
                with socket.create_connection(("127.0.0.1", listen_port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway did not start") from None
                time.sleep(0.1)
        t0 = time.perf_counter()
        cpu0, own0 = cpu_seconds(gateway.pid), time.process_time()
        accepted = blast(listen_port, count, conns, rate)
        blasted = time.perf_counter() - t0
        if not sink.done.wait(300):
            raise SystemExit(f"only {sink.count} of {count} acknowledgments arrived")
        elapsed = max(sink.arrived.values()) - t0
        cpu = [b - a for a, b in zip(cpu0, cpu_seconds(gateway.pid), strict=False)]
        peak = " + ".join(f"{m:.0f}" for m in peak_rss_mb(gateway.pid))
        own = time.process_time() - own0
        per = " + ".join(f"{c / count * 1000:.2f}" for c in cpu)
        print(
            f"  all {count} accepted (250) after {blasted:.2f} s; last ack after {elapsed:.2f} s;"
            f" CPU per message: gateway {per} ms (intake and sender + processor),"
            f" clients and sink {own / count * 1000:.2f} ms; peak resident memory {peak} MB",
            file=sys.stderr,
        )
        latencies = [(sink.arrived[m] - t) * 1000 for m, t in accepted.items() if m in sink.arrived]
        return count / elapsed, latencies
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        gateway.terminate()
        gateway.wait(30)
        controller.stop()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000, help="messages per run")
    parser.add_argument("-c", type=int, default=8, help="client connections")
    parser.add_argument("--profile", default="", help="py-spy speedscope output for the gateway")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bare_rate = bare(args.n, args.c)
        gw_rate, lat = gateway_run(args.n, args.c, None, workdir)
        PROFILE = ""  # profile the full-load run only
        half = gw_rate / 2
        _, half_lat = gateway_run(max(args.n // 2, 200), args.c, half, workdir)
    print(
        f"python {platform.python_version()}, {platform.machine()}, n={args.n}, connections={args.c}"
    )
    print(f"bare aiosmtpd sink:   {bare_rate:8.0f} msg/s")
    print(
        f"gateway (max load):   {gw_rate:8.0f} msg/s   ratio {gw_rate / bare_rate:.2f}x   "
        f"ack latency p50 {statistics.median(lat):.0f} ms  p99 {pct(lat, 99):.0f} ms"
    )
    print(
        f"gateway at {half:.0f} msg/s: ack latency p50 {statistics.median(half_lat):.0f} ms  "
        f"p99 {pct(half_lat, 99):.0f} ms"
    )


if __name__ == "__main__":
    main()
