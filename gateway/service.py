"""The running gateway: wires intake, processing and sending together, and stops cleanly.

Owns: the threads of `sla-gateway run` — the SMTP listener (aiosmtpd's own thread), one
IMAP poller per configured inbox, and one worker that processes stored messages and
drains the outbox. The worker is woken the moment an intake commits a message, and wakes
by itself for retries and for anything left from before a restart, so a crash at any
point is followed by reprocessing, never by loss. It holds no business logic.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from . import store
from .config import Config
from .errors import TemporaryError
from .outbox import OutboxSender, make_transport
from .pipeline import Pipeline
from .scheduler import Scheduler

log = logging.getLogger("sla_gateway.service")

IDLE_TICK = 5.0  # seconds between sweeps when nothing wakes the worker
SWITCH_INTERVAL = 0.0005  # seconds a thread may hold the GIL while others wait
HEARTBEAT_EVERY = 30.0  # seconds between heartbeat rows


def system_clock() -> datetime:
    return datetime.now(UTC)


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
        self.clock = clock
        self.engine = engine or store.make_engine(config.database)
        self._owns_engine = engine is None
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
        sender threads; without them, `run_once()` does their work when called (tests use
        this to step a fake clock deterministically)."""
        # Intake threads wait on the GIL behind the CPU-bound processor; a short switch
        # interval keeps an SMTP client's wait for its 250 short (default is 5 ms a turn).
        sys.setswitchinterval(SWITCH_INTERVAL)
        store.upgrade(self.engine)
        self._stop.clear()
        self._workers = [
            threading.Thread(target=self._process_loop, name="sla-processor", daemon=True),
            threading.Thread(target=self._send_loop, name="sla-sender", daemon=True),
        ]
        if not workers:
            self._workers = []
        for worker in self._workers:
            worker.start()
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
        self._started_at = self.clock()
        self._last_beat = 0.0
        self.heartbeat()
        log.info("event=started transport=%s", self.config.send.transport)

    def stop(self) -> None:
        controller = self._controller
        if controller is not None:
            controller.stop()  # type: ignore[attr-defined]
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
        import os
        import socket
        import time as _time

        if not stopping and _time.monotonic() - self._last_beat < HEARTBEAT_EVERY:
            return
        self._last_beat = _time.monotonic()
        h = store.heartbeats.c
        values = {"pid": os.getpid(), "host": socket.gethostname()[:255], "started_at": self._started_at,
                  "beat_at": self.clock() if not stopping else self._started_at}  # fmt: skip
        with store.begin(self.engine) as conn:
            if stopping:
                conn.execute(store.heartbeats.delete().where(h.name == "service"))
                return
            if not conn.execute(
                store.heartbeats.update().where(h.name == "service").values(**values)
            ).rowcount:
                conn.execute(store.heartbeats.insert().values(name="service", **values))

    def wake(self) -> None:
        """Tell the worker there is something to do (thread-safe)."""
        self._wake.set()

    def _copy_to_mailbox(self, row: Any) -> None:
        """`append_acks_to`: put a copy of each acknowledgment in the inbox's mailbox."""
        if row.kind != "ack" or row.conversation_id is None:
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

    def _process_loop(self) -> None:
        """Process stored messages as they arrive; hand what they queued to the sender."""

        def step() -> float:
            self.heartbeat()
            while self.pipeline.process_pending(limit=200):
                self._wake_sender.set()
            if self.scheduler.run_due():
                self._wake_sender.set()
            upcoming = self.scheduler.next_due()
            if upcoming is None:
                return IDLE_TICK
            now = self.clock()
            if self.config.alerts.only_in_business_hours and not self.config.calendar.is_open(now):
                upcoming = max(upcoming, self.config.calendar.next_open(now))  # alerts are held
            return self._sleep_until(upcoming)

        self._loop(self._wake, step)

    def _send_loop(self) -> None:
        """Send whatever is due; sleep until the next retry or until woken."""

        def step() -> float:
            while self.sender.send_due(limit=200):
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
