"""The running gateway: wires intake, processing and sending together, and stops cleanly.

Owns: the threads of the running gateway, all in one process: intake — the SMTP listener
(aiosmtpd's own thread, and its committer thread, so that 250 goes out only after the
commit) and one IMAP poller per configured inbox — and two workers: the runner, which
turns stored messages into decisions and outbox rows one at a time (and, between
messages, runs the timers and watches the outgoing backlog), and the sender, which
drains the outbox. The runner is woken the moment an intake commits a message and the
sender the moment the runner queues one; both wake by themselves for retries and for
anything left from before a restart, so a crash at any point is followed by
reprocessing, never by loss. Only one gateway runs on a SQLite database at a time
(`InstanceLock`): a second one refuses to start. `reload()` (SIGHUP) reads the
configuration and templates again and hands the valid result to every part, between two
messages; an invalid file is refused and the running configuration kept (reload.py
decides what needs a restart). It holds no business logic.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import store
from .config import Config
from .errors import AlreadyRunning, ConfigError, TemporaryError
from .outage import OutageWatch
from .outbox import OutboxSender, make_transport
from .pipeline import Pipeline
from .scheduler import Scheduler
from .signin import queue_alerts as queue_sign_in_alerts
from .store import Engine

log = logging.getLogger("sla_gateway.service")

IDLE_TICK = 5.0  # seconds between sweeps when nothing wakes the worker
HEARTBEAT_EVERY = 30.0  # seconds between heartbeat rows
SWEEP_EVERY = IDLE_TICK  # seconds between scheduler runs when no timer is due
SWEEP_AFTER = 200  # messages processed before the timers get a turn under load
WAKE_SENDER_EVERY = 20  # messages processed under load before the sender is woken


def system_clock() -> datetime:
    return datetime.now(UTC)


class InstanceLock:
    """One running gateway per SQLite database: an flock on "<database>.running" beside
    it, held from start to stop and released by the
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
            os.close(fd)


