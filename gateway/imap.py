"""The IMAP poller: reads new mail from a shop's existing mailbox into the pipeline.

Owns: one connection per watched folder; IDLE where the server offers it (new mail within
seconds), polling every `poll_interval` otherwise; remembering UIDVALIDITY and the last
UID per folder in `sync_state`, advanced only after the messages up to it are committed;
reconnecting with backoff after drops; and re-syncing after a UIDVALIDITY change without
acknowledging anything twice (the pipeline's dedup sees the same Message-IDs again).
It never changes the mailbox — folders are opened read-only and bodies fetched with
BODY.PEEK — unless `mark_seen = true`. On the very first sync of a folder it starts at the
current end of the mailbox: history already in the mailbox is not acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from sqlalchemy import select

from . import oauth, store
from .config import Config, ImapConfig, InboxConfig
from .errors import ConfigError, LoginRequired, Problem, TemporaryError
from .pipeline import Pipeline, Received
from .secrets import read_secret

if TYPE_CHECKING:
    from .tokens import Tokens, TokenSource

log = logging.getLogger("sla_gateway.imap")

BATCH = 50
BACKOFF_MAX = 300.0
IDLE_REFRESH = timedelta(minutes=25)  # re-issue IDLE well within the RFC's 29 minutes


def connect(
    imap: ImapConfig,
    *,
    environ: dict[str, str] | None = None,
    tokens: TokenSource | None = None,
) -> IMAPClient:
    """Open and authenticate one connection as configured (`tokens`: for auth = "oauth2")."""
    timeout = imap.timeout.total_seconds()
    context = ssl.create_default_context()
    if imap.security == "tls":
        client = IMAPClient(
            imap.host, port=imap.port, ssl=True, ssl_context=context, timeout=timeout
        )
    else:
        client = IMAPClient(imap.host, port=imap.port, ssl=False, timeout=timeout)
        if imap.security == "starttls":
            client.starttls(context)
    client.normalise_times = False  # keep INTERNALDATE's own offset: aware datetimes
    try:
        if imap.auth == "oauth2":
            if tokens is None:
                raise ValueError("auth = oauth2 needs a token source")
            oauth_login(client, imap, tokens)
        else:
            client.login(imap.username, read_secret(imap.password, "inbox.imap", environ))
    except BaseException:
        _close(client)
        raise
    return client


def oauth_login(client: IMAPClient, imap: ImapConfig, tokens: TokenSource) -> None:
    """SASL XOAUTH2 (or OAUTHBEARER when only that is offered) with a fresh access token;
    when the server refuses it, once more with a token refreshed there and then (it may
    have been revoked or expired early). LoginRequired when the refresh token is refused."""
    offered = [c.decode("ascii", "replace")[5:] for c in client.capabilities()
               if c.upper().startswith(b"AUTH=")]  # fmt: skip
    mech = oauth.mechanism(offered)
    for attempt in (1, 2):
        token = tokens.access_token(force=attempt == 2)
        try:
            if mech == oauth.OAUTHBEARER:
                client.oauthbearer_login(imap.username, token)
            else:
                client.oauth2_login(imap.username, token, mech=mech)
            return
        except LoginError:
            if attempt == 2:
                raise
            log.info("event=imap-oauth-refused user=%s retry=refreshed-token", imap.username)


def append_copy(
    imap: ImapConfig, folder: str, raw: bytes, when: datetime, tokens: TokenSource | None = None
) -> None:
    """Store a copy of a message we sent (read) in a folder, so agents see it."""
    client = connect(imap, tokens=tokens)
    try:
        client.append(folder, raw, flags=[b"\\Seen"], msg_time=when)
    finally:
        _close(client)


class FolderSync:
    """Brings one folder's new messages into the pipeline. Used by the poller's thread."""

    def __init__(self, config: Config, inbox: InboxConfig, folder: str | None, pipeline: Pipeline,
                 clock: Callable[[], datetime], wake: Callable[[], None], *, sent: bool = False) -> None:  # fmt: skip
        self.config = config
        self.inbox = inbox
        self.folder = folder or ""  # "" until the Sent folder is found (SPECIAL-USE \\Sent)
        self.sent = sent  # the team's Sent folder: its messages are team replies
        self.pipeline = pipeline
        self.clock = clock
        self.wake = wake
        assert inbox.imap is not None
        self.imap = inbox.imap
        self._exists = 0  # the folder's size as the last SELECT reported it

    def state(self) -> tuple[int, int, datetime] | None:
        s = store.sync_state.c
        with self.pipeline.engine.connect() as conn:
            row = conn.execute(
                select(store.sync_state).where(s.inbox == self.inbox.name, s.folder == self.folder)
            ).first()
        return (int(row.uidvalidity), int(row.last_uid), row.updated_at) if row else None

    def save(self, uidvalidity: int, last_uid: int) -> None:
        s = store.sync_state.c
        now = self.clock()
        with store.begin(self.pipeline.engine) as conn:
            updated = conn.execute(
                store.sync_state.update()
                .where(s.inbox == self.inbox.name, s.folder == self.folder)
                .values(uidvalidity=uidvalidity, last_uid=last_uid, updated_at=now)
            ).rowcount
            if not updated:
                conn.execute(
                    store.sync_state.insert().values(
                        inbox=self.inbox.name, folder=self.folder, uidvalidity=uidvalidity,
                        last_uid=last_uid, updated_at=now,
                    )
                )  # fmt: skip

    def sync(self, client: IMAPClient) -> int:
        """Fetch everything new since the last sync, and again as long as the server
        announced mail that arrived meanwhile; returns how many messages were new.

        The server tells of new mail (EXISTS) inside its responses to our own commands
        (the SEARCH, the FETCH) as well as in IDLE; what it told there it does not tell
        again when IDLE starts, so it is looked at here, before the caller idles."""
        new = 0
        while True:
            new += self._sync_once(client)
            if not self._mail_arrived(client):
                return new

    def _mail_arrived(self, client: IMAPClient) -> bool:
        """Whether the server announced, since SELECT, another mailbox size than SELECT
        reported (or any size together with an expunge: one gone, another come)."""
        sizes, expunged = _mailbox_news(client)
        return any(n != self._exists for n in sizes) or (expunged and bool(sizes))

    def _sync_once(self, client: IMAPClient) -> int:
        if not self.folder:
            found = client.find_special_folder(b"\\Sent")
            if not found:
                raise ConfigError([Problem("(config)", f"inbox {self.inbox.name}: inbox.imap.sent_folder",
                                           "the server marks no folder as \\Sent",
                                           'set sent_folder = "Sent" (its name), or "" to not watch one')])  # fmt: skip
            self.folder = str(found)
            log.info("event=imap-sent-folder inbox=%s folder=%s", self.inbox.name, self.folder)
        info = client.select_folder(
            self.folder, readonly=not (self.imap.mark_seen and not self.sent)
        )
        _mailbox_news(client)  # SELECT's own EXISTS is in `info`; from here on, news is news
        self._exists = int(info.get(b"EXISTS", 0) or 0)
        uidvalidity = int(info[b"UIDVALIDITY"])
        uidnext = int(info.get(b"UIDNEXT", 0) or 0)
        state = self.state()
        if state is None:
            # First sync: start at the current end; what is already there is history.
            last = uidnext - 1 if uidnext else max(client.search(["ALL"]) or [0])
            self.save(uidvalidity, last)
            log.info(
                "event=imap-first-sync inbox=%s folder=%s start_uid=%s",
                self.inbox.name,
                self.folder,
                last,
            )
            return 0
        stored_validity, last_uid, synced_at = state
        renumbered = stored_validity != uidvalidity
        if renumbered:
            # The server renumbered the folder: look again at everything since the last
            # sync (a day of margin); the pipeline keeps what it has already seen once.
            # The new state is written only after the rescan committed, with the current
            # end of the folder as its floor: a crash repeats the rescan, never the history.
            since = (synced_at - timedelta(days=1)).date()
            uids = sorted(client.search(["SINCE", since]))
            log.warning(
                "event=imap-uidvalidity-changed inbox=%s folder=%s old=%s new=%s rescanning=%s",
                self.inbox.name, self.folder, stored_validity, uidvalidity, len(uids),
            )  # fmt: skip
            last_uid = 0
        else:
            uids = [u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid]
            uids.sort()
        new = 0
        for start in range(0, len(uids), BATCH):
            batch = uids[start : start + BATCH]
            fetched = client.fetch(batch, ["BODY.PEEK[]", "INTERNALDATE"])
            for uid in batch:
                data = fetched.get(uid)
                if data is None:  # expunged meanwhile
                    continue
                raw = data.get(b"BODY[]") or b""
                received_at = _aware(data.get(b"INTERNALDATE")) or self.clock()
                _, is_new = self.pipeline.accept(
                    Received(raw=raw, source="imap", received_at=received_at, inbox=self.inbox.name,
                             from_sent_folder=self.sent)
                )  # fmt: skip
                new += int(is_new)
            if self.imap.mark_seen and not self.sent:
                client.add_flags(batch, [b"\\Seen"], silent=True)
            if not renumbered:
                self.save(
                    uidvalidity, max(batch[-1], last_uid)
                )  # only after the batch is committed
            if new:
                self.wake()
        if renumbered:
            self.save(uidvalidity, max([uidnext - 1, *uids]) if uidnext else max(uids, default=0))
        return new


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ImapPoller:
    """A thread per watched folder: sync, then IDLE (or sleep), reconnecting after drops."""

    def __init__(self, config: Config, inbox: InboxConfig, pipeline: Pipeline,
                 wake: Callable[[], None], clock: Callable[[], datetime],
                 tokens: Tokens | None = None) -> None:  # fmt: skip
        assert inbox.imap is not None
        self.tokens: TokenSource | None = None
        if inbox.imap.auth == "oauth2":
            from .tokens import Tokens

            hub = tokens or Tokens(config, pipeline.engine, clock)
            self.tokens = hub.for_imap(inbox)
        self.config = config
        self.inbox = inbox
        self.pipeline = pipeline
        self.wake = wake
        self.clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: dict[str, IMAPClient] = {}
        self.last_error: str | None = None

    def start(self) -> None:
        self._stop.clear()
        assert self.inbox.imap is not None
        syncs = [FolderSync(self.config, self.inbox, f, self.pipeline, self.clock, self.wake)
                 for f in self.inbox.imap.folders]  # fmt: skip
        if self.inbox.imap.sent_folder != "":
            syncs.append(FolderSync(self.config, self.inbox, self.inbox.imap.sent_folder, self.pipeline,
                                    self.clock, self.wake, sent=True))  # fmt: skip
        for sync in syncs:
            thread = threading.Thread(target=self._run, args=(sync,), name=f"imap-{self.inbox.name}-{sync.folder or 'sent'}",
                                      daemon=True)  # fmt: skip
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self._threads = []

    def _run(self, sync: FolderSync) -> None:
        failures = 0
        imap = sync.imap
        while not self._stop.is_set():
            client: IMAPClient | None = None
            try:
                client = connect(imap, tokens=self.tokens)
                self._clients[sync.folder] = client
                log.info("event=imap-connected inbox=%s folder=%s", self.inbox.name, sync.folder)
                can_idle = imap.idle and client.has_capability("IDLE")
                while not self._stop.is_set():
                    sync.sync(client)
                    failures = 0
                    self.last_error = None
                    if can_idle:
                        self._idle(client, imap)
                    else:
                        self._stop.wait(imap.poll_interval.total_seconds())
                        client.noop()
            except LoginRequired as exc:  # the owner must sign in; keep trying meanwhile
                self.last_error = str(exc)
                failures += 1
                log.error("event=imap-login-required inbox=%s error=%r retry_in=%.0fs",
                          self.inbox.name, str(exc), _backoff(failures))  # fmt: skip
            except ConfigError as exc:
                self.last_error = str(exc)
                log.error("event=imap-config-error inbox=%s error=%r", self.inbox.name, str(exc))
                failures += 1
            except (OSError, IMAPClientError, TemporaryError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                failures += 1
                log.warning("event=imap-error inbox=%s folder=%s error=%r retry_in=%.0fs",
                            self.inbox.name, sync.folder, self.last_error, _backoff(failures))  # fmt: skip
            except Exception:
                failures += 1
                log.exception("event=imap-crash inbox=%s folder=%s", self.inbox.name, sync.folder)
            finally:
                self._clients.pop(sync.folder, None)
                if client is not None:
                    _close(client)
            if not self._stop.is_set():
                self._stop.wait(_backoff(failures))

    def _idle(self, client: IMAPClient, imap: ImapConfig) -> None:
        """IDLE until the server reports something, the refresh time passes, or we stop."""
        refresh = min(IDLE_REFRESH, max(imap.poll_interval, timedelta(seconds=5)))
        client.idle()
        try:
            waited = 0.0
            while not self._stop.is_set() and waited < refresh.total_seconds():
                responses = client.idle_check(timeout=1)
                waited += 1
                if any(_is_news(r) for r in responses):
                    break
        finally:
            client.idle_done()


def _mailbox_news(client: IMAPClient) -> tuple[list[int], bool]:
    """Take the mailbox sizes (EXISTS) the server reported inside the responses to our
    commands since the last call, and whether it reported expunged messages too;
    imaplib keeps them aside, IMAPClient's commands return only their own answers."""
    pending = client._imap.untagged_responses
    sizes = [int(n) for n in pending.pop("EXISTS", []) if n is not None]
    expunged = bool(pending.pop("EXPUNGE", None))
    pending.pop("RECENT", None)
    return sizes, expunged


def _is_news(response: Any) -> bool:
    return (
        isinstance(response, tuple) and len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT")
    )


def _backoff(failures: int) -> float:
    return min(2.0 ** max(failures - 1, 0), BACKOFF_MAX) if failures else 0.0


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # the connection may already be gone; nothing to do
        with contextlib.suppress(Exception):
            client.shutdown()
