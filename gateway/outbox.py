"""The outbox sender: the only code that sends mail, and only what the outbox table holds.

Owns: draining pending outbox rows through one transport — an SMTP submission server over
a persistent connection, or a local maildir — and recording each result: sent; retried
later with exponential backoff (at most 5 min) after a temporary failure (4xx,
connection trouble); failed, with the server's answer, after a permanent one (5xx) or
after `give_up_after`. A row cancelled meanwhile (an acknowledgment the team's reply
made moot) is not sent. Also reading the backlog (`backlog()`: what waits, since when,
and why) for `status` and the owner's outage alert.

It never retries forever and never sends a row twice on purpose. Each success is
committed before the next message is sent: a crash between a server's 250 and that
commit is the one window in which a message may go out twice — at most the one message
in flight, sent again byte for byte as the outbox holds it (same Message-ID, so mail
clients show it once).
"""

from __future__ import annotations

import contextlib
import logging
import mailbox
import smtplib
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import store
from .config import Config, SendConfig
from .errors import ConfigError, LoginRequired, Problem, TemporaryError
from .secrets import read_secret
from .store import Engine

if TYPE_CHECKING:
    from email.message import Message

    from .tokens import Tokens, TokenSource

log = logging.getLogger("sla_gateway.outbox")

BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=5)  # so mail goes out within minutes of a server's return


class SendFailed(Exception):
    """A transport could not deliver; `permanent` says whether trying again can help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Transport(Protocol):
    def send(self, sender: str, recipient: str, raw: bytes) -> None: ...

    def close(self) -> None: ...


class MaildirTransport:
    """Writes each message as a file into a maildir (tmp/ then new/, atomically). Its
    tmp/, new/ and cur/ folders are created when missing, also inside a directory that
    already exists (an empty one, e.g. made by `check --connect`, is not yet a maildir)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None

    def send(self, sender: str, recipient: str, raw: bytes) -> None:
        try:
            if self._box is None:
                for sub in ("tmp", "new", "cur"):  # Maildir(create=True) skips an existing dir
                    (self.path / sub).mkdir(parents=True, exist_ok=True)
                self._box = mailbox.Maildir(self.path, create=False)
            self._box.add(raw.replace(b"\r\n", b"\n"))  # maildir files use local line ends
        except OSError as exc:
            raise SendFailed(
                f"cannot write to {self.path}: {exc.strerror}", permanent=False
            ) from exc

    def close(self) -> None:
        self._box = None


class SmtpTransport:
    """Sends through one SMTP server, keeping the connection open between messages."""

    def __init__(self, config: SendConfig, *, ssl_context: ssl.SSLContext | None = None,
                 tokens: TokenSource | None = None) -> None:  # fmt: skip
        self.config = config
        self.context = ssl_context or ssl.create_default_context()
        self.tokens = tokens  # auth = "oauth2": where access tokens come from
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        try:
            conn = open_smtp(c, self.context, self.tokens)
        except (LoginRequired, TemporaryError, ConfigError) as exc:  # OAuth: rows stay pending
            raise SendFailed(f"cannot sign in to {c.host}: {exc}", permanent=False) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise SendFailed(f"login refused by {c.host}: {_answer(exc)}", permanent=False) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise SendFailed(
                f"cannot connect to {c.host}:{c.port}: {exc}", permanent=False
            ) from exc
        except Exception as exc:  # e.g. the token store's database: still only a retry
            log.exception("event=smtp-connect-error host=%s", c.host)
            raise SendFailed(f"cannot sign in to {c.host}: {type(exc).__name__}", permanent=False) from exc
        return conn

    def send(self, sender: str, recipient: str, raw: bytes) -> None:
        if self._conn is not None and not self._alive():
            self._conn = None  # the kept-open connection was dropped while idle: a new one
        if self._conn is None:
            self._conn = self._connect()
        try:
            refused = self._conn.sendmail(sender, [recipient], to_crlf(raw))
        except smtplib.SMTPServerDisconnected:
            # Never resent at once: the server may have taken the message before it
            # hung up. The row is retried after the backoff, like one in flight at a crash.
            self._conn = None
            raise SendFailed("the server closed the connection", permanent=False) from None
        except smtplib.SMTPRecipientsRefused as exc:
            code, message = next(iter(exc.recipients.values()))
            raise SendFailed(f"{code} {_text(message)}", permanent=code >= 500) from exc
        except smtplib.SMTPResponseException as exc:
            self._reset()
            raise SendFailed(_answer(exc), permanent=exc.smtp_code >= 500) from exc
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise SendFailed(f"sending failed: {exc}", permanent=False) from exc
        if refused:
            code, message = next(iter(refused.values()))
            raise SendFailed(f"{code} {_text(message)}", permanent=code >= 500)

    def _alive(self) -> bool:
        """Whether the kept-open connection still answers (NOOP), before a message is
        handed to it: a dropped connection is found here, not in the middle of a message."""
        assert self._conn is not None
        try:
            return self._conn.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._conn.close()
            return False

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._conn.quit()
            self._conn = None


