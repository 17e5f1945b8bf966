"""The SMTP listener: an aiosmtpd handler that turns SMTP transactions into stored rows.

Owns: the protocol seam. RCPT is accepted only for configured inbox addresses and aliases,
also with a suffix after the inbox's `command_delimiter` (`support+resolved@`: a command,
read by the runner from the stored envelope) — anything else gets 550, so the gateway can
never relay; an over-size message gets 552
(aiosmtpd enforces `max_message_size`); DATA is answered 250 only after the raw message
is committed to the database — one committer thread stores what all sessions received
meanwhile in one transaction, and stores them one by one when that fails for a reason of
one message's own, so that no message fails its neighbours — and 451 when we could not
commit (the sender retries, nothing is lost). The envelope is stored as sent, also when it
is not UTF-8 (`store.LosslessText`). Every refusal (552 too large, 500 a line too long,
550 not our address) is logged with sender, size and reason and recorded as a bounded
"refused" event, which the daily digest counts: no refused mail goes unnoticed. It decides nothing about the message itself: the pipeline does that after the
250, and is woken at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import queue
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from . import store
from .config import LOOPBACK, Config, ListenConfig
from .errors import TemporaryError
from .model import Received
from .pipeline import Pipeline
from .secrets import read_secret

log = logging.getLogger("sla_gateway.smtp")

GROUP_MAX = 64  # messages stored in one commit at most
REFUSALS_PER_HOUR = 100  # refusals recorded one by one each hour; the rest as one count


@dataclass(frozen=True)
class _Note:
    """An event row the committer writes after the messages waiting with it."""

    at: datetime
    kind: str
    detail: dict[str, Any]


class _Refusals:
    """Each mail the listener refuses (too large, a line too long, not our address) is
    logged and recorded as a "refused" event, for the owner's digest: one row a refusal,
    up to REFUSALS_PER_HOUR an hour; beyond that (a flood, a scanner) they are counted
    and recorded as one row with the count when the hour is over or the listener stops."""

    def __init__(self, committer: _Committer, clock: Callable[[], datetime]) -> None:
        self.committer = committer
        self.clock = clock
        self._lock = threading.Lock()
        self._hour: datetime | None = None
        self._recorded = 0
        self._counted: dict[str, int] = {}

    def record(self, reason: str, *, peer: str, sender: str | None, size: int | None,
               rcpt: str | None = None, limit: int | None = None) -> None:  # fmt: skip
        log.warning(
            "event=refused reason=%s peer=%s sender=%s size=%s rcpt=%s",
            reason, peer, sender or "-", size if size is not None else f">{limit}" if limit else "-",
            rcpt or "-",
        )  # fmt: skip
        now = self.clock()
        with self._lock:
            if self._hour is None or now - self._hour >= timedelta(hours=1):
                self._flush(now)
                self._hour, self._recorded = now, 0
            if self._recorded >= REFUSALS_PER_HOUR:
                self._counted[reason] = self._counted.get(reason, 0) + 1
                return
            self._recorded += 1
        detail = {"reason": reason, "count": 1, "peer": peer, "sender": _printable(sender),
                  "size": size, "limit": limit, "rcpt": _printable(rcpt)}  # fmt: skip
        self.committer.note(_Note(now, "refused", detail))

    def flush(self) -> None:
        with self._lock:
            self._flush(self.clock())

    def _flush(self, now: datetime) -> None:
        for reason, count in self._counted.items():
            self.committer.note(_Note(now, "refused", {"reason": reason, "count": count}))
        self._counted = {}


def _printable(text: str | None) -> str | None:
    """An envelope address for an event's detail: bytes that were not UTF-8 shown as
    U+FFFD, at most 320 characters (the message itself keeps it exactly)."""
    if text is None:
        return None
    return text.encode("utf-8", "replace").decode("utf-8")[:320]


def _declared_size(options: Any) -> int | None:
    """The SIZE= a client declared with MAIL FROM (RFC 1870), if any."""
    for option in options or ():
        name, _, value = str(option).partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


class _Listener(SMTP):
    """aiosmtpd's SMTP session, telling the handler of the refusals aiosmtpd makes itself
    (message too large — declared with MAIL or found in DATA — and a line too long)."""

    _mail_arg: str | None = None

    async def smtp_MAIL(self, arg: str | None) -> None:
        self._mail_arg = arg
        try:
            await super().smtp_MAIL(arg)
        finally:
            self._mail_arg = None

    async def push(self, status: Any) -> None:
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else str(status)
        reason = ("too-large" if text.startswith("552") else
                  "line-too-long" if text.startswith("500 Line too long") else None)  # fmt: skip
        handler = self.event_handler
        if reason is not None and isinstance(handler, IntakeHandler):
            rcpt = None
            if self._mail_arg is not None:  # refused at MAIL FROM, by its SIZE=
                found = re.search(r"<([^>]*)>", self._mail_arg)
                sender = found.group(1) if found else None
                size = _declared_size(self._mail_arg.split())
            else:
                envelope = self.envelope
                sender = envelope.mail_from if envelope is not None else None
                size = _declared_size(envelope.mail_options if envelope is not None else ())
                rcpt = ", ".join(envelope.rcpt_tos) if envelope is not None else None
            limit = self.data_size_limit if reason == "too-large" else None
            handler.refusals.record(reason, peer=_peer(self.session), sender=sender, size=size,
                                    rcpt=rcpt, limit=limit)  # fmt: skip
        await super().push(status)


class _ListenerController(Controller):
    def factory(self) -> SMTP:
        return _Listener(self.handler, **self.SMTP_kwargs)


class _Committer:
    """One thread that stores what the SMTP sessions received, everything waiting in one
    transaction (group commit), and answers each session's future on its event loop —
    one hand-over per message and one wake-up of the loop per commit, instead of a pool
    thread per message waiting on the others."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._queue: queue.SimpleQueue[tuple[Received, asyncio.Future[tuple[int | None, bool]]] | _Note | None] = (
            queue.SimpleQueue()
        )  # fmt: skip
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, received: Received) -> asyncio.Future[tuple[int | None, bool]]:
        future: asyncio.Future[tuple[int | None, bool]] = asyncio.get_running_loop().create_future()
        self._start()
        self._queue.put((received, future))
        return future

    def note(self, note: _Note) -> None:
        """Record an event, after the messages waiting with it (nobody waits for it)."""
        self._start()
        self._queue.put(note)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sla-intake-commit", daemon=True)
                self._thread.start()

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
            items = [first]
            while len(items) < GROUP_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                items.append(item)
            self._commit([i for i in items if not isinstance(i, _Note)])
            notes = [i for i in items if isinstance(i, _Note)]
            if notes:
                try:
                    with store.begin(self.pipeline.engine) as conn:
                        for n in notes:
                            store.add_event(conn, n.at, n.kind, n.detail)
                except Exception as exc:  # a note is not worth a message: logged, dropped
                    log.warning("event=note-failed count=%s error=%r", len(notes), str(exc)[:300])

    def _commit(self, batch: list[tuple[Received, asyncio.Future[tuple[int | None, bool]]]]) -> None:
        """Store a batch of messages and answer each session's future."""
        if not batch:
            return
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
        self.refusals = _Refusals(self.committer, clock)

    def stop(self) -> None:
        """Record what is still counted, then stop the committer (after the listener)."""
        self.refusals.flush()
        self.committer.stop()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:  # fmt: skip
        if self.config.inbox_for(address) is None:
            self.refusals.record("unknown-recipient", peer=_peer(session), sender=envelope.mail_from,
                                 size=_declared_size(envelope.mail_options), rcpt=address)  # fmt: skip
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
    return _ListenerController(handler, hostname=listen.host, port=listen.port, **kwargs)
