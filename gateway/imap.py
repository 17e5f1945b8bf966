"""The IMAP poller: reads new mail from a shop's existing mailbox into the pipeline.

Owns: one connection per watched folder; IDLE where the server offers it (new mail within
seconds; a sync repeats at once while the server announced more mail during it, so IDLE
never sleeps on mail already announced), polling every `poll_interval` otherwise;
remembering UIDVALIDITY, the last UID and the INTERNALDATE before which everything was
seen per folder in `sync_state`, advanced only after the messages up to it are committed;
reconnecting with backoff after drops; and re-syncing after a UIDVALIDITY change without
acknowledging history or anything twice (only mail dated from `seen_before` on is looked
at, and the pipeline's dedup keeps what it has stored once). A message larger than the
SMTP listener's `max_message_size` is not downloaded (its size is fetched first): it is
recorded once (event `imap-too-large`, from its ENVELOPE) and the owner alerted through
the outbox, in the transaction that moves the folder's state past it.
It never changes the mailbox — folders are opened read-only and bodies fetched with
BODY.PEEK — unless `mark_seen = true`. On the very first sync of a folder it starts at the
current end of the mailbox: history already in the mailbox is not acknowledged.

Where each message of a watched folder sits is stored with it (`folder_uids`: folder,
UIDVALIDITY, UID). At each sync the UIDs taken as present are compared with the folder's
(one UID SEARCH over their range): those the server no longer has left the folder
(archived, moved, deleted) and are marked so. With `resolve_on_archive`, a conversation
none of whose customer messages is left in the inbox's watched folders is then resolved
(`conversations.apply_command`, by and via "archive"), and IDLE wakes on EXPUNGE too.
After a UIDVALIDITY change the known messages are found again by Message-ID under the
new numbers; one not found counts as gone without resolving anything: a renumbering
never resolves a conversation by itself. The Sent folder's messages are not tracked.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from typing import TYPE_CHECKING, Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from . import conversations, dedup, oauth, store
from .config import Config, ImapConfig, InboxConfig, ListenConfig
from .errors import ConfigError, LoginRequired, Problem, TemporaryError
from .model import Received
from .pipeline import Pipeline
from .render import Alert, alert_message, alert_recipients
from .secrets import read_secret

if TYPE_CHECKING:
    from .tokens import Tokens, TokenSource

log = logging.getLogger("sla_gateway.imap")

BATCH = 50
DESCRIBE_BATCH = 500  # messages whose date and size are asked for in one FETCH
TOO_LARGE_EVENT = "imap-too-large"
BACKOFF_MAX = 300.0
# While the owner must sign in again, how often to look for the new sign-in: a database
# read, no server is asked, so mail flows again within seconds of `sla-gateway login`.
SIGN_IN_CHECK_EVERY = 10.0
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


@dataclass(frozen=True)
class SyncState:
    """Where one folder's sync stands (a `sync_state` row)."""

    uidvalidity: int
    last_uid: int  # every message up to this UID was taken care of
    synced_at: datetime
    seen_before: datetime  # every message dated (INTERNALDATE) before this was seen


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
        # The SMTP listener's limit: what it would refuse is not downloaded either.
        self.max_size = (config.listen or ListenConfig()).max_message_size

    def state(self) -> SyncState | None:
        with store.reading(self.pipeline.engine) as conn:
            row = store.folder_state(conn, self.inbox.name, self.folder)
        if row is None:
            return None
        return SyncState(int(row.uidvalidity), int(row.last_uid), row.updated_at,
                         row.seen_before or row.updated_at)  # fmt: skip

    def save(self, conn: Any, uidvalidity: int, last_uid: int, seen_before: datetime) -> None:
        """Write the folder's state in the caller's transaction: the one that committed
        what it says was taken care of, or one after it."""
        store.save_folder_state(conn, self.inbox.name, self.folder, uidvalidity=uidvalidity,
                                last_uid=last_uid, updated_at=self.clock(), seen_before=seen_before)  # fmt: skip

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
        reported (or any size together with an expunge: one gone, another come; with
        `resolve_on_archive`, any expunge: a message left)."""
        sizes, expunged = _mailbox_news(client)
        if expunged and self.imap.resolve_on_archive and not self.sent:
            return True
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
            self._first_sync(client, uidvalidity, uidnext)
            return 0
        last_uid, seen_before = state.last_uid, state.seen_before
        renumbered = state.uidvalidity != uidvalidity
        floor: datetime | None = None  # renumbered: mail dated before it was seen before
        if renumbered:
            # The server renumbered the folder (a restore, a rebuilt index): every message
            # has a new UID, history included. New can only be what arrived after the last
            # sync: dated (INTERNALDATE) at or after `seen_before` — compared here, as
            # SEARCH SINCE knows only days — and not stored yet (the pipeline's dedup
            # keeps each message once). The new state is written only after the rescan
            # committed, with the current end of the folder as its floor: a crash repeats
            # the rescan, never the history.
            floor = seen_before
            uids = sorted(client.search(["SINCE", (floor - timedelta(days=1)).date()]))
            log.warning(
                "event=imap-uidvalidity-changed inbox=%s folder=%s old=%s new=%s since=%s candidates=%s",
                self.inbox.name, self.folder, state.uidvalidity, uidvalidity, floor.isoformat(), len(uids),
            )  # fmt: skip
            last_uid = 0
        else:
            uids = [u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid]
            uids.sort()
        new = 0
        for start in range(0, len(uids), BATCH):
            batch = uids[start : start + BATCH]
            found = self._describe(client, batch)
            dates = {uid: about.received_at for uid, about in found.items()}
            taken = [u for u in batch if u in found and (floor is None or dates[u] >= floor)]
            too_large = [u for u in taken if found[u].size > self.max_size]
            wanted = [u for u in taken if u not in too_large]
            fetched = client.fetch(wanted, ["BODY.PEEK[]"]) if wanted else {}
            for uid in wanted:
                data = fetched.get(uid)
                if data is None:  # expunged meanwhile
                    continue
                raw = data.get(b"BODY[]") or b""
                where = None if self.sent else (self.folder, uidvalidity, uid)
                _, is_new = self.pipeline.accept(
                    Received(raw=raw, source="imap", received_at=dates[uid], inbox=self.inbox.name,
                             from_sent_folder=self.sent, folder_uid=where)
                )  # fmt: skip
                new += int(is_new)
            refused = self._too_large(client, uidvalidity, {u: found[u] for u in too_large})
            if self.imap.mark_seen and not self.sent and wanted:
                client.add_flags(wanted, [b"\\Seen"], silent=True)
            seen_before = max([seen_before, *dates.values()])
            # Only after the batch is committed, and with the record of what was too large.
            with store.begin(self.pipeline.engine) as conn:
                self._record_too_large(conn, refused)
                if not renumbered:
                    self.save(conn, uidvalidity, max(batch[-1], last_uid), seen_before)
            if new:
                self.wake()
        if renumbered:
            end = max([uidnext - 1, *uids]) if uidnext else max(uids, default=0)
            with store.begin(self.pipeline.engine) as conn:
                self.save(conn, uidvalidity, end, seen_before)
        if not self.sent:
            self._carry_over(client, uidvalidity)
            self._departures(client, uidvalidity)
        return new

    def _carry_over(self, client: IMAPClient, uidvalidity: int) -> None:
        """After a renumbering (until it is done: a crash repeats it): the messages taken
        as present under the old UIDVALIDITY, found again by their Message-ID, are present
        under their new UIDs; the others count as gone, which resolves nothing."""
        with store.reading(self.pipeline.engine) as conn:
            stale = store.stale_uids(conn, self.inbox.name, self.folder, uidvalidity)
        if not stale:
            return
        wanted = {message_id: row for row, message_id in stale.items() if message_id}
        found: dict[int, int] = {}
        if wanted:
            uids = sorted(client.search(["ALL"]))
            for start in range(0, len(uids), DESCRIBE_BATCH):
                fetched = client.fetch(uids[start : start + DESCRIBE_BATCH], [_MESSAGE_ID_FETCH])
                for uid, data in fetched.items():
                    _, message_id = dedup.identify(data.get(_MESSAGE_ID_ITEM) or b"")
                    if message_id in wanted:
                        found[wanted[message_id]] = uid
        with store.begin(self.pipeline.engine) as conn:
            store.renumber_uids(conn, self.inbox.name, self.folder, uidvalidity, found, self.clock())
        log.info("event=imap-uids-renumbered inbox=%s folder=%s known=%s found=%s",
                 self.inbox.name, self.folder, len(stale), len(found))  # fmt: skip

    def _departures(self, client: IMAPClient, uidvalidity: int) -> None:
        """Mark the messages that left the folder since the last look; with
        `resolve_on_archive`, resolve the conversations that have no customer message
        left in the inbox's watched folders, at this time, in the same transaction."""
        with store.reading(self.pipeline.engine) as conn:
            present = store.present_uids(conn, self.inbox.name, self.folder, uidvalidity)
        if not present:
            return
        still = set(client.search(["UID", f"{min(present)}:{max(present)}"]))
        gone = present - still
        if not gone:
            return
        now = self.clock()
        resolved: list[str] = []
        with store.begin(self.pipeline.engine) as conn:
            affected = store.mark_left(conn, self.inbox.name, self.folder, uidvalidity, gone, now)
            if self.imap.resolve_on_archive:
                emptied = store.emptied_conversations(conn, affected, self.inbox.name, self.imap.folders)
                for conversation_id in emptied:
                    conversation = store.conversation(conn, conversation_id)
                    if conversation.state == "resolved":
                        continue
                    conversations.apply_command(conn, self.pipeline.config, conversation, "resolved", by="archive",
                                                via="archive", at=now, now=now)  # fmt: skip
                    resolved.append(conversation.reference)
        log.info("event=imap-left inbox=%s folder=%s count=%s resolved=%s",
                 self.inbox.name, self.folder, len(gone), ",".join(resolved) or "-")  # fmt: skip

    def _first_sync(self, client: IMAPClient, uidvalidity: int, uidnext: int) -> None:
        """Start at the current end of the folder: what is already there is history, never
        acknowledged, not even after a renumbering: it is all dated before `seen_before`,
        one second after its newest INTERNALDATE (they have whole seconds); in an empty
        folder, now."""
        top = client.search(["UID", "*"])  # the highest UID in use, if any
        last = uidnext - 1 if uidnext else max(top, default=0)
        seen_before = self.clock()
        newest = [about.received_at for about in self._describe(client, top).values()]
        if newest:
            since = (max(newest) - timedelta(days=1)).date()
            recent = self._describe(client, client.search(["SINCE", since]))
            dates = [*newest, *(about.received_at for about in recent.values())]
            seen_before = max(dates) + timedelta(seconds=1)
        with store.begin(self.pipeline.engine) as conn:
            self.save(conn, uidvalidity, last, seen_before)
        log.info("event=imap-first-sync inbox=%s folder=%s start_uid=%s seen_before=%s",
                 self.inbox.name, self.folder, last, seen_before.isoformat())  # fmt: skip

    def _describe(self, client: IMAPClient, uids: list[int]) -> dict[int, _About]:
        """When the server received each message still there (INTERNALDATE), and its size."""
        found: dict[int, _About] = {}
        for start in range(0, len(uids), DESCRIBE_BATCH):
            fetched = client.fetch(
                uids[start : start + DESCRIBE_BATCH], ["INTERNALDATE", "RFC822.SIZE"]
            )
            for uid, data in fetched.items():
                received_at = _aware(data.get(b"INTERNALDATE")) or self.clock()
                found[uid] = _About(received_at, int(data.get(b"RFC822.SIZE") or 0))
        return found

    def _too_large(
        self, client: IMAPClient, uidvalidity: int, found: dict[int, _About]
    ) -> list[TooLarge]:
        """What is known of messages over the size limit without downloading them: their
        ENVELOPE (sender, subject, Message-ID) besides date and size."""
        envelopes = client.fetch(list(found), ["ENVELOPE"]) if found else {}
        refused = []
        for uid, about in found.items():
            envelope = envelopes.get(uid, {}).get(b"ENVELOPE")
            sender = (getattr(envelope, "from_", None) or [None])[0]
            address = ""
            if sender is not None and sender.mailbox:
                address = _text(sender.mailbox) + ("@" + _text(sender.host) if sender.host else "")
            refused.append(TooLarge(
                inbox=self.inbox.name, folder=self.folder, uidvalidity=uidvalidity, uid=uid,
                size=about.size, limit=self.max_size, received_at=about.received_at,
                sender=address, sender_name=_text(getattr(sender, "name", None), decode=True),
                subject=_text(getattr(envelope, "subject", None), decode=True),
                message_id=_text(getattr(envelope, "message_id", None)),
            ))  # fmt: skip
        return refused

    def _record_too_large(self, conn: Any, refused: list[TooLarge]) -> None:
        """Record each message over the size limit once (an event), and tell the owner
        about those not recorded before in one alert; in the caller's transaction, the one
        that moves the folder's state past them."""
        if not refused:
            return
        known = {detail.get("key") for detail in store.event_details(conn, TOO_LARGE_EVENT)}
        fresh = [t for t in refused if t.key not in known]
        now = self.clock()
        for t in fresh:
            store.add_event(conn, now, TOO_LARGE_EVENT, t.detail())
            log.warning("event=imap-too-large inbox=%s folder=%s uid=%s size=%s limit=%s from=%r",
                        t.inbox, t.folder, t.uid, t.size, t.limit, t.sender)  # fmt: skip
        if not fresh:
            return
        config = self.pipeline.config  # the running configuration, also after a reload
        alert = too_large_alert(config, self.imap, fresh, sent=self.sent)
        for recipient in alert_recipients(config):
            message = alert_message(self.pipeline.renderer, recipient, alert, now=now)
            store.enqueue(conn, "alert", message, recipient, now)