def open_smtp(config: SendConfig, context: ssl.SSLContext, tokens: TokenSource | None = None) -> smtplib.SMTP:
    """One SMTP session as configured: connect (implicit TLS or STARTTLS), EHLO, and log
    in with the password or, for auth = "oauth2", an access token from `tokens`. Raises
    what the network, the server or the sign-in raised; closes what it opened then."""
    timeout = config.timeout.total_seconds()
    conn: smtplib.SMTP
    if config.security == "tls":
        conn = smtplib.SMTP_SSL(config.host, config.port, timeout=timeout, context=context)
    else:
        conn = smtplib.SMTP(config.host, config.port, timeout=timeout)
    try:
        conn.ehlo()  # also what OAuth reads the offered mechanisms from
        if config.security == "starttls":
            conn.starttls(context=context)
            conn.ehlo()
        if config.auth == "oauth2":
            if tokens is None:
                raise TemporaryError("the token store is not available")
            oauth_login(conn, config, tokens)
        elif config.username:
            conn.login(config.username, read_secret(config.password, "send"))
    except BaseException:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            conn.close()
        raise
    return conn


def oauth_login(conn: smtplib.SMTP, config: SendConfig, tokens: TokenSource) -> None:
    """SASL XOAUTH2 (OAUTHBEARER when only that is offered) with a fresh access token;
    refused once, again with a token refreshed there and then. Raises LoginRequired when
    the refresh token is refused, SMTPAuthenticationError when the server still says no."""
    from . import oauth

    mech = oauth.mechanism(conn.esmtp_features.get("auth", "").split())
    for attempt in (1, 2):
        token = tokens.access_token(force=attempt == 2)
        response = oauth.sasl_response(mech, config.username or "", token, config.host, config.port)

        def answer(challenge: bytes | None = None, first: bytes = response) -> str:
            # The initial response; after an error challenge, the empty reply it asks for.
            return first.decode("utf-8") if challenge is None else ""

        try:
            conn.auth(mech, answer, initial_response_ok=True)
            return
        except smtplib.SMTPAuthenticationError:
            if attempt == 2:
                raise
            log.info("event=smtp-oauth-refused user=%s retry=refreshed-token", config.username)


def to_crlf(raw: bytes) -> bytes:
    """SMTP wants CRLF line ends; smtplib does not fix them in bytes."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _text(message: bytes | str) -> str:
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else message


def _answer(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def make_transport(config: SendConfig, *, tokens: Tokens | None = None) -> Transport:
    """The configured transport; `tokens` (shared with the IMAP pollers) for auth = oauth2."""
    if config.transport == "maildir":
        return MaildirTransport(config.path)
    if config.transport == "smtp":
        source = tokens.for_send() if tokens is not None and config.uses_oauth else None
        return SmtpTransport(config, tokens=source)
    raise ConfigError(
        [Problem("(config)", "send.transport", f"unknown transport {config.transport}")]
    )


def write_aside(config: Config, messages: Iterable[tuple[str, Message]]) -> str:
    """Alerts the outbox may be unable to carry (the sending account or server is what
    is broken), written to the fallback maildir — `[oauth] alert_maildir`, default the
    [send] path — where a local mail reader or monitoring sees them. Returns the folder;
    raises SendFailed when it cannot be written."""
    from .render import to_wire

    folder = config.oauth.alert_maildir or config.send.path
    transport = MaildirTransport(folder)
    for recipient, message in messages:
        transport.send("", recipient, to_wire(message))
    return folder


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure: 30 s, 1 min, 2 min, 4 min, then 5 min
    each time (an outage of hours must not leave acknowledgments waiting up to an hour
    after the server is back)."""
    step: timedelta = BACKOFF_FIRST * (2 ** min(max(attempts - 1, 0), 20))
    return min(step, BACKOFF_MAX)