class Service:
    """`start()` everything, `stop()` everything; safe to start again after a stop."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = system_clock,
        engine: Engine | None = None,
    ) -> None:
        self.config = config
        self._pid = os.getpid()  # the service's own pid, for `status`
        self._appends = any(i.imap is not None and i.imap.append_acks_to for i in config.inboxes)
        self.clock = clock
        self.engine = engine or store.make_engine(config.database)
        self._owns_engine = engine is None
        self.instance = InstanceLock(self.engine)
        self._wake = threading.Event()
        self._wake_sender = threading.Event()
        self._working = threading.Lock()  # held by the runner's steps; a reload waits for it
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._controller: object | None = None
        self._pollers: list[object] = []
        self._started_at: datetime | None = None
        self._last_beat = 0.0
        self.pipeline = Pipeline(config, self.engine, clock)
        self.runner = self.pipeline.runner
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
        """Start intake (listener, pollers) and, unless `workers=False`, the runner and
        sender threads; without workers, `run_once()` does their work when called (tests
        use this to step a fake clock deterministically)."""
        self.instance.acquire()  # before anything: a second gateway starts nothing
        store.upgrade(self.engine)
        self._stop.clear()
        self._started_at = self.clock()
        with store.begin(self.engine) as conn:  # no digest tells of a day before the first
            store.add_event(conn, self._started_at, "started")
        self._last_beat = 0.0
        if workers:
            self._start_workers()
        if self.config.listen is not None:
            from .smtp import IntakeHandler, make_controller

            handler = IntakeHandler(self.config, self.pipeline, self.wake, self.clock)
            controller = make_controller(self.config, handler)
            try:
                controller.start()
            except BaseException:
                # The port is taken (or not ours): close the loop aiosmtpd made for it
                # now, or the interpreter does at exit and prints a traceback beside
                # our one-line error.
                with contextlib.suppress(Exception):
                    controller.stop(no_assert=True)
                with contextlib.suppress(Exception):
                    controller.loop.close()
                raise
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

    def reload(self) -> bool:
        """Read the configuration file and the templates again (SIGHUP). Valid: apply them
        to new work — messages processed from now on, the timers, the sender, the alerts —
        keeping the running value of each key that needs a restart (logged by name);
        invalid: log why in one line and keep running as before. Returns whether the new
        configuration was applied."""
        from . import reload as reloading

        try:
            new = reloading.read(self.config, self.clock())
        except ConfigError as exc:
            log.error("event=reload-refused config=%s error=%r (the running configuration is kept)",
                      self.config.path, "; ".join(str(p) for p in exc.problems))  # fmt: skip
            return False
        config, restart = reloading.merge(self.config, new)
        for key in restart:
            log.warning("event=reload-needs-restart key=%s (needs a restart: %s; the running value is kept)",
                        key, key)  # fmt: skip
        with self._working:  # between two messages, never during one
            self._apply(config)
        log.info("event=reloaded config=%s", config.path)
        self._wake.set()  # timers and held mail under the new configuration
        return True

    def _apply(self, config: Config) -> None:
        self.config = config
        self.pipeline.reconfigure(config)
        self.scheduler.config = config
        self.outage.config = config
        self.sender.give_up_after = config.send.give_up_after
        controller = self._controller
        if controller is not None:
            controller.handler.config = config  # type: ignore[attr-defined]
        for poller in self._pollers:
            poller.config = config  # type: ignore[attr-defined]

    def heartbeat(self, *, stopping: bool = False) -> None:
        """Record that the service is alive (at most twice a minute), for `status`."""
        import socket

        if not stopping and time.monotonic() - self._last_beat < HEARTBEAT_EVERY:
            return
        self._last_beat = time.monotonic()
        values = {"pid": self._pid, "host": socket.gethostname()[:255], "started_at": self._started_at,
                  "beat_at": self.clock() if not stopping else self._started_at}  # fmt: skip
        with store.begin(self.engine) as conn:
            if stopping:
                store.clear_beat(conn, "service")
            else:
                store.beat(conn, "service", values)

    def wake(self) -> None:
        """Tell the runner there is something to do (thread-safe)."""
        self._wake.set()

    # ------------------------------------------------------------------ the workers

    def _start_workers(self) -> None:
        self._workers = [
            threading.Thread(target=self._process_loop, name="sla-runner", daemon=True),
            threading.Thread(target=self._send_loop, name="sla-sender", daemon=True),
        ]
        for worker in self._workers:
            worker.start()

    def _copy_to_mailbox(self, row: Any) -> None:
        """`append_acks_to`: put a copy of each acknowledgment in the inbox's mailbox."""
        if row.kind != "ack" or row.conversation_id is None or not self._appends:
            return
        with self.engine.connect() as conn:
            inbox_name = store.conversation_inbox(conn, row.conversation_id)
        for inbox in self.config.inboxes:
            if inbox.name == inbox_name and inbox.imap is not None and inbox.imap.append_acks_to:
                from .imap import append_copy

                source = self.tokens.for_imap(inbox) if inbox.imap.oauth is not None else None
                append_copy(inbox.imap, inbox.imap.append_acks_to, row.raw, self.clock(), source)

    # ------------------------------------------------------------------ the runner

    def run_once(self) -> None:
        """Process everything stored, then send everything due (tests call this directly)."""
        while self.pipeline.process_pending(limit=200):
            pass
        self.scheduler.run_due()
        self.sender.send_due()
        queue_sign_in_alerts(self.pipeline, self.clock)  # a sign-in refused while sending
        self.outage.check()  # what it queues goes out with the next run

    def _process_loop(self) -> None:
        """Process stored messages as they arrive; hand what they queued to the sender."""

        known = False  # whether `upcoming` is still right: nothing processed since
        upcoming: datetime | None = None
        swept = -SWEEP_EVERY  # monotonic time of the last full run of the scheduler

        def step() -> float:
            with self._working:  # a reload waits for the end of the step
                return work()

        def work() -> float:
            nonlocal known, upcoming, swept
            self.heartbeat()
            done = 0
            # Claim, decide, apply or shunt — one message at a time; the sender hears when
            # the runner has caught up, and every few messages under load (each wake-up is
            # a commit of its own). Now and then the timers get a turn.
            while not self._stop.is_set() and done < SWEEP_AFTER:
                outcome = self.runner.process_next()
                if outcome is None:
                    break
                done += 1
                known = False  # new conversations, new timers
                if done % WAKE_SENDER_EVERY == 0:
                    self._wake_sender.set()  # under load: what is queued so far
            if done:
                self._wake_sender.set()
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
                    self._wake_sender.set()
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
        """Send whatever is due, and queue the alerts about refused sign-ins; sleep until
        the next retry or until woken."""

        def step() -> float:
            while True:
                while self.sender.send_due(limit=200, stopping=self._stop):
                    pass
                # A sign-in refused (here or in a poller): the alert, from this one thread.
                if not queue_sign_in_alerts(self.pipeline, self.clock):
                    break
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