_MESSAGE_ID_FETCH = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
_MESSAGE_ID_ITEM = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"


@dataclass(frozen=True)
class _About:
    received_at: datetime  # INTERNALDATE
    size: int  # RFC822.SIZE


@dataclass(frozen=True)
class TooLarge:
    """A message left in the mailbox because it is larger than the size limit."""

    inbox: str
    folder: str
    uidvalidity: int
    uid: int
    size: int
    limit: int
    received_at: datetime
    sender: str
    sender_name: str
    subject: str
    message_id: str

    @property
    def key(self) -> str:
        """The same message after a renumbering: everything but the UID."""
        return f"{self.inbox}/{self.folder}/{self.message_id}/{self.size}/{self.received_at.isoformat()}"

    def detail(self) -> dict[str, Any]:
        return {"key": self.key, "inbox": self.inbox, "folder": self.folder, "uidvalidity": self.uidvalidity,
                "uid": self.uid, "size": self.size, "limit": self.limit,
                "received_at": self.received_at.isoformat(), "from": self.sender,
                "from_name": self.sender_name, "subject": self.subject, "message_id": self.message_id}  # fmt: skip


def too_large_alert(
    config: Config, imap: ImapConfig, refused: list[TooLarge], *, sent: bool = False
) -> Alert:
    """The owner's alert about messages not fetched for their size."""
    return Alert("too-large", {
        "username": imap.username, "folder": refused[0].folder, "limit": refused[0].limit,
        "sent": sent,
        "messages": [{"sender": f"{t.sender_name} <{t.sender}>" if t.sender_name else (t.sender or "?"),
                      "subject": t.subject, "received": config.calendar.local(t.received_at), "size": t.size}
                     for t in refused],
    })  # fmt: skip


