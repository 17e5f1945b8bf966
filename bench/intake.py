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

`--cpu` measures instead what each part costs per message, on a shop's realistic mail
(bench/shopmail.py: median ~2.4 KB, 30 % multipart/alternative with quoted-printable HTML,
replies to our acknowledgments and to the team's mail, team replies, follow-ups, a few
attachments; fixed seed) into an empty database and into one with a year of history
(`--history 1y`: 100,000 conversations, ~200,000 messages, ~100,000 outbox rows, loaded
with `store.load_history`). The gateway runs in this process (`Service`, its SMTP listener,
runner and sender called in turn); the SMTP clients and the sink that takes the
acknowledgments run in processes of their own, so this process's CPU time (user + system,
all threads) is the gateway's alone. Each wave of mail is delivered over SMTP (intake),
processed with a scheduler wake-up (processing), then sent over one SMTP connection
(sending); the sink's acknowledgments feed the next wave's replies. Printed: CPU
milliseconds per message for each part, per acknowledgment, and history/empty ratios.

    .venv/bin/python bench/intake.py --cpu [-n 3000] [--history 1y] [--repeat 3] [--cprofile FILE]

Goals (issue 16): one year of history costs at most 10 % more per message than none;
intake + processing + sending at most 2.5 ms of CPU per acknowledged message at a year.
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
sys.path.insert(0, str(ROOT / "bench"))

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


def config_text(database: str, listen_port: int, sink_port: int) -> str:
    """The example configuration: this database, listening on `listen_port`, sending over
    SMTP to `sink_port`, no rate limit in the way, every day open all day (so no message
    is "too late" whatever the date), no daily digest."""
    text = (ROOT / "config" / "gateway.example.toml").read_text()
    text = text.replace('database = "sqlite:///var/sla-gateway.db"', f'database = "{database}"')
    text = text.replace("port = 2525 ", f"port = {listen_port} ")
    text = text.replace('transport = "maildir" ', 'transport = "smtp" ')
    text = text.replace('# host = "smtp.gmail.com"', 'host = "127.0.0.1"')
    text = text.replace("# port = 587 ", f"port = {sink_port} ")
    text = text.replace('# security = "starttls"     ', 'security = "none"     ')
    text = text.replace("max_per_minute = 60 ", "max_per_minute = 1000000 ")
    text = text.replace("max_per_hour = 200 ", "max_per_hour = 1000000 ")
    text = text.replace('to = ["owner@shop.example"]                     # who gets it', "to = []  # who gets it")
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        text = re.sub(rf'^{day} = "[^"]*"', f'{day} = "00:00-24:00"', text, flags=re.M)
    parse(text, "bench.toml")  # fail early on a broken edit
    return text


def write_config(workdir: Path, database: str, listen_port: int, sink_port: int) -> Path:
    path = workdir / "bench.toml"
    path.write_text(config_text(database, listen_port, sink_port))
    return path


