"""The running gateway: wires intake, processing and sending together, and stops cleanly.

Owns: the threads (and, for `sla-gateway run`, the two processes) of the running gateway:
intake — the SMTP listener (aiosmtpd's own thread) and one IMAP poller per configured
inbox — and the workers: a processor that turns stored messages into decisions and
outbox rows (and, between batches, runs the timers and watches the outgoing backlog),
and a sender that drains the outbox. The workers are woken the moment an
intake commits a message, and wake by themselves for retries and for anything left from
before a restart, so a crash at any point is followed by reprocessing, never by loss.

With `worker_process=True` the processor runs in a child process forked at start, so that
intake and processing each have an interpreter (and a core) of their own: intake answers
SMTP clients while the processor works; the sender, which mostly waits on the network,
stays with intake. A pipe each way wakes the other side; the child stops when its pipe
closes (the parent stopped or died), and when it dies the service reports it so that
`run` exits with an error (systemd then restarts it; nothing is lost: whatever either
side had not finished is in the database). Only one gateway runs on a SQLite database at a
time (`InstanceLock`): a second one refuses to start. It holds no business logic.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from . import store
from .config import Config
from .errors import AlreadyRunning, TemporaryError
from .outage import OutageWatch
from .outbox import OutboxSender, make_transport
from .pipeline import Pipeline
from .scheduler import Scheduler

log = logging.getLogger("sla_gateway.service")

IDLE_TICK = 5.0  # seconds between sweeps when nothing wakes the worker
SWITCH_INTERVAL = 0.0005  # seconds a thread may hold the GIL while others wait
HEARTBEAT_EVERY = 30.0  # seconds between heartbeat rows
SWEEP_EVERY = IDLE_TICK  # seconds between scheduler runs when no timer is due


def _poke(fd: int | None, event: threading.Event) -> None:
    """Wake a worker: in this process by its event, in the other through its pipe."""
    if fd is None:
        event.set()
        return
    with contextlib.suppress(BlockingIOError, OSError):  # full: it is awake already
        os.write(fd, b"!")


def system_clock() -> datetime:
    return datetime.now(UTC)


class InstanceLock:
    """One running gateway per SQLite database: an flock on "<database>.running" beside
    it, held from start to stop (the worker process inherits it) and released by the
    kernel when the process ends, however it ends. The file holds the holder's pid, for
    the refusal's message. (PostgreSQL databases are not guarded here.)"""

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database or ""
        sqlite_file = engine.dialect.name == "sqlite" and database not in ("", ":memory:")
        self.database = Path(database).expanduser() if sqlite_file else None
        self._fd: int | None = None

    def acquire(self) -> None:
        if self.database is None or self._fd is not None:
            return
        path = self.database.with_name(self.database.name + ".running")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"another sla-gateway is already running on {self.database} (pid {holder}); "
                "stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # the worker process, if any, has ended: the lock goes with it