@dataclass(frozen=True)
class Backlog:
    """What waits to go out: how many pending rows, and why the oldest has not gone."""

    pending: int = 0
    oldest_at: datetime | None = None  # when the oldest pending row was queued
    attempts: int = 0  # how often the oldest was tried
    last_error: str | None = None  # the oldest's last failure (the server's answer)
    next_try_at: datetime | None = None  # the sender's next attempt at any of them
    failing: int = 0  # how many of them were tried and failed at least once

    def waiting(self, now: datetime) -> timedelta:
        """How long the oldest has waited (zero when nothing waits)."""
        return now - self.oldest_at if self.oldest_at is not None else timedelta(0)


def backlog(conn: Any) -> Backlog:
    """The pending outbox rows, read on `conn` (a connection or a transaction)."""
    count, next_try, failing, oldest = store.outbox_backlog(conn)
    if not count:
        return Backlog()
    return Backlog(int(count), oldest.created_at, int(oldest.attempts), oldest.last_error,
                   next_try, int(failing))  # fmt: skip


class OutboxSender:
    """Sends due outbox rows in order, recording every result."""

    def __init__(
        self,
        engine: Engine,
        transport: Transport,
        clock: Callable[[], datetime],
        *,
        give_up_after: timedelta = timedelta(days=2),
        after_send: Callable[[Any], None] | None = None,
    ) -> None:
        self.after_send = after_send
        self.engine = engine
        self.transport = transport
        self.clock = clock
        self.give_up_after = give_up_after

    def next_due(self) -> datetime | None:
        with store.reading(self.engine) as conn:
            return store.next_send_at(conn)

    def send_due(self, limit: int = 100, *, kinds: tuple[str, ...] | None = None,
                 stopping: threading.Event | None = None) -> int:  # fmt: skip
        """Send every row due now (of these kinds only, when given) until `stopping` is
        set (the message at hand is finished and recorded); returns how many were sent."""
        with store.reading(self.engine) as conn:
            rows = store.rows_due(conn, self.clock(), limit, kinds)
        return self._send_rows(rows, stopping)

    def send_one(self, row_id: int) -> bool:
        with store.reading(self.engine) as conn:
            row = store.outbox_row(conn, row_id)
        return row is not None and self._send_rows([row]) == 1

    def _send_rows(self, rows: list[Any], stopping: threading.Event | None = None) -> int:
        """Send rows in order, each result committed before the next send (so a crash
        leaves at most the message in flight unrecorded), until the end or `stopping`."""
        sent = 0
        for row in rows:
            if stopping is not None and stopping.is_set():
                break
            if self._send(row):
                self._record_sent(row, self.clock())
                sent += 1
        return sent

    def _send(self, row: Any) -> bool:
        row_id = row.id
        with store.reading(self.engine) as conn:  # cancelled since it was read (the team replied)?
            status = store.outbox_status(conn, row_id)
        if status != "pending":
            log.info("event=send-skipped outbox=%s kind=%s status=%s", row_id, row.kind, status)
            return False
        try:
            self.transport.send(row.sender, row.recipient, row.raw)
        except SendFailed as exc:
            now = self.clock()
            attempts = row.attempts + 1
            expired = now - row.created_at >= self.give_up_after
            status = "failed" if exc.permanent or expired else "pending"
            with store.begin(self.engine) as conn:
                store.record_retry(conn, row_id, status, attempts, str(exc),
                                   now + backoff(attempts))  # fmt: skip
                if status == "failed":
                    store.add_event(
                        conn, now, "send-failed", {"outbox": row_id, "error": str(exc)[:500]},
                        conversation_id=row.conversation_id,
                    )  # fmt: skip
            log.warning(
                "event=send-%s outbox=%s kind=%s attempts=%s error=%r",
                "failed" if status == "failed" else "retry", row_id, row.kind, attempts, str(exc),
            )  # fmt: skip
            return False
        return True

    def _record_sent(self, row: Any, at: datetime) -> None:
        with store.begin(self.engine) as conn:
            was = store.record_sent(conn, row.id, at, row.attempts + 1)
            if was == "cancelled":  # the team's reply came while the server was taking it
                if row.kind == "ack" and row.source_message_id is not None:
                    store.mark_acknowledged(conn, row.source_message_id)
                store.add_event(conn, at, f"{row.kind}-sent-after-cancel",
                                {"outbox": row.id, "reason": "it was being sent when the team replied"},
                                conversation_id=row.conversation_id,
                                message_row=row.source_message_id)  # fmt: skip
        log.info("event=sent outbox=%s kind=%s", row.id, row.kind)
        if self.after_send is not None:
            try:
                self.after_send(row)
            except Exception as exc:  # a copy for the team is a courtesy; the mail went out
                log.warning("event=after-send-failed outbox=%s error=%r", row.id, str(exc))

    def close(self) -> None:
        self.transport.close()
