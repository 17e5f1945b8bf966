"""The pipeline: store first, then decide, then queue — each step a transaction.

Owns: turning a received message into durable rows, and the one way anything queues
outgoing mail. `accept()` commits the raw bytes (and, for mail read over IMAP, its
folder, UIDVALIDITY and UID; nothing else) before any intake may say "got it" —
deduplicated by `dedup.dedup_key` (the Message-ID's bytes and a hash of the content), so
the same mail seen by SMTP and IMAP, or delivered twice, is kept once, and different
mails sharing a Message-ID are all kept. The runner (runner.py) then
decides about each stored message and writes the decision, the conversation and the
acknowledgment's outbox row in one transaction. `queue()` is the enqueue the runner,
the scheduler, the CLI and the alerts all use. It never sends anything itself: the
outbox sender does. Its SQL is the store's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import dedup, store
from .config import Config
from .errors import TemporaryError
from .model import Received
from .render import Renderer
from .runner import Outcome, Runner
from .store import Engine

__all__ = ["Outcome", "Pipeline", "Received"]



class Pipeline:
    """Accepts and processes messages for one configuration, against one database."""

    def __init__(
        self, config: Config, engine: Engine, clock: Callable[[], datetime], *, replay: bool = False
    ) -> None:
        self.replay = replay  # rebuilding history: no acknowledgments, no alerts
        self.config = config
        self.engine = engine
        self.clock = clock
        self.renderer = Renderer(config)
        self.runner = Runner(config, engine, clock, self.renderer, self.queue, replay=replay)

    def reconfigure(self, config: Config) -> None:
        """Use `config` (a reload's) for what is processed and rendered from now on: the
        runner's rules and classifier, and freshly read templates and catalogs."""
        renderer = Renderer(config)
        self.config, self.renderer = config, renderer
        self.runner.reconfigure(config, renderer)

    # ------------------------------------------------------------------ accept

    def accept(self, received: Received) -> tuple[int | None, bool]:
        """Durably store the raw message. Returns (row id, is_new); a duplicate gives
        (existing id, False). Raises TemporaryError when the database cannot commit.
        (The SMTP listener groups its sessions' messages into one commit itself, with
        `accept_many`; the pollers and replay store one message at a time.)"""
        return self.accept_many([received])[0]

    def accept_many(self, items: list[Received]) -> list[tuple[int | None, bool]]:
        """Store several raw messages in one transaction (see `accept`)."""
        try:
            with store.begin(self.engine) as conn:
                return [self._insert(conn, received) for received in items]
        except Exception as exc:
            if store.is_temporary(exc):
                raise TemporaryError(f"cannot store the message: {exc}") from exc
            raise

    def _insert(self, conn: Any, received: Received) -> tuple[int | None, bool]:
        """One message's row (or the one it duplicates), and where it sits in an IMAP
        folder when it was read from one: a copy of a known message has a place too."""
        row_id, new = store.insert_raw(conn, _row(received))
        if received.folder_uid is not None and row_id is not None:
            folder, uidvalidity, uid = received.folder_uid
            store.remember_uid(conn, row_id, inbox=received.inbox or "", folder=folder,
                               uidvalidity=uidvalidity, uid=uid, at=self.clock())  # fmt: skip
        return row_id, new

    # ------------------------------------------------------------------ process

    def process_pending(self, limit: int = 100) -> list[Outcome]:
        """Process up to `limit` stored messages, oldest first (see runner.py)."""
        return self.runner.process_pending(limit)

    def process(self, row_id: int) -> Outcome | None:
        """Process one stored message; None when it was not (or no longer) pending."""
        return self.runner.process(row_id)

    # ------------------------------------------------------------------ queue

    def queue(
        self,
        conn: Any,
        kind: str,
        message: Any,
        recipient: str,
        now: datetime,
        conversation_id: int | None = None,
        source_row: int | None = None,
    ) -> int:
        """Write one outgoing message to the outbox (inside the caller's transaction);
        returns its row id."""
        null = self.config.send.null_sender and kind in store.CUSTOMER_KINDS
        return store.enqueue(conn, kind, message, recipient, now, conversation_id, source_row,
                             null_sender=null)  # fmt: skip


def _row(received: Received) -> dict[str, Any]:
    key, message_id = dedup.identify(received.raw)
    return {
        "dedup_key": key,
        "message_id": message_id,
        "inbox": received.inbox,
        "source": received.source,
        "status": "stored",
        "received_at": received.received_at,
        "envelope_from": received.envelope_from,
        "envelope_to": ", ".join(received.envelope_to) or None,
        "sha256": hashlib.sha256(received.raw).hexdigest(),
        "size": len(received.raw),
        "raw": received.raw,
        "direction": "team" if received.from_sent_folder else "customer",
        "acknowledged": False,
    }
