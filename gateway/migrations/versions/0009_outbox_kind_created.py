"""an index on outbox (kind, created_at): the breaker counts recent acknowledgments from it;
and sign-ins refused before this revision count as alerted (their alert was sent then)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from gateway.store import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_kind_created_at", ["kind", "created_at"], unique=False)
    conn = op.get_bind()
    last = conn.execute(sa.text("SELECT max(id) FROM events WHERE kind = 'oauth-login-required'")).scalar()
    if last is not None:  # signin.py alerts only what comes after the latest "oauth-alerted"
        events = sa.table("events", sa.column("at", UTCDateTime), sa.column("kind", sa.String),
                          sa.column("detail", sa.Text))  # fmt: skip
        op.bulk_insert(events, [{"at": datetime.now(UTC), "kind": "oauth-alerted",
                                 "detail": json.dumps({"through": int(last)})}])  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_kind_created_at")