def gateway_run(
    count: int, conns: int, rate: float | None, workdir: Path
) -> tuple[float, list[float]]:
    sink = CountingSink()
    sink.expect = count
    sink_port, listen_port = free_port(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    db = workdir / f"bench-{time.time_ns()}.db"
    config_path = write_config(workdir, f"sqlite:///{db}", listen_port, sink_port)
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


# ---------------------------------------------------------------------------- --cpu

CLIENTS = """
import pickle, smtplib, sys, threading
port, conns = int(sys.argv[1]), int(sys.argv[2])
for path in sys.stdin:
    mails = pickle.loads(open(path.strip(), "rb").read())
    def send(part):
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
            for sender, raw in part:
                client.sendmail(sender, ["support@shop.example"], raw)
    threads = [threading.Thread(target=send, args=(mails[i::conns],)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("sent", flush=True)
"""

ACK_SINK = """
import re, sys
from aiosmtpd.controller import Controller
def header(raw, name):
    found = re.search(rb"^" + name + rb":[ \\t]*(.*(?:\\r?\\n[ \\t].*)*)", raw, re.M | re.I)
    return b" ".join(found.group(1).split()).decode("utf-8", "replace") if found else ""
class H:
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content
        ids = [header(raw, n).strip("<>") for n in (b"Message-ID", b"In-Reply-To")]
        print(ids[0], ids[1], header(raw, b"Subject"), sep="\\t", flush=True)
        return "250 OK"
c = Controller(H(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"""

HISTORIES = {"0": 0, "none": 0, "1m": 8_300, "3m": 25_000, "6m": 50_000, "1y": 100_000, "2y": 200_000}


def build_history(url: str, conversations: int) -> dict[str, int]:
    """A database at `url` with `conversations` of history (bench/shopmail.history)."""
    from datetime import UTC, datetime

    from shopmail import history

    from gateway import store

    engine = store.make_engine(url)
    store.upgrade(engine)
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    days = max(1, round(360 * conversations / 100_000))
    for rows in history(datetime.now(UTC), conversations, days):
        with store.begin(engine) as conn:
            store.load_history(conn, rows)
        for table, batch in rows.items():
            counts[table] = counts.get(table, 0) + len(batch)
        print(f"\r  history: {counts.get('conversations', 0):,} conversations "
              f"({time.perf_counter() - t0:.0f} s)", end="", file=sys.stderr)  # fmt: skip
    print(file=sys.stderr)
    engine.dispose()
    return counts


def cpu_run(count: int, conns: int, wave: int, database: Path, workdir: Path,
            profile: Any = None) -> dict[str, float]:  # fmt: skip
    """Deliver, process and send `count` messages of the corpus in waves into the gateway
    on `database`; returns CPU seconds of this process per part, and counts."""
    import pickle
    from datetime import UTC, datetime

    from shopmail import Corpus

    from gateway.config import load
    from gateway.service import Service

    sink_port, listen_port = free_port(), free_port()
    sink = subprocess.Popen([sys.executable, "-c", ACK_SINK, str(sink_port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    clients = subprocess.Popen([sys.executable, "-c", CLIENTS, str(listen_port), str(conns)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert sink.stdin and sink.stdout and clients.stdin and clients.stdout
    assert sink.stdout.readline().strip() == "ready"
    config = load(write_config(workdir, f"sqlite:///{database}", listen_port, sink_port))
    service = Service(config, clock=lambda: datetime.now(UTC))
    service.start(workers=False)
    corpus = Corpus()
    cpu = {"intake": 0.0, "processing": 0.0, "sending": 0.0}
    totals = {"messages": 0, "acks": 0, "sent": 0, "bytes": 0}
    sizes: list[int] = []
    kinds: dict[str, int] = {}
    try:
        while totals["messages"] < count:
            mails = corpus.wave(min(wave, count - totals["messages"]), datetime.now(UTC))
            path = workdir / "wave.pickle"
            path.write_bytes(pickle.dumps([(m.envelope_from, m.raw) for m in mails]))
            totals["messages"] += len(mails)
            totals["bytes"] += sum(len(m.raw) for m in mails)
            sizes += [len(m.raw) for m in mails]
            for m in mails:
                kinds[m.kind] = kinds.get(m.kind, 0) + 1
            start = time.process_time()
            clients.stdin.write(f"{path}\n")
            clients.stdin.flush()
            assert clients.stdout.readline().strip() == "sent"  # every 250: stored
            cpu["intake"] += time.process_time() - start
            if profile is not None:
                profile.enable()
            start = time.process_time()
            outcomes = []
            while batch := service.pipeline.process_pending(limit=200):
                outcomes += batch
            service.scheduler.run_due()
            cpu["processing"] += time.process_time() - start
            start = time.process_time()
            sent = 0
            while more := service.sender.send_due(limit=200):
                sent += more
            cpu["sending"] += time.process_time() - start
            if profile is not None:
                profile.disable()
            totals["acks"] += sum(1 for o in outcomes if o.acknowledged)
            totals["sent"] += sent
            for _ in range(sent):  # what the sink got: our acknowledgments, for the replies
                message_id, in_reply_to, subject = [*sink.stdout.readline().rstrip("\n").split("\t"), "", ""][:3]
                corpus.learn(message_id, in_reply_to, subject)
    finally:
        service.close()
        clients.communicate("", timeout=60)
        sink.communicate("", timeout=60)
    shares = {f"share {kind}": n / len(sizes) for kind, n in kinds.items()}
    return {**cpu, **{k: float(v) for k, v in totals.items()}, "median": statistics.median(sizes),
            **shares}  # fmt: skip


def cpu_main(args: argparse.Namespace) -> None:
    import shutil

    conversations = HISTORIES.get(args.history)
    if conversations is None:
        raise SystemExit(f"--history: one of {', '.join(HISTORIES)}")
    profile = None
    if args.cprofile:
        import cProfile

        profile = cProfile.Profile()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        workdir = Path(tmp)
        prefilled = workdir / "history.db"
        counts = build_history(f"sqlite:///{prefilled}", conversations) if conversations else {}
        results: dict[str, list[dict[str, float]]] = {"empty": [], args.history: []}
        labels = list(results) if conversations else ["empty"]
        # The profiled run is one more, never counted: cProfile doubles the CPU it measures.
        plan = [(run, label, None) for run in range(args.repeat) for label in labels]
        if profile is not None:
            plan.append((args.repeat, labels[-1], profile))
        for run, label, profiling in plan:
            database = workdir / f"run-{label}-{run}.db"
            if label != "empty":
                for suffix in ("", "-wal", "-shm"):  # a copy of the year, per run
                    if Path(f"{prefilled}{suffix}").exists():
                        shutil.copy(f"{prefilled}{suffix}", f"{database}{suffix}")
            measured = cpu_run(args.n, args.c, args.wave, database, workdir, profiling)
            if profiling is None:
                results[label].append(measured)
            print(f"  run {run + 1} {label:>5}{' (profiled, not counted)' if profiling else ''}: "
                  + describe(measured), file=sys.stderr)  # fmt: skip
            for suffix in ("", "-wal", "-shm"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
    if profile is not None:
        profile.dump_stats(args.cprofile)
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"n={args.n} per run, wave={args.wave}, connections={args.c}, runs={args.repeat}")  # fmt: skip
    if counts:
        print("history: " + ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items())))
    first = results["empty"][0]
    print(f"corpus: {first['messages']:.0f} messages, median {first['median'] / 1000:.1f} KB, "
          f"mean {first['bytes'] / first['messages'] / 1000:.1f} KB; "
          + ", ".join(f"{k[6:]} {v:.0%}" for k, v in sorted(first.items()) if k.startswith("share "))
          + f"; {first['acks']:.0f} acknowledged, {first['sent']:.0f} sent")  # fmt: skip
    best = {label: best_of(runs) for label, runs in results.items() if runs}
    for label, figures in best.items():
        print(f"{label:>5} (best of {len(results[label])}): {describe(figures)}")
    if conversations:
        empty, full = best["empty"], best[args.history]
        print(f"ratio {args.history}/empty: " + ", ".join(
            f"{part} {full[part] / empty[part]:.2f}" for part in ("intake", "processing", "sending", "total")
        ))  # fmt: skip


def best_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per part, the run with the least CPU (the machine is shared: others only add)."""
    out = dict(runs[0])
    for part in ("intake", "processing", "sending"):
        out[part] = min(r[part] for r in runs)
    out["total"] = out["intake"] + out["processing"] + out["sending"]
    return out


def describe(m: dict[str, float]) -> str:
    total = m["intake"] + m["processing"] + m["sending"]
    per = {part: m[part] / m["messages"] * 1000 for part in ("intake", "processing", "sending")}
    return (f"CPU ms per message: intake {per['intake']:.2f}, processing {per['processing']:.2f}, "
            f"sending {per['sending']:.2f}, total {total / m['messages'] * 1000:.2f}; "
            f"per acknowledged message {total / max(m['acks'], 1) * 1000:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000, help="messages per run")
    parser.add_argument("-c", type=int, default=8, help="client connections")
    parser.add_argument("--profile", default="", help="py-spy speedscope output for the gateway")
    parser.add_argument("--cpu", action="store_true", help="CPU per message and part, realistic mail")
    parser.add_argument("--history", default="1y", help="--cpu: history to compare with (0, 1m ... 1y, 2y)")
    parser.add_argument("--repeat", type=int, default=3, help="--cpu: runs of each")
    parser.add_argument("--wave", type=int, default=200, help="--cpu: messages delivered per wave")
    parser.add_argument("--cprofile", default="", help="--cpu: cProfile of processing and sending, in one more run (not counted)")
    parser.add_argument("--tmp", default=None, help="--cpu: where the databases go")
    args = parser.parse_args()
    if args.cpu:
        if "-n" not in sys.argv:
            args.n = 3000
        cpu_main(args)
        return
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
