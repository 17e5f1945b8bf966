"""folder_uids: the UID of each message read over IMAP in its watched folder, and when it left

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

Rows start with the messages stored after this revision: nothing is known of where older
ones sit, so archiving them resolves nothing.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "folder_uids",
        sa.Column("inbox", sa.String(length=64), nullable=False),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("message_row", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["message_row"], ["messages.id"],
                                name=op.f("fk_folder_uids_message_row_messages")),  # fmt: skip
        sa.PrimaryKeyConstraint("inbox", "folder", "uidvalidity", "uid", name=op.f("pk_folder_uids")),
    )
    with op.batch_alter_table("folder_uids", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_folder_uids_message_row"), ["message_row"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("folder_uids", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_folder_uids_message_row"))
    op.drop_table("folder_uids")
