"""The SMTP listener: an aiosmtpd handler that turns SMTP transactions into stored rows.

Owns: the protocol seam. RCPT is accepted only for configured inbox addresses and aliases
(anything else gets 550, so the gateway can never relay); an over-size message gets 552
(aiosmtpd enforces `max_message_size`); DATA is answered 250 only after the raw message
is committed to the database — one committer thread stores what all sessions received
meanwhile in one transaction, and stores them one by one when that fails for a reason of
one message's own, so that no message fails its neighbours — and 451 when we could not
commit (the sender retries, nothing is lost). The envelope is stored as sent, also when it
is not UTF-8 (`store.LosslessText`). It decides nothing about the message itself: the pipeline does that after the
250, and is woken at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import queue
import ssl
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from .config import LOOPBACK, Config, ListenConfig
from .errors import TemporaryError
from .pipeline import Pipeline, Received
from .secrets import read_secret

log = logging.getLogger("sla_gateway.smtp")

GROUP_MAX = 64  # messages stored in one commit at most


class _Committer:
    """One thread that stores what the SMTP sessions received, everything waiting in one
    transaction (group commit), and answers each session's future on its event loop —
    one hand-over per message and one wake-up of the loop per commit, instead of a pool
    thread per message waiting on the others."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._queue: queue.SimpleQueue[tuple[Received, asyncio.Future[tuple[int | None, bool]]] | None] = (
            queue.SimpleQueue()
        )  # fmt: skip
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, received: Received) -> asyncio.Future[tuple[int | None, bool]]:
        future: asyncio.Future[tuple[int | None, bool]] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sla-intake-commit", daemon=True)
                self._thread.start()
        self._queue.put((received, future))
        return future

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < GROUP_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                outcomes = self._store([r for r, _ in batch])
            except BaseException as exc:  # every waiting session hears of it (451)
                outcomes = [exc] * len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = {}
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                by_loop.setdefault(future.get_loop(), []).append((future, outcome))
            for loop, answers in by_loop.items():
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                    loop.call_soon_threadsafe(_answer, answers)

    def _store(self, items: list[Received]) -> list[Any]:
        """Each message's (row id, is_new), or the exception that kept it from being
        stored. A group that fails for a reason of its own (not a database that is down
        or busy) is stored again one message at a time, so that one message that cannot
        be stored fails alone and its neighbours are stored."""
        try:
            return list(self.pipeline.accept_many(items))
        except TemporaryError as exc:
            return [exc] * len(items)  # the database itself: every waiting session hears it
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            log.warning("event=group-commit-failed size=%s error=%r", len(items), str(exc)[:300])
        outcomes: list[Any] = []
        for received in items:
            try:
                outcomes.append(self.pipeline.accept(received))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes


def _answer(answers: list[tuple[Any, Any]]) -> None:
    for future, outcome in answers:
        if future.done():  # the session went away meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class IntakeHandler:
    """aiosmtpd handler: validate recipients, store, wake the processor."""

    def __init__(self, config: Config, pipeline: Pipeline, wake: Callable[[], None],
                 clock: Callable[[], datetime]) -> None:  # fmt: skip
        self.config = config
        self.pipeline = pipeline
        self.wake = wake
        self.clock = clock
        self.committer = _Committer(pipeline)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:  # fmt: skip
        if self.config.inbox_for(address) is None:
            log.info("event=rcpt-refused peer=%s rcpt=%s", _peer(session), address)
            return f"550 5.7.1 <{address}>: not a support address handled here; relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):  # pragma: no cover - decode_data is off
            raw = raw.encode("utf-8", "surrogateescape")
        mail_from = envelope.mail_from or ""
        received = Received(
            raw=bytes(raw),
            source="smtp",
            received_at=self.clock(),
            envelope_from="" if mail_from in ("<>", "") else mail_from,
            envelope_to=tuple(envelope.rcpt_tos),
        )
        try:
            row_id, new = await self.committer.submit(received)
        except TemporaryError as exc:
            log.error("event=store-failed peer=%s error=%r", _peer(session), str(exc))
            return "451 4.3.0 Temporary failure storing the message, please try again later"
        except Exception:
            log.exception("event=store-failed peer=%s", _peer(session))
            return "451 4.3.0 Temporary local problem, please try again later"
        log.info(
            "event=stored source=smtp message=%s new=%s size=%s", row_id, new, len(received.raw)
        )
        if new:
            self.wake()
        return f"250 2.0.0 Stored as {row_id}" if new else f"250 2.0.0 Already have it ({row_id})"


def _peer(session: Any) -> str:
    peer = getattr(session, "peer", None)
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class _Authenticator:
    """Checks SMTP AUTH LOGIN/PLAIN against the configured username and password."""

    def __init__(self, listen: ListenConfig) -> None:
        self.username = (listen.username or "").encode()
        self.password = read_secret(listen.password, "listen").encode()

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = hmac.compare_digest(data.login, self.username) and hmac.compare_digest(
            data.password, self.password
        )
        return AuthResult(success=ok, handled=False)


def make_controller(config: Config, handler: IntakeHandler) -> Controller:
    listen = config.listen
    assert listen is not None
    kwargs: dict[str, Any] = {
        "data_size_limit": listen.max_message_size,
        "enable_SMTPUTF8": True,
        "decode_data": False,
        "ident": "sla-gateway",
    }
    if listen.tls_cert and listen.tls_key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(listen.tls_cert, listen.tls_key)
        kwargs["tls_context"] = context
    if listen.require_auth:
        kwargs["auth_required"] = True
        kwargs["authenticator"] = _Authenticator(listen)
        # Passwords only over TLS, except on loopback without a certificate (a local relay).
        kwargs["auth_require_tls"] = bool(listen.tls_cert) or listen.host not in LOOPBACK
    return Controller(handler, hostname=listen.host, port=listen.port, **kwargs)