class Service:
    """`start()` everything, `stop()` everything; safe to start again after a stop."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = system_clock,
        engine: Engine | None = None,
        worker_process: bool = False,
    ) -> None:
        self.config = config
        self.worker_process = worker_process
        self.worker_died = threading.Event()  # set when the worker process ended on its own
        self._child: int | None = None  # the worker process's pid
        self._wake_fd: int | None = None  # the write end of the pipe that wakes it
        self._kick_fd: int | None = None  # in the child: the pipe that wakes the parent's sender
        self._pid = os.getpid()  # the service's own pid, for `status`
        self._appends = any(i.imap is not None and i.imap.append_acks_to for i in config.inboxes)
        self.clock = clock
        self.engine = engine or store.make_engine(config.database)
        self._owns_engine = engine is None
        self.instance = InstanceLock(self.engine)
        self._wake = threading.Event()
        self._wake_sender = threading.Event()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._controller: object | None = None
        self._pollers: list[object] = []
        self._started_at: datetime | None = None
        self._last_beat = 0.0
        self.pipeline = Pipeline(config, self.engine, clock)
        self.scheduler = Scheduler(config, self.engine, clock, self.pipeline)
        self.outage = OutageWatch(config, self.engine, clock, self.pipeline)  # mail stuck: tell once
        from .tokens import Tokens

        self.tokens = Tokens(config, self.engine, clock)  # OAuth sign-ins, shared by all
        self.sender = OutboxSender(
            self.engine,
            make_transport(config.send, tokens=self.tokens),
            clock,
            give_up_after=config.send.give_up_after,
            after_send=self._copy_to_mailbox,
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, workers: bool = True) -> None:
        """Start intake (listener, pollers) and, unless `workers=False`, the processor and
        sender threads — with `worker_process`, the processor in a forked child (which
        copies the clock as it is: real clocks only); without workers, `run_once()` does
        their work when called (tests use this to step a fake clock deterministically)."""
        # Intake threads wait on the GIL behind the CPU-bound processor; a short switch
        # interval keeps an SMTP client's wait for its 250 short (default is 5 ms a turn).
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.instance.acquire()  # before anything: a second gateway starts nothing
        store.upgrade(self.engine)
        self._stop.clear()
        self.worker_died.clear()
        self._started_at = self.clock()
        self._last_beat = 0.0
        if workers and self.worker_process:
            self._fork_worker()  # before any thread starts: a fork copies only its caller
        elif workers:
            self._start_workers()
        if self.config.listen is not None:
            from .smtp import IntakeHandler, make_controller

            handler = IntakeHandler(self.config, self.pipeline, self.wake, self.clock)
            controller = make_controller(self.config, handler)
            controller.start()
            self._controller = controller
            log.info(
                "event=listening host=%s port=%s", self.config.listen.host, self.config.listen.port
            )
        for inbox in self.config.inboxes:
            if inbox.imap is not None:
                from .imap import ImapPoller

                poller = ImapPoller(self.config, inbox, self.pipeline, self.wake, self.clock,
                                    tokens=self.tokens)  # fmt: skip
                poller.start()
                self._pollers.append(poller)
        self.heartbeat()
        log.info("event=started transport=%s", self.config.send.transport)

    def stop(self) -> None:
        controller = self._controller
        if controller is not None:
            controller.stop()  # type: ignore[attr-defined]
            controller.handler.stop()  # type: ignore[attr-defined]
            self._controller = None
        for poller in self._pollers:
            poller.stop()  # type: ignore[attr-defined]
        self._pollers = []
        self._stop.set()
        self._wake.set()
        self._wake_sender.set()
        for worker in self._workers:
            worker.join(timeout=30)
        self._workers = []
        self._stop_child()
        self.sender.close()
        self.instance.release()
        log.info("event=stopped")

    def close(self) -> None:
        self.stop()
        if getattr(self, "_started_at", None) is not None:
            try:
                self.heartbeat(stopping=True)
            except Exception:  # the database may be gone; `status` then sees an old beat
                log.warning("event=heartbeat-clear-failed")
        if self._owns_engine:
            self.engine.dispose()

    def heartbeat(self, *, stopping: bool = False) -> None:
        """Record that the service is alive (at most twice a minute), for `status`."""
        import socket

        if not stopping and time.monotonic() - self._last_beat < HEARTBEAT_EVERY:
            return
        self._last_beat = time.monotonic()
        h = store.heartbeats.c
        values = {"pid": self._pid, "host": socket.gethostname()[:255], "started_at": self._started_at,
                  "beat_at": self.clock() if not stopping else self._started_at}  # fmt: skip
        with store.begin(self.engine) as conn:
            if stopping:
                conn.execute(store.heartbeats.delete().where(h.name == "service"))
                return
            # Both processes beat: an upsert that neither can lose to the other.
            beat = store.heartbeats.update().where(h.name == "service").values(**values)
            if not conn.execute(beat).rowcount and not conn.execute(
                store.insert_ignore(conn, store.heartbeats).values(name="service", **values)
            ).rowcount:
                conn.execute(beat)  # the other process inserted it meanwhile

    def wake(self) -> None:
        """Tell the processor there is something to do (thread-safe)."""
        _poke(self._wake_fd, self._wake)

    # ------------------------------------------------------------------ the worker process

    def _start_workers(self, *, processor: bool = True, sender: bool = True) -> None:
        if processor:
            self._workers.append(
                threading.Thread(target=self._process_loop, name="sla-processor", daemon=True)
            )
        if sender:
            self._workers.append(
                threading.Thread(target=self._send_loop, name="sla-sender", daemon=True)
            )
        for worker in self._workers:
            worker.start()

    def _kick_sender(self) -> None:
        """The processor queued something: tell the sender, in this process or the parent."""
        _poke(self._kick_fd, self._wake_sender)

    def _fork_worker(self) -> None:
        to_child, to_parent = os.pipe(), os.pipe()
        self.engine.dispose()  # no database connection may cross the fork (SQLite's rule)
        pid = os.fork()
        if pid == 0:  # the child: run the processor until told to stop, then leave at once
            code = 1
            try:
                os.close(to_child[1])
                os.close(to_parent[0])
                os.set_blocking(to_parent[1], False)
                self._kick_fd = to_parent[1]
                code = self._worker_main(to_child[0])
            except BaseException:
                log.exception("event=worker-process-error")
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(to_child[0])
        os.close(to_parent[1])
        os.set_blocking(to_child[1], False)
        self._child, self._wake_fd = pid, to_child[1]
        self._start_workers(processor=False)
        for target, args in ((self._watch_child, (pid,)), (self._listen_child, (to_parent[0],))):
            threading.Thread(target=target, args=args, name="sla-watch", daemon=True).start()
        log.info("event=worker-started pid=%s", pid)

    def _worker_main(self, read_fd: int) -> int:
        """The child's life: the processor thread, woken through the pipe (the parent
        emptied the engine's pool before forking: every connection here is the child's)."""
        # The parent says when to stop, by closing the pipe (also when it dies): a signal
        # to the whole group (Ctrl-C, systemd's stop) must not cut a batch short here.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        self._start_workers(sender=False)
        while os.read(read_fd, 4096):  # b"": the parent closed its end, stopping or gone
            self._wake.set()
        self._stop.set()
        self._wake.set()
        for worker in self._workers:
            worker.join(timeout=30)
        return 0

    def _listen_child(self, read_fd: int) -> None:
        """Wake the sender whenever the child says it queued something."""
        try:
            while os.read(read_fd, 4096):
                self._wake_sender.set()
        except OSError:
            pass
        finally:
            os.close(read_fd)

    def _watch_child(self, pid: int) -> None:
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(pid, 0)
            if self._child == pid and not self._stop.is_set():
                log.error("event=worker-process-died pid=%s status=%s", pid, status)
                self.worker_died.set()
        if self._child == pid:
            self._child = None

    def _stop_child(self) -> None:
        pid, fd = self._child, self._wake_fd
        self._wake_fd = None
        if fd is not None:
            os.close(fd)  # the child's read sees the end and it stops after its batch
        if pid is None:
            return
        deadline = time.monotonic() + 30
        while self._child == pid and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._child == pid:
            log.error("event=worker-process-kill pid=%s", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _copy_to_mailbox(self, row: Any) -> None:
        """`append_acks_to`: put a copy of each acknowledgment in the inbox's mailbox."""
        if row.kind != "ack" or row.conversation_id is None or not self._appends:
            return
        with self.engine.connect() as conn:
            inbox_name = conn.execute(
                select(store.conversations.c.inbox).where(
                    store.conversations.c.id == row.conversation_id
                )
            ).scalar()
        for inbox in self.config.inboxes:
            if inbox.name == inbox_name and inbox.imap is not None and inbox.imap.append_acks_to:
                from .imap import append_copy

                source = self.tokens.for_imap(inbox) if inbox.imap.oauth is not None else None
                append_copy(inbox.imap, inbox.imap.append_acks_to, row.raw, self.clock(), source)

    # ------------------------------------------------------------------ the worker

    def run_once(self) -> None:
        """Process everything stored, then send everything due (tests call this directly)."""
        while self.pipeline.process_pending(limit=200):
            pass
        self.scheduler.run_due()
        self.sender.send_due()
        self.outage.check()  # what it queues goes out with the next run

    def _process_loop(self) -> None:
        """Process stored messages as they arrive; hand what they queued to the sender."""

        known = False  # whether `upcoming` is still right: nothing processed since
        upcoming: datetime | None = None
        swept = -SWEEP_EVERY  # monotonic time of the last full run of the scheduler

        def step() -> float:
            nonlocal known, upcoming, swept
            self.heartbeat()
            while done := self.pipeline.process_pending(limit=200):
                known = False  # new conversations, new timers
                self._kick_sender()
                if len(done) < 200:
                    break  # all there was; what came meanwhile has woken us again
            if not known:
                upcoming, known = self._next_timer(), True
            # The timers when one is due; everything else (closing quiet conversations,
            # the digest, purging) every SWEEP_EVERY — not on every wake-up under load.
            if (upcoming is not None and upcoming <= self.clock()) or (
                time.monotonic() - swept >= SWEEP_EVERY
            ):
                swept = time.monotonic()
                queued = self.scheduler.run_due()
                if self.outage.check() or queued:  # the backlog, watched apart from the sender
                    self._kick_sender()
                upcoming = self._next_timer()
            return self._sleep_until(upcoming)

        self._loop(self._wake, step)

    def _next_timer(self) -> datetime | None:
        """When the scheduler next has work: a timer's moment, or the next opening when
        alerts are held outside business hours."""
        upcoming = self.scheduler.next_due()
        now = self.clock()
        held = self.config.alerts.only_in_business_hours and not self.config.calendar.is_open(now)
        if upcoming is not None and held:
            upcoming = max(upcoming, self.config.calendar.next_open(now))  # alerts are held
        return upcoming

    def _send_loop(self) -> None:
        """Send whatever is due; sleep until the next retry or until woken."""

        def step() -> float:
            while self.sender.send_due(limit=200, stopping=self._stop):
                pass
            return self._sleep_until(self.sender.next_due())

        self._loop(self._wake_sender, step)

    def _loop(self, wake: threading.Event, step: Callable[[], float]) -> None:
        failures = 0
        while not self._stop.is_set():
            wake.clear()
            try:
                timeout = step()
                failures = 0
            except TemporaryError as exc:
                failures += 1
                timeout = min(2.0**failures, 60.0)
                log.error("event=worker-retry error=%r in=%.0fs", str(exc), timeout)
            except Exception:
                failures += 1
                timeout = min(2.0**failures, 60.0)
                log.exception("event=worker-error in=%.0fs", timeout)
            wake.wait(timeout)

    def _sleep_until(self, due: datetime | None) -> float:
        """Seconds to wait for `due` (by the injected clock), between 50 ms and IDLE_TICK."""
        if due is None:
            return IDLE_TICK
        return max(0.05, min(IDLE_TICK, (due - self.clock()).total_seconds()))
