"""resolution: the resolution clock on conversations, `pending` and `resolved` states

Stored `awaiting_customer` conversations become `pending` (their pause starts at the
team's last reply) and `closed` ones `resolved` at the team's last reply (by close_after).
Every other conversation's resolution clock runs from its receipt; none has a target yet.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from gateway.store import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_INDEXES = ("resolve_due_at", "resolve_warn_at", "resolved_at")


_COLUMNS = (
    ("resolve_window_seconds", sa.Integer(), None),
    ("resolution_business_seconds", sa.Integer(), "0"),
    ("resolution_running_since", UTCDateTime(), None),
    ("customer_wait_business_seconds", sa.Integer(), "0"),
    ("waiting_since", UTCDateTime(), None),
    ("resolve_due_at", UTCDateTime(), None),
    ("resolve_warn_at", UTCDateTime(), None),
    ("resolution_breached", sa.Boolean(), sa.false()),
    ("resolve_warned_at", UTCDateTime(), None),
    ("resolve_alerted_at", UTCDateTime(), None),
    ("resolved_at", UTCDateTime(), None),
    ("resolved_by", sa.String(length=320), None),
    ("priority_set_by", sa.String(length=16), "keywords"),
)


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy): SQLite cannot drop a table that others refer to.
    for name, kind, default in _COLUMNS:
        op.add_column("conversations", sa.Column(name, kind, nullable=default is None,
                                                 server_default=default))  # fmt: skip
    for column in _INDEXES:
        op.create_index(f"ix_conversations_{column}", "conversations", [column], unique=False)
    op.create_index("ix_conversations_resolution_breached_resolve_alerted_at", "conversations",
                    ["resolution_breached", "resolve_alerted_at"], unique=False)  # fmt: skip
    op.execute("UPDATE conversations SET state = 'pending', waiting_since = last_team_at"
               " WHERE state = 'awaiting_customer'")  # fmt: skip
    op.execute("UPDATE conversations SET state = 'resolved', resolved_by = 'close_after',"
               " resolved_at = COALESCE(last_team_at, closed_at), waiting_since = COALESCE(last_team_at, closed_at)"
               " WHERE state = 'closed'")  # fmt: skip
    op.execute("UPDATE conversations SET resolution_running_since = received_at"
               " WHERE state NOT IN ('pending', 'resolved')")  # fmt: skip


def downgrade() -> None:
    op.execute("UPDATE conversations SET state = 'awaiting_customer' WHERE state = 'pending'")
    op.execute("UPDATE conversations SET state = 'closed', closed_at = COALESCE(closed_at, resolved_at)"
               " WHERE state = 'resolved'")  # fmt: skip
    op.drop_index("ix_conversations_resolution_breached_resolve_alerted_at", table_name="conversations")
    for column in _INDEXES:
        op.drop_index(f"ix_conversations_{column}", table_name="conversations")
    for name, _, _ in reversed(_COLUMNS):
        op.drop_column("conversations", name)
