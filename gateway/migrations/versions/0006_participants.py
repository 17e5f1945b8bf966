"""participants and reply_keys: who may continue a conversation; team replies still unmatched

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Existing conversations get their participants from what is stored: the customer, the
recipients of what we sent them, and the To/Cc/Reply-To addresses of the messages the
customer or the team wrote in them (read from the raw headers while they are kept). Other
senders do not count: before this revision anyone could join a conversation with its tag.
"""

from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHUNK = 500


def upgrade() -> None:
    op.create_table(
        "participants",
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversations.id"],
            name=op.f("fk_participants_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint("conversation_id", "address", name=op.f("pk_participants")),
    )  # fmt: skip
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_participants_address"), ["address"], unique=False)
    op.create_table(
        "reply_keys",
        sa.Column("message_row", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_row"], ["messages.id"], name=op.f("fk_reply_keys_message_row_messages")
        ),
        sa.PrimaryKeyConstraint("message_row", "key", name=op.f("pk_reply_keys")),
    )
    with op.batch_alter_table("reply_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reply_keys_key"), ["key"], unique=False)
    _backfill(op.get_bind())


def _addresses(raw: bytes | None) -> set[str]:
    if not raw:
        return set()
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
        values = [str(v) for name in ("To", "Cc", "Reply-To") for v in headers.get_all(name, [])]
        return {a.strip().lower() for _, a in getaddresses(values) if "@" in a}
    except Exception:  # a damaged header gives no participants, never a failed upgrade
        return set()


def _backfill(conn: sa.Connection) -> None:
    conversations = sa.table(
        "conversations", sa.column("id", sa.Integer), sa.column("customer", sa.String)
    )
    messages = sa.table(
        "messages", sa.column("id", sa.Integer), sa.column("conversation_id", sa.Integer),
        sa.column("direction", sa.String), sa.column("from_addr", sa.String),
        sa.column("raw", sa.LargeBinary),
    )  # fmt: skip
    outbox = sa.table(
        "outbox", sa.column("conversation_id", sa.Integer), sa.column("recipient", sa.String)
    )
    participants = sa.table(
        "participants", sa.column("conversation_id", sa.Integer), sa.column("address", sa.String)
    )
    found: set[tuple[int, str]] = set()
    customers: dict[int, str] = {}
    for conv_id, customer in conn.execute(sa.select(conversations.c.id, conversations.c.customer)):
        customers[conv_id] = (customer or "").lower()
        found.add((conv_id, customers[conv_id]))
    for conv_id, recipient in conn.execute(
        sa.select(outbox.c.conversation_id, outbox.c.recipient).where(
            outbox.c.conversation_id.isnot(None)
        )
    ):
        found.add((conv_id, (recipient or "").lower()))
    m = messages.c
    last = 0
    while True:  # in chunks: the raw mail of a large database does not fit in memory
        rows = list(conn.execute(
            sa.select(m.id, m.conversation_id, m.direction, m.from_addr, m.raw)
            .where(m.conversation_id.isnot(None), m.id > last).order_by(m.id).limit(CHUNK)
        ))  # fmt: skip
        if not rows:
            break
        last = rows[-1].id
        for row in rows:
            # Only whom the customer or the team wrote to takes part: before this upgrade
            # anyone could join with a tag, and their mail must not make them a participant.
            by_customer = (row.from_addr or "").lower() == customers.get(row.conversation_id)
            if by_customer or row.direction == "team":
                found.update((row.conversation_id, a) for a in _addresses(row.raw))
    unique = sorted({(c, a[:320]) for c, a in found if "@" in a})
    values = [{"conversation_id": c, "address": a} for c, a in unique]
    for start in range(0, len(values), CHUNK):
        conn.execute(participants.insert(), values[start : start + CHUNK])


def downgrade() -> None:
    op.drop_table("reply_keys")
    op.drop_table("participants")
