"""an index on outbox.message_id: threading looks up the Message-IDs a reply names among
the mail we sent (acknowledgments, breach notices) for every message; and one on
digests.outbox_id, which the foreign key's check reads when retention deletes outbox rows;
and one on messages (direction, received_at), for the rate limits' look at a sender's
recent machine mail

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_message_id", ["message_id"], unique=False)
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_direction_received_at", ["direction", "received_at"],
                              unique=False)
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.create_index("ix_digests_outbox_id", ["outbox_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_direction_received_at")
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.drop_index("ix_digests_outbox_id")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_message_id")
