"""Where messages read over IMAP sit: their UID in each watched folder, and when they left.

Owns the `folder_uids` rows: one per message per folder UID (under the folder's
UIDVALIDITY), written by the transaction that stores the message; which UIDs of a folder
are still taken as present; marking those the server no longer has as left; carrying
them over to a folder's new UIDVALIDITY (found again by Message-ID); and which
conversations have no customer message left in an inbox's watched folders
(`[inbox.imap] resolve_on_archive`). The caller opens the transaction; what a departure
means for a conversation is `imap`'s and `conversations`' business.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, select, update

from .schema import folder_uids, insert_ignore, messages

__all__ = ["emptied_conversations", "mark_left", "present_uids", "remember_uid", "renumber_uids",
           "stale_uids"]  # fmt: skip

CHUNK = 500  # UIDs in one statement's IN list


def remember_uid(conn: Any, message_row: int, *, inbox: str, folder: str, uidvalidity: int,
                 uid: int, at: datetime) -> None:  # fmt: skip
    """Record that this stored message is `uid` in the folder (once; again is a no-op)."""
    conn.execute(insert_ignore(conn, folder_uids), dict(
        inbox=inbox, folder=folder, uidvalidity=uidvalidity, uid=uid, message_row=message_row,
        seen_at=at))  # fmt: skip


def present_uids(conn: Any, inbox: str, folder: str, uidvalidity: int) -> set[int]:
    """The folder's UIDs (under this UIDVALIDITY) not yet seen leaving."""
    f = folder_uids.c
    query = select(f.uid).where(f.inbox == inbox, f.folder == folder, f.uidvalidity == uidvalidity,
                                f.left_at.is_(None))  # fmt: skip
    return {int(uid) for uid in conn.execute(query).scalars()}


def mark_left(conn: Any, inbox: str, folder: str, uidvalidity: int, uids: Iterable[int],
              at: datetime) -> list[int]:  # fmt: skip
    """Mark these UIDs as gone from the folder at `at`; returns the conversations of the
    customer messages among them, each once."""
    f, m = folder_uids.c, messages.c
    gone = sorted(set(uids))
    affected: dict[int, None] = {}
    for start in range(0, len(gone), CHUNK):
        chunk = gone[start : start + CHUNK]
        where = and_(f.inbox == inbox, f.folder == folder, f.uidvalidity == uidvalidity,
                     f.uid.in_(chunk), f.left_at.is_(None))  # fmt: skip
        query = (select(m.conversation_id).distinct().join(folder_uids, f.message_row == m.id)
                 .where(where, m.direction == "customer", m.conversation_id.is_not(None))
                 .order_by(m.conversation_id))  # fmt: skip
        affected.update((int(c), None) for c in conn.execute(query).scalars())
        conn.execute(update(folder_uids).where(where).values(left_at=at))
    return list(affected)


def stale_uids(conn: Any, inbox: str, folder: str, uidvalidity: int) -> dict[int, str | None]:
    """The messages taken as present in the folder under another UIDVALIDITY (before a
    renumbering): message row -> its Message-ID."""
    f, m = folder_uids.c, messages.c
    query = (select(m.id, m.message_id).join(folder_uids, f.message_row == m.id)
             .where(f.inbox == inbox, f.folder == folder, f.uidvalidity != uidvalidity,
                    f.left_at.is_(None)))  # fmt: skip
    return {int(row): message_id for row, message_id in conn.execute(query).all()}


def renumber_uids(conn: Any, inbox: str, folder: str, uidvalidity: int,
                  found: Mapping[int, int], at: datetime) -> None:  # fmt: skip
    """After the folder got a new UIDVALIDITY: the rows under the old one are closed, and
    the messages found again (message row -> new UID) are present under the new one. A
    message not found again counts as gone, without its departure being news: nobody
    saw it leave."""
    f = folder_uids.c
    conn.execute(update(folder_uids)
                 .where(f.inbox == inbox, f.folder == folder, f.uidvalidity != uidvalidity,
                        f.left_at.is_(None))
                 .values(left_at=at))  # fmt: skip
    for message_row, uid in found.items():
        remember_uid(conn, message_row, inbox=inbox, folder=folder, uidvalidity=uidvalidity,
                     uid=uid, at=at)  # fmt: skip


def emptied_conversations(conn: Any, conversation_ids: Iterable[int], inbox: str,
                          folders: Iterable[str]) -> list[int]:  # fmt: skip
    """Those of these conversations none of whose customer messages is still present in
    any of these folders of the inbox (as far as the folders' UIDs tell)."""
    f, m = folder_uids.c, messages.c
    watched = list(folders)
    result = []
    for conversation_id in conversation_ids:
        present = exists().where(
            f.message_row == m.id, f.inbox == inbox, f.folder.in_(watched), f.left_at.is_(None)
        )
        query = select(m.id).where(
            m.conversation_id == conversation_id, m.direction == "customer", present
        )
        still = conn.execute(query.limit(1)).first()
        if still is None:
            result.append(conversation_id)
    return result
