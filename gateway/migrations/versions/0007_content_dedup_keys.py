"""dedup keys: the Message-ID's bytes and a hash of the content, not the Message-ID alone

Rows stored before keep their raw bytes until the retention purge; they get the new key,
so that a copy of one of them arriving after the upgrade (the IMAP copy of an SMTP mail)
is still recognised. A row whose raw message is gone, or whose new key another row
already has, keeps its old key (nothing is lost: both stay stored).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from gateway.dedup import KEY_PREFIX, identify

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = 500


def upgrade() -> None:
    conn = op.get_bind()
    messages = sa.table(
        "messages",
        sa.column("id", sa.Integer),
        sa.column("dedup_key", sa.String),
        sa.column("message_id", sa.String),
        sa.column("raw", sa.LargeBinary),
    )
    taken = set(
        conn.execute(
            sa.select(messages.c.dedup_key).where(messages.c.dedup_key.like(KEY_PREFIX + "%"))
        ).scalars()
    )
    after = 0
    while True:
        rows = conn.execute(
            sa.select(messages.c.id, messages.c.raw)
            .where(
                messages.c.id > after,
                messages.c.raw.isnot(None),
                messages.c.dedup_key.notlike(KEY_PREFIX + "%"),
            )
            .order_by(messages.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            key, message_id = identify(bytes(row.raw))
            if key not in taken:
                taken.add(key)
                conn.execute(
                    messages.update()
                    .where(messages.c.id == row.id)
                    .values(dedup_key=key, message_id=message_id)
                )
        after = rows[-1].id


def downgrade() -> None:
    pass  # the new keys are as unique as the old ones; nothing to undo
