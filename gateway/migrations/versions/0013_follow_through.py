"""follow-through: a breach notice per reply clock, reminders, exception notices, coupon codes

The one breach notice moves from the conversation to its reply cycle, so each next reply
may have its own; every cycle already breached counts as notified (nothing is sent late
for history). Conversations count the reminders of their current pause. Two new tables:
the current exception notice (`sla-gateway notice`) and the coupon codes given.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from gateway.store import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy): SQLite cannot drop a table that others refer to.
    op.add_column("cycles", sa.Column("customer_notified_at", UTCDateTime(), nullable=True))
    op.add_column("conversations", sa.Column("reminders_sent", sa.Integer(), nullable=False,
                                             server_default="0"))  # fmt: skip
    op.add_column("conversations", sa.Column("reminded_pause", UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE cycles SET customer_notified_at = COALESCE("
        "(SELECT c.customer_notified_at FROM conversations c WHERE c.id = cycles.conversation_id),"
        " started_at) WHERE breached = TRUE"
    )
    op.create_table(
        "exception_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=True),
        sa.Column("set_at", UTCDateTime(), nullable=False),
        sa.Column("set_by", sa.String(length=320), nullable=False),
        sa.Column("cleared_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_exception_notices"),
    )
    op.create_table(
        "remedy_codes",
        sa.Column("code", sa.String(length=255), nullable=False),
        sa.Column("codes_file", sa.Text(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("given_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"],
                                name="fk_remedy_codes_conversation_id_conversations"),  # fmt: skip
        sa.PrimaryKeyConstraint("code", name="pk_remedy_codes"),
    )
    op.create_index("ix_remedy_codes_conversation_id", "remedy_codes", ["conversation_id"])


def downgrade() -> None:
    op.drop_index("ix_remedy_codes_conversation_id", table_name="remedy_codes")
    op.drop_table("remedy_codes")
    op.drop_table("exception_notices")
    op.drop_column("conversations", "reminded_pause")
    op.drop_column("conversations", "reminders_sent")
    op.drop_column("cycles", "customer_notified_at")
