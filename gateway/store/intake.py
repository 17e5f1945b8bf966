"""The intake side's statements: IMAP folder sync state, event details, set-aside release.

Owns reading and writing one folder's sync state (UIDVALIDITY, the last UID taken care
of, the INTERNALDATE everything before which was seen), the details of earlier events of
a kind (so that a message too large to fetch is reported once), and putting set-aside
messages back to be processed (`retry`). The caller opens the transaction.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from .schema import events, messages, sync_state

__all__ = ["event_details", "folder_state", "release_set_aside", "save_folder_state"]


def folder_state(conn: Any, inbox: str, folder: str) -> Any:
    """The folder's sync state row (uidvalidity, last_uid, updated_at, seen_before) or None."""
    s = sync_state.c
    return conn.execute(
        select(sync_state).where(s.inbox == inbox, s.folder == folder)
    ).first()


def save_folder_state(conn: Any, inbox: str, folder: str, *, uidvalidity: int, last_uid: int,
                      updated_at: datetime, seen_before: datetime) -> None:  # fmt: skip
    """Write (update, or insert the first time) the folder's sync state."""
    s = sync_state.c
    values = dict(uidvalidity=uidvalidity, last_uid=last_uid, updated_at=updated_at,
                  seen_before=seen_before)  # fmt: skip
    updated = conn.execute(
        sync_state.update().where(s.inbox == inbox, s.folder == folder).values(**values)
    ).rowcount
    if not updated:
        conn.execute(sync_state.insert().values(inbox=inbox, folder=folder, **values))


def event_details(conn: Any, kind: str) -> list[dict[str, Any]]:
    """The detail (decoded JSON) of every event of this kind, oldest first."""
    e = events.c
    return [json.loads(detail) for detail in
            conn.execute(select(e.detail).where(e.kind == kind).order_by(e.id)).scalars()]  # fmt: skip


def release_set_aside(conn: Any) -> list[int]:
    """`retry`: every set-aside (shunted) message stored again, its error cleared, for
    the runner to process; returns their ids."""
    m = messages.c
    ids = [int(i) for i in conn.execute(select(m.id).where(m.status == "shunted")).scalars()]
    conn.execute(update(messages).where(m.status == "shunted").values(status="stored", error=None))
    return ids