def _text(value: Any, *, decode: bool = False) -> str:
    """An ENVELOPE string as one line of text; `decode`: RFC 2047 encoded words too."""
    if value is None:
        return ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if decode:
        with contextlib.suppress(Exception):  # a damaged encoded word stays as it came
            text = str(make_header(decode_header(text)))
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:300]


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
            wait_at_most = BACKOFF_MAX
            try:
                client = connect(imap, tokens=self.tokens)
                self._clients[sync.folder] = client
                log.info("event=imap-connected inbox=%s folder=%s", self.inbox.name, sync.folder)
                can_idle = imap.idle and client.has_capability("IDLE")
                departures = imap.resolve_on_archive and not sync.sent
                while not self._stop.is_set():
                    sync.sync(client)
                    failures = 0
                    self.last_error = None
                    if can_idle:
                        self._idle(client, imap, departures=departures)
                    else:
                        self._stop.wait(imap.poll_interval.total_seconds())
                        client.noop()
            except LoginRequired as exc:  # the owner must sign in; keep trying meanwhile
                self.last_error = str(exc)
                failures += 1
                wait_at_most = SIGN_IN_CHECK_EVERY
                log.error("event=imap-login-required inbox=%s error=%r retry_in=%.0fs",
                          self.inbox.name, str(exc), min(_backoff(failures), wait_at_most))  # fmt: skip
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
                self._stop.wait(min(_backoff(failures), wait_at_most))

    def _idle(self, client: IMAPClient, imap: ImapConfig, *, departures: bool = False) -> None:
        """IDLE until the server reports something (new mail; with `departures`, an
        expunge too), the refresh time passes, or we stop."""
        refresh = min(IDLE_REFRESH, max(imap.poll_interval, timedelta(seconds=5)))
        client.idle()
        try:
            waited = 0.0
            while not self._stop.is_set() and waited < refresh.total_seconds():
                responses = client.idle_check(timeout=1)
                waited += 1
                if any(_is_news(r, departures=departures) for r in responses):
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


def _is_news(response: Any, *, departures: bool = False) -> bool:
    news = (b"EXISTS", b"RECENT", b"EXPUNGE") if departures else (b"EXISTS", b"RECENT")
    if isinstance(response, tuple) and response[:1] == (b"VANISHED",):  # QRESYNC's expunge
        return departures
    return isinstance(response, tuple) and len(response) >= 2 and response[1] in news


def _backoff(failures: int) -> float:
    return min(2.0 ** max(failures - 1, 0), BACKOFF_MAX) if failures else 0.0


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # the connection may already be gone; nothing to do
        with contextlib.suppress(Exception):
            client.shutdown()
